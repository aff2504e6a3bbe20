// Everything the module knows about Pepr 1.1.4's private Store format, in one place. Pepr documents only the
// Store API (getItem / setItem / subscribe); the watcher writes the PeprStore object itself (config/publish.ts
// says why), so it must write exactly what Pepr's StoreController would, and the RBAC rules name Pepr's objects.
// test/common/pepr-store.test.ts fails on any other Pepr version and checks every fact here against the
// installed Pepr's own code (it runs Pepr's StoreController against the sandbox API server).

/** The Pepr release whose Store format this file describes (package.json pins pepr to it). */
export const PEPR_STORE_FORMAT_VERSION = "1.1.4";

/** The PeprStore custom resource (Pepr's `peprStoreGVK`; plural and CRD name as Pepr's CRD derives them). */
export const PEPR_STORE_RESOURCE = { group: "pepr.dev", version: "v1", kind: "PeprStore", plural: "peprstores" } as const;
export const PEPR_STORE_CRD_NAME = `${PEPR_STORE_RESOURCE.plural}.${PEPR_STORE_RESOURCE.group}`;

/** Every PeprStore object lives in Pepr's own namespace. */
export const PEPR_STORE_NAMESPACE = "pepr-system";

export interface PeprStoreRef {
  namespace: string;
  name: string;
}

/** The PeprStore objects Pepr's controller opens for a module: the Store, and the OnSchedule store. */
export function peprStoreRefs(uuid: string): { store: PeprStoreRef; schedule: PeprStoreRef } {
  return {
    store: { namespace: PEPR_STORE_NAMESPACE, name: `pepr-${uuid}-store` },
    schedule: { namespace: PEPR_STORE_NAMESPACE, name: `pepr-${uuid}-schedule` },
  };
}

/** This module's Store object (package.json `pepr.uuid` is "kubevirt-infra"). */
export const MODULE_PEPR_STORE: PeprStoreRef = peprStoreRefs("kubevirt-infra").store;

/**
 * The data key of the PeprStore object that capability `capability`'s `Store.setItem(key)` writes and its
 * `Store.getItem(key)` reads: `<capability>-v2-<key>` (the "v2" format Pepr's start-up migration leaves alone).
 */
export function peprStoreDataKey(capability: string, key: string): string {
  return `${capability}-v2-${key}`;
}

/** An RFC 6901 JSON pointer token. */
function pointerToken(key: string): string {
  return key.replace(/~/g, "~0").replace(/\//g, "~1");
}

/** The JSON patch that sets one data key, the operation Pepr's Store sender sends (values are strings in Pepr's CRD). */
export function peprStoreSetPatch(dataKey: string, value: string): [{ op: "add"; path: string; value: string }] {
  return [{ op: "add", path: `/data/${pointerToken(dataKey)}`, value }];
}

// Contract between the sandbox API server's storage and the in-process controllers (simulators).
// The REST layer and the simulators both use ObjectStore; only REST requests go through admission.

import type { KubeObject as AnyKubeObject, ObjectMeta } from "../../capabilities/common/kube-types";

export type { ObjectMeta };

/** A stored object: the store sets apiVersion and kind from the resource type when it is created. */
export interface KubeObject extends AnyKubeObject {
  apiVersion: string;
  kind: string;
}

/** A resource type the server serves, e.g. { group: "kubevirt.io", version: "v1", resource: "virtualmachines", ... }. */
export interface ResourceType {
  group: string; // "" for the core group
  version: string;
  resource: string; // plural, lower case
  kind: string;
  listKind: string;
  namespaced: boolean;
  hasStatus: boolean; // status is a subresource: main-resource writes keep the old status and vice versa
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED";
export interface StoreEvent {
  type: WatchEventType;
  object: KubeObject;
}

/**
 * Typed errors carry the HTTP status and Kubernetes reason (NotFound, AlreadyExists, Conflict, Invalid, Gone...),
 * so the REST layer can turn them into metav1.Status bodies.
 */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    /** metav1.StatusDetails (name, group, kind, causes) for the Status body. */
    readonly details?: StatusDetails,
  ) {
    super(message);
  }
}

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}
export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

export interface ObjectStore {
  /** Resource types by "resource.group" ("nodes", "virtualmachines.kubevirt.io"). */
  resourceType(key: string): ResourceType;
  get(key: string, namespace: string | undefined, name: string): KubeObject | undefined;
  list(key: string, namespace?: string): KubeObject[];
  /** Assigns uid, resourceVersion, creationTimestamp; 409 AlreadyExists. */
  create(key: string, obj: KubeObject): KubeObject;
  /** Optimistic concurrency: 409 Conflict when obj.metadata.resourceVersion is set and stale. */
  update(key: string, obj: KubeObject, opts?: { subresource?: "status" }): KubeObject;
  /**
   * Read-modify-write for controllers: fn gets a deep copy and returns the new object (or undefined for
   * no change). Retries on conflict. Returns the stored object, or undefined when it does not exist.
   */
  mutate(
    key: string,
    namespace: string | undefined,
    name: string,
    fn: (obj: KubeObject) => KubeObject | undefined,
    opts?: { subresource?: "status" },
  ): KubeObject | undefined;
  /** Deletes now, or sets deletionTimestamp while finalizers remain. Owner-reference garbage collection applies. */
  delete(key: string, namespace: string | undefined, name: string): KubeObject | undefined;
  /** Events after the current state; the callback runs synchronously in commit order. Returns unsubscribe. */
  watch(key: string, namespace: string | undefined, cb: (ev: StoreEvent) => void): () => void;
  /**
   * As watch, without copying each object for the callback: the event's object is the stored one, to read and
   * never change (controllers that only enqueue keys; a copy per event would be most of a write's cost).
   */
  watchStored(key: string, namespace: string | undefined, cb: (ev: StoreEvent) => void): () => void;
}

export interface SubresourceRequest {
  namespace: string;
  name: string;
  body: unknown;
  user: UserInfo;
}
/** Handler for PUT /apis/<group>/<version>/namespaces/<ns>/<resource>/<name>/<subresource> (KubeVirt's virt-api). */
export type SubresourceHandler = (req: SubresourceRequest) => Promise<{ status: number; body?: unknown }>;

export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
}

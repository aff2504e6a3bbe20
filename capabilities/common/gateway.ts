// The one place where the module writes to Kubernetes. Every function here is a verb on a resource the
// generated ClusterRole must allow; keep them small and typed so the RBAC test can enumerate them.
// Reads on request paths come from the informers, not from here. Every call goes through the process's one
// KubeClient (one keep-alive agent, kubeconfig read once).
import type { kind } from "pepr";
import { KubeApiError, sharedKubeClient, type Query } from "./kube-client";
import { PEPR_STORE_RESOURCE, peprStoreSetPatch, type PeprStoreRef } from "./pepr-store";

export { KubeApiError } from "./kube-client";

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

const JSON_PATCH = "application/json-patch+json";
const APPLY_PATCH = "application/apply-patch+yaml";

async function call<T = unknown>(method: Method, path: string, body?: unknown, contentType?: string, query?: Query): Promise<T> {
  return (await sharedKubeClient()).request<T>({ method, path, body, contentType, query });
}

/**
 * A write whose returned object the caller does not use: done once its status says the API server took it
 * (KubeClient.write). The watch cache shows the change when its event arrives, whether the body came first or not.
 */
async function write(method: Method, path: string, body: unknown, contentType?: string): Promise<void> {
  await (await sharedKubeClient()).write({ method, path, body, contentType });
}

const seg = encodeURIComponent;
const corePath = (namespace: string, plural: string, name?: string) =>
  `/api/v1/namespaces/${seg(namespace)}/${plural}${name === undefined ? "" : `/${seg(name)}`}`;
const groupPath = (groupVersion: string, namespace: string, plural: string, name?: string) =>
  `/apis/${groupVersion}/namespaces/${seg(namespace)}/${plural}${name === undefined ? "" : `/${seg(name)}`}`;

/**
 * Records a Kubernetes Event on an object (best effort: a failed Event never fails the caller).
 * `opts.name` gives the Event a fixed name: a report repeated (e.g. after a restart) then hits AlreadyExists
 * instead of creating a duplicate.
 */
export async function recordEvent(
  involved: { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string; uid?: string } },
  type: "Normal" | "Warning",
  reason: string,
  message: string,
  opts: { name?: string } = {},
): Promise<void> {
  const namespace = involved.metadata?.namespace ?? "default";
  const now = new Date().toISOString();
  try {
    await call("POST", corePath(namespace, "events"), {
      apiVersion: "v1",
      kind: "Event",
      metadata: opts.name ? { name: opts.name, namespace } : { generateName: `${involved.metadata?.name ?? "object"}.`, namespace },
      involvedObject: {
        apiVersion: involved.apiVersion,
        kind: involved.kind,
        name: involved.metadata?.name,
        namespace: involved.metadata?.namespace,
        uid: involved.metadata?.uid,
      },
      type,
      reason,
      message,
      source: { component: "kubevirt-infra" },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    });
  } catch {
    // Events are diagnostics; the caller's work must not depend on them.
  }
}

/** Creates or replaces a ConfigMap the module owns (server-side apply, field manager "pepr"). Throws on failure. */
export async function applyConfigMap(
  namespace: string,
  name: string,
  data: Record<string, string>,
  labels: Record<string, string> = {},
): Promise<void> {
  await call(
    "PATCH",
    corePath(namespace, "configmaps", name),
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace, labels }, data },
    APPLY_PATCH,
    { fieldManager: "pepr", force: true },
  );
}

/**
 * JSON-patches a Node (node-identity: identity annotations, providerID) and returns it as stored, i.e. after
 * admission webhooks. Throws a KubeApiError (a failed `test` operation is a 422).
 */
export async function patchNode(name: string, ops: JsonPatchOp[]): Promise<kind.Node> {
  return call<kind.Node>("PATCH", `/api/v1/nodes/${seg(name)}`, ops, JSON_PATCH);
}

/**
 * Reads one key of a Secret, decoded; undefined when the Secret or the key does not exist. A read, kept here
 * so that the Secret access the module needs (node-identity's infra kubeconfig) is visible with its writes.
 * Callers must never log the value.
 */
export async function readSecretKey(namespace: string, name: string, key: string): Promise<string | undefined> {
  const secret = (await readOrUndefined(corePath(namespace, "secrets", name))) as { data?: Record<string, string> } | undefined;
  const encoded = secret?.data?.[key];
  return encoded === undefined ? undefined : Buffer.from(encoded, "base64").toString("utf8");
}

/**
 * Sets one data key of a PeprStore object, with the patch Pepr's own Store sender sends (./pepr-store.ts).
 * The config capability writes its Store key directly instead of through `Store.setItem`, whose 4 s batching
 * would miss the 5 s hot-reload budget. Throws on failure (404 until Pepr created the store).
 */
export async function setPeprStoreData(store: PeprStoreRef, dataKey: string, value: string): Promise<void> {
  const { group, version, plural } = PEPR_STORE_RESOURCE;
  await call("PATCH", groupPath(`${group}/${version}`, store.namespace, plural, store.name), peprStoreSetPatch(dataKey, value), JSON_PATCH);
}

// ---- KubeVirt VirtualMachine / VirtualMachineInstance: Redfish power and boot ----

/** An RFC 6902 operation, as sent with application/json-patch+json. */
export type JsonPatchOp = { op: "add" | "replace" | "test"; path: string; value: unknown } | { op: "remove"; path: string };

/** PUT on a KubeVirt subresource (virt-api), through the same client as everything else. */
async function putKubeVirtSubresource(
  plural: "virtualmachines" | "virtualmachineinstances",
  namespace: string,
  name: string,
  subresource: string,
  body: Record<string, unknown>,
): Promise<void> {
  await write("PUT", `${groupPath("subresources.kubevirt.io/v1", namespace, plural, name)}/${subresource}`, body);
}

/** VM `start` subresource (virt-api decides: Halted → running, Manual/RerunOnFailure → start request). */
export function startVirtualMachine(namespace: string, name: string): Promise<void> {
  return putKubeVirtSubresource("virtualmachines", namespace, name, "start", {});
}

/** VM `stop` subresource; `gracePeriod: 0` shortens the VMI's termination grace period first (force off). */
export function stopVirtualMachine(namespace: string, name: string, opts: { gracePeriod?: number } = {}): Promise<void> {
  return putKubeVirtSubresource("virtualmachines", namespace, name, "stop", opts.gracePeriod === undefined ? {} : { gracePeriod: opts.gracePeriod });
}

/** VM `restart` subresource (new VMI from the current template); `gracePeriodSeconds: 0` = force restart. */
export function restartVirtualMachine(namespace: string, name: string, opts: { gracePeriodSeconds?: number } = {}): Promise<void> {
  return putKubeVirtSubresource(
    "virtualmachines",
    namespace,
    name,
    "restart",
    opts.gracePeriodSeconds === undefined ? {} : { gracePeriodSeconds: opts.gracePeriodSeconds },
  );
}

/** VMI subresources that act on the running guest: pause, unpause, softreboot (agent or ACPI), reset (hard). */
export function putVirtualMachineInstanceAction(
  namespace: string,
  name: string,
  action: "pause" | "unpause" | "softreboot" | "reset",
): Promise<void> {
  return putKubeVirtSubresource("virtualmachineinstances", namespace, name, action, {});
}

/** JSON patch of a VirtualMachine. Callers include `test` ops on the values they computed from, so a change
 * made meanwhile by someone else fails the patch (422) instead of being overwritten. Resolves to the VM's new
 * resourceVersion (from the answer: the API server sends the object with its status, in the same flush). */
export async function patchVirtualMachine(namespace: string, name: string, ops: JsonPatchOp[]): Promise<string | undefined> {
  const patched = await call<{ metadata?: { resourceVersion?: string } } | undefined>(
    "PATCH",
    groupPath("kubevirt.io/v1", namespace, "virtualmachines", name),
    ops,
    JSON_PATCH,
  );
  return patched?.metadata?.resourceVersion;
}

/** Fresh reads for the rare retry after a patch built from a stale cache entry failed its `test` ops. */
export async function readVirtualMachine(namespace: string, name: string): Promise<unknown | undefined> {
  return readOrUndefined(groupPath("kubevirt.io/v1", namespace, "virtualmachines", name));
}

export async function readVirtualMachineInstance(namespace: string, name: string): Promise<unknown | undefined> {
  return readOrUndefined(groupPath("kubevirt.io/v1", namespace, "virtualmachineinstances", name));
}

async function readOrUndefined(path: string): Promise<unknown | undefined> {
  try {
    return await call("GET", path);
  } catch (e) {
    if (e instanceof KubeApiError && e.status === 404) return undefined;
    throw e;
  }
}

// ---- CDI DataVolumes and their Secrets: Redfish virtual media ----

/** The fields of a created object the caller needs (its uid for ownerReferences). */
export interface CreatedObject {
  metadata: { name: string; namespace: string; uid: string; resourceVersion?: string };
}

function created(obj: unknown): CreatedObject {
  const meta = (obj as { metadata?: Partial<CreatedObject["metadata"]> } | undefined)?.metadata;
  if (!meta?.name || !meta.namespace || !meta.uid) throw new KubeApiError(0, "InvalidResponse", "the API server returned no object metadata");
  return { metadata: { name: meta.name, namespace: meta.namespace, uid: meta.uid, resourceVersion: meta.resourceVersion } };
}

/** Creates a DataVolume (virtual media import). Throws KubeApiError (409 AlreadyExists when the name is taken). */
export async function createDataVolume(dataVolume: { metadata: { name: string; namespace: string } } & Record<string, unknown>): Promise<CreatedObject> {
  const body = { apiVersion: "cdi.kubevirt.io/v1beta1", kind: "DataVolume", ...dataVolume };
  return created(await call("POST", groupPath("cdi.kubevirt.io/v1beta1", dataVolume.metadata.namespace, "datavolumes"), body));
}

/** Deletes a DataVolume (its PVC and the Secrets it owns follow by garbage collection); a missing one is success. */
export async function deleteDataVolume(namespace: string, name: string): Promise<void> {
  try {
    await call("DELETE", groupPath("cdi.kubevirt.io/v1beta1", namespace, "datavolumes", name));
  } catch (e) {
    if (e instanceof KubeApiError && e.status === 404) return;
    throw e;
  }
}

/** Creates a Secret (virtual media image credentials, owned by their DataVolume). Callers never log its data. */
export async function createSecret(secret: { metadata: { name: string; namespace: string } } & Record<string, unknown>): Promise<CreatedObject> {
  const body = { apiVersion: "v1", kind: "Secret", ...secret };
  return created(await call("POST", corePath(secret.metadata.namespace, "secrets"), body));
}

// ---- Redfish event subscriptions: ONE Secret in the module namespace (their HttpHeaders may carry credentials) ----

/** The Secret that holds every event subscription (data key = subscription id), read and written by name only. */
export const EVENT_SUBSCRIPTIONS_SECRET = "kubevirt-infra-event-subscriptions";

/** The stored event subscriptions (decoded data by subscription id); none before the first write. Never logged. */
export async function readEventSubscriptions(namespace: string): Promise<Record<string, string>> {
  const secret = (await readOrUndefined(corePath(namespace, "secrets", EVENT_SUBSCRIPTIONS_SECRET))) as { data?: Record<string, string> } | undefined;
  return Object.fromEntries(Object.entries(secret?.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]));
}

/**
 * Replaces the stored event subscriptions with `data` (server-side apply of the whole set: a subscription left
 * out is removed). Creates the Secret on first use. Callers never log the data.
 */
export async function writeEventSubscriptions(namespace: string, data: Record<string, string>): Promise<void> {
  const encoded = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, "utf8").toString("base64")]));
  await call(
    "PATCH",
    corePath(namespace, "secrets", EVENT_SUBSCRIPTIONS_SECRET),
    {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: EVENT_SUBSCRIPTIONS_SECRET, namespace, labels: { "app.kubernetes.io/managed-by": "kubevirt-infra" } },
      type: "Opaque",
      data: encoded,
    },
    APPLY_PATCH,
    { fieldManager: "kubevirt-infra-events", force: true },
  );
}

// ---- Redfish Kubernetes identities: TokenReview and SubjectAccessReview (only when enabled) ----

/** The user a TokenReview authenticated (authentication.k8s.io/v1 UserInfo). */
export interface ReviewedUser {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

export interface TokenReviewStatus {
  authenticated?: boolean;
  user?: ReviewedUser;
  audiences?: string[];
  error?: string;
}

/** Asks the API server who a bearer token belongs to. The token is never logged; the answer's status is returned as is. */
export async function createTokenReview(token: string, audiences: readonly string[] = []): Promise<TokenReviewStatus> {
  const review = await call<{ status?: TokenReviewStatus }>("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
    apiVersion: "authentication.k8s.io/v1",
    kind: "TokenReview",
    spec: { token, ...(audiences.length > 0 ? { audiences: [...audiences] } : {}) },
  });
  return review.status ?? {};
}

/** What a SubjectAccessReview asks about (authorization.k8s.io/v1 ResourceAttributes). */
export interface AccessAttributes {
  namespace: string;
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  name?: string;
}

/** Whether `user` may do `attributes` (the API server's authorizer decides; the module only asks). */
export async function createSubjectAccessReview(user: ReviewedUser, attributes: AccessAttributes): Promise<boolean> {
  const review = await call<{ status?: { allowed?: boolean } }>("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
    apiVersion: "authorization.k8s.io/v1",
    kind: "SubjectAccessReview",
    spec: {
      user: user.username,
      ...(user.uid ? { uid: user.uid } : {}),
      groups: user.groups ?? [],
      ...(user.extra ? { extra: user.extra } : {}),
      resourceAttributes: {
        namespace: attributes.namespace,
        verb: attributes.verb,
        group: attributes.group,
        resource: attributes.resource,
        ...(attributes.subresource ? { subresource: attributes.subresource } : {}),
        ...(attributes.name ? { name: attributes.name } : {}),
      },
    },
  });
  return review.status?.allowed === true;
}

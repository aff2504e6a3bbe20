// The one place where the module writes to Kubernetes. Every function here is a verb on a resource the
// generated ClusterRole must allow; keep them small and typed so the RBAC test can enumerate them.
// Reads on request paths come from watch caches, not from here.
import { K8s, kind } from "pepr";
import { KubeConfig } from "@kubernetes/client-node";
import http from "node:http";
import https from "node:https";
import { DataVolume, VirtualMachine, VirtualMachineInstance } from "./kinds";

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
    await K8s(kind.CoreEvent).Create({
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
      firstTimestamp: now as unknown as Date,
      lastTimestamp: now as unknown as Date,
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
  await K8s(kind.ConfigMap).Apply(
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace, labels }, data },
    { force: true },
  );
}

/**
 * JSON-patches a Node (node-identity: identity annotations, providerID) and returns it as stored, i.e. after
 * admission webhooks. Throws a KubeApiError (a failed `test` operation is a 422).
 */
export async function patchNode(name: string, ops: JsonPatchOp[]): Promise<kind.Node> {
  try {
    return await K8s(kind.Node, { name }).Patch(ops);
  } catch (e) {
    throw toKubeApiError(e);
  }
}

/**
 * Reads one key of a Secret, decoded; undefined when the Secret or the key does not exist. A read, kept here
 * so that the Secret access the module needs (node-identity's infra kubeconfig) is visible with its writes.
 * Callers must never log the value.
 */
export async function readSecretKey(namespace: string, name: string, key: string): Promise<string | undefined> {
  const secret = (await readOrUndefined(() => K8s(kind.Secret).InNamespace(namespace).Get(name))) as kind.Secret | undefined;
  const encoded = secret?.data?.[key];
  return encoded === undefined ? undefined : Buffer.from(encoded, "base64").toString("utf8");
}

const PEPR_STORE_GVK = { group: "pepr.dev", version: "v1", kind: "PeprStore", plural: "peprstores" };

/**
 * Sets one data key of a PeprStore object (JSON patch `add /data/<key>`, the operation Pepr's own Store
 * sender uses). The config capability writes its Store key directly instead of through `Store.setItem`,
 * whose 4 s batching would miss the 5 s hot-reload budget. Throws on failure (404 until Pepr created the store).
 */
export async function setPeprStoreData(store: { namespace: string; name: string }, dataKey: string, value: string): Promise<void> {
  const pointer = dataKey.replace(/~/g, "~0").replace(/\//g, "~1");
  await K8s(kind.GenericKind, { namespace: store.namespace, name: store.name, kindOverride: PEPR_STORE_GVK }).Patch([
    { op: "add", path: `/data/${pointer}`, value },
  ]);
}

// ---- KubeVirt VirtualMachine / VirtualMachineInstance: Redfish power and boot ----

/** An RFC 6902 operation, as K8s().Patch sends it (application/json-patch+json). */
export type JsonPatchOp = { op: "add" | "replace" | "test"; path: string; value: unknown } | { op: "remove"; path: string };

/** A failed Kubernetes API call: HTTP status (0 = no answer), the Status reason and message. */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

/** A metav1.Status body's reason and message; the causes' messages are appended (a failed JSON patch `test`
 * is only named there). */
function statusFields(body: unknown, fallback: string): { reason: string; message: string } {
  const data = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  const details = typeof data.details === "object" && data.details !== null ? (data.details as { causes?: unknown }) : {};
  const causes = Array.isArray(details.causes)
    ? details.causes.map(c => (c as { message?: unknown } | null)?.message).filter((m): m is string => typeof m === "string")
    : [];
  const message = typeof data.message === "string" ? data.message : fallback;
  return {
    reason: typeof data.reason === "string" ? data.reason : fallback,
    message: causes.length > 0 ? `${message}: ${causes.join("; ")}` : message,
  };
}

/** kubernetes-fluent-client throws its response object ({ status, data: Status }); transport errors carry `e`. */
function toKubeApiError(err: unknown): KubeApiError {
  if (err instanceof KubeApiError) return err;
  const resp = typeof err === "object" && err !== null ? (err as Record<string, unknown>) : {};
  if (typeof resp.status === "number" && !("e" in resp && resp.e)) {
    const { reason, message } = statusFields(resp.data, String(resp.statusText ?? "request failed"));
    return new KubeApiError(resp.status, reason, message);
  }
  const cause = "e" in resp ? resp.e : err;
  return new KubeApiError(0, "NoResponse", cause instanceof Error ? cause.message : String(cause));
}

const SUBRESOURCE_TIMEOUT_MS = 10_000;

/**
 * PUT on a KubeVirt subresource (virt-api). kubernetes-fluent-client has no verb for these, so the request is
 * built here from the same kubeconfig (KUBECONFIG or in-cluster, read per call like K8s() does):
 * `applyToHTTPSOptions` puts CA / client certificate / skip-verify on the agent and the bearer token
 * (static, file or exec) or basic credentials on the options, so every kubeconfig style authenticates.
 */
async function putKubeVirtSubresource(
  plural: "virtualmachines" | "virtualmachineinstances",
  namespace: string,
  name: string,
  subresource: string,
  body: Record<string, unknown>,
): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubeApiError(0, "NoCluster", "no current cluster in the kubeconfig");
  const opts: https.RequestOptions = { method: "PUT", headers: {} };
  try {
    await kc.applyToHTTPSOptions(opts);
  } catch (e) {
    throw new KubeApiError(0, "ClientConfig", e instanceof Error ? e.message : String(e));
  }
  const path =
    `/apis/subresources.kubevirt.io/v1/namespaces/${encodeURIComponent(namespace)}` +
    `/${plural}/${encodeURIComponent(name)}/${subresource}`;
  const url = new URL(cluster.server.replace(/\/+$/, "") + path);
  const payload = JSON.stringify(body);
  const send = url.protocol === "http:" ? http.request : https.request;
  await new Promise<void>((resolve, reject) => {
    const req = send(
      url,
      {
        ...opts,
        headers: {
          ...opts.headers,
          "Content-Type": "application/json",
          Accept: "application/json",
          "Content-Length": Buffer.byteLength(payload),
        },
        timeout: SUBRESOURCE_TIMEOUT_MS,
      },
      res => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", chunk => (text += chunk));
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve();
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch {
            body = undefined; // not a metav1.Status body: the raw text is the message
          }
          const { reason, message } = statusFields(body, text.slice(0, 500) || (res.statusMessage ?? "request failed"));
          reject(new KubeApiError(status, reason, message));
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer from the API server within ${SUBRESOURCE_TIMEOUT_MS} ms`)));
    req.on("error", e => reject(new KubeApiError(0, "NoResponse", e.message)));
    req.end(payload);
  });
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
 * made meanwhile by someone else fails the patch (422) instead of being overwritten. */
export async function patchVirtualMachine(namespace: string, name: string, ops: JsonPatchOp[]): Promise<void> {
  try {
    await K8s(VirtualMachine, { namespace, name }).Patch(ops);
  } catch (e) {
    throw toKubeApiError(e);
  }
}

/** Fresh reads for the rare retry after a patch built from a stale cache entry failed its `test` ops. */
export async function readVirtualMachine(namespace: string, name: string): Promise<unknown | undefined> {
  return readOrUndefined(() => K8s(VirtualMachine).InNamespace(namespace).Get(name));
}

export async function readVirtualMachineInstance(namespace: string, name: string): Promise<unknown | undefined> {
  return readOrUndefined(() => K8s(VirtualMachineInstance).InNamespace(namespace).Get(name));
}

async function readOrUndefined(read: () => Promise<unknown>): Promise<unknown | undefined> {
  try {
    return await read();
  } catch (e) {
    const err = toKubeApiError(e);
    if (err.status === 404) return undefined;
    throw err;
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
  try {
    return created(await K8s(DataVolume).Create(dataVolume as unknown as DataVolume));
  } catch (e) {
    throw toKubeApiError(e);
  }
}

/** Deletes a DataVolume (its PVC and the Secrets it owns follow by garbage collection); a missing one is success. */
export async function deleteDataVolume(namespace: string, name: string): Promise<void> {
  try {
    await K8s(DataVolume).InNamespace(namespace).Delete(name);
  } catch (e) {
    throw toKubeApiError(e);
  }
}

/** Creates a Secret (virtual media image credentials, owned by their DataVolume). Callers never log its data. */
export async function createSecret(secret: { metadata: { name: string; namespace: string } } & Record<string, unknown>): Promise<CreatedObject> {
  try {
    return created(await K8s(kind.Secret).Create(secret as unknown as kind.Secret));
  } catch (e) {
    throw toKubeApiError(e);
  }
}

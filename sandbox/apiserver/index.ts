// The sandbox Kubernetes API server: HTTP/1.1 and HTTP/2 (h2c) on 127.0.0.1, kube-apiserver semantics for the subset the
// module uses (see store.ts, server.ts, admission.ts, apply.ts for what is modelled and simplified).
import { promises as fs } from "node:fs";
import { stringify as toYaml } from "yaml";
import { MUTATING_KEY, VALIDATING_KEY, WebhookAdmission, prepareWebhookConfiguration } from "./admission";
import type { ConnectionCounts } from "./listener";
import { RestServer } from "./server";
import { MemoryStore } from "./store";
import type { ObjectStore, SubresourceHandler, UserInfo } from "./types";

export type { KubeObject, ObjectStore, ResourceType, SubresourceHandler, UserInfo, StoreEvent } from "./types";
export { ApiError } from "./types";

export interface ApiServerOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /**
   * Static bearer tokens, like kube-apiserver --token-auth-file; requests with one are authorized by RBAC over
   * the Roles/ClusterRoles/bindings in the store. Requests without a token are system:admin (system:masters).
   */
  tokens?: { token: string; user: UserInfo }[];
  /** Events kept for watch resume; an older resourceVersion gets 410 Gone (default 1000). */
  watchHistory?: number;
  /** Interval of BOOKMARK events on watches with allowWatchBookmarks=true (default 1000 ms; kube uses ~1 min). */
  bookmarkIntervalMs?: number;
  /** kube's --min-request-timeout: watches without timeoutSeconds end after a random 1-2x this (default 1800 s, like kube). */
  minRequestTimeoutSeconds?: number;
  /** Serve KubeVirt's aggregated `subresources.kubevirt.io` API (default true); false models a cluster without it. */
  kubevirtApi?: boolean;
  /** Delay before the garbage collector deletes the dependents of a deleted owner (default 100 ms; it is asynchronous in kube). */
  gcDelayMs?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS for HTTP/2 clients, like kube's --http2-max-streams-per-connection (default 100). */
  http2MaxStreamsPerConnection?: number;
  log?: (line: string) => void;
}

export interface ApiServer {
  url: string;
  port: number;
  store: ObjectStore;
  registerSubresource(group: string, version: string, resource: string, subresource: string, h: SubresourceHandler): void;
  /** Writes a kubeconfig for this server (optionally with a bearer token) usable by client-node and Pepr. */
  writeKubeconfig(path: string, opts?: { token?: string }): Promise<void>;
  /** Adds a static bearer token (a ServiceAccount's token, for instance). */
  addToken(token: string, user: UserInfo): void;
  /** Ends open watches (with `expired`: after a 410 Gone ERROR event, so clients must re-list); returns how many. */
  dropWatches(opts?: { expired?: boolean }): number;
  /** Open watch streams per resource key ("virtualmachines.kubevirt.io", "configmaps", ...). */
  openWatches(): Record<string, number>;
  /** Open TCP connections by protocol (HTTP/1.1 and HTTP/2 are served on the one port). */
  connections(): ConnectionCounts;
  /**
   * An API server restart: stops serving, then listens on the same port again after `downtimeMs`; the store is
   * kept, the watch history is not (resumed watches get an in-stream 410 Expired). For `startingMs` (default
   * 200) it is still starting: CRD-backed and KubeVirt subresource paths answer 503, requests with a token 403.
   */
  restart(downtimeMs?: number, startingMs?: number): Promise<void>;
  /** Ends open watches and frees the port. */
  close(): Promise<void>;
}

export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const log = opts.log ?? (() => undefined);
  const store = new MemoryStore({ watchHistory: opts.watchHistory, gcDelayMs: opts.gcDelayMs, log });
  store.setHooks(MUTATING_KEY, { prepare: prepareWebhookConfiguration("Mutating") });
  store.setHooks(VALIDATING_KEY, { prepare: prepareWebhookConfiguration("Validating") });
  const admission = new WebhookAdmission(store, log);
  const tokens = new Map<string, UserInfo>();
  for (const t of opts.tokens ?? []) tokens.set(t.token, t.user);
  const rest = new RestServer({
    store,
    admission,
    tokens,
    bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 1000,
    minRequestTimeoutSeconds: opts.minRequestTimeoutSeconds ?? 1800,
    kubevirtApi: opts.kubevirtApi ?? true,
    http2MaxStreamsPerConnection: opts.http2MaxStreamsPerConnection,
    log,
  });
  const port = await rest.listen(opts.port ?? 0);
  const url = `http://127.0.0.1:${port}`;
  let closed = false;
  return {
    url,
    port,
    store,
    registerSubresource: (group, version, resource, subresource, h) => rest.registerSubresource(group, version, resource, subresource, h),
    async writeKubeconfig(path, kcOpts = {}) {
      const kubeconfig = {
        apiVersion: "v1",
        kind: "Config",
        // client-node refuses plain http unless insecure-skip-tls-verify is set (there is no TLS to verify).
        clusters: [{ name: "sandbox", cluster: { server: url, "insecure-skip-tls-verify": true } }],
        users: [{ name: "sandbox", user: kcOpts.token ? { token: kcOpts.token } : {} }],
        contexts: [{ name: "sandbox", context: { cluster: "sandbox", user: "sandbox", namespace: "default" } }],
        "current-context": "sandbox",
      };
      await fs.writeFile(path, toYaml(kubeconfig), { mode: 0o600 });
    },
    addToken: (token, user) => void tokens.set(token, user),
    dropWatches: watchOpts => rest.dropWatches(watchOpts),
    openWatches: () => rest.openWatches(),
    connections: () => rest.connections(),
    restart: (downtimeMs, startingMs) => rest.restart(downtimeMs, startingMs),
    async close() {
      if (closed) return;
      closed = true;
      await rest.close();
      store.close();
      admission.close();
    },
  };
}

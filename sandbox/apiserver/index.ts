// The sandbox Kubernetes API server: HTTP on 127.0.0.1, kube-apiserver semantics for the subset the
// module uses (see store.ts, server.ts, admission.ts, apply.ts for what is modelled and simplified).
import { promises as fs } from "node:fs";
import { stringify as toYaml } from "yaml";
import { MUTATING_KEY, VALIDATING_KEY, WebhookAdmission, prepareWebhookConfiguration } from "./admission";
import { RestServer } from "./server";
import { MemoryStore } from "./store";
import type { ObjectStore, SubresourceHandler, UserInfo } from "./types";

export type { KubeObject, ObjectStore, ResourceType, SubresourceHandler, UserInfo, StoreEvent } from "./types";
export { ApiError } from "./types";

export interface ApiServerOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Static bearer tokens, like kube-apiserver --token-auth-file. Requests without a token are system:admin. */
  tokens?: { token: string; user: UserInfo }[];
  /** Events kept for watch resume; an older resourceVersion gets 410 Gone (default 1000). */
  watchHistory?: number;
  /** Interval of BOOKMARK events on watches with allowWatchBookmarks=true (default 1000 ms; kube uses ~1 min). */
  bookmarkIntervalMs?: number;
  log?: (line: string) => void;
}

export interface ApiServer {
  url: string;
  port: number;
  store: ObjectStore;
  registerSubresource(group: string, version: string, resource: string, subresource: string, h: SubresourceHandler): void;
  /** Writes a kubeconfig for this server (optionally with a bearer token) usable by client-node and Pepr. */
  writeKubeconfig(path: string, opts?: { token?: string }): Promise<void>;
  /** Ends open watches (with `expired`: after a 410 Gone ERROR event, so clients must re-list); returns how many. */
  dropWatches(opts?: { expired?: boolean }): number;
  /** Open watch streams per resource key ("virtualmachines.kubevirt.io", "configmaps", ...). */
  openWatches(): Record<string, number>;
  /** An API server restart: stops serving, then listens on the same port again after `downtimeMs`; the store is kept. */
  restart(downtimeMs?: number): Promise<void>;
  /** Ends open watches and frees the port. */
  close(): Promise<void>;
}

export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const log = opts.log ?? (() => undefined);
  const store = new MemoryStore({ watchHistory: opts.watchHistory, log });
  store.setHooks(MUTATING_KEY, { prepare: prepareWebhookConfiguration("Mutating") });
  store.setHooks(VALIDATING_KEY, { prepare: prepareWebhookConfiguration("Validating") });
  const admission = new WebhookAdmission(store, log);
  const tokens = new Map<string, UserInfo>();
  for (const t of opts.tokens ?? []) tokens.set(t.token, t.user);
  const rest = new RestServer({ store, admission, tokens, bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 1000, log });
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
    dropWatches: watchOpts => rest.dropWatches(watchOpts),
    openWatches: () => rest.openWatches(),
    restart: downtimeMs => rest.restart(downtimeMs),
    async close() {
      if (closed) return;
      closed = true;
      await rest.close();
      admission.close();
    },
  };
}

// The Redfish app over a real cluster: the sandbox API server + KubeVirt simulator in-process, a WatchCache
// fed from the store's list and watch (as the watcher's Pepr Watch feeds it), and the gateway's writes
// going to the sandbox over HTTP through KUBECONFIG.
import type { ModuleConfig } from "../../capabilities/config/schema";
import { vi } from "vitest";
import { createRedfishApp, type RedfishApp } from "../../redfish/app";
import type { WatchCache } from "../../redfish/cache/store";
import type { ApiServer } from "../../sandbox/apiserver";
import { testConfig, vm } from "./fixtures";
import { createVmInStore, startSandboxCluster, startSandboxWatcher } from "./sandbox-cluster";
import { present } from "../helpers/present";

export { VM_KEY } from "./sandbox-cluster";

export interface SandboxService {
  api: ApiServer;
  cache: WatchCache;
  app: RedfishApp;
  config: ModuleConfig;
  request(path: string, init?: RequestInit): Promise<Response>;
  stop(): Promise<void>;
}

/**
 * The same VMs as testService(): tenant1-vms/vm-a (running), vm-b; tenant2-vms/vm-c, hidden; other-vms/vm-x.
 * `kubevirtApi: false`: the API server does not serve KubeVirt's subresource API.
 */
export async function startSandboxService(opts: { kubevirtApi?: boolean } = {}): Promise<SandboxService> {
  const cluster = await startSandboxCluster({
    tmpPrefix: "redfish-sandbox-",
    namespaces: ["tenant1-vms", "tenant2-vms", "other-vms"],
    ...(opts.kubevirtApi !== undefined ? { kubevirtApi: opts.kubevirtApi } : {}),
  });
  const { api } = cluster;
  createVmInStore(api, vm("tenant1-vms", "vm-a", { runStrategy: "Always" }));
  createVmInStore(api, vm("tenant1-vms", "vm-b"));
  createVmInStore(api, vm("tenant2-vms", "vm-c", { labels: { redfish: "true" } }));
  createVmInStore(api, vm("tenant2-vms", "hidden"));
  createVmInStore(api, vm("other-vms", "vm-x"));

  const config = testConfig();
  const watcher = startSandboxWatcher(api, { config });
  const { cache } = watcher;
  const app = createRedfishApp({ cache, config: () => config });

  await vi.waitFor(() => present(cache.getVm("tenant1-vms", "vm-a")?.vmi, "vm-a to be running"), { timeout: 10_000, interval: 20 });

  return {
    api,
    cache,
    app,
    config,
    request: (p, init = {}) => Promise.resolve(app.request(p, init, { incoming: { socket: { remoteAddress: "192.0.2.99" } } })),
    stop: async () => {
      watcher.stop();
      await cluster.stop();
    },
  };
}

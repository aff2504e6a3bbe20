// The Redfish app over a real cluster: the sandbox API server + KubeVirt simulator in-process, a WatchCache
// fed from the store's list and watch (as the watcher's Pepr Watch feeds it), and the gateway's writes
// going to the sandbox over HTTP through KUBECONFIG.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ModuleConfig } from "../../capabilities/config/schema";
import { startBootController } from "../../redfish/boot";
import { createRedfishApp, type RedfishApp } from "../../redfish/app";
import { WatchCache } from "../../redfish/cache/store";
import type { CachedKind, KubeObject } from "../../redfish/cache/types";
import { startPowerController } from "../../redfish/power";
import { chassisDefinitions } from "../../redfish/settings";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import type { KubeObject as StoreObject } from "../../sandbox/apiserver/types";
import { startKubeVirtSimulator } from "../../sandbox/simulators";
import { testConfig, vm } from "./fixtures";

export const VM_KEY = "virtualmachines.kubevirt.io";
const KINDS: [CachedKind, string][] = [
  ["VirtualMachine", VM_KEY],
  ["VirtualMachineInstance", "virtualmachineinstances.kubevirt.io"],
  ["DataVolume", "datavolumes.cdi.kubevirt.io"],
];

export interface SandboxService {
  api: ApiServer;
  cache: WatchCache;
  app: RedfishApp;
  config: ModuleConfig;
  request(path: string, init?: RequestInit): Promise<Response>;
  waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

/** The same VMs as testService(): tenant1-vms/vm-a (running), vm-b; tenant2-vms/vm-c, hidden; other-vms/vm-x. */
export async function startSandboxService(): Promise<SandboxService> {
  for (let i = 0; i < 600 && !fs.existsSync("/tmp/status/apiserver-ready"); i++) await new Promise(r => setTimeout(r, 1000));
  const api = await startApiServer();
  const kubevirt = startKubeVirtSimulator(api, { stepDelayMs: 20 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "redfish-sandbox-"));
  const kubeconfig = path.join(dir, "kubeconfig");
  await api.writeKubeconfig(kubeconfig);
  const previousKubeconfig = process.env.KUBECONFIG;
  process.env.KUBECONFIG = kubeconfig;

  for (const name of ["tenant1-vms", "tenant2-vms", "other-vms"]) {
    api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
  }
  const create = (obj: KubeObject) =>
    api.store.create(VM_KEY, { ...obj, metadata: { ...obj.metadata, uid: undefined, resourceVersion: undefined } } as StoreObject);
  create(vm("tenant1-vms", "vm-a", { runStrategy: "Always" }));
  create(vm("tenant1-vms", "vm-b"));
  create(vm("tenant2-vms", "vm-c", { labels: { redfish: "true" } }));
  create(vm("tenant2-vms", "hidden"));
  create(vm("other-vms", "vm-x"));

  const config = testConfig();
  const cache = new WatchCache(chassisDefinitions(config));
  const unwatch: (() => void)[] = [];
  for (const [kind, key] of KINDS) {
    cache.seed(kind, api.store.list(key) as KubeObject[]);
    unwatch.push(api.store.watch(key, undefined, ev => cache.apply(kind, ev.type, ev.object as KubeObject)));
  }
  const stopPower = startPowerController(cache);
  const stopBoot = startBootController(cache);
  const app = createRedfishApp({ cache, config: () => config });

  const waitFor: SandboxService["waitFor"] = async (probe, what, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined && value !== false) return value as never;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise(r => setTimeout(r, 20));
    }
  };
  await waitFor(() => cache.getVm("tenant1-vms", "vm-a")?.vmi, "vm-a to be running");

  return {
    api,
    cache,
    app,
    config,
    request: (p, init = {}) => Promise.resolve(app.request(p, init, { incoming: { socket: { remoteAddress: "192.0.2.99" } } })),
    waitFor,
    stop: async () => {
      stopPower();
      stopBoot();
      unwatch.forEach(fn => fn());
      kubevirt.stop();
      await api.close();
      if (previousKubeconfig === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = previousKubeconfig;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// The sandbox API server + KubeVirt simulator in-process, a WatchCache fed from its store, and the power and boot
// controllers running on that cache: the gateway's real HTTP calls (K8s() patches, subresource PUTs) go to the
// sandbox through KUBECONFIG.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import type { KubeObject as StoreObject } from "../../sandbox/apiserver/types";
import { startKubeVirtSimulator, type KubeVirtSimulator } from "../../sandbox/simulators";
import { WatchCache } from "../../redfish/cache/store";
import type { CachedKind, KubeObject, VmRecord } from "../../redfish/cache/types";
import { derivePowerState, startPowerController, type PowerState } from "../../redfish/power";
import { startBootController } from "../../redfish/boot";

export const VM_KEY = "virtualmachines.kubevirt.io";
export const VMI_KEY = "virtualmachineinstances.kubevirt.io";
const DV_KEY = "datavolumes.cdi.kubevirt.io";

export interface PowerSandbox {
  api: ApiServer;
  kubevirt: KubeVirtSimulator;
  cache: WatchCache;
  namespace: string;
  record(name: string): VmRecord;
  state(name: string): PowerState;
  createVm(vm: KubeObject): void;
  vm(name: string): StoreObject;
  vmi(name: string): StoreObject | undefined;
  /** Every distinct PowerState the cache showed for the VM from now on (consecutive duplicates dropped). */
  watchStates(name: string): PowerState[];
  waitFor<T>(probe: () => T | undefined | false, what: string, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

export async function startPowerSandbox(opts: { stepDelayMs?: number; namespace?: string } = {}): Promise<PowerSandbox> {
  const api = await startApiServer();
  const kubevirt = startKubeVirtSimulator(api, { stepDelayMs: opts.stepDelayMs ?? 20 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "power-sandbox-"));
  const kubeconfig = path.join(dir, "kubeconfig");
  await api.writeKubeconfig(kubeconfig);
  const previousKubeconfig = process.env.KUBECONFIG;
  process.env.KUBECONFIG = kubeconfig;

  const namespace = opts.namespace ?? "power-test";
  api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } });

  // The cache is fed like the watcher feeds it: an initial list, then every event in order.
  const cache = new WatchCache([]);
  const unwatch: (() => void)[] = [];
  for (const [kind, key] of [
    ["VirtualMachine", VM_KEY],
    ["VirtualMachineInstance", VMI_KEY],
    ["DataVolume", DV_KEY],
  ] as [CachedKind, string][]) {
    cache.seed(kind, api.store.list(key) as KubeObject[]);
    unwatch.push(api.store.watch(key, undefined, ev => cache.apply(kind, ev.type, ev.object as KubeObject)));
  }
  const stopPower = startPowerController(cache);
  const stopBoot = startBootController(cache);

  const record = (name: string): VmRecord => {
    const rec = cache.getVm(namespace, name);
    if (!rec) throw new Error(`VM ${namespace}/${name} is not in the cache`);
    return rec;
  };

  return {
    api,
    kubevirt,
    cache,
    namespace,
    record,
    state: name => derivePowerState(record(name)),
    createVm: vm => {
      api.store.create(VM_KEY, { ...vm, metadata: { ...vm.metadata, namespace, uid: undefined, resourceVersion: undefined } } as StoreObject);
    },
    vm: name => {
      const vm = api.store.get(VM_KEY, namespace, name);
      if (!vm) throw new Error(`VM ${name} does not exist`);
      return vm;
    },
    vmi: name => api.store.get(VMI_KEY, namespace, name),
    watchStates: name => {
      const seen: PowerState[] = [];
      const push = () => {
        const rec = cache.getVm(namespace, name);
        if (!rec) return;
        const state = derivePowerState(rec);
        if (seen[seen.length - 1] !== state) seen.push(state);
      };
      push();
      unwatch.push(cache.onChange(ev => ev.namespace === namespace && ev.name === name && push()));
      return seen;
    },
    waitFor: async (probe, what, timeoutMs = 5000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const value = probe();
        if (value !== undefined && value !== false) return value as never;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise(r => setTimeout(r, 10));
      }
    },
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

export function runStrategyFields(vm: StoreObject): { running?: unknown; runStrategy?: unknown } {
  const spec = (vm.spec ?? {}) as Record<string, unknown>;
  return { running: spec.running, runStrategy: spec.runStrategy };
}

// The sandbox API server + KubeVirt simulator in-process, a WatchCache fed from its store, and the power and boot
// controllers running on that cache: the gateway's real HTTP calls (K8s() patches, subresource PUTs) go to the
// sandbox through KUBECONFIG.
import type { ApiServer } from "../../sandbox/apiserver";
import type { KubeObject as StoreObject } from "../../sandbox/apiserver/types";
import type { KubeVirtSimulator } from "../../sandbox/simulators";
import type { WatchCache } from "../../redfish/cache/store";
import type { KubeObject, VmRecord } from "../../redfish/cache/types";
import { clusterDriver } from "../../redfish/kubevirt/driver";
import { derivePowerState, type PowerDeps, type PowerState } from "../../redfish/power";
import { VM_KEY, VMI_KEY, createVmInStore, startSandboxCluster, startSandboxWatcher } from "./sandbox-cluster";

export { VM_KEY, VMI_KEY } from "./sandbox-cluster";

export interface PowerSandbox {
  api: ApiServer;
  /** What reset() runs with: the cluster driver (the sandbox) and the power policy (tests may change it). */
  power: PowerDeps;
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
  stop(): Promise<void>;
}

export async function startPowerSandbox(opts: { stepDelayMs?: number; namespace?: string } = {}): Promise<PowerSandbox> {
  const namespace = opts.namespace ?? "power-test";
  const cluster = await startSandboxCluster({ tmpPrefix: "power-sandbox-", namespaces: [namespace], stepDelayMs: opts.stepDelayMs });
  const { api, kubevirt } = cluster;
  const power: PowerDeps = { driver: clusterDriver, settings: { powerOffStaysOff: true } };
  const watcher = startSandboxWatcher(api, { powerSettings: () => power.settings });
  const { cache } = watcher;
  const unwatch: (() => void)[] = [];

  const record = (name: string): VmRecord => {
    const rec = cache.getVm(namespace, name);
    if (!rec) throw new Error(`VM ${namespace}/${name} is not in the cache`);
    return rec;
  };

  return {
    api,
    power,
    kubevirt,
    cache,
    namespace,
    record,
    state: name => derivePowerState(record(name)),
    createVm: vm => createVmInStore(api, { ...vm, metadata: { ...vm.metadata, namespace } }),
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
    stop: async () => {
      watcher.stop();
      unwatch.forEach(fn => fn());
      await cluster.stop();
    },
  };
}

export function runStrategyFields(vm: StoreObject): { running?: unknown; runStrategy?: unknown } {
  const spec = (vm.spec ?? {}) as Record<string, unknown>;
  return { running: spec.running, runStrategy: spec.runStrategy };
}

// What the Redfish sandbox tests share: the sandbox API server and KubeVirt simulator in-process, KUBECONFIG
// pointing the gateway's real HTTP writes at it, and the Redfish side of the watcher over its store (a WatchCache
// fed from the store's list and watch as the watcher's Pepr Watch feeds it, and the controllers on that cache).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ModuleConfig } from "../../capabilities/config/schema";
import { startBootController } from "../../redfish/boot";
import { WatchCache } from "../../redfish/cache/store";
import type { CachedKind, KubeObject } from "../../redfish/cache/types";
import { startMediaController } from "../../redfish/media";
import { startPowerController, type PowerSettings } from "../../redfish/power";
import { chassisDefinitions } from "../../redfish/settings";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import type { KubeObject as StoreObject } from "../../sandbox/apiserver/types";
import { startKubeVirtSimulator, type KubeVirtSimulator } from "../../sandbox/simulators";

export const VM_KEY = "virtualmachines.kubevirt.io";
export const VMI_KEY = "virtualmachineinstances.kubevirt.io";
export const DV_KEY = "datavolumes.cdi.kubevirt.io";
const CACHED_KINDS: [CachedKind, string][] = [
  ["VirtualMachine", VM_KEY],
  ["VirtualMachineInstance", VMI_KEY],
  ["DataVolume", DV_KEY],
];

export interface SandboxCluster {
  api: ApiServer;
  kubevirt: KubeVirtSimulator;
  /** Stops the simulator and the API server, puts KUBECONFIG back and removes the kubeconfig written for it. */
  stop(): Promise<void>;
}

/** The API server with the KubeVirt simulator, the given namespaces, and KUBECONFIG pointing at it. */
export async function startSandboxCluster(opts: {
  tmpPrefix: string;
  namespaces: readonly string[];
  stepDelayMs?: number;
  /** false: the API server does not serve KubeVirt's subresources.kubevirt.io (a cluster without virt-api). */
  kubevirtApi?: boolean;
}): Promise<SandboxCluster> {
  const api = await startApiServer({ kubevirtApi: opts.kubevirtApi ?? true });
  const kubevirt = startKubeVirtSimulator(api, { stepDelayMs: opts.stepDelayMs ?? 20 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), opts.tmpPrefix));
  const kubeconfig = path.join(dir, "kubeconfig");
  await api.writeKubeconfig(kubeconfig);
  const previousKubeconfig = process.env.KUBECONFIG;
  process.env.KUBECONFIG = kubeconfig;
  for (const name of opts.namespaces) api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
  return {
    api,
    kubevirt,
    stop: async () => {
      kubevirt.stop();
      await api.close();
      if (previousKubeconfig === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = previousKubeconfig;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The Redfish side of the watcher (cache and controllers); stopping it ends the controllers and the watches. */
export interface SandboxWatcher {
  cache: WatchCache;
  stop(): void;
}

/**
 * A WatchCache over the sandbox's store with the power and boot controllers (and the media controller when
 * asked), started before the initial lists as in capabilities/redfish.ts: each list replays every object to them.
 * `reverseListOrder` lists DataVolumes first and VirtualMachines last (the initial lists race each other).
 */
export function startSandboxWatcher(
  api: ApiServer,
  opts: { config?: ModuleConfig; mediaController?: boolean; reverseListOrder?: boolean; powerSettings?: () => PowerSettings } = {},
): SandboxWatcher {
  const cache = new WatchCache(chassisDefinitions(opts.config));
  const settings = opts.powerSettings ?? (() => ({ powerOffStaysOff: opts.config?.redfish.powerOffStaysOff ?? true }));
  const stops = [startPowerController(cache, { settings }), startBootController(cache)];
  if (opts.mediaController) stops.push(startMediaController(cache));
  for (const [kind, key] of opts.reverseListOrder ? [...CACHED_KINDS].reverse() : CACHED_KINDS) {
    cache.applyList(kind, api.store.list(key) as KubeObject[]);
    stops.push(api.store.watch(key, undefined, ev => cache.apply(kind, ev.type, ev.object as KubeObject)));
  }
  return { cache, stop: () => stops.forEach(fn => fn()) };
}

/** Creates a VM in the store as a client sends it: without uid and resourceVersion. */
export function createVmInStore(api: ApiServer, vm: KubeObject): void {
  api.store.create(VM_KEY, { ...vm, metadata: { ...vm.metadata, uid: undefined, resourceVersion: undefined } } as StoreObject);
}

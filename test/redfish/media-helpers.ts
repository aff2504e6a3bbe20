// A real cluster for the virtual-media tests, in-process: the sandbox API server, the KubeVirt and CDI
// simulators (CDI really downloads from the local image server), a WatchCache fed from the store's list and
// watch as the watcher's Pepr Watch feeds it, the power, boot and media controllers, and the Redfish app.
// The gateway's writes go to the sandbox over HTTP through KUBECONFIG.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { ModuleConfig } from "../../capabilities/config/schema";
import { createRedfishApp, type RedfishApp } from "../../redfish/app";
import { startBootController } from "../../redfish/boot";
import { WatchCache } from "../../redfish/cache/store";
import type { CachedKind, KubeObject } from "../../redfish/cache/types";
import { startMediaController } from "../../redfish/media";
import { startPowerController } from "../../redfish/power";
import { chassisDefinitions } from "../../redfish/settings";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import type { KubeObject as StoreObject } from "../../sandbox/apiserver/types";
import { startIsoServer, type IsoServer } from "../../sandbox/iso-server";
import { startCdiSimulator, startKubeVirtSimulator, type CdiSimulator, type KubeVirtSimulator } from "../../sandbox/simulators";
import { AUTH, testConfig, vm } from "./fixtures";

export const VM_KEY = "virtualmachines.kubevirt.io";
export const VMI_KEY = "virtualmachineinstances.kubevirt.io";
export const DV_KEY = "datavolumes.cdi.kubevirt.io";
const KINDS: [CachedKind, string][] = [
  ["VirtualMachine", VM_KEY],
  ["VirtualMachineInstance", VMI_KEY],
  ["DataVolume", DV_KEY],
];

export const NS = "tenant1-vms";

/** The Redfish side of the watcher: cache, controllers and app; can be stopped and started again (a restart). */
export interface Watcher {
  cache: WatchCache;
  app: RedfishApp;
  stop(): void;
}

export interface MediaSandbox {
  api: ApiServer;
  iso: IsoServer;
  kubevirt: KubeVirtSimulator;
  cdi: CdiSimulator;
  config: ModuleConfig;
  watcher: Watcher;
  /**
   * Stops the current watcher and starts a new one from the cluster state (what a pod restart does).
   * `reverseSeed` lists DataVolumes first and VirtualMachines last (the initial lists race each other).
   */
  restartWatcher(opts?: { reverseSeed?: boolean }): Watcher;
  /** A VM in tenant1-vms (alice's chassis) with a root disk; Halted. */
  createVm(name: string, opts?: { runStrategy?: string }): void;
  /** The VM's DataVolumes of our making, as the API server has them. */
  mediaDataVolumes(vmName: string): StoreObject[];
  request(path: string, init?: { method?: string; body?: unknown; user?: keyof typeof AUTH; headers?: Record<string, string> }): Promise<Response>;
  json(path: string, user?: keyof typeof AUTH): Promise<any>;
  waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

export async function startMediaSandbox(opts: { iso?: { sizeBytes?: number; slowChunkIntervalMs?: number }; config?: Record<string, unknown> } = {}): Promise<MediaSandbox> {
  const api = await startApiServer();
  const kubevirt = startKubeVirtSimulator(api, { stepDelayMs: 20 });
  const cdi = startCdiSimulator(api, { progressIntervalMs: 50, stepDelayMs: 20 });
  const iso = await startIsoServer({ sizeBytes: 1024 * 1024, slowChunkIntervalMs: 40, ...opts.iso });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "media-sandbox-"));
  const kubeconfig = path.join(dir, "kubeconfig");
  await api.writeKubeconfig(kubeconfig);
  const previousKubeconfig = process.env.KUBECONFIG;
  process.env.KUBECONFIG = kubeconfig;

  for (const name of ["tenant1-vms", "tenant2-vms"]) api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
  const config = testConfig({ datavolume: { storageSize: "1Gi", sizeMarginPercent: 10, importTimeoutSeconds: 600 }, ...opts.config });

  const startWatcher = (reverseSeed = false): Watcher => {
    const cache = new WatchCache(chassisDefinitions(config));
    // Controllers first, as in capabilities/redfish.ts: seeding replays every object to them.
    const stops = [startPowerController(cache), startBootController(cache), startMediaController(cache)];
    for (const [kind, key] of reverseSeed ? [...KINDS].reverse() : KINDS) {
      cache.seed(kind, api.store.list(key) as KubeObject[]);
      stops.push(api.store.watch(key, undefined, ev => cache.apply(kind, ev.type, ev.object as KubeObject)));
    }
    const app = createRedfishApp({ cache, config: () => config });
    return { cache, app, stop: () => stops.forEach(fn => fn()) };
  };

  const sandbox: MediaSandbox = {
    api,
    iso,
    kubevirt,
    cdi,
    config,
    watcher: startWatcher(),
    restartWatcher(o = {}) {
      sandbox.watcher.stop();
      sandbox.watcher = startWatcher(o.reverseSeed);
      return sandbox.watcher;
    },
    createVm(name, o = {}) {
      const obj = vm(NS, name, { runStrategy: o.runStrategy ?? "Halted" });
      api.store.create(VM_KEY, { ...obj, metadata: { ...obj.metadata, uid: undefined, resourceVersion: undefined }, status: {} } as StoreObject);
    },
    mediaDataVolumes: vmName =>
      api.store.list(DV_KEY, NS).filter(dv => dv.metadata.labels?.["kubevirt-infra.io/media-for"] === vmName),
    request: (p, init = {}) => {
      const headers: Record<string, string> = { Authorization: AUTH[init.user ?? "alice"], ...(init.headers ?? {}) };
      let body: string | undefined;
      if (init.body !== undefined) {
        body = typeof init.body === "string" ? init.body : JSON.stringify(init.body);
        headers["Content-Type"] = "application/json";
      }
      return Promise.resolve(
        sandbox.watcher.app.request(p, { method: init.method ?? (body === undefined ? "GET" : "POST"), headers, body }, { incoming: { socket: { remoteAddress: "192.0.2.7" } } }),
      );
    },
    json: async (p, user) => {
      const res = await sandbox.request(p, { user });
      if (res.status !== 200) throw new Error(`GET ${p}: ${res.status} ${await res.text()}`);
      return res.json();
    },
    waitFor: async (probe, what, timeoutMs = 10_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const value = await probe();
        if (value !== undefined && value !== false) return value as never;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise(r => setTimeout(r, 20));
      }
    },
    stop: async () => {
      sandbox.watcher.stop();
      kubevirt.stop();
      await cdi.stop();
      await iso.close();
      await api.close();
      if (previousKubeconfig === undefined) delete process.env.KUBECONFIG;
      else process.env.KUBECONFIG = previousKubeconfig;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return sandbox;
}

export const cdUri = (vmName: string) => `/redfish/v1/Systems/${NS}.${vmName}/VirtualMedia/Cd`;
export const insertUri = (vmName: string) => `${cdUri(vmName)}/Actions/VirtualMedia.InsertMedia`;
export const ejectUri = (vmName: string) => `${cdUri(vmName)}/Actions/VirtualMedia.EjectMedia`;

// A real cluster for the virtual-media tests, in-process: the sandbox API server, the KubeVirt and CDI
// simulators (CDI really downloads from the local image server), a WatchCache fed from the store's list and
// watch as the watcher's Pepr Watch feeds it, the power, boot and media controllers, and the Redfish app.
// The gateway's writes go to the sandbox over HTTP through KUBECONFIG.
import type { ModuleConfig } from "../../capabilities/config/schema";
import { createRedfishApp, type RedfishApp } from "../../redfish/app";
import type { ApiServer } from "../../sandbox/apiserver";
import type { KubeObject as StoreObject } from "../../sandbox/apiserver/types";
import { startIsoServer, type IsoServer } from "../../sandbox/iso-server";
import { startCdiSimulator, type CdiSimulator, type KubeVirtSimulator } from "../../sandbox/simulators";
import { AUTH, testConfig, vm } from "./fixtures";
import { DV_KEY, createVmInStore, startSandboxCluster, startSandboxWatcher, type SandboxWatcher } from "./sandbox-cluster";

export { DV_KEY, VMI_KEY, VM_KEY } from "./sandbox-cluster";

export const NS = "tenant1-vms";

/** The Redfish side of the watcher: cache, controllers and app; can be stopped and started again (a restart). */
export interface Watcher extends SandboxWatcher {
  app: RedfishApp;
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
   * `reverseListOrder` lists DataVolumes first and VirtualMachines last (the initial lists race each other).
   */
  restartWatcher(opts?: { reverseListOrder?: boolean }): Watcher;
  /** A VM in tenant1-vms (alice's chassis) with a root disk; Halted. */
  createVm(name: string, opts?: { runStrategy?: string }): void;
  /** The VM's DataVolumes of our making, as the API server has them. */
  mediaDataVolumes(vmName: string): StoreObject[];
  request(path: string, init?: { method?: string; body?: unknown; user?: keyof typeof AUTH; headers?: Record<string, string> }): Promise<Response>;
  json(path: string, user?: keyof typeof AUTH): Promise<any>;
  stop(): Promise<void>;
}

export async function startMediaSandbox(opts: { iso?: { sizeBytes?: number; slowChunkIntervalMs?: number }; config?: Record<string, unknown> } = {}): Promise<MediaSandbox> {
  const cluster = await startSandboxCluster({ tmpPrefix: "media-sandbox-", namespaces: ["tenant1-vms", "tenant2-vms"] });
  const { api, kubevirt } = cluster;
  const cdi = startCdiSimulator(api, { progressIntervalMs: 50, stepDelayMs: 20 });
  const iso = await startIsoServer({ sizeBytes: 1024 * 1024, slowChunkIntervalMs: 40, ...opts.iso });
  const config = testConfig({
    datavolume: { storageSize: "1Gi", sizeMarginPercent: 10, importTimeoutSeconds: 600 },
    // The concurrency tests make 70 inserts as one user within seconds.
    redfish: { insertMediaRate: { burst: 200 } },
    ...opts.config,
  });

  const startWatcher = (reverseListOrder = false): Watcher => {
    const { cache, stop } = startSandboxWatcher(api, { config, mediaController: true, reverseListOrder });
    const app = createRedfishApp({ cache, config: () => config });
    return { cache, app, stop };
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
      sandbox.watcher = startWatcher(o.reverseListOrder);
      return sandbox.watcher;
    },
    createVm(name, o = {}) {
      createVmInStore(api, { ...vm(NS, name, { runStrategy: o.runStrategy ?? "Halted" }), status: {} });
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
    stop: async () => {
      sandbox.watcher.stop();
      await cdi.stop();
      await iso.close();
      await cluster.stop();
    },
  };
  return sandbox;
}

export const cdUri = (vmName: string) => `/redfish/v1/Systems/${NS}.${vmName}/VirtualMedia/Cd`;
export const insertUri = (vmName: string) => `${cdUri(vmName)}/Actions/VirtualMedia.InsertMedia`;
export const ejectUri = (vmName: string) => `${cdUri(vmName)}/Actions/VirtualMedia.EjectMedia`;

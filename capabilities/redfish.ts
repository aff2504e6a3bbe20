// Pepr bindings of the Redfish service: Watch callbacks feed the watch cache (in every pod that runs
// watches); in the watcher, the initial lists mark the cache synced and the Redfish server, the power
// and boot controllers start. Everything else lives in redfish/ and knows nothing of Pepr.
import { Capability, K8s, kind, Log } from "pepr";
import { WatchCache, type WatchPhase } from "../redfish/cache/store";
import type { CachedKind, KubeObject } from "../redfish/cache/types";
import { createRedfishApp } from "../redfish/app";
import { startBootController } from "../redfish/boot";
import { clusterSubscriptionStore } from "../redfish/events/cluster-store";
import { startMediaController } from "../redfish/media";
import { startPowerController } from "../redfish/power";
import { RedfishListener, type TlsMaterial } from "../redfish/server";
import { chassisDefinitions } from "../redfish/settings";
import { readSecretKey } from "./common/gateway";
import { DataVolume, VirtualMachine, VirtualMachineInstance } from "./common/kinds";
import { CONFIG_NAMESPACE } from "./config/load";
import { currentConfig, onConfigChange } from "./config/runtime";
import type { ModuleConfig } from "./config/schema";

export const Redfish = new Capability({
  name: "redfish",
  description: "Redfish BMC for KubeVirt VMs, served from the watch cache",
});

/** The process's watch cache of VirtualMachines, VirtualMachineInstances and DataVolumes. */
export const redfishCache = new WatchCache(chassisDefinitions(currentConfig()));

function applyConfig(config: ModuleConfig | undefined): void {
  redfishCache.setChassis(chassisDefinitions(config));
}
applyConfig(currentConfig());
onConfigChange(config => applyConfig(config));

const MODELS = { VirtualMachine, VirtualMachineInstance, DataVolume } as const;

function feed(cachedKind: CachedKind) {
  return (obj: unknown, phase: unknown) => redfishCache.apply(cachedKind, String(phase) as WatchPhase, obj as KubeObject);
}

const { When } = Redfish;
for (const cachedKind of Object.keys(MODELS) as CachedKind[]) {
  const model = MODELS[cachedKind];
  When(model).IsCreatedOrUpdated().Watch(feed(cachedKind));
  When(model).IsDeleted().Watch(feed(cachedKind));
}

/** Lists one kind until it succeeds (the API server may not be reachable yet), then seeds the cache. */
async function initialList(cachedKind: CachedKind): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      const list = await K8s(MODELS[cachedKind]).Get();
      redfishCache.seed(cachedKind, (list.items ?? []) as unknown as KubeObject[]);
      Log.info({ kind: cachedKind, count: list.items?.length ?? 0 }, "Redfish cache: initial list loaded");
      return;
    } catch (err) {
      const delay = Math.min(30_000, 500 * 2 ** attempt);
      Log.warn({ kind: cachedKind, err: err instanceof Error ? err.message : String(err), retryInMs: delay }, "Redfish cache: initial list failed");
      await new Promise(resolve => setTimeout(resolve, delay));
    }
  }
}

/** A stable id of this installation for the ServiceRoot UUID: the uid of the module's namespace. */
async function readInstallationId(): Promise<string | undefined> {
  try {
    return (await K8s(kind.Namespace).Get(CONFIG_NAMESPACE)).metadata?.uid;
  } catch (err) {
    Log.warn(
      { namespace: CONFIG_NAMESPACE, err: err instanceof Error ? err.message : String(err) },
      "cannot read the module namespace uid; the Redfish ServiceRoot UUID falls back to one derived from the module name (set redfish.serviceUUID)",
    );
    return undefined;
  }
}

async function loadTlsSecret(secretName: string): Promise<TlsMaterial | undefined> {
  const [certPem, keyPem] = await Promise.all([
    readSecretKey(CONFIG_NAMESPACE, secretName, "tls.crt"),
    readSecretKey(CONFIG_NAMESPACE, secretName, "tls.key"),
  ]);
  return certPem && keyPem ? { certPem, keyPem } : undefined;
}

let started = false;

/** Starts the Redfish service of the watcher pod (once). */
async function startRedfishService(): Promise<void> {
  if (started) return;
  started = true;
  const installationId = await readInstallationId();
  const app = createRedfishApp({
    cache: redfishCache,
    config: currentConfig,
    installationId: () => installationId,
    events: { store: clusterSubscriptionStore(CONFIG_NAMESPACE) },
  });
  const listener = new RedfishListener({ fetch: app.fetch, loadTlsSecret });
  onConfigChange(config => void listener.reconcile(config));
  void listener.reconcile(currentConfig());
  // Started before the initial lists: seeding replays every object to them, which resumes power-on and
  // boot-once requests recorded on VMs before a restart.
  startPowerController(redfishCache, { settings: () => ({ powerOffStaysOff: currentConfig()?.redfish.powerOffStaysOff ?? true }) });
  startBootController(redfishCache);
  startMediaController(redfishCache);
  await Promise.all((Object.keys(MODELS) as CachedKind[]).map(initialList));
}

if (process.env.PEPR_WATCH_MODE === "true" && process.env.PEPR_MODE !== "build") {
  void startRedfishService();
}

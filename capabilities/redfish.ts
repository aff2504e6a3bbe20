// The Redfish service in the watcher: the shared VirtualMachine, VirtualMachineInstance and DataVolume
// informers feed the watch cache, the power, boot and media controllers and the Redfish server start.
// Everything else lives in redfish/ and knows nothing of Pepr.
import { Capability, Log, a } from "pepr";
import { WatchCache } from "../redfish/cache/store";
import type { CachedKind } from "../redfish/cache/types";
import { createRedfishService } from "../redfish/app";
import { startBootController } from "../redfish/boot";
import { clusterSubscriptionStore } from "../redfish/events/cluster-store";
import { startMediaController } from "../redfish/media";
import { startPowerController } from "../redfish/power";
import { RedfishListener, type TlsMaterial } from "../redfish/server";
import { chassisDefinitions } from "../redfish/settings";
import { readSecretKey } from "./common/gateway";
import type { SharedInformers } from "./common/informers";
import { CONFIG_NAMESPACE } from "./config/load";
import { currentConfig, onConfigChange } from "./config/runtime";
import type { ModuleConfig } from "./config/schema";

export const Redfish = new Capability({
  name: "redfish",
  description: "Redfish BMC for KubeVirt VMs, served from the watch cache",
});
const { When } = Redfish;

const CACHED_KINDS: readonly CachedKind[] = ["VirtualMachine", "VirtualMachineInstance", "DataVolume"];

/** The process's watch cache of VirtualMachines, VirtualMachineInstances and DataVolumes. */
export const redfishCache = new WatchCache(chassisDefinitions(currentConfig()));

function applyConfig(config: ModuleConfig | undefined): void {
  redfishCache.setChassis(chassisDefinitions(config));
}
applyConfig(currentConfig());
onConfigChange(config => applyConfig(config));

/**
 * Feeds the watch cache from the shared informers: the cache reads the informers' stores (adding its indexes to
 * them) and follows their events in stream order; each complete list marks the kind listed.
 */
export function feedRedfishCache(informers: SharedInformers, cache: WatchCache = redfishCache): () => void {
  const unsubscribes = CACHED_KINDS.map(cachedKind => {
    const informer = informers.informer(cachedKind);
    cache.attach(cachedKind, informer.store);
    return informer.addHandlers({
      onAdd: obj => cache.notify(cachedKind, obj),
      onUpdate: (obj, old) => cache.notify(cachedKind, obj, old),
      onDelete: obj => cache.notify(cachedKind, undefined, obj),
      onSynced: () => cache.markListed(cachedKind),
    });
  });
  return () => unsubscribes.forEach(fn => fn());
}

/**
 * The uid of the module's namespace: a stable id of this installation for the ServiceRoot UUID. Watched
 * through Pepr because Pepr generates the watcher Deployment only for a module with a Watch binding; this
 * one named, never-changing object is that anchor (everything else is watched by the shared informers).
 */
const moduleNamespace: { uid?: string } = {};

When(a.Namespace)
  .IsCreatedOrUpdated()
  .WithName(CONFIG_NAMESPACE)
  .Watch(ns => {
    moduleNamespace.uid = ns.metadata?.uid;
  });

async function loadTlsSecret(secretName: string): Promise<TlsMaterial | undefined> {
  const [certPem, keyPem] = await Promise.all([
    readSecretKey(CONFIG_NAMESPACE, secretName, "tls.crt"),
    readSecretKey(CONFIG_NAMESPACE, secretName, "tls.key"),
  ]);
  return certPem && keyPem ? { certPem, keyPem } : undefined;
}

/**
 * Starts the Redfish service of the watcher pod: the controllers first, then the cache feed (each list
 * replays every object to them, which resumes power-on and boot-once requests recorded on VMs before a
 * restart), then the server. Returns stop.
 */
export function startRedfishService(informers: SharedInformers): () => void {
  const stops = [
    startPowerController(redfishCache, { settings: () => ({ powerOffStaysOff: currentConfig()?.redfish.powerOffStaysOff ?? true }) }),
    startBootController(redfishCache),
    startMediaController(redfishCache),
  ];
  stops.push(feedRedfishCache(informers));
  const service = createRedfishService({
    cache: redfishCache,
    config: currentConfig,
    installationId: () => moduleNamespace.uid,
    events: { store: clusterSubscriptionStore(CONFIG_NAMESPACE) },
  });
  const listener = new RedfishListener({ fetch: service.app.fetch, replay: service.replay, loadTlsSecret });
  stops.push(onConfigChange(config => void listener.reconcile(config)));
  void listener.reconcile(currentConfig());
  Log.info({}, "Redfish service started");
  return () => stops.forEach(fn => fn());
}

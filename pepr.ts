import { Log, PeprModule } from "pepr";
import cfg from "./package.json";
import { SharedInformers } from "./capabilities/common/informers";
import { sharedKubeClient } from "./capabilities/common/kube-client";
import { ModuleConfig, startConfigWatch } from "./capabilities/config";
import { currentConfig, onConfigChange } from "./capabilities/config/runtime";
import type { ModuleConfig as Config } from "./capabilities/config/schema";
import { DataVolumePolicy, startDataVolumeAuditWatch } from "./capabilities/datavolume-policy";
import { NodeIdentity, startNodeIdentityWatch } from "./capabilities/node-identity";
import { Redfish, startRedfishService } from "./capabilities/redfish";

// deferStart lets the sandbox and tests pick the port (PEPR_PORT); in a pod it stays 3000.
// In build mode the constructor only reports the capabilities to `pepr build` and there is nothing to start.
const peprModule = new PeprModule(cfg, [ModuleConfig, NodeIdentity, DataVolumePolicy, Redfish], { deferStart: true });
if (process.env.PEPR_MODE !== "build") {
  peprModule.start(Number(process.env.PEPR_PORT ?? 3000));
}

/** Server-side watch timeout (client-go's minWatchTimeout idea; each watch asks for a random time in [t, 2t)). */
function watchTimeoutSeconds(): number | undefined {
  const value = Number(process.env.KUBEVIRT_INFRA_WATCH_TIMEOUT_SECONDS);
  return Number.isInteger(value) && value > 0 ? value : undefined;
}

/**
 * The watcher: one client and one informer per kind for the whole process. The config's two objects are
 * always watched; the other kinds only once a configuration names a role that needs them (a nested cluster
 * without KubeVirt never watches VMs, an infra cluster never watches Nodes).
 */
async function startWatcher(): Promise<void> {
  const informers = new SharedInformers(await sharedKubeClient({ log: Log }), {
    log: Log,
    config: { current: currentConfig, onChange: onConfigChange },
    watchTimeoutSeconds: watchTimeoutSeconds(),
  });
  startConfigWatch(informers);
  const started = { infra: false, nested: false };
  const startForRole = (config: Config | undefined): void => {
    if (!config) return;
    if (config.role !== "nested" && !started.infra) {
      started.infra = true;
      startDataVolumeAuditWatch(informers);
      startRedfishService(informers);
    }
    if (config.role !== "infra" && !started.nested) {
      started.nested = true;
      startNodeIdentityWatch(informers);
    }
  };
  onConfigChange(config => startForRole(config));
  startForRole(currentConfig());
}

if (process.env.PEPR_WATCH_MODE === "true" && process.env.PEPR_MODE !== "build") {
  startWatcher().catch(error => {
    // Without a kubeconfig nothing can work; Pepr's own start fails the same way.
    Log.error({ error: error instanceof Error ? error.message : String(error) }, "the watcher could not start its Kubernetes client");
    process.exitCode = 1;
  });
}

import { PeprModule } from "pepr";
import cfg from "./package.json";
import { ModuleConfig } from "./capabilities/config";
import { NodeIdentity } from "./capabilities/node-identity";
import { DataVolumePolicy } from "./capabilities/datavolume-policy";
import { Redfish } from "./capabilities/redfish";

// deferStart lets the sandbox and tests pick the port (PEPR_PORT); in a pod it stays 3000.
// In build mode the constructor only reports the capabilities to `pepr build` and there is nothing to start.
const peprModule = new PeprModule(cfg, [ModuleConfig, NodeIdentity, DataVolumePolicy, Redfish], { deferStart: true });
if (process.env.PEPR_MODE !== "build") {
  peprModule.start(Number(process.env.PEPR_PORT ?? 3000));
}

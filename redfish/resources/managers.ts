// Managers: one BMC per System (as a physical server has its own), managing exactly that system.
import cfg from "../../package.json";
import { collection, envelope, link, sendJson, SERVICE_ROOT } from "../odata";
import {
  cachedSystemResource,
  sendSystemResource,
  chassisUri,
  managerUri,
  resolveSystem,
  resource,
  systemUri,
  visibleSystemIds,
  type RedfishContext,
  type ServiceDeps,
  type VisibleSystem,
  type ResourceRoutes,
} from "./context";
import { firmwareUuid, uuidV5 } from "./hardware";

function renderManager(system: VisibleSystem): Record<string, unknown> {
  return {
    ...envelope("Manager", managerUri(system.id)),
    Id: system.id,
    Name: `Manager for ${system.id}`,
    Description: `kubevirt-infra BMC for VirtualMachine ${system.rec.vm.metadata.namespace}/${system.rec.vm.metadata.name}`,
    ManagerType: "BMC",
    Model: "kubevirt-infra",
    FirmwareVersion: cfg.version,
    // Derived from the system's UUID: stable for the life of the VM, distinct from it.
    UUID: uuidV5(firmwareUuid(system.rec), "manager"),
    PowerState: "On",
    Status: { State: "Enabled", Health: "OK" },
    // The same drive as the System's, served under the Manager's URI too (virtual-media.ts).
    VirtualMedia: link(`${managerUri(system.id)}/VirtualMedia`),
    Links: {
      ManagerForServers: [link(systemUri(system.id))],
      ManagerForChassis: system.chassis.map(name => link(chassisUri(name))),
    },
  };
}

export function registerManagers(routes: ResourceRoutes, deps: ServiceDeps): void {
  const { cache } = deps;

  resource(routes, `${SERVICE_ROOT}/Managers`, {
    GET: c =>
      sendJson(c, collection("ManagerCollection", `${SERVICE_ROOT}/Managers`, "Manager Collection", visibleSystemIds(c, cache).map(managerUri)), {
        conditional: true,
      }),
  });

  const managedSystem = (c: RedfishContext) => resolveSystem(c, cache, c.req.param("id") ?? "", "Manager");
  resource(routes, `${SERVICE_ROOT}/Managers/:id`, {
    GET: c => {
      const system = managedSystem(c);
      return sendSystemResource(c, deps, system, cachedSystemResource(deps, "Manager", system, () => renderManager(system)));
    },
  }, managedSystem);
}

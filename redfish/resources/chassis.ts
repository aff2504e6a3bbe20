// Chassis: one per configured chassis (a namespace plus an optional VM selector) the user may see.
import { notFound } from "../errors";
import { collection, envelope, link, sendJson, SERVICE_ROOT } from "../odata";
import { chassisUri, resource, systemIdOf, systemUri, userChassis, type RedfishContext, type ServiceDeps, type ResourceRoutes } from "./context";

export function registerChassis(routes: ResourceRoutes, deps: ServiceDeps): void {
  resource(routes, `${SERVICE_ROOT}/Chassis`, {
    GET: c =>
      sendJson(c, collection("ChassisCollection", `${SERVICE_ROOT}/Chassis`, "Chassis Collection", userChassis(c).map(chassisUri)), {
        conditional: true,
      }),
  });

  const visibleChassis = (c: RedfishContext) => {
    const name = c.req.param("name") ?? "";
    const config = c.get("settings").chassis.get(name);
    if (!config || !userChassis(c).includes(name)) throw notFound("Chassis", name);
    return { name, config };
  };
  resource(routes, `${SERVICE_ROOT}/Chassis/:name`, {
    GET: c => {
      const { name, config } = visibleChassis(c);
      const systems = deps.cache.listVmsInChassis(name).map(rec => link(systemUri(systemIdOf(rec))));
      const selector = config.vmSelector ? " matching the chassis VM selector" : "";
      return sendJson(
        c,
        {
          ...envelope("Chassis", chassisUri(name)),
          Id: name,
          Name: name,
          Description: config.description || `KubeVirt VirtualMachines of namespace ${config.namespace}${selector}`,
          ChassisType: "Zone",
          Manufacturer: "KubeVirt",
          Status: { State: "Enabled", Health: "OK" },
          Links: { ComputerSystems: systems },
        },
        { conditional: true },
      );
    },
  }, visibleChassis);
}

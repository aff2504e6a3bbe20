// SimpleStorage (older clients, Ironic's first source of local_gb): the same drives as Storage, as devices of
// one controller.
import type { Hono } from "hono";
import { notFound } from "../errors";
import { collection, envelope, sendJson, SERVICE_ROOT } from "../odata";
import { resolveSystem, resource, systemUri, type RedfishContext, type RedfishEnv, type ServiceDeps } from "./context";
import { vmDrives } from "./hardware";
import { driveStatus, STORAGE_ID } from "./storage";

const simpleStorageUri = (systemId: string) => `${systemUri(systemId)}/SimpleStorage`;

export function registerSimpleStorage(app: Hono<RedfishEnv>, deps: ServiceDeps): void {
  const system = (c: RedfishContext) => resolveSystem(c, deps.cache, c.req.param("id") ?? "");
  resource(app, `${SERVICE_ROOT}/Systems/:id/SimpleStorage`, {
    GET: c => {
      const target = system(c);
      const uri = simpleStorageUri(target.id);
      return sendJson(c, collection("SimpleStorageCollection", uri, "Simple Storage Collection", [`${uri}/${STORAGE_ID}`]), { conditional: true });
    },
  }, system);

  const controller = (c: RedfishContext) => {
    const target = system(c);
    const id = c.req.param("controller") ?? "";
    if (id !== STORAGE_ID) throw notFound("SimpleStorage", id);
    return target;
  };
  resource(app, `${SERVICE_ROOT}/Systems/:id/SimpleStorage/:controller`, {
    GET: c => {
      const target = controller(c);
      return sendJson(
        c,
        {
          ...envelope("SimpleStorage", `${simpleStorageUri(target.id)}/${STORAGE_ID}`),
          Id: STORAGE_ID,
          Name: "VirtualMachine storage",
          Description: "The disks, LUNs and CD-ROMs of the KubeVirt VirtualMachine",
          Devices: vmDrives(target.rec).map(d => ({
            Name: d.kind === "cdrom" ? `CD-ROM ${d.name}` : d.name,
            Manufacturer: "KubeVirt",
            CapacityBytes: d.capacityBytes,
            Status: driveStatus(d),
          })),
          Status: { State: "Enabled", Health: "OK" },
        },
        { conditional: true },
      );
    },
  }, controller);
}

// SimpleStorage (older clients, Ironic's first source of local_gb): the same drives as Storage, as devices of
// one controller.
import { envelope } from "../odata";
import type { ServiceDeps, ResourceRoutes } from "./context";
import { vmDrives } from "./hardware";
import { driveStatus, STORAGE_DESCRIPTION, STORAGE_ID, STORAGE_NAME } from "./storage";
import { registerSystemCollection, systemCollectionUri } from "./system-collection";

export function registerSimpleStorage(routes: ResourceRoutes, deps: ServiceDeps): void {
  registerSystemCollection(routes, deps, {
    segment: "SimpleStorage",
    type: "SimpleStorageCollection",
    name: "Simple Storage Collection",
    memberType: "SimpleStorage",
    members: system => [[STORAGE_ID, vmDrives(system.rec)]],
    render: (system, id, drives) => ({
      ...envelope("SimpleStorage", `${systemCollectionUri(system.id, "SimpleStorage")}/${id}`),
      Id: id,
      Name: STORAGE_NAME,
      Description: STORAGE_DESCRIPTION,
      Devices: drives.map(d => ({
        Name: d.kind === "cdrom" ? `CD-ROM ${d.name}` : d.name,
        Manufacturer: "KubeVirt",
        CapacityBytes: d.capacityBytes,
        Status: driveStatus(d),
      })),
      Status: { State: "Enabled", Health: "OK" },
    }),
  });
}

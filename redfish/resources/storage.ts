// Storage: one storage subsystem per system holding a Drive for each disk, LUN and CD-ROM of the VM, with
// the capacity the cluster requested for it (Ironic's redfish inspection takes local_gb from the Drives).
import { notFound } from "../errors";
import { envelope, link, sendJson, SERVICE_ROOT } from "../odata";
import { resource, type RedfishContext, type ServiceDeps, type VisibleSystem, type ResourceRoutes } from "./context";
import { vmDrives, type VmDrive } from "./hardware";
import { registerSystemCollection, systemCollectionUri } from "./system-collection";

/** The one storage subsystem: KubeVirt attaches every disk through the VM's own (virtual) controllers. */
export const STORAGE_ID = "1";
const storageUri = (systemId: string) => `${systemCollectionUri(systemId, "Storage")}/${STORAGE_ID}`;
const driveUri = (systemId: string, drive: string) => `${storageUri(systemId)}/Drives/${encodeURIComponent(drive)}`;
export const STORAGE_NAME = "VirtualMachine storage";
export const STORAGE_DESCRIPTION = "The disks, LUNs and CD-ROMs of the KubeVirt VirtualMachine";

/** Redfish Protocol from the KubeVirt disk bus (virtio disks are PCI devices; scsi has no Redfish protocol of its own). */
const PROTOCOLS: Record<string, string> = { virtio: "PCIe", sata: "SATA", usb: "USB" };

/** Status of a drive: Absent for an empty CD-ROM, Starting while its DataVolume is not ready, Critical when it failed. */
export function driveStatus(drive: VmDrive): { State: string; Health: string } {
  if (drive.empty) return { State: "Absent", Health: "OK" };
  if (drive.failed) return { State: "Enabled", Health: "Critical" };
  return { State: drive.ready ? "Enabled" : "Starting", Health: "OK" };
}

export function driveDescription(drive: VmDrive): string {
  const what = drive.kind === "cdrom" ? "Optical drive (CD-ROM)" : drive.kind === "lun" ? "LUN" : "Disk";
  const capacity = drive.capacityBytes > 0 ? "" : ", capacity not known to the cluster";
  return `${what} ${drive.name} of the KubeVirt VirtualMachine, from ${drive.source}${capacity}`;
}

function renderDrive(system: VisibleSystem, drive: VmDrive): Record<string, unknown> {
  const protocol = drive.bus ? PROTOCOLS[drive.bus] : undefined;
  return {
    ...envelope("Drive", driveUri(system.id, drive.name)),
    Id: drive.name,
    Name: drive.kind === "cdrom" ? `CD-ROM ${drive.name}` : drive.name,
    Description: driveDescription(drive),
    // Ironic sorts the capacities of all drives: a number, never null (0 when the cluster does not know it).
    CapacityBytes: drive.capacityBytes,
    // Linux guests see virtio and SATA disks as rotational; Redfish has no media type for optical drives.
    ...(drive.kind === "cdrom" ? {} : { MediaType: "HDD" }),
    ...(protocol ? { Protocol: protocol } : {}),
    Manufacturer: "KubeVirt",
    Status: driveStatus(drive),
  };
}

export function registerStorage(routes: ResourceRoutes, deps: ServiceDeps): void {
  const storage = registerSystemCollection(routes, deps, {
    segment: "Storage",
    type: "StorageCollection",
    name: "Storage Collection",
    memberType: "Storage",
    members: system => [[STORAGE_ID, vmDrives(system.rec)]],
    render: (system, id, drives) => ({
      ...envelope("Storage", storageUri(system.id)),
      Id: id,
      Name: STORAGE_NAME,
      Description: STORAGE_DESCRIPTION,
      Drives: drives.map(d => link(driveUri(system.id, d.name))),
      "Drives@odata.count": drives.length,
      Status: { State: "Enabled", Health: drives.some(d => d.failed) ? "Critical" : "OK" },
    }),
  });

  const drive = (c: RedfishContext) => {
    const { system, member: drives } = storage(c);
    const name = c.req.param("drive") ?? "";
    const found = drives.find(d => d.name === name);
    if (!found) throw notFound("Drive", name);
    return renderDrive(system, found);
  };
  resource(routes, `${SERVICE_ROOT}/Systems/:id/Storage/:member/Drives/:drive`, { GET: c => sendJson(c, drive(c), { conditional: true }) }, drive);
}

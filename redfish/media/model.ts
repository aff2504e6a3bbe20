// The virtual CD drive of a VM, as the cluster records it: a `cdrom` disk plus a `dataVolume` volume named
// CD_VOLUME in the VM template, and the DataVolume this module created for it (owned by the VM, labelled).
// Everything the Redfish VirtualMedia resource shows is derived from these objects, so it survives a restart.
import type { KubeObject, VmRecord } from "../cache/types";
import { asObject, conditionOf, devicesOf, namedEntry, statusOf, templateSpecOf, valueAt } from "../kubevirt/objects";

/** Same value as the datavolume-policy exemption label (capabilities/datavolume-policy/scope.ts). */
export const MANAGED_BY_LABEL = { key: "app.kubernetes.io/managed-by", value: "kubevirt-infra" } as const;
/** Label on the module's DataVolumes and Secrets: the VM whose virtual media they are. */
export const MEDIA_FOR_LABEL = "kubevirt-infra.io/media-for";
/** Label on the module's DataVolumes and Secrets: which drive ("cd"). */
export const MEDIA_DRIVE_LABEL = "kubevirt-infra.io/media-drive";
export const CD_DRIVE = "cd";
/** CDI: bind the PVC now instead of waiting for a consumer (the VM may stay off while the ISO imports). */
export const BIND_IMMEDIATE_ANNOTATION = "cdi.kubevirt.io/storage.bind.immediate.requested";
/** CDI (1.54–1.56 garbage-collect completed DataVolumes by default): keep ours, the state is derived from it. */
export const DELETE_AFTER_COMPLETION_ANNOTATION = "cdi.kubevirt.io/storage.deleteAfterCompletion";

/** Name of the disk and the volume of the virtual CD drive in the VM template. */
export const CD_VOLUME = "virtualmedia-cd";

/** Label values (the VM name) are limited to 63 characters, like the names KubeVirt puts in pod labels. */
export const MAX_VM_NAME_LENGTH = 63;

const SUFFIX = /^[a-z0-9]{6}$/;

/** DataVolume name of one insert: `<vm>-cd-<6 random chars>` (a new name per insert, so a Task is one import). */
export function mediaDataVolumeName(vmName: string, suffix: string): string {
  if (!SUFFIX.test(suffix)) throw new Error(`invalid DataVolume name suffix ${JSON.stringify(suffix)}`);
  return `${vmName}-${CD_DRIVE}-${suffix}`;
}

/** The VM a media DataVolume name belongs to, or undefined when the name is not of that form. */
export function vmNameOfMediaDataVolume(dataVolumeName: string): string | undefined {
  const match = /^(.+)-cd-[a-z0-9]{6}$/.exec(dataVolumeName);
  return match ? match[1] : undefined;
}

export function cdDiskOf(vm: Readonly<KubeObject>): Record<string, unknown> | undefined {
  return namedEntry(devicesOf(templateSpecOf(vm))?.disks, CD_VOLUME);
}

export function cdVolumeOf(vm: Readonly<KubeObject>): Record<string, unknown> | undefined {
  return namedEntry(templateSpecOf(vm)?.volumes, CD_VOLUME);
}

/** Whether a DataVolume is one this module created as virtual media of this VM (labels + ownerReference uid). */
export function isMediaDataVolumeOf(dv: Readonly<KubeObject>, vm: Readonly<KubeObject>): boolean {
  const labels = dv.metadata.labels ?? {};
  if (labels[MANAGED_BY_LABEL.key] !== MANAGED_BY_LABEL.value || labels[MEDIA_FOR_LABEL] !== vm.metadata.name) return false;
  if (vmNameOfMediaDataVolume(dv.metadata.name ?? "") !== vm.metadata.name) return false;
  return (dv.metadata.ownerReferences ?? []).some(r => r.kind === "VirtualMachine" && r.name === vm.metadata.name && r.uid === vm.metadata.uid);
}

export type DriveSlot =
  /** No drive of ours in the template. */
  | { kind: "empty" }
  /** Our cdrom disk + volume, referencing this DataVolume. */
  | { kind: "attached"; dataVolumeName: string }
  /** The template has a disk or volume named CD_VOLUME that this module did not put there: left alone. */
  | { kind: "foreign"; reason: string };

/** What the VM template holds in the virtual CD slot. */
export function driveSlot(vm: Readonly<KubeObject>): DriveSlot {
  const disk = cdDiskOf(vm);
  const volume = cdVolumeOf(vm);
  if (!disk && !volume) return { kind: "empty" };
  if (disk && disk.cdrom === undefined) return { kind: "foreign", reason: `disk ${CD_VOLUME} is not a CD-ROM` };
  // A CD-ROM of the drive's name without a volume is an empty tray (KubeVirt's declarative hotplug style): insert fills it.
  if (!volume) return { kind: "empty" };
  const dvName = asObject(volume.dataVolume)?.name;
  if (typeof dvName !== "string" || vmNameOfMediaDataVolume(dvName) !== vm.metadata.name) {
    return { kind: "foreign", reason: `volume ${CD_VOLUME} is not a virtual media DataVolume of this VM` };
  }
  return { kind: "attached", dataVolumeName: dvName };
}

export function dataVolumePhase(dv: Readonly<KubeObject> | undefined): string {
  const phase = statusOf(dv).phase;
  return typeof phase === "string" ? phase : "";
}

export function imageUrlOf(dv: Readonly<KubeObject>): string | undefined {
  const url = valueAt(dv.spec, "source", "http", "url");
  return typeof url === "string" ? url : undefined;
}

export type ImportPhase = "importing" | "ready" | "failed";

/** A DataVolume's import as the drive sees it: ready only when Succeeded; failed when CDI gave up or errored. */
export function importPhase(dv: Readonly<KubeObject>): ImportPhase {
  const phase = dataVolumePhase(dv);
  if (phase === "Succeeded") return "ready";
  if (phase === "Failed") return "failed";
  const running = conditionOf(dv, "Running");
  // The importer exited with an error (CDI restarts it with back-off; KubeVirt already reports DataVolumeError).
  if (running?.status === "False" && running.reason === "Error") return "failed";
  return "importing";
}

export interface DriveState {
  slot: DriveSlot;
  /** The attached DataVolume when the cache has it and it is ours. */
  dataVolume?: Readonly<KubeObject>;
  /** Every DataVolume of ours for this VM (attached or left over). */
  mediaDataVolumes: readonly Readonly<KubeObject>[];
}

export function driveState(rec: VmRecord): DriveState {
  const slot = driveSlot(rec.vm);
  const mediaDataVolumes = rec.dataVolumes.filter(dv => isMediaDataVolumeOf(dv, rec.vm));
  const dataVolume = slot.kind === "attached" ? mediaDataVolumes.find(dv => dv.metadata.name === slot.dataVolumeName) : undefined;
  return { slot, ...(dataVolume ? { dataVolume } : {}), mediaDataVolumes };
}

/** The Redfish view of the drive: Image while a DataVolume is attached; Inserted only once it is imported. */
export interface MediaView {
  image?: string;
  inserted: boolean;
  import?: ImportPhase;
  dataVolume?: Readonly<KubeObject>;
}

export function mediaView(rec: VmRecord): MediaView {
  const state = driveState(rec);
  const dv = state.dataVolume;
  if (!dv || dv.metadata.deletionTimestamp) return { inserted: false };
  const phase = importPhase(dv);
  return { image: imageUrlOf(dv), inserted: phase === "ready", import: phase, dataVolume: dv };
}

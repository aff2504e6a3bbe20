// What a VirtualMachine looks like as hardware: firmware UUID, processors, memory, NICs, health.
// Running VMIs win over the VM template (they carry what KubeVirt actually applied, including
// instancetype expansion); the template is the fallback while the VM is off.
import { createHash } from "node:crypto";
import { quantityToBytes } from "../../capabilities/common/kube-values";
import type { KubeObject, VmRecord } from "../cache/types";
import { importPhase, type ImportPhase } from "../media/model";
import { asObject, valueAt, type JsonObject } from "../kubevirt/objects";

function positiveInt(value: unknown): number | undefined {
  return typeof value === "number" && Number.isInteger(value) && value > 0 ? value : undefined;
}

function vmDomain(rec: VmRecord): unknown {
  return valueAt(rec.vm.spec, "template", "spec", "domain");
}

function vmiDomain(rec: VmRecord): unknown {
  return rec.vmi ? valueAt(rec.vmi.spec, "domain") : undefined;
}

// ---- UUIDs ----

/** RFC 4122 name-based UUID (version 5, SHA-1), as Go's uuid.NewSHA1. */
export function uuidV5(namespace: string, name: string): string {
  const ns = Buffer.from(namespace.replace(/-/g, ""), "hex");
  const hash = createHash("sha1").update(ns).update(name).digest();
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** KubeVirt's namespace for CalculateLegacyUUID (pkg/virt-controller: firmware UUID from the VM name). */
const KUBEVIRT_FIRMWARE_UUID_NAMESPACE = "6a1a24a1-4061-4607-8bf4-a3963d0c5895";
const UUID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** The UUID the guest sees in SMBIOS: the VM's firmware uuid, else what KubeVirt computes from the name. */
export function firmwareUuid(rec: VmRecord): string {
  for (const candidate of [valueAt(vmDomain(rec), "firmware", "uuid"), valueAt(vmiDomain(rec), "firmware", "uuid")]) {
    if (typeof candidate === "string" && UUID_PATTERN.test(candidate)) return candidate.toLowerCase();
  }
  return uuidV5(KUBEVIRT_FIRMWARE_UUID_NAMESPACE, rec.vm.metadata.name ?? "");
}

export function serialNumber(rec: VmRecord): string | undefined {
  const serial = valueAt(vmDomain(rec), "firmware", "serial") ?? valueAt(vmiDomain(rec), "firmware", "serial");
  if (typeof serial === "string" && serial !== "") return serial;
  return rec.vm.metadata.uid;
}

export function machineType(rec: VmRecord): string | undefined {
  const type = valueAt(rec.vmi?.status, "machine", "type") ?? valueAt(vmiDomain(rec), "machine", "type") ?? valueAt(vmDomain(rec), "machine", "type");
  return typeof type === "string" && type !== "" ? type : undefined;
}

// ---- processors ----

export interface CpuTopology {
  sockets: number;
  cores: number;
  threads: number;
  model?: string;
}

function topologyFrom(cpu: unknown): CpuTopology | undefined {
  const cores = positiveInt(valueAt(cpu, "cores"));
  const sockets = positiveInt(valueAt(cpu, "sockets"));
  const threads = positiveInt(valueAt(cpu, "threads"));
  if (!cores && !sockets && !threads) return undefined;
  return { sockets: sockets ?? 1, cores: cores ?? 1, threads: threads ?? 1 };
}

/** vCPUs KubeVirt gives a VM without a topology: the CPU limit, else the request, rounded up; else 1. */
function cpusFromResources(domain: unknown): number | undefined {
  for (const kind of ["limits", "requests"]) {
    const value = valueAt(domain, "resources", kind, "cpu");
    const cpus = typeof value === "number" ? value : typeof value === "string" ? quantityToBytes(value) : Number.NaN;
    if (Number.isFinite(cpus) && cpus > 0) return Math.ceil(cpus);
  }
  return undefined;
}

export function cpuTopology(rec: VmRecord): CpuTopology {
  const model = [valueAt(vmiDomain(rec), "cpu", "model"), valueAt(vmDomain(rec), "cpu", "model")].find(
    (m): m is string => typeof m === "string" && m !== "",
  );
  const topology =
    topologyFrom(valueAt(rec.vmi?.status, "currentCPUTopology")) ??
    topologyFrom(valueAt(vmiDomain(rec), "cpu")) ??
    topologyFrom(valueAt(vmDomain(rec), "cpu")) ?? {
      sockets: 1,
      cores: cpusFromResources(vmiDomain(rec)) ?? cpusFromResources(vmDomain(rec)) ?? 1,
      threads: 1,
    };
  return model ? { ...topology, model } : topology;
}

// ---- memory ----

function bytesOf(value: unknown): number | undefined {
  if (typeof value !== "string" && typeof value !== "number") return undefined;
  const bytes = typeof value === "number" ? value : quantityToBytes(value);
  return Number.isFinite(bytes) && bytes > 0 ? bytes : undefined;
}

/** Guest memory in bytes: current guest memory, else guest, else requests, else limits; undefined when unknown. */
export function memoryBytes(rec: VmRecord): number | undefined {
  const candidates = [
    valueAt(rec.vmi?.status, "memory", "guestCurrent"),
    valueAt(vmiDomain(rec), "memory", "guest"),
    valueAt(vmDomain(rec), "memory", "guest"),
    valueAt(vmiDomain(rec), "resources", "requests", "memory"),
    valueAt(vmDomain(rec), "resources", "requests", "memory"),
    valueAt(vmiDomain(rec), "resources", "limits", "memory"),
    valueAt(vmDomain(rec), "resources", "limits", "memory"),
  ];
  for (const candidate of candidates) {
    const bytes = bytesOf(candidate);
    if (bytes !== undefined) return bytes;
  }
  return undefined;
}

export function memoryGiB(rec: VmRecord): number | null {
  const bytes = memoryBytes(rec);
  return bytes === undefined ? null : Math.round((bytes / 2 ** 30) * 1000) / 1000;
}

// ---- network interfaces ----

export interface NetworkInterface {
  name: string;
  macAddress: string | null;
  binding?: string;
  model?: string;
  ipv4: string[];
  ipv6: string[];
  /** Present in the running VMI's status (guest link reported). */
  linkUp: boolean;
}

const MAC = /^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$/;

function normalizeMac(value: unknown): string | null {
  return typeof value === "string" && MAC.test(value) ? value.replace(/-/g, ":").toLowerCase() : null;
}

function bindingOf(iface: JsonObject): string | undefined {
  for (const key of ["masquerade", "bridge", "sriov", "slirp", "passt", "macvtap"]) if (key in iface) return key;
  const plugin = valueAt(iface, "binding", "name");
  return typeof plugin === "string" ? plugin : undefined;
}

/** The VM's NICs in template order, then interfaces only the running VMI reports (hot-plugged). */
export function networkInterfaces(rec: VmRecord): NetworkInterface[] {
  const statusByName = new Map<string, JsonObject>();
  const statusList = valueAt(rec.vmi?.status, "interfaces");
  for (const s of Array.isArray(statusList) ? statusList : []) {
    const entry = asObject(s);
    if (entry && typeof entry.name === "string") statusByName.set(entry.name, entry);
  }
  const out: NetworkInterface[] = [];
  const seen = new Set<string>();
  const specList = valueAt(vmDomain(rec), "devices", "interfaces");
  const add = (name: string, spec: JsonObject | undefined, status: JsonObject | undefined) => {
    if (seen.has(name)) return;
    seen.add(name);
    const ips = (Array.isArray(status?.ipAddresses) ? status.ipAddresses : [status?.ipAddress]).filter(
      (ip): ip is string => typeof ip === "string" && ip !== "",
    );
    out.push({
      name,
      macAddress: normalizeMac(spec?.macAddress) ?? normalizeMac(status?.mac),
      ...(spec && bindingOf(spec) ? { binding: bindingOf(spec) } : {}),
      ...(typeof spec?.model === "string" ? { model: spec.model } : {}),
      ipv4: ips.filter(ip => !ip.includes(":")),
      ipv6: ips.filter(ip => ip.includes(":")),
      linkUp: status !== undefined,
    });
  };
  for (const s of Array.isArray(specList) ? specList : []) {
    const spec = asObject(s);
    if (spec && typeof spec.name === "string") add(spec.name, spec, statusByName.get(spec.name));
  }
  for (const [name, status] of statusByName) add(name, undefined, status);
  return out;
}

// ---- health ----

const ERROR_STATUSES = new Set([
  "CrashLoopBackOff",
  "ErrorUnschedulable",
  "ErrImagePull",
  "ImagePullBackOff",
  "ErrorPvcNotFound",
  "ErrorDataVolumeNotFound",
  "DataVolumeError",
  "Unknown",
]);

/** Redfish Health from the VM's printableStatus: Warning for KubeVirt's error states, else OK. */
export function health(vm: Readonly<KubeObject>): "OK" | "Warning" {
  const status = valueAt(vm.status, "printableStatus");
  return typeof status === "string" && ERROR_STATUSES.has(status) ? "Warning" : "OK";
}

// ---- architecture ----

export interface Architecture {
  /** Redfish ProcessorArchitecture (what Ironic's redfish inspection maps to cpu_arch). */
  processorArchitecture: "x86" | "ARM" | "Power" | "OEM";
  /** Redfish InstructionSet. */
  instructionSet: "x86-64" | "ARM-A64" | "PowerISA" | "OEM";
}

const ARCHITECTURES: Record<string, Architecture> = {
  amd64: { processorArchitecture: "x86", instructionSet: "x86-64" },
  arm64: { processorArchitecture: "ARM", instructionSet: "ARM-A64" },
  ppc64le: { processorArchitecture: "Power", instructionSet: "PowerISA" },
};

/** The VM's architecture (`spec.architecture`, which KubeVirt defaults to the cluster's, amd64 on x86 clusters). */
export function architecture(rec: VmRecord): Architecture {
  const arch = [valueAt(rec.vmi?.spec, "architecture"), valueAt(rec.vm.spec, "template", "spec", "architecture")].find(
    (a): a is string => typeof a === "string" && a !== "",
  );
  return ARCHITECTURES[arch ?? "amd64"] ?? { processorArchitecture: "OEM", instructionSet: "OEM" };
}

// ---- firmware ----

export interface FirmwareFacts {
  bootMode: "UEFI" | "Legacy";
  /** KubeVirt turns secure boot on for `efi: {}` unless `secureBoot: false`. */
  secureBoot: boolean;
  /** Whether SMM is on (secure boot needs it). */
  smm: boolean;
  /** The EFI variable store survives restarts (`efi.persistent`). */
  persistentEfi: boolean;
}

function firmwareFrom(domain: unknown): FirmwareFacts {
  const efi = valueAt(domain, "firmware", "bootloader", "efi");
  const isEfi = asObject(efi) !== undefined;
  const smm = valueAt(domain, "features", "smm");
  return {
    bootMode: isEfi ? "UEFI" : "Legacy",
    secureBoot: isEfi && valueAt(efi, "secureBoot") !== false,
    smm: asObject(smm) !== undefined && valueAt(smm, "enabled") !== false,
    persistentEfi: isEfi && valueAt(efi, "persistent") === true,
  };
}

/** The firmware the VM starts with next (its template). */
export function configuredFirmware(rec: VmRecord): FirmwareFacts {
  return firmwareFrom(vmDomain(rec));
}

/** The firmware of the running guest, when there is one. */
export function runningFirmware(rec: VmRecord): FirmwareFacts | undefined {
  return rec.vmi ? firmwareFrom(vmiDomain(rec)) : undefined;
}

/** BiosVersion: which firmware image KubeVirt's virt-launcher boots (OVMF for EFI, SeaBIOS otherwise). */
export function biosVersion(rec: VmRecord): string {
  const firmware = runningFirmware(rec) ?? configuredFirmware(rec);
  if (firmware.bootMode === "Legacy") return "SeaBIOS (KubeVirt)";
  return firmware.secureBoot ? "OVMF secure boot (KubeVirt)" : "OVMF (KubeVirt)";
}

// ---- drives ----

export type DriveKind = "disk" | "cdrom" | "lun";

export interface VmDrive {
  /** The disk's name in the VM spec (unique within the VM). */
  name: string;
  kind: DriveKind;
  bus?: string;
  /** Where the capacity comes from, e.g. `dataVolume tenant1-vms/root-dv`. */
  source: string;
  /** Bytes, 0 when the cluster does not say (containerDisk, a PVC, an empty CD-ROM). */
  capacityBytes: number;
  /** Whether the backing volume is usable: false while a DataVolume imports or after it failed. */
  ready: boolean;
  failed: boolean;
  /** An empty CD-ROM (no volume behind it). */
  empty: boolean;
}

function requestedStorage(dvSpec: unknown): number | undefined {
  return bytesOf(valueAt(dvSpec, "storage", "resources", "requests", "storage")) ?? bytesOf(valueAt(dvSpec, "pvc", "resources", "requests", "storage"));
}

function dataVolumeOf(rec: VmRecord, name: string): { spec: unknown; phase?: ImportPhase } | undefined {
  const dv = rec.dataVolumes.find(d => d.metadata.name === name);
  if (dv) return { spec: dv.spec, phase: importPhase(dv) };
  // Declared in dataVolumeTemplates, not created yet (the VM has never started).
  const templates = valueAt(rec.vm.spec, "dataVolumeTemplates");
  const template = (Array.isArray(templates) ? templates : []).map(asObject).find(t => valueAt(t, "metadata", "name") === name);
  return template ? { spec: template.spec } : undefined;
}

/** Capacity, readiness and provenance of one volume. */
function volumeFacts(rec: VmRecord, volume: JsonObject | undefined): Pick<VmDrive, "source" | "capacityBytes" | "ready" | "failed" | "empty"> {
  if (!volume) return { source: "no volume", capacityBytes: 0, ready: false, failed: false, empty: true };
  const dvName = valueAt(volume, "dataVolume", "name");
  if (typeof dvName === "string") {
    const dv = dataVolumeOf(rec, dvName);
    return {
      source: `dataVolume ${dvName}`,
      capacityBytes: requestedStorage(dv?.spec) ?? 0,
      ready: dv?.phase === "ready",
      failed: dv?.phase === "failed",
      empty: false,
    };
  }
  for (const kind of ["emptyDisk", "hostDisk"]) {
    const capacity = bytesOf(valueAt(volume, kind, "capacity"));
    if (asObject(volume[kind])) return { source: kind, capacityBytes: capacity ?? 0, ready: true, failed: false, empty: false };
  }
  const kind = Object.keys(volume).find(k => k !== "name") ?? "volume";
  return { source: kind, capacityBytes: 0, ready: true, failed: false, empty: false };
}

/** The VM's disks, CD-ROMs and LUNs in template order (the running VMI's devices while it runs). */
export function vmDrives(rec: VmRecord): VmDrive[] {
  const spec = rec.vmi ? asObject(rec.vmi.spec) : asObject(valueAt(rec.vm.spec, "template", "spec"));
  const disks = valueAt(spec, "domain", "devices", "disks");
  const volumes = valueAt(spec, "volumes");
  const volumeByName = new Map<string, JsonObject>();
  for (const v of Array.isArray(volumes) ? volumes : []) {
    const volume = asObject(v);
    if (volume && typeof volume.name === "string") volumeByName.set(volume.name, volume);
  }
  const out: VmDrive[] = [];
  for (const d of Array.isArray(disks) ? disks : []) {
    const disk = asObject(d);
    if (!disk || typeof disk.name !== "string") continue;
    const kind: DriveKind = asObject(disk.cdrom) ? "cdrom" : asObject(disk.lun) ? "lun" : "disk";
    const bus = valueAt(disk, kind, "bus");
    out.push({ name: disk.name, kind, ...(typeof bus === "string" ? { bus } : {}), ...volumeFacts(rec, volumeByName.get(disk.name)) });
  }
  return out;
}

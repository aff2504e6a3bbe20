// The parts of KubeVirt's VirtualMachine / VirtualMachineInstance API the simulator reads, parsed with zod
// (objects in the store come from any client and are not schema-checked by the sandbox API server), plus the
// small pure rules KubeVirt applies to them: run strategy, phases, volume references.
import crypto from "node:crypto";
import { z } from "zod";
import type { KubeObject } from "../../apiserver/types";
import { isRecord } from "../common";

// null and absent mean the same thing in Go's JSON decoding of pointers, so every optional field is nullish.
const stringMap = z.record(z.string(), z.string()).nullish();

const diskSchema = z.object({
  name: z.string().min(1),
  bootOrder: z.number().int().nullish(),
  cdrom: z.unknown().optional(),
  disk: z.unknown().optional(),
  lun: z.unknown().optional(),
});

const interfaceSchema = z.object({
  name: z.string().min(1),
  bootOrder: z.number().int().nullish(),
  macAddress: z.string().nullish(),
});

const volumeSchema = z.object({
  name: z.string().min(1),
  dataVolume: z.object({ name: z.string().min(1), hotpluggable: z.boolean().nullish() }).nullish(),
  persistentVolumeClaim: z.object({ claimName: z.string().min(1), hotpluggable: z.boolean().nullish() }).nullish(),
});

const networkSchema = z.object({
  name: z.string().min(1),
  pod: z.unknown().optional(),
});

export const vmiSpecSchema = z.object({
  domain: z
    .object({
      devices: z
        .object({
          disks: z.array(diskSchema).nullish(),
          interfaces: z.array(interfaceSchema).nullish(),
          autoattachPodInterface: z.boolean().nullish(),
        })
        .nullish(),
      firmware: z
        .object({
          uuid: z.string().nullish(),
          bootloader: z.object({ efi: z.unknown().optional(), bios: z.unknown().optional() }).nullish(),
        })
        .nullish(),
      rebootPolicy: z.string().nullish(),
    })
    .nullish(),
  volumes: z.array(volumeSchema).nullish(),
  networks: z.array(networkSchema).nullish(),
  terminationGracePeriodSeconds: z.number().int().min(0).nullish(),
  startStrategy: z.string().nullish(),
});
export type VmiSpec = z.infer<typeof vmiSpecSchema>;
export type Disk = z.infer<typeof diskSchema>;
export type Interface = z.infer<typeof interfaceSchema>;
export type Volume = z.infer<typeof volumeSchema>;

const vmSpecSchema = z.object({
  running: z.boolean().nullish(),
  runStrategy: z.string().nullish(),
  template: z.object({
    metadata: z.object({ labels: stringMap, annotations: stringMap }).nullish(),
    spec: vmiSpecSchema,
  }),
  dataVolumeTemplates: z
    .array(
      z.object({
        metadata: z.object({ name: z.string().min(1), labels: stringMap, annotations: stringMap }),
        spec: z.record(z.string(), z.unknown()),
      }),
    )
    .nullish(),
});
export type VmSpec = z.infer<typeof vmSpecSchema>;

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

function describe(error: z.ZodError, prefix: string): string {
  return error.issues.map(i => `${[prefix, ...i.path.map(String)].join(".")}: ${i.message}`).join("; ");
}

export function parseVmSpec(vm: KubeObject): Parsed<VmSpec> {
  const result = vmSpecSchema.safeParse(vm.spec);
  return result.success ? { ok: true, value: result.data } : { ok: false, message: describe(result.error, "spec") };
}

export function parseVmiSpec(vmi: KubeObject): Parsed<VmiSpec> {
  const result = vmiSpecSchema.safeParse(vmi.spec);
  return result.success ? { ok: true, value: result.data } : { ok: false, message: describe(result.error, "spec") };
}

export const RUN_STRATEGIES = ["Always", "Halted", "Manual", "RerunOnFailure", "Once"] as const;
export type RunStrategy = (typeof RUN_STRATEGIES)[number];

/** KubeVirt's vm.RunStrategy(): spec.running maps to Always/Halted; both set is an error; neither is Halted. */
export function runStrategyOf(spec: Pick<VmSpec, "running" | "runStrategy">): { strategy: RunStrategy } | { error: string; field: string } {
  const hasRunning = spec.running !== undefined && spec.running !== null;
  const hasStrategy = spec.runStrategy !== undefined && spec.runStrategy !== null;
  if (hasRunning && hasStrategy) return { error: "running and runstrategy are mutually exclusive", field: "spec.running" };
  if (hasRunning) return { strategy: spec.running ? "Always" : "Halted" };
  if (!hasStrategy) return { strategy: "Halted" };
  const strategy = RUN_STRATEGIES.find(s => s === spec.runStrategy);
  return strategy ? { strategy } : { error: `unknown runstrategy: ${spec.runStrategy}`, field: "spec.runStrategy" };
}

/** Raw (unparsed) VM run-strategy fields, for subresource handlers that must not fail on unrelated spec errors. */
export function rawRunFields(vm: KubeObject): Pick<VmSpec, "running" | "runStrategy"> {
  const spec = isRecord(vm.spec) ? vm.spec : {};
  return {
    running: typeof spec.running === "boolean" ? spec.running : undefined,
    runStrategy: typeof spec.runStrategy === "string" ? spec.runStrategy : spec.runStrategy === undefined || spec.runStrategy === null ? undefined : String(spec.runStrategy),
  };
}

export type VmiPhase = "" | "Pending" | "Scheduling" | "Scheduled" | "Running" | "Succeeded" | "Failed" | "Unknown";

export function phaseOf(vmi: KubeObject): VmiPhase {
  const phase = isRecord(vmi.status) ? vmi.status.phase : undefined;
  return typeof phase === "string" ? (phase as VmiPhase) : "";
}

export function isFinal(phase: VmiPhase): boolean {
  return phase === "Succeeded" || phase === "Failed";
}

/** VMI phases before the guest runs: virt-controller still creating/scheduling the launcher pod. */
export function isStarting(phase: VmiPhase): boolean {
  return phase === "" || phase === "Pending" || phase === "Scheduling" || phase === "Scheduled";
}

export interface ClaimReference {
  volume: string;
  claim: string;
  /** True for volumes[].dataVolume; a persistentVolumeClaim reference is a DataVolume only when one by that name exists. */
  isDataVolume: boolean;
  hotpluggable: boolean;
}

export function claimReferences(spec: VmiSpec | null | undefined): ClaimReference[] {
  const refs: ClaimReference[] = [];
  for (const v of spec?.volumes ?? []) {
    if (v.dataVolume) refs.push({ volume: v.name, claim: v.dataVolume.name, isDataVolume: true, hotpluggable: !!v.dataVolume.hotpluggable });
    else if (v.persistentVolumeClaim)
      refs.push({ volume: v.name, claim: v.persistentVolumeClaim.claimName, isDataVolume: false, hotpluggable: !!v.persistentVolumeClaim.hotpluggable });
  }
  return refs;
}

/** Claim names a raw VMI/VM-template spec refers to, without failing on unrelated invalid fields. */
export function rawClaimNames(spec: unknown): string[] {
  if (!isRecord(spec) || !Array.isArray(spec.volumes)) return [];
  const names: string[] = [];
  for (const v of spec.volumes) {
    if (!isRecord(v)) continue;
    if (isRecord(v.dataVolume) && typeof v.dataVolume.name === "string") names.push(v.dataVolume.name);
    if (isRecord(v.persistentVolumeClaim) && typeof v.persistentVolumeClaim.claimName === "string") names.push(v.persistentVolumeClaim.claimName);
  }
  return names;
}

export function isHotpluggableVolume(v: unknown): boolean {
  return isRecord(v) && ((isRecord(v.dataVolume) && v.dataVolume.hotpluggable === true) || (isRecord(v.persistentVolumeClaim) && v.persistentVolumeClaim.hotpluggable === true));
}

/** JSON with sorted keys, so hashes do not depend on the order a client or patch wrote the fields in. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (isRecord(value))
    return `{${Object.keys(value)
      .sort()
      .filter(k => value[k] !== undefined)
      .map(k => `${JSON.stringify(k)}:${canonicalJson(value[k])}`)
      .join(",")}}`;
  return JSON.stringify(value) ?? "null";
}

/**
 * Hash of a template spec without its hotpluggable volumes (and their disks): hotplug is applied live, any other
 * change needs a restart (KubeVirt's RestartRequired condition).
 */
export function restartRelevantHash(spec: unknown): string {
  const copy = isRecord(spec) ? structuredClone(spec) : {};
  const volumes = Array.isArray(copy.volumes) ? copy.volumes : [];
  const hot = new Set(volumes.filter(isHotpluggableVolume).map(v => (v as { name: string }).name));
  copy.volumes = volumes.filter(v => !isHotpluggableVolume(v));
  const domain = isRecord(copy.domain) ? copy.domain : undefined;
  const devices = domain && isRecord(domain.devices) ? domain.devices : undefined;
  if (devices && Array.isArray(devices.disks)) devices.disks = devices.disks.filter(d => !(isRecord(d) && hot.has(d.name as string)));
  return crypto.createHash("sha256").update(canonicalJson(copy)).digest("hex").slice(0, 16);
}

/** RFC 4122 version-5 UUID (SHA-1 of namespace + name), as KubeVirt derives a VM's stable firmware UUID. */
export function uuidV5(name: string, namespaceUuid: string): string {
  const ns = Buffer.from(namespaceUuid.replace(/-/g, ""), "hex");
  const hash = crypto.createHash("sha1").update(Buffer.concat([ns, Buffer.from(name, "utf8")])).digest();
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** KubeVirt's namespace UUID for firmware UUIDs derived from the VM name. */
export const FIRMWARE_UUID_NAMESPACE = "6a1a24a1-4061-4607-8bf4-a3963d0c5895";

/** A stable locally administered unicast MAC for an interface that does not set one. */
export function generatedMac(namespace: string, vmName: string, iface: string): string {
  const bytes = crypto.createHash("sha256").update(`${namespace}/${vmName}/${iface}`).digest().subarray(0, 5);
  return ["02", ...[...bytes].map(b => b.toString(16).padStart(2, "0"))].join(":");
}

/** A stable pod-network address for the VMI (10.244.0.0/16, never .0 or .255 in the last octet). */
export function generatedPodIp(namespace: string, vmName: string): string {
  const bytes = crypto.createHash("sha256").update(`${namespace}/${vmName}`).digest();
  return `10.244.${bytes[0]}.${(bytes[1] % 253) + 1}`;
}

/** Annotations the simulator reads (set by tests and demo VMs on the VM template) and writes on VMIs. */
export const ANNOTATION = {
  /** Template annotation "true": the guest runs qemu-guest-agent (AgentConnected, soft reboot, guest OS info). */
  guestAgent: "sandbox.kubevirt.io/guest-agent",
  /** Template annotation "N": the guest honours ACPI power-button and powers off N seconds after it. */
  acpiShutdownSeconds: "sandbox.kubevirt.io/acpi-shutdown-seconds",
  bootedFrom: "sandbox.kubevirt.io/booted-from",
  bootCount: "sandbox.kubevirt.io/boot-count",
  firmware: "sandbox.kubevirt.io/firmware",
  /** restartRelevantHash of the template the VMI was created from (for RestartRequired). */
  templateHash: "sandbox.kubevirt.io/template-hash",
  vmGeneration: "kubevirt.io/vm-generation",
} as const;

/** virt-handler's finalizer: the VMI object stays until the guest is gone (graceful shutdown). */
export const VMI_FINALIZER = "foregroundDeleteVirtualMachine";

export interface StateChangeRequest {
  action: "Start" | "Stop";
  uid?: string;
  data?: Record<string, string>;
}

const changeRequestSchema = z.object({
  action: z.enum(["Start", "Stop"]),
  uid: z.string().nullish(),
  data: z.record(z.string(), z.string()).nullish(),
});

export function changeRequestsOf(vm: KubeObject): StateChangeRequest[] {
  const raw = isRecord(vm.status) ? vm.status.stateChangeRequests : undefined;
  if (!Array.isArray(raw)) return [];
  const requests: StateChangeRequest[] = [];
  for (const item of raw) {
    const parsed = changeRequestSchema.safeParse(item);
    if (!parsed.success) continue;
    const request: StateChangeRequest = { action: parsed.data.action };
    if (parsed.data.uid) request.uid = parsed.data.uid;
    if (parsed.data.data) request.data = parsed.data.data;
    requests.push(request);
  }
  return requests;
}

export function hasStartRequest(requests: StateChangeRequest[]): boolean {
  return requests[0]?.action === "Start";
}

export function hasStopRequestFor(requests: StateChangeRequest[], vmi: KubeObject | undefined): boolean {
  return !!vmi && requests[0]?.action === "Stop" && requests[0].uid !== undefined && requests[0].uid === vmi.metadata.uid;
}

/** The VMI belongs to the VM when its controller reference names the VM's uid (or it has none, like an orphan). */
export function isOwnedBy(vmi: KubeObject, vm: KubeObject): boolean {
  const controller = (vmi.metadata.ownerReferences ?? []).find(r => r.controller);
  return !controller || controller.uid === vm.metadata.uid;
}

export function conditionIsTrue(obj: KubeObject, type: string): boolean {
  const conditions = isRecord(obj.status) && Array.isArray(obj.status.conditions) ? obj.status.conditions : [];
  return conditions.some(c => isRecord(c) && c.type === type && c.status === "True");
}

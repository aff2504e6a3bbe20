// The VMI side of KubeVirt (virt-controller's VMI controller + virt-handler + the guest): phases Pending ->
// Scheduling -> Scheduled -> Running one step apart once the volumes are populated; the running guest's status
// (conditions, interfaces, guest OS); graceful shutdown on deletion (grace period, or sooner when the guest
// honours ACPI); pause, reset, reboots and guest power-off; and what the guest booted from.
// Timing state lives in memory only as "since when": after a restart every step simply starts counting again.
import type { KubeObject, ObjectStore } from "../../apiserver/types";
import {
  type Condition,
  VMI,
  conditionsOf,
  isRecord,
  nowIso,
  objectKey,
  removeCondition,
  setCondition,
  splitKey,
  statusOf,
  type ReconcileQueue,
} from "../common";
import { bootDevice, firmwareOf } from "./boot";
import {
  ANNOTATION,
  VMI_FINALIZER,
  conditionIsTrue,
  generatedMac,
  generatedPodIp,
  isFinal,
  parseVmiSpec,
  phaseOf,
  type VmiPhase,
  type VmiSpec,
} from "./model";
import { volumeState } from "./volumes";

export const NODE_NAME = "sandbox-node";
const DEFAULT_GRACE_SECONDS = 180;

const GUEST_OS_INFO = {
  id: "fedora",
  name: "Fedora Linux",
  prettyName: "Fedora Linux 40 (Sandbox Edition)",
  version: "40 (Sandbox Edition)",
  versionId: "40",
  kernelRelease: "6.8.5-301.fc40.x86_64",
  kernelVersion: "#1 SMP PREEMPT_DYNAMIC",
  machine: "x86_64",
};

function annotation(vmi: KubeObject, key: string): string | undefined {
  return vmi.metadata.annotations?.[key];
}

export function hasGuestAgent(vmi: KubeObject): boolean {
  return annotation(vmi, ANNOTATION.guestAgent) === "true";
}

/** Seconds after the ACPI power button until the guest is off, when the guest honours it. */
function acpiShutdownSeconds(vmi: KubeObject): number | undefined {
  const raw = annotation(vmi, ANNOTATION.acpiShutdownSeconds);
  if (raw === undefined || !/^\d+(\.\d+)?$/.test(raw.trim())) return undefined;
  return Number(raw);
}

function graceSeconds(vmi: KubeObject): number {
  const grace = isRecord(vmi.spec) ? vmi.spec.terminationGracePeriodSeconds : undefined;
  return typeof grace === "number" && grace >= 0 ? grace : DEFAULT_GRACE_SECONDS;
}

function withPhase(status: Record<string, unknown>, phase: VmiPhase): Record<string, unknown> {
  const transitions = Array.isArray(status.phaseTransitionTimestamps) ? status.phaseTransitionTimestamps : [];
  return { ...status, phase, phaseTransitionTimestamps: [...transitions, { phase, phaseTransitionTimestamp: nowIso() }] };
}

/** The running guest's network view: one entry per interface, MAC from the spec or a stable generated one. */
function interfaceStatus(vmi: KubeObject, spec: VmiSpec): Record<string, unknown>[] {
  const agent = hasGuestAgent(vmi);
  const podNetworks = new Set((spec.networks ?? []).filter(n => n.pod !== undefined && n.pod !== null).map(n => n.name));
  const ip = generatedPodIp(vmi.metadata.namespace ?? "", vmi.metadata.name!);
  return (spec.domain?.devices?.interfaces ?? []).map((iface, index) => {
    const entry: Record<string, unknown> = {
      name: iface.name,
      mac: iface.macAddress ?? generatedMac(vmi.metadata.namespace ?? "", vmi.metadata.name!, iface.name),
      infoSource: agent ? "domain, guest-agent" : "domain",
      queueCount: 1,
    };
    // The pod IP is known from the pod; secondary networks only through the guest agent.
    if (podNetworks.has(iface.name)) Object.assign(entry, { ipAddress: ip, ipAddresses: [ip], podInterfaceName: "eth0" });
    else if (agent) Object.assign(entry, { ipAddress: `192.168.${100 + index}.10`, ipAddresses: [`192.168.${100 + index}.10`] });
    if (agent) entry.interfaceName = `eth${index}`;
    return entry;
  });
}

/** Annotations recording a boot: the device booted from, the count of boots of this VMI, the firmware. */
function withBootRecord(vmi: KubeObject, spec: VmiSpec): Record<string, string> {
  const previous = Number(annotation(vmi, ANNOTATION.bootCount) ?? "0");
  return {
    ...(vmi.metadata.annotations ?? {}),
    [ANNOTATION.bootedFrom]: bootDevice(spec) ?? "none",
    [ANNOTATION.bootCount]: String((Number.isFinite(previous) ? previous : 0) + 1),
    [ANNOTATION.firmware]: firmwareOf(spec),
  };
}

export class VmiHandler {
  /** When the VMI (by uid) entered its current phase, and when its shutdown began. */
  private readonly phaseSince = new Map<string, { phase: VmiPhase; since: number }>();
  private readonly shutdownSince = new Map<string, number>();
  private readonly guestTimers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly store: ObjectStore,
    private readonly queue: ReconcileQueue,
    private readonly stepDelayMs: number,
  ) {}

  stop(): void {
    for (const timer of this.guestTimers) clearTimeout(timer);
    this.guestTimers.clear();
  }

  reconcile(key: string): void {
    const { namespace, name } = splitKey(key);
    const vmi = this.store.get(VMI, namespace, name);
    if (!vmi) return;
    const uid = vmi.metadata.uid ?? key;
    const phase = phaseOf(vmi);
    if (vmi.metadata.deletionTimestamp) return this.shutDown(key, vmi, uid, phase);
    if (isFinal(phase)) return this.forget(uid);

    const tracked = this.phaseSince.get(uid);
    if (!tracked || tracked.phase !== phase) this.phaseSince.set(uid, { phase, since: Date.now() });
    const dueIn = (this.phaseSince.get(uid)!.since + this.stepDelayMs) - Date.now();
    const parsed = parseVmiSpec(vmi);

    switch (phase) {
      case "":
        this.writeVmi(namespace, name, current => ({ ...current, status: withPhase(statusOf(current), "Pending") }));
        return;
      case "Pending":
        if (!parsed.ok) return this.fail(namespace, name, `invalid VirtualMachineInstance spec: ${parsed.message}`);
        // The launcher pod cannot start before its DataVolumes are populated (DataVolume events requeue).
        if (!volumeState(this.store, namespace, parsed.value).populated) return;
        if (dueIn > 0) return this.queue.addAfter(key, dueIn);
        this.writeVmi(namespace, name, current => ({ ...current, status: withPhase(statusOf(current), "Scheduling") }));
        return;
      case "Scheduling":
        if (dueIn > 0) return this.queue.addAfter(key, dueIn);
        this.writeVmi(namespace, name, current => ({
          ...current,
          metadata: { ...current.metadata, labels: { ...(current.metadata.labels ?? {}), "kubevirt.io/nodeName": NODE_NAME } },
          status: { ...withPhase(statusOf(current), "Scheduled"), nodeName: NODE_NAME },
        }));
        return;
      case "Scheduled":
        if (!parsed.ok) return this.fail(namespace, name, `invalid VirtualMachineInstance spec: ${parsed.message}`);
        if (dueIn > 0) return this.queue.addAfter(key, dueIn);
        this.boot(namespace, name, parsed.value);
        return;
      default:
        return;
    }
  }

  /** Scheduled -> Running: the guest boots. */
  private boot(namespace: string, name: string, spec: VmiSpec): void {
    this.writeVmi(namespace, name, current => {
      let conditions: Condition[] = setCondition(conditionsOf(current), { type: "Ready", status: "True", lastProbeTime: null });
      if (hasGuestAgent(current)) conditions = setCondition(conditions, { type: "AgentConnected", status: "True", lastProbeTime: null });
      if (spec.startStrategy === "Paused")
        conditions = setCondition(conditions, { type: "Paused", status: "True", reason: "PausedStartStrategy", message: "VMI was paused by the start strategy", lastProbeTime: null });
      const status: Record<string, unknown> = {
        ...withPhase(statusOf(current), "Running"),
        conditions,
        interfaces: interfaceStatus(current, spec),
        guestOSInfo: hasGuestAgent(current) ? GUEST_OS_INFO : {},
        launcherContainerImageVersion: "sandbox/virt-launcher:v1",
      };
      return { ...current, metadata: { ...current.metadata, annotations: withBootRecord(current, spec) }, status };
    });
  }

  /** Deletion: the guest gets the ACPI power button and is destroyed when the grace period ends. */
  private shutDown(key: string, vmi: KubeObject, uid: string, phase: VmiPhase): void {
    const { namespace, name } = splitKey(key);
    if (phase !== "Running") return this.finalize(namespace, name, uid, isFinal(phase) ? phase : "Failed");
    if (!this.shutdownSince.has(uid)) {
      const deletedAt = Date.parse(vmi.metadata.deletionTimestamp ?? "");
      // A deletion seen for the first time just happened, unless this simulator restarted in the middle of it.
      this.shutdownSince.set(uid, Number.isFinite(deletedAt) && Date.now() - deletedAt > 2000 ? deletedAt : Date.now());
    }
    const acpi = conditionIsTrue(vmi, "Paused") ? undefined : acpiShutdownSeconds(vmi);
    const seconds = Math.min(graceSeconds(vmi), acpi ?? Infinity);
    const dueIn = this.shutdownSince.get(uid)! + seconds * 1000 - Date.now();
    if (dueIn > 0) return this.queue.addAfter(key, dueIn);
    this.finalize(namespace, name, uid, "Succeeded");
  }

  /** The guest is gone: final phase, then virt-handler drops its finalizer and the object disappears. */
  private finalize(namespace: string, name: string, uid: string, phase: VmiPhase): void {
    this.forget(uid);
    // Two writes like virt-handler: watchers see the final phase before the object goes away.
    this.writeVmi(namespace, name, current => (isFinal(phaseOf(current)) ? undefined : { ...current, status: this.stoppedStatus(current, phase) }));
    this.writeVmi(namespace, name, current => {
      if (!(current.metadata.finalizers ?? []).includes(VMI_FINALIZER)) return undefined;
      return { ...current, metadata: { ...current.metadata, finalizers: current.metadata.finalizers!.filter(f => f !== VMI_FINALIZER) } };
    });
    // An API server that keeps a finalizer-free object with a deletionTimestamp gets a second delete.
    const left = this.store.get(VMI, namespace, name);
    if (left?.metadata.uid === uid && left.metadata.deletionTimestamp && (left.metadata.finalizers ?? []).length === 0) this.store.delete(VMI, namespace, name);
  }

  private stoppedStatus(vmi: KubeObject, phase: VmiPhase): Record<string, unknown> {
    let conditions = removeCondition(removeCondition(conditionsOf(vmi), "AgentConnected"), "Paused");
    conditions = setCondition(conditions, { type: "Ready", status: "False", reason: "PodTerminating", message: "The guest is not running", lastProbeTime: null });
    return { ...withPhase(statusOf(vmi), phase), conditions };
  }

  private fail(namespace: string, name: string, message: string): void {
    this.writeVmi(namespace, name, current => {
      const conditions = setCondition(conditionsOf(current), { type: "Synchronized", status: "False", reason: "FailedCreate", message, lastProbeTime: null });
      return { ...current, status: { ...withPhase(statusOf(current), "Failed"), conditions } };
    });
  }

  private forget(uid: string): void {
    this.phaseSince.delete(uid);
    this.shutdownSince.delete(uid);
  }

  /** Writes metadata/spec and status; VMIs have no status subresource in KubeVirt, but stay correct if they do. */
  private writeVmi(namespace: string, name: string, change: (vmi: KubeObject) => KubeObject | undefined): KubeObject | undefined {
    let next: KubeObject | undefined;
    const written = this.store.mutate(VMI, namespace, name, current => (next = change(current)));
    if (!next || !this.store.resourceType(VMI).hasStatus) return written;
    const status = next.status;
    return this.store.mutate(VMI, namespace, name, current => ({ ...current, status }), { subresource: "status" }) ?? written;
  }

  // ---- guest and virt-handler actions (callers validate; these only act) ----

  pause(namespace: string, name: string): void {
    this.writeVmi(namespace, name, current => ({
      ...current,
      status: {
        ...statusOf(current),
        conditions: setCondition(conditionsOf(current), { type: "Paused", status: "True", reason: "PausedByUser", message: "VMI was paused by user", lastProbeTime: null }),
      },
    }));
  }

  unpause(namespace: string, name: string): void {
    this.writeVmi(namespace, name, current => ({ ...current, status: { ...statusOf(current), conditions: removeCondition(conditionsOf(current), "Paused") } }));
  }

  /** Hard reset: the same VMI boots again at once, from the same spec. */
  reset(namespace: string, name: string): void {
    this.writeVmi(namespace, name, current => {
      const parsed = parseVmiSpec(current);
      if (!parsed.ok) return undefined;
      return { ...current, metadata: { ...current.metadata, annotations: withBootRecord(current, parsed.value) } };
    });
  }

  /**
   * A reboot from inside the guest (or a soft reboot through the agent): boots again in place, unless the VMI
   * has rebootPolicy Terminate (libvirt on_reboot=destroy), which ends the VMI so the VM controller decides.
   */
  guestReboot(namespace: string, name: string): void {
    const vmi = this.requireRunning(namespace, name);
    const parsed = parseVmiSpec(vmi);
    if (parsed.ok && parsed.value.domain?.rebootPolicy === "Terminate") return this.guestPowerOff(namespace, name);
    this.reset(namespace, name);
  }

  /** The guest powers itself off: the VMI ends Succeeded; the VM's run strategy decides what follows. */
  guestPowerOff(namespace: string, name: string): void {
    const vmi = this.requireRunning(namespace, name);
    this.forget(vmi.metadata.uid ?? objectKey(namespace, name));
    this.writeVmi(namespace, name, current => ({ ...current, status: this.stoppedStatus(current, "Succeeded") }));
  }

  /** Soft reboot through the guest agent: the guest reboots one step later. */
  softReboot(namespace: string, name: string, uid: string | undefined): void {
    const timer = setTimeout(() => {
      this.guestTimers.delete(timer);
      const vmi = this.store.get(VMI, namespace, name);
      if (!vmi || vmi.metadata.uid !== uid || phaseOf(vmi) !== "Running" || vmi.metadata.deletionTimestamp) return;
      try {
        this.guestReboot(namespace, name);
      } catch {
        // The guest went away in the meantime: nothing to reboot.
      }
    }, this.stepDelayMs);
    this.guestTimers.add(timer);
  }

  private requireRunning(namespace: string, name: string): KubeObject {
    const vmi = this.store.get(VMI, namespace, name);
    if (!vmi) throw new Error(`VirtualMachineInstance ${namespace}/${name} does not exist`);
    if (phaseOf(vmi) !== "Running") throw new Error(`VirtualMachineInstance ${namespace}/${name} is not running (phase ${phaseOf(vmi) || "unset"})`);
    return vmi;
  }
}

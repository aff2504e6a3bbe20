// PowerState derivation: the VM's intent (runStrategy / running, state-change requests, our pending On)
// combined with what the VMI reports. Mirrors virt-controller's syncRunStrategy so that the state reported
// right after a request was accepted already says where the VM is heading (Ironic polls right away and
// counts PoweringOn as on).
import type { VmRecord, KubeObject } from "../cache/types";
import { mediaView } from "../media/model";
import {
  POWER_ON_REQUESTED_ANNOTATION,
  annotationOf,
  hasCondition,
  hasStartRequest,
  hasStopRequestFor,
  observedRunStrategyOf,
  printableStatusOf,
  runStrategyOf,
  specOf,
  vmiIsFinal,
  vmiPhaseOf,
} from "./vm-model";

export type PowerState = "On" | "Off" | "PoweringOn" | "PoweringOff" | "Paused";

/** Whether virt-controller will create a VMI by itself, given no VMI or a final one (syncRunStrategy). */
function controllerWillStart(vm: Readonly<KubeObject>, vmi: Readonly<KubeObject> | undefined): boolean {
  if (hasStartRequest(vm)) return true;
  switch (runStrategyOf(vm)) {
    case "Always":
      return true;
    case "Once":
      return vmi === undefined;
    case "RerunOnFailure":
      // A failed VMI is restarted; a succeeded one (guest powered off) is not. Without a VMI the controller
      // starts only when it arrives from another strategy (status.runStrategy not yet RerunOnFailure).
      if (vmi) return vmiPhaseOf(vmi) === "Failed";
      return observedRunStrategyOf(vm) !== "RerunOnFailure";
    default:
      return false;
  }
}

/** Whether a VMI that is going away will be replaced by a new one (restart rather than stop). */
function restartsAfterStop(vm: Readonly<KubeObject>): boolean {
  return hasStartRequest(vm) || runStrategyOf(vm) === "Always";
}

function isPaused(vm: Readonly<KubeObject>, vmi: Readonly<KubeObject>): boolean {
  return hasCondition(vmi, "Paused") || printableStatusOf(vm) === "Paused";
}

/** The state KubeVirt alone is heading to, ignoring a deferred On recorded by this module. */
export function deriveKubeVirtPowerState(rec: VmRecord): PowerState {
  const { vm, vmi } = rec;
  const vmiActive = vmi !== undefined && !vmiIsFinal(vmi);
  if (vm.metadata.deletionTimestamp) return vmiActive ? "PoweringOff" : "Off";
  if (!vmiActive) return controllerWillStart(vm, vmi) ? "PoweringOn" : "Off";

  const goingDown =
    Boolean(vmi.metadata.deletionTimestamp) || hasStopRequestFor(vm, vmi) || runStrategyOf(vm) === "Halted";
  if (goingDown) return restartsAfterStop(vm) ? "PoweringOn" : "PoweringOff";
  if (isPaused(vm, vmi)) return "Paused";
  const phase = vmiPhaseOf(vmi);
  // Unknown = virt-handler lost contact with the node; the guest was running and probably still is.
  return phase === "Running" || phase === "Unknown" ? "On" : "PoweringOn";
}

export function hasPendingPowerOn(rec: VmRecord): boolean {
  return annotationOf(rec.vm, POWER_ON_REQUESTED_ANNOTATION) !== undefined;
}

/**
 * The VM has no running VMI and its virtual CD holds a failed import: KubeVirt will not start it (DataVolumeError),
 * so a start it is heading to cannot happen.
 */
export function startBlockedByMedia(rec: VmRecord): boolean {
  const vmiActive = rec.vmi !== undefined && !vmiIsFinal(rec.vmi);
  return !vmiActive && mediaView(rec).import === "failed";
}

/**
 * Where the system is heading: On, Off, PoweringOn, PoweringOff or Paused. A start blocked by a failed media
 * import reads Off, not PoweringOn: Ironic counts PoweringOn as on, and the start will not happen. Power
 * decisions (PushPowerButton, Pause) use this; what the System reports is `reportedPowerState`.
 */
export function derivePowerState(rec: VmRecord): PowerState {
  const state = deriveKubeVirtPowerState(rec);
  if (state === "PoweringOn" && startBlockedByMedia(rec)) return "Off";
  if (rec.vm.metadata.deletionTimestamp) return state;
  // An accepted On waiting for the power-off to finish: the system is heading to On.
  if ((state === "Off" || state === "PoweringOff") && hasPendingPowerOn(rec)) return "PoweringOn";
  return state;
}

/**
 * The guest is shutting down gracefully (ACPI, the VMI's grace period is not 0) and still runs. A ForceOff cuts
 * the grace period to 0 first (virt-api stop with gracePeriod 0), so it does not count.
 */
export function gracefulShutdownInProgress(rec: VmRecord): boolean {
  const { vmi } = rec;
  if (!vmi || vmiIsFinal(vmi) || isPaused(rec.vm, vmi)) return false;
  const phase = vmiPhaseOf(vmi);
  if (phase !== "Running" && phase !== "Unknown") return false;
  const grace = specOf(vmi).terminationGracePeriodSeconds;
  return grace !== 0;
}

/**
 * The ComputerSystem's PowerState. As derivePowerState, except that a graceful shutdown reads On until the guest
 * is off: sushy and Ironic count PoweringOff as off, so `baremetal node power off --soft` would return while the
 * guest still runs (it may even refuse to stop) and Ironic's soft-power-off timeout would never escalate.
 */
export function reportedPowerState(rec: VmRecord): PowerState {
  const state = derivePowerState(rec);
  if (state === "PoweringOff" && !rec.vm.metadata.deletionTimestamp && gracefulShutdownInProgress(rec)) return "On";
  return state;
}

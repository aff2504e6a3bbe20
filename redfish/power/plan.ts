// ResetType → KubeVirt operations, as a pure function of the VM record: which writes to make (normally one),
// which KubeVirt refusals mean "already done", and what to answer. Executed by ./index.ts.
import type { JsonPatchOp } from "../kubevirt/driver";
import type { VmRecord } from "../cache/types";
import { BASE_REGISTRY, MessageId, RedfishError } from "../errors";
import { removeAnnotationOps, setAnnotationOps, setRunStrategyOps } from "./patch-ops";
import { derivePowerState, deriveKubeVirtPowerState, hasPendingPowerOn, type PowerState } from "./state";
import { POWER_ON_REQUESTED_ANNOTATION, hasCondition, hasStopRequestFor, runStrategyOf, vmiIsFinal } from "./vm-model";

export const RESET_TYPES = [
  "On",
  "ForceOff",
  "GracefulShutdown",
  "ForceRestart",
  "GracefulRestart",
  "PushPowerButton",
  "Pause",
  "Resume",
] as const;
export type ResetType = (typeof RESET_TYPES)[number];

export interface PowerSettings {
  /** After a Redfish On, a guest that powers itself off stays off (runStrategy RerunOnFailure). */
  powerOffStaysOff: boolean;
}

export type PowerWrite =
  | { kind: "vm"; subresource: "start" }
  | { kind: "vm"; subresource: "stop"; gracePeriod?: number }
  | { kind: "vm"; subresource: "restart"; gracePeriodSeconds?: number }
  | { kind: "vmi"; subresource: "pause" | "unpause" | "softreboot" | "reset" }
  | { kind: "patch"; ops: JsonPatchOp[] };

export interface PlannedWrite {
  write: PowerWrite;
  /** A 409 from virt-api means the VM is already where this write was taking it (e.g. stop of a stopped VM). */
  conflictMeansDone?: boolean;
  /** Used instead when virt-api has no such subresource (404): VMI `reset` only exists in newer KubeVirt. */
  fallbackIfMissing?: PowerWrite;
}

export interface PowerPlan {
  status: 202 | 204;
  writes: PlannedWrite[];
}

export interface PlanContext {
  settings: PowerSettings;
  /** The template differs from what the running VMI was created from (boot override, firmware, ...). */
  templateChangePending: boolean;
  now: () => Date;
}

const done: PowerPlan = { status: 204, writes: [] };

function patch(ops: JsonPatchOp[], status: 202 | 204 = 204): PowerPlan {
  return ops.length === 0 ? { status, writes: [] } : { status, writes: [{ write: { kind: "patch", ops } }] };
}

function notInState(resetType: string, state: PowerState, needs: string): RedfishError {
  return new RedfishError(
    409,
    `${BASE_REGISTRY}.ActionParameterValueConflict`,
    `ResetType ${resetType} needs a system that is ${needs}; its PowerState is ${state}.`,
    ["ResetType", resetType],
  );
}

export function unsupportedResetType(resetType: string): RedfishError {
  return new RedfishError(
    400,
    MessageId.ActionParameterNotSupported,
    `ResetType ${JSON.stringify(resetType)} is not supported by this system. Supported: ${RESET_TYPES.join(", ")}.`,
    ["ResetType", "#ComputerSystem.Reset"],
  );
}

/** Clears a deferred On recorded on the VM (an off request cancels it). */
function clearPendingOps(rec: VmRecord): JsonPatchOp[] {
  return removeAnnotationOps(rec.vm, POWER_ON_REQUESTED_ANNOTATION);
}

/**
 * Starts a VM that is off, in one patch. runStrategy Always starts a VM on every KubeVirt version without a
 * start request (a pending start request cannot be cancelled: a later switch to Halted turns it into Always).
 * With powerOffStaysOff the On is also marked on the VM (annotation): once the new VMI runs, the power
 * controller moves the VM to RerunOnFailure, KubeVirt's "restart only on failure", so a guest power-off stays
 * off. A VM on the deprecated spec.running keeps that field until then (running: true).
 */
export function powerOnPlan(rec: VmRecord, ctx: PlanContext): PowerPlan {
  const strategy = runStrategyOf(rec.vm);
  if (!ctx.settings.powerOffStaysOff) {
    const clear = clearPendingOps(rec);
    // Halted → Always is exactly virt-api's start (it picks `running` or `runStrategy` like the VM does).
    if (strategy === "Halted" && clear.length === 0) {
      return { status: 204, writes: [{ write: { kind: "vm", subresource: "start" }, conflictMeansDone: true }] };
    }
    return patch([...setRunStrategyOps(rec.vm, "Always"), ...clear]);
  }
  const mark = hasPendingPowerOn(rec) ? [] : setAnnotationOps(rec.vm, POWER_ON_REQUESTED_ANNOTATION, ctx.now().toISOString());
  return patch([...setRunStrategyOps(rec.vm, "Always"), ...mark]);
}

/**
 * The VMI a pending On produced: running or starting, and not on its way out. (A VMI that is shutting down is
 * the old one; switching strategy under it would cancel a restart.)
 */
export function hasFreshVmi(rec: VmRecord): boolean {
  const { vm, vmi } = rec;
  return vmi !== undefined && !vmiIsFinal(vmi) && !vmi.metadata.deletionTimestamp && !hasStopRequestFor(vm, vmi);
}

/**
 * What the power controller does for a VM with a pending On (undefined: nothing now): start it once it is off
 * (deferred On), then, when its new VMI exists, apply the power-off policy and drop the mark.
 */
export function pendingPowerOnPlan(rec: VmRecord, ctx: PlanContext): PowerPlan | undefined {
  if (!hasPendingPowerOn(rec) || rec.vm.metadata.deletionTimestamp) return undefined;
  const state = deriveKubeVirtPowerState(rec);
  if (state === "PoweringOff") return undefined; // still going down: wait for the next change
  if (state === "Off") return powerOnPlan(rec, ctx);
  if (!hasFreshVmi(rec)) return undefined; // start accepted, VMI not there yet (e.g. volumes importing)
  const align = ctx.settings.powerOffStaysOff && runStrategyOf(rec.vm) === "Always" ? setRunStrategyOps(rec.vm, "RerunOnFailure") : [];
  return patch([...align, ...clearPendingOps(rec)]);
}

/** Stops the VM: the stop subresource when a VMI runs, else the strategy goes to Halted (cancels a start). */
function powerOffPlan(rec: VmRecord, gracePeriod: number | undefined): PowerPlan {
  const clear = clearPendingOps(rec);
  const vmiActive = rec.vmi !== undefined && !vmiIsFinal(rec.vmi);
  if (!vmiActive) return patch([...setRunStrategyOps(rec.vm, "Halted"), ...clear]);
  const stop: PlannedWrite = {
    write: gracePeriod === undefined ? { kind: "vm", subresource: "stop" } : { kind: "vm", subresource: "stop", gracePeriod },
    conflictMeansDone: true,
  };
  // Cancel the deferred On first: once the stop lands, the power controller would otherwise start the VM.
  return { status: 204, writes: clear.length ? [{ write: { kind: "patch", ops: clear } }, stop] : [stop] };
}

/** On while powering off: recorded on the VM, applied by the power controller once the VM is off. */
function deferredOnPlan(rec: VmRecord, ctx: PlanContext): PowerPlan {
  if (hasPendingPowerOn(rec)) return { status: 202, writes: [] };
  return patch(setAnnotationOps(rec.vm, POWER_ON_REQUESTED_ANNOTATION, ctx.now().toISOString()), 202);
}

function onPlan(rec: VmRecord, ctx: PlanContext): PowerPlan {
  const kubevirt = deriveKubeVirtPowerState(rec);
  if (kubevirt === "Off") return powerOnPlan(rec, ctx);
  if (kubevirt === "PoweringOff") return deferredOnPlan(rec, ctx);
  // Already on (or starting, or paused): success. The run strategy is aligned with the policy, so that what a
  // guest power-off does next is the configured behaviour for this VM too (RerunOnFailure: stays off). A VM
  // still starting from a pending On is left to the power controller.
  const strategy = runStrategyOf(rec.vm);
  if (hasPendingPowerOn(rec)) return done;
  if (!ctx.settings.powerOffStaysOff) {
    return strategy === "RerunOnFailure" || strategy === "Manual" ? patch(setRunStrategyOps(rec.vm, "Always")) : done;
  }
  if (strategy !== "Always") return done;
  // Under a running VMI the switch is safe now; a VMI still to come is left to the power controller (mark).
  if (hasFreshVmi(rec)) return patch(setRunStrategyOps(rec.vm, "RerunOnFailure"));
  return patch(setAnnotationOps(rec.vm, POWER_ON_REQUESTED_ANNOTATION, ctx.now().toISOString()));
}

function gracefulShutdownPlan(rec: VmRecord): PowerPlan {
  const kubevirt = deriveKubeVirtPowerState(rec);
  // Off, or already shutting down: nothing to start, only a deferred On to cancel.
  if (kubevirt === "Off" || kubevirt === "PoweringOff") return patch(clearPendingOps(rec));
  return powerOffPlan(rec, undefined);
}

function forceOffPlan(rec: VmRecord): PowerPlan {
  if (deriveKubeVirtPowerState(rec) === "Off") return patch(clearPendingOps(rec));
  return powerOffPlan(rec, 0);
}

function restartPlan(rec: VmRecord, ctx: PlanContext, force: boolean): PowerPlan {
  const state = derivePowerState(rec);
  const kubevirt = deriveKubeVirtPowerState(rec);
  if (kubevirt === "Off") return powerOnPlan(rec, ctx);
  if (state === "PoweringOff") return deferredOnPlan(rec, ctx);
  // Starting (or restarting) already: the guest boots from scratch anyway.
  if (state === "PoweringOn") return done;

  const canRestart = runStrategyOf(rec.vm) !== "Once"; // virt-api refuses restart for Once (and Halted)
  const restart = (gracePeriodSeconds?: number): PlannedWrite => ({
    write:
      gracePeriodSeconds === undefined
        ? { kind: "vm", subresource: "restart" }
        : { kind: "vm", subresource: "restart", gracePeriodSeconds },
  });
  // A pending template change (e.g. a boot override) only reaches the guest through a new VMI; a paused guest
  // is restarted as a new VMI too (a reset would leave it paused, softreboot refuses it).
  if ((ctx.templateChangePending || state === "Paused") && canRestart) {
    return { status: 204, writes: [restart(force ? 0 : undefined)] };
  }
  if (force) {
    return {
      status: 204,
      writes: [
        {
          write: { kind: "vmi", subresource: "reset" },
          fallbackIfMissing: canRestart ? { kind: "vm", subresource: "restart", gracePeriodSeconds: 0 } : undefined,
        },
      ],
    };
  }
  const agentConnected = rec.vmi !== undefined && hasCondition(rec.vmi, "AgentConnected");
  if (state === "On" && (agentConnected || !canRestart)) {
    return { status: 204, writes: [{ write: { kind: "vmi", subresource: "softreboot" } }] };
  }
  return { status: 204, writes: [restart()] };
}

/**
 * The plan for one ResetType on one VM. Throws RedfishError for unsupported types (400) and for Pause/Resume
 * in a state they do not apply to (409).
 */
export function planReset(rec: VmRecord, resetType: string, ctx: PlanContext): PowerPlan {
  if (!(RESET_TYPES as readonly string[]).includes(resetType)) throw unsupportedResetType(resetType);
  const state = derivePowerState(rec);
  switch (resetType as ResetType) {
    case "On":
      return onPlan(rec, ctx);
    case "ForceOff":
      return forceOffPlan(rec);
    case "GracefulShutdown":
      return gracefulShutdownPlan(rec);
    case "ForceRestart":
      return restartPlan(rec, ctx, true);
    case "GracefulRestart":
      return restartPlan(rec, ctx, false);
    case "PushPowerButton":
      // Toggles the direction the system is heading: off or going off → on; on or coming on → shut down.
      return state === "Off" || state === "PoweringOff" ? onPlan(rec, ctx) : gracefulShutdownPlan(rec);
    case "Pause":
      if (state === "Paused") return done;
      if (state !== "On") throw notInState(resetType, state, "On");
      return { status: 204, writes: [{ write: { kind: "vmi", subresource: "pause" }, conflictMeansDone: true }] };
    case "Resume":
      if (state === "On") return done;
      if (state !== "Paused") throw notInState(resetType, state, "Paused");
      return { status: 204, writes: [{ write: { kind: "vmi", subresource: "unpause" }, conflictMeansDone: true }] };
  }
}

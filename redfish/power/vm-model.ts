// The VirtualMachine / VirtualMachineInstance fields power logic depends on, read through the shared typed
// accessors (../kubevirt/objects.ts).
import type { KubeObject } from "../cache/types";
import { asObject, statusOf, specOf } from "../kubevirt/objects";

export { annotationOf, hasCondition, specOf, statusOf } from "../kubevirt/objects";

/** Annotation (on the VM) recording an accepted On that waits for the VM to finish powering off. */
export const POWER_ON_REQUESTED_ANNOTATION = "kubevirt-infra.io/power-on-requested";

export type RunStrategy = "Always" | "Halted" | "Manual" | "RerunOnFailure" | "Once";
const RUN_STRATEGIES: readonly string[] = ["Always", "Halted", "Manual", "RerunOnFailure", "Once"];

/** How the VM expresses its run state: the deprecated `spec.running`, `spec.runStrategy`, or neither (= Halted). */
export type RunField = { field: "running"; value: boolean } | { field: "runStrategy"; value: string } | { field: "none" };

export function runFieldOf(vm: Readonly<KubeObject>): RunField {
  const spec = specOf(vm);
  if (typeof spec.runStrategy === "string") return { field: "runStrategy", value: spec.runStrategy };
  if (typeof spec.running === "boolean") return { field: "running", value: spec.running };
  return { field: "none" };
}

/** KubeVirt's VirtualMachine.RunStrategy(): running true = Always, false/absent = Halted. */
export function runStrategyOf(vm: Readonly<KubeObject>): RunStrategy {
  const run = runFieldOf(vm);
  if (run.field === "running") return run.value ? "Always" : "Halted";
  if (run.field === "runStrategy" && RUN_STRATEGIES.includes(run.value)) return run.value as RunStrategy;
  return "Halted";
}

export function vmiPhaseOf(vmi: Readonly<KubeObject>): string {
  const phase = statusOf(vmi).phase;
  return typeof phase === "string" ? phase : "";
}

/** Succeeded/Failed: the guest is gone; the VMI object is only a record of it. */
export function vmiIsFinal(vmi: Readonly<KubeObject>): boolean {
  const phase = vmiPhaseOf(vmi);
  return phase === "Succeeded" || phase === "Failed";
}

export interface StateChangeRequest {
  action: string;
  uid?: string;
}

export function stateChangeRequestsOf(vm: Readonly<KubeObject>): StateChangeRequest[] {
  const list = statusOf(vm).stateChangeRequests;
  if (!Array.isArray(list)) return [];
  return list.flatMap(item => {
    const r = asObject(item);
    if (!r || typeof r.action !== "string") return [];
    return [{ action: r.action, uid: typeof r.uid === "string" ? r.uid : undefined }];
  });
}

/** KubeVirt's hasStopRequestForVMI: the first request is a Stop aimed at this VMI (or at any). */
export function hasStopRequestFor(vm: Readonly<KubeObject>, vmi: Readonly<KubeObject>): boolean {
  const first = stateChangeRequestsOf(vm)[0];
  return first?.action === "Stop" && (first.uid === undefined || first.uid === vmi.metadata.uid);
}

export function hasStartRequest(vm: Readonly<KubeObject>): boolean {
  return stateChangeRequestsOf(vm).some(r => r.action === "Start");
}

export function printableStatusOf(vm: Readonly<KubeObject>): string {
  const s = statusOf(vm).printableStatus;
  return typeof s === "string" ? s : "";
}

/** `status.runStrategy`: the strategy virt-controller last acted on (differs from spec right after a change). */
export function observedRunStrategyOf(vm: Readonly<KubeObject>): string | undefined {
  const s = statusOf(vm).runStrategy;
  return typeof s === "string" ? s : undefined;
}

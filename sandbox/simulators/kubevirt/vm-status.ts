// The VirtualMachine status virt-controller writes (pkg/virt-controller/watch/vm.go): printableStatus by its
// first-match-wins order, ready/created, the Ready and Failure conditions, VMI conditions mirrored onto the VM,
// RestartRequired, the pending stateChangeRequests and the observed run strategy.
import type { KubeObject } from "../../apiserver/types";
import { type Condition, conditionsOf, findCondition, removeCondition, setCondition, statusOf } from "../common";
import {
  ANNOTATION,
  conditionIsTrue,
  hasStartRequest,
  hasStopRequestFor,
  isFinal,
  isStarting,
  phaseOf,
  type RunStrategy,
  type StateChangeRequest,
} from "./model";
import type { VolumeState } from "./volumes";

export interface VmStatusInput {
  vm: KubeObject;
  vmi?: KubeObject;
  strategy?: RunStrategy;
  /** status.runStrategy: the strategy the controller has acted on. */
  observedStrategy?: RunStrategy;
  requests: StateChangeRequest[];
  /** The sync error of this round (VM Failure condition), in KubeVirt's reason/message form. */
  failure?: { reason: string; message: string };
  volumes?: VolumeState;
  /** The controller wants a VMI that does not exist yet (waiting for volumes, or about to create it). */
  startPending: boolean;
  /** restartRelevantHash of the VM's current template. */
  templateHash?: string;
}

/** KubeVirt's isSetToStart: whether the run strategy currently asks for a running VMI. */
export function isSetToStart(strategy: RunStrategy | undefined, vmi: KubeObject | undefined, requests: StateChangeRequest[]): boolean {
  switch (strategy) {
    case "Always":
      return true;
    case "Manual":
      return vmi ? !hasStopRequestFor(requests, vmi) : hasStartRequest(requests);
    case "RerunOnFailure":
      return vmi ? phaseOf(vmi) !== "Succeeded" : true;
    case "Once":
      return !vmi;
    default:
      return false;
  }
}

export function printableStatus(input: VmStatusInput): string {
  const { vm, vmi, volumes } = input;
  const phase = vmi ? phaseOf(vmi) : "";
  const vmiAlive = !!vmi && !isFinal(phase);
  const running = vmiAlive && phase === "Running";
  if (vm.metadata.deletionTimestamp) return "Terminating";
  if (vmiAlive && (vmi.metadata.deletionTimestamp || hasStopRequestFor(input.requests, vmi))) return "Stopping";
  if (running && conditionIsTrue(vmi, "Paused")) return "Paused";
  if (running) return "Running";
  if (volumes?.error) return "DataVolumeError";
  if (volumes?.provisioning) return "Provisioning";
  if (volumes?.waitingForConsumer && isSetToStart(input.strategy, vmi, input.requests)) return "WaitingForVolumeBinding";
  // A start held back by a DataVolume that does not exist yet (the client creates it next) is provisioning too.
  if (!vmi && input.startPending && (volumes?.missing.length ?? 0) > 0) return "Provisioning";
  if (!vmi) return input.startPending ? "Starting" : "Stopped";
  if (isStarting(phase)) return "Starting";
  if (isFinal(phase)) return "Stopped";
  return "Unknown";
}

/** Conditions virt-controller does not copy from the VMI (it owns them on the VM). */
const VM_OWNED_CONDITIONS = new Set(["Ready", "Failure", "RestartRequired"]);

function vmConditions(prev: Condition[], input: VmStatusInput): Condition[] {
  const { vmi } = input;
  let conditions = prev;
  const vmiConditions = vmi ? conditionsOf(vmi) : [];
  const vmiReady = findCondition(vmiConditions, "Ready");
  if (!vmi) conditions = setCondition(conditions, { type: "Ready", status: "False", reason: "VMINotExists", message: "VMI does not exist", lastProbeTime: null });
  else if (!vmiReady)
    conditions = setCondition(conditions, { type: "Ready", status: "False", reason: "VMIConditionMissing", message: "VMI is missing the Ready condition", lastProbeTime: null });
  else conditions = setCondition(conditions, { type: "Ready", status: vmiReady.status, reason: vmiReady.reason, message: vmiReady.message, lastProbeTime: null });

  if (input.failure) conditions = setCondition(conditions, { type: "Failure", status: "True", ...input.failure, lastProbeTime: null });
  else conditions = removeCondition(conditions, "Failure");

  const stale = vmi && !isFinal(phaseOf(vmi)) && input.templateHash !== undefined && vmi.metadata.annotations?.[ANNOTATION.templateHash] !== input.templateHash;
  if (stale)
    conditions = setCondition(conditions, {
      type: "RestartRequired",
      status: "True",
      message: "a non-live-updatable field was changed in the template spec",
      lastProbeTime: null,
    });
  else conditions = removeCondition(conditions, "RestartRequired");

  // Mirror the VMI's own conditions (Paused, AgentConnected, ...) and drop those the VMI no longer has.
  const mirrored = new Set<string>();
  for (const c of vmiConditions) {
    if (VM_OWNED_CONDITIONS.has(c.type)) continue;
    mirrored.add(c.type);
    conditions = setCondition(conditions, { type: c.type, status: c.status, reason: c.reason, message: c.message, lastProbeTime: null });
  }
  return conditions.filter(c => VM_OWNED_CONDITIONS.has(c.type) || mirrored.has(c.type));
}

export function nextVmStatus(input: VmStatusInput): Record<string, unknown> {
  const { vm, vmi } = input;
  const prev = statusOf(vm);
  const status: Record<string, unknown> = { ...prev };
  status.printableStatus = printableStatus(input);
  status.conditions = vmConditions(conditionsOf(vm), input);
  // Go's omitempty: false booleans and empty lists are absent on a real VM.
  const ready = !!vmi && !isFinal(phaseOf(vmi)) && conditionIsTrue(vmi, "Ready");
  if (vmi) status.created = true;
  else delete status.created;
  if (ready) status.ready = true;
  else delete status.ready;
  if (input.requests.length > 0) status.stateChangeRequests = input.requests;
  else delete status.stateChangeRequests;
  if (input.observedStrategy) status.runStrategy = input.observedStrategy;
  const generation = vm.metadata.generation;
  if (typeof generation === "number") {
    status.observedGeneration = generation;
    status.desiredGeneration = generation;
  }
  return status;
}

// Redfish power for KubeVirt VMs: PowerState, ComputerSystem.Reset, and the controller that finishes power-ons.
//
// How the ResetTypes map (plan.ts has the details):
//   On               Off → runStrategy Always (spec.running: true for VMs on the deprecated field) in one patch,
//                    which starts a VM on every KubeVirt version without start requests; powering off → the On
//                    is recorded (annotation kubevirt-infra.io/power-on-requested, 202) and started by
//                    startPowerController once the VM is off.
//   ForceOff         virt-api `stop` with gracePeriod 0 (the VMI's grace period is cut before deletion).
//   GracefulShutdown virt-api `stop` (ACPI, honouring terminationGracePeriodSeconds).
//   ForceRestart     VMI `reset` (hard reset; VM `restart` with gracePeriodSeconds 0 where virt-api lacks it, or
//                    when the template changed since the VMI started, e.g. a boot override).
//   GracefulRestart  VMI `softreboot` when the guest agent is connected, else VM `restart`.
//   PushPowerButton  On when off or powering off, GracefulShutdown otherwise.
//   Pause / Resume   VMI `pause` / `unpause`.
// Guest power-off policy (powerOffStaysOff, default): an On also marks the VM; as soon as its new VMI exists the
// power controller switches the VM to runStrategy RerunOnFailure (replacing spec.running in the same patch),
// KubeVirt's own "restart only on failure": a guest that powers itself off stays off, whether the VM used
// Always, Halted, Manual or spec.running before. The switch is made while a VMI runs, where every KubeVirt
// version leaves the VMI alone. A watcher that halts VMs after a guest power-off would race virt-controller's
// restart under Always.
import { Log } from "pepr";
import {
  KubeApiError,
  patchVirtualMachine,
  putVirtualMachineInstanceAction,
  restartVirtualMachine,
  startVirtualMachine,
  stopVirtualMachine,
} from "../../capabilities/common/gateway";
import { startVmReconciler } from "../cache/reconciler";
import type { ClusterCache, VmRecord } from "../cache/types";
import { overrideAwaitingStart } from "../boot/override";
import { bootModeOf } from "../boot/firmware";
import { templateSpecOf } from "../boot/devices";
import { kubeFailure } from "./failures";
import { freshRecord } from "./fresh-record";
import {
  RESET_TYPES,
  pendingPowerOnPlan,
  planReset,
  unsupportedResetType,
  type PlanContext,
  type PowerPlan,
  type PowerSettings,
  type PowerWrite,
} from "./plan";
import { hasCondition } from "./vm-model";

export { RESET_TYPES, type PowerSettings } from "./plan";
export { derivePowerState, type PowerState } from "./state";
export { POWER_ON_REQUESTED_ANNOTATION } from "./vm-model";

let settings: PowerSettings = { powerOffStaysOff: true };

/** Sets the power policy (config `redfish.powerOffStaysOff`); takes effect for the next request. */
export function configurePower(next: PowerSettings): void {
  settings = { ...next };
}

/** The running VMI was created from an older template: only a new VMI (restart) picks the change up. */
export function templateChangePending(rec: VmRecord): boolean {
  if (!rec.vmi) return false;
  if (overrideAwaitingStart(rec) || hasCondition(rec.vm, "RestartRequired")) return true;
  const vmiSpec = typeof rec.vmi.spec === "object" && rec.vmi.spec !== null ? (rec.vmi.spec as Record<string, unknown>) : undefined;
  return bootModeOf(vmiSpec) !== bootModeOf(templateSpecOf(rec.vm));
}

function planContext(rec: VmRecord): PlanContext {
  return { settings, templateChangePending: templateChangePending(rec), now: () => new Date() };
}

async function execute(rec: VmRecord, write: PowerWrite): Promise<void> {
  const namespace = rec.vm.metadata.namespace!;
  const name = rec.vm.metadata.name!;
  switch (write.kind) {
    case "patch":
      return patchVirtualMachine(namespace, name, write.ops);
    case "vmi":
      return putVirtualMachineInstanceAction(namespace, name, write.subresource);
    case "vm":
      if (write.subresource === "start") return startVirtualMachine(namespace, name);
      if (write.subresource === "stop") return stopVirtualMachine(namespace, name, { gracePeriod: write.gracePeriod });
      return restartVirtualMachine(namespace, name, { gracePeriodSeconds: write.gracePeriodSeconds });
  }
}

/**
 * Runs a plan. A KubeVirt 409 on a write marked conflictMeansDone is success (idempotency when the cache was a
 * moment behind); a missing VMI `reset` falls back; a patch whose `test` failed (the cache entry was older than
 * the VM) is re-planned once from a fresh read.
 */
async function run(rec: VmRecord, plan: (rec: VmRecord) => PowerPlan, retried = false): Promise<{ status: 202 | 204; wrote: boolean }> {
  const planned = plan(rec);
  for (const step of planned.writes) {
    try {
      await execute(rec, step.write);
    } catch (e) {
      if (!(e instanceof KubeApiError)) throw e;
      if (e.status === 409 && step.conflictMeansDone) continue;
      if (e.status === 404 && step.fallbackIfMissing) {
        Log.info({ namespace: rec.vm.metadata.namespace, name: rec.vm.metadata.name }, "VMI reset unavailable: force restart instead");
        await execute(rec, step.fallbackIfMissing);
        continue;
      }
      if (e.status === 422 && step.write.kind === "patch" && !retried) {
        const fresh = await freshRecord(rec);
        if (fresh) return run(fresh, plan, true);
      }
      throw e;
    }
  }
  return { status: planned.status, wrote: planned.writes.length > 0 };
}

/**
 * ComputerSystem.Reset. One API write in the normal case, no waiting: 204 when done or under way, 202 when
 * the On is deferred until the VM has powered off. Throws RedfishError (400 unsupported ResetType,
 * 409 Pause/Resume in the wrong state or a conflicting change, 404/5xx cluster failures).
 */
export async function reset(rec: VmRecord, resetType: string): Promise<{ status: 202 | 204 }> {
  if (!(RESET_TYPES as readonly string[]).includes(resetType)) throw unsupportedResetType(resetType);
  try {
    const { status } = await run(rec, current => planReset(current, resetType, planContext(current)));
    return { status };
  } catch (e) {
    throw kubeFailure(e, rec);
  }
}

/**
 * Finishes accepted power-ons (annotation kubevirt-infra.io/power-on-requested): starts a VM whose On arrived
 * while it was powering off once it is off, and moves a VM started by On to RerunOnFailure once its VMI exists
 * (powerOffStaysOff). Driven by cache changes, no polling; the request lives on the VM, so a watcher restart
 * resumes it (the cache replays every object when it is seeded).
 */
export function startPowerController(cache: ClusterCache): () => void {
  const plan = (rec: VmRecord) => pendingPowerOnPlan(rec, planContext(rec));
  return startVmReconciler(cache, {
    needsWrite: rec => plan(rec) !== undefined,
    act: async rec => {
      const { wrote } = await run(rec, current => plan(current) ?? { status: 204, writes: [] });
      // Nothing written (nothing to write yet, or a fresh read found nothing): decide again on the next change.
      if (!wrote) return "look-again";
      const { namespace, name } = rec.vm.metadata;
      Log.info({ namespace, name }, "pending power-on advanced");
      return "await-newer-vm";
    },
    failureMessage: "pending power-on could not be advanced",
  });
}

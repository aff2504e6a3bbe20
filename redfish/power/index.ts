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
import { Log } from "../platform";
import { startVmReconciler } from "../cache/reconciler";
import type { ClusterCache, VmRecord } from "../cache/types";
import { overrideAwaitingStart } from "../boot/override";
import { firmwareChanged } from "../boot/firmware";
import { KubeApiError, clusterDriver, type KubeVirtDriver } from "../kubevirt/driver";
import { KubeVirtApiUnavailable, redfishFailure } from "../kubevirt/failures";
import { templateSpecOf, vmiSpecOf } from "../kubevirt/objects";
import { withFreshRecordOnConflict } from "../kubevirt/records";
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
import { derivePowerState } from "./state";
import { mediaView } from "../media/model";
import { IMPORT_FAILED_REASON } from "../tasks/derive";
import { RedfishError, MessageId } from "../errors";

export { RESET_TYPES, type PowerSettings } from "./plan";
export { derivePowerState, reportedPowerState, type PowerState } from "./state";
export { POWER_ON_REQUESTED_ANNOTATION } from "./vm-model";

/** What a power request runs with: the cluster to write to and the power policy in force. */
export interface PowerDeps {
  driver: KubeVirtDriver;
  settings: PowerSettings;
}

/** The running VMI was created from an older template: only a new VMI (restart) picks the change up. */
export function templateChangePending(rec: VmRecord): boolean {
  if (!rec.vmi) return false;
  if (overrideAwaitingStart(rec) || hasCondition(rec.vm, "RestartRequired")) return true;
  return firmwareChanged(vmiSpecOf(rec.vmi), templateSpecOf(rec.vm));
}

function planContext(rec: VmRecord, settings: PowerSettings): PlanContext {
  return { settings, templateChangePending: templateChangePending(rec), now: () => new Date() };
}

async function execute(driver: KubeVirtDriver, rec: VmRecord, write: PowerWrite): Promise<void> {
  const namespace = rec.vm.metadata.namespace!;
  const name = rec.vm.metadata.name!;
  switch (write.kind) {
    case "patch":
      await driver.patchVm(namespace, name, write.ops);
      return;
    case "vmi":
      return driver.guestAction(namespace, name, write.subresource);
    case "vm":
      if (write.subresource === "start") return driver.startVm(namespace, name);
      if (write.subresource === "stop") return driver.stopVm(namespace, name, { gracePeriod: write.gracePeriod });
      return driver.restartVm(namespace, name, { gracePeriodSeconds: write.gracePeriodSeconds });
  }
}

/** virt-api has no such route (older KubeVirt without VMI `reset`: a plain 404), or no such object. */
function isMissing(err: unknown): boolean {
  return err instanceof KubeVirtApiUnavailable || (err instanceof KubeApiError && err.status === 404);
}

/**
 * Runs a plan. A KubeVirt 409 on a write marked conflictMeansDone is success (idempotency when the cache was a
 * moment behind); a missing VMI `reset` falls back; a write that conflicts (the cache entry was older than the
 * VM) is re-planned once from a fresh read.
 */
function run(
  driver: KubeVirtDriver,
  rec: VmRecord,
  plan: (rec: VmRecord) => PowerPlan,
): Promise<{ status: 202 | 204; wrote: boolean }> {
  return withFreshRecordOnConflict(driver, rec, async current => {
    const planned = plan(current);
    for (const step of planned.writes) {
      try {
        await execute(driver, current, step.write);
      } catch (e) {
        if (step.conflictMeansDone && e instanceof KubeApiError && e.status === 409) continue;
        if (!step.fallbackIfMissing || !isMissing(e)) throw e;
        Log.info({ namespace: current.vm.metadata.namespace, name: current.vm.metadata.name }, "VMI reset unavailable: force restart instead");
        await execute(driver, current, step.fallbackIfMissing);
      }
    }
    return { status: planned.status, wrote: planned.writes.length > 0 };
  });
}

/**
 * ComputerSystem.Reset. One API write in the normal case, answered as soon as the API server accepted it: 204
 * when done or under way, 202 when the On is deferred until the VM has powered off. Throws RedfishError (400
 * unsupported ResetType, 409 Pause/Resume in the wrong state or a conflicting change, 404/5xx cluster failures, 503 when the
 * KubeVirt API is not served).
 */
export async function reset(rec: VmRecord, resetType: string, deps: PowerDeps): Promise<{ status: 202 | 204 }> {
  if (!(RESET_TYPES as readonly string[]).includes(resetType)) throw unsupportedResetType(resetType);
  if (startsGuest(rec, resetType)) refuseStartWithFailedMedia(rec, resetType);
  try {
    // The reply needs the API server's acceptance only; GETs show the transition as the watch cache sees it.
    const { status } = await run(deps.driver, rec, current => planReset(current, resetType, planContext(current, deps.settings)));
    return { status };
  } catch (e) {
    const { namespace, name } = rec.vm.metadata as { namespace: string; name: string };
    throw redfishFailure(e, { namespace, name }, `ComputerSystem.Reset ${resetType}`);
  }
}

/** Reset types that create a VMI from the current template (a start, or a restart into a new VMI). */
export function startsGuest(rec: VmRecord, resetType: string): boolean {
  switch (resetType) {
    case "On":
    case "ForceRestart":
    case "GracefulRestart":
      return true;
    case "PushPowerButton": {
      const state = derivePowerState(rec);
      return state === "Off" || state === "PoweringOff";
    }
    default:
      return false;
  }
}

/**
 * A start from a drive whose import failed cannot happen (KubeVirt keeps the VM in DataVolumeError): answer that
 * now, naming the image, so Ironic fails the deploy instead of waiting for a power state that never comes.
 * The reason is the tenant-safe one; CDI's is in the log and an Event (media/controller.ts).
 */
function refuseStartWithFailedMedia(rec: VmRecord, resetType: string): void {
  const view = mediaView(rec);
  if (view.import !== "failed") return;
  const { namespace, name } = rec.vm.metadata as { namespace: string; name: string };
  const image = view.image ?? "(unknown)";
  throw new RedfishError(
    409,
    MessageId.GeneralError,
    `ComputerSystem.Reset ${resetType} cannot start ${namespace}.${name}: the virtual media image ${image} could not be imported. ${IMPORT_FAILED_REASON}`,
    [],
    { resolution: "Eject the media or insert a reachable image, then power on again." },
  );
}

export interface PowerControllerOptions {
  driver?: KubeVirtDriver;
  /** The power policy in force (read on every decision: a config change applies to the next one). */
  settings: () => PowerSettings;
}

/**
 * Finishes accepted power-ons (annotation kubevirt-infra.io/power-on-requested): starts a VM whose On arrived
 * while it was powering off once it is off, and moves a VM started by On to RerunOnFailure once its VMI exists
 * (powerOffStaysOff). Driven by cache changes, no polling; the request lives on the VM, so a watcher restart
 * resumes it (the cache replays every object when it lists).
 */
export function startPowerController(cache: ClusterCache, options: PowerControllerOptions): () => void {
  const driver = options.driver ?? clusterDriver;
  const plan = (rec: VmRecord) => pendingPowerOnPlan(rec, planContext(rec, options.settings()));
  return startVmReconciler(cache, {
    needsWrite: rec => plan(rec) !== undefined,
    act: async rec => {
      const { wrote } = await run(driver, rec, current => plan(current) ?? { status: 204, writes: [] });
      // Nothing written (nothing to write yet, or a fresh read found nothing): decide again on the next change.
      if (!wrote) return "look-again";
      const { namespace, name } = rec.vm.metadata;
      Log.info({ namespace, name }, "pending power-on advanced");
      return "await-newer-vm";
    },
    failureMessage: "pending power-on could not be advanced",
  });
}

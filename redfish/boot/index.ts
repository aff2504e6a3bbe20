// Redfish boot override for KubeVirt VMs: the ComputerSystem `Boot` view, PATCH application and the
// controller that makes `Once` honest (the original order is back after the one start it applies to).
//
// State on the VM: annotation kubevirt-infra.io/boot-override (see override.ts); the boot order itself is the
// template's `bootOrder` values; the mode is `domain.firmware.bootloader`.
import { Log } from "../platform";
import { startVmReconciler } from "../cache/reconciler";
import { VmVersions } from "../cache/wait";
import type { ClusterCache, VmRecord } from "../cache/types";
import { clusterDriver, type JsonPatchOp, type KubeVirtDriver } from "../kubevirt/driver";
import { redfishFailure } from "../kubevirt/failures";
import { templateSpecOf } from "../kubevirt/objects";
import { withFreshRecordOnConflict } from "../kubevirt/records";
import { removeAnnotationOps } from "../power/patch-ops";
import { bootDevicesOf, restoredOrders } from "./devices";
import { bootModeOf } from "./firmware";
import { BOOT_OVERRIDE_ANNOTATION, overrideStatus } from "./override";
import { BOOT_ENABLED, BOOT_MODES, BOOT_TARGETS, bootOrderOps, parseBootPatch, planBootPatch } from "./patch";

export { BOOT_OVERRIDE_ANNOTATION } from "./override";

export interface BootView {
  BootSourceOverrideEnabled: (typeof BOOT_ENABLED)[number];
  BootSourceOverrideTarget: (typeof BOOT_TARGETS)[number];
  BootSourceOverrideMode: (typeof BOOT_MODES)[number];
  "BootSourceOverrideEnabled@Redfish.AllowableValues": readonly string[];
  "BootSourceOverrideTarget@Redfish.AllowableValues": readonly string[];
  "BootSourceOverrideMode@Redfish.AllowableValues": readonly string[];
}

/** The ComputerSystem `Boot` object. A Once override a VMI has already started from reads Disabled. */
export function bootView(rec: VmRecord): BootView {
  const status = overrideStatus(rec);
  const active = status.kind === "active" ? status.record : undefined;
  return {
    BootSourceOverrideEnabled: active?.enabled ?? "Disabled",
    BootSourceOverrideTarget: active?.target ?? "None",
    BootSourceOverrideMode: bootModeOf(templateSpecOf(rec.vm)),
    "BootSourceOverrideEnabled@Redfish.AllowableValues": BOOT_ENABLED,
    "BootSourceOverrideTarget@Redfish.AllowableValues": BOOT_TARGETS,
    "BootSourceOverrideMode@Redfish.AllowableValues": BOOT_MODES,
  };
}

/**
 * Writes `plan(rec)` as one JSON patch. When it conflicts (the cache entry was older than the VM), the plan is
 * recomputed once from a fresh read. With `shownBy`, resolves once that cache shows the write (a Redfish PATCH
 * whose client GETs the change next; at most CACHE_WAIT_MS). Returns false when there was nothing to write.
 */
export async function patchWithRetry(driver: KubeVirtDriver, rec: VmRecord, plan: (rec: VmRecord) => JsonPatchOp[], shownBy?: ClusterCache): Promise<boolean> {
  const { namespace, name } = rec.vm.metadata as { namespace: string; name: string };
  const versions = shownBy && new VmVersions(shownBy, namespace, name);
  try {
    const written = await withFreshRecordOnConflict(driver, rec, async current => {
      const ops = plan(current);
      if (ops.length === 0) return undefined;
      return { resourceVersion: await driver.patchVm(namespace, name, ops) };
    });
    if (!written) return false;
    if (versions && written.resourceVersion !== undefined) await versions.shown(written.resourceVersion);
    return true;
  } finally {
    versions?.stop();
  }
}

/**
 * Applies the `Boot` object of a ComputerSystem PATCH (validated here). Target and Enabled rewrite the
 * template's boot order; Mode its firmware; both take effect when the VM next starts.
 * Throws RedfishError (400 invalid body, 409 no device for the target, 404/5xx cluster failures).
 */
export async function applyBootPatch(driver: KubeVirtDriver, rec: VmRecord, boot: unknown, shownBy?: ClusterCache): Promise<void> {
  const patch = parseBootPatch(boot);
  try {
    await patchWithRetry(driver, rec, current => planBootPatch(current, patch), shownBy);
  } catch (e) {
    const { namespace, name } = rec.vm.metadata as { namespace: string; name: string };
    throw redfishFailure(e, { namespace, name }, "the Boot change");
  }
}

/** The patch that puts back the original order after a used Once override (empty if nothing to do). */
export function restorePlan(rec: VmRecord): JsonPatchOp[] {
  const status = overrideStatus(rec);
  if (status.kind !== "used") return [];
  const orders = restoredOrders(bootDevicesOf(templateSpecOf(rec.vm)), status.record.original);
  const ops = bootOrderOps(rec, orders);
  return [...ops, ...removeAnnotationOps(rec.vm, BOOT_OVERRIDE_ANNOTATION)];
}

/**
 * Watches the cache for VMIs created from a Once-overridden template and restores the template order right
 * away (safe: the VMI has its own copy). Event-driven, idempotent; the state lives in the annotation, so a
 * restart of the watcher picks up where it left off.
 */
export function startBootController(cache: ClusterCache, driver: KubeVirtDriver = clusterDriver): () => void {
  return startVmReconciler(cache, {
    needsWrite: rec => restorePlan(rec).length > 0,
    act: async rec => {
      if (await patchWithRetry(driver, rec, restorePlan)) {
        const { namespace, name } = rec.vm.metadata;
        Log.info({ namespace, name }, "boot override Once used by a VM start: original boot order restored");
      }
      // Nothing written: the fresh read after a failed `test` found the order restored, so the record is stale.
      return "await-newer-vm";
    },
    failureMessage: "restoring the boot order failed",
  });
}

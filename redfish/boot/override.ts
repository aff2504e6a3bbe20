// The boot override as recorded on the VM (annotation), and what it means given the VM and its VMI now.
// The annotation is the only state: it survives restarts of the module and is read back from the cache.
import { z } from "zod";
import type { KubeObject, VmRecord } from "../cache/types";
import { templateSpecOf, vmiSpecOf } from "../kubevirt/objects";
import { CD_VOLUME } from "../media/model";
import { annotationJson } from "./annotation-json";
import { bootDevicesOf, matchesOrders } from "./devices";

export const BOOT_OVERRIDE_ANNOTATION = "kubevirt-infra.io/boot-override";

const bootOrdersSchema = z.record(z.string(), z.number().int().positive().nullable());

const overrideSchema = z.object({
  target: z.enum(["Pxe", "Cd", "Hdd"]),
  enabled: z.enum(["Once", "Continuous"]),
  /** bootOrder of every device before the first override: what None/Disabled and a used Once restore. */
  original: bootOrdersSchema,
  /** The orders this override wrote into the template. */
  applied: bootOrdersSchema,
  /** Once: uid of the VMI that existed when the override was set (it did not boot from it). */
  vmiUid: z.string().optional(),
});

export type BootOverrideRecord = z.infer<typeof overrideSchema>;

export function serializeOverride(rec: BootOverrideRecord): string {
  return JSON.stringify(rec);
}

/** The recorded override, or undefined when none (or unreadable: logged, then treated as none). */
export function recordedOverride(vm: Readonly<KubeObject>): BootOverrideRecord | undefined {
  return annotationJson(vm, BOOT_OVERRIDE_ANNOTATION, overrideSchema);
}

/** The template key of the virtual CD drive, whether or not it holds media now. */
export const VIRTUAL_DRIVE_KEY = `disk/${CD_VOLUME}`;

function isVirtualDriveKey(record: BootOverrideRecord, key: string): boolean {
  return record.target === "Cd" && key === VIRTUAL_DRIVE_KEY;
}

/**
 * The bootOrder an override in force gives the virtual CD drive, for InsertMedia to put on the drive it adds
 * (undefined when no override is waiting for it). Read from the VM alone: the record and the template.
 */
export function pendingVirtualDriveOrder(vm: Readonly<KubeObject>): number | undefined {
  const record = recordedOverride(vm);
  const order = record?.applied[VIRTUAL_DRIVE_KEY];
  if (!record || typeof order !== "number") return undefined;
  return matchesOrders(bootDevicesOf(templateSpecOf(vm)), record.applied) ? order : undefined;
}

export type OverrideStatus =
  /** No override recorded (or the record no longer describes the template: someone changed the order). */
  | { kind: "none"; record?: BootOverrideRecord }
  /**
   * In force: the template carries the override (Once: not yet used by a VMI start). A Cd override of the
   * virtual drive stays in force while the drive is empty; its orders apply when media is inserted.
   */
  | { kind: "active"; record: BootOverrideRecord }
  /** A Once override a VMI has started from: the template order must go back to the original. */
  | { kind: "used"; record: BootOverrideRecord };

/** Whether the VMI was created from the overridden template (the VMI copies the template at creation). */
function vmiStartedFrom(record: BootOverrideRecord, vmi: Readonly<KubeObject> | undefined): boolean {
  if (!vmi || vmi.metadata.uid === record.vmiUid) return false;
  return matchesOrders(bootDevicesOf(vmiSpecOf(vmi)), record.applied);
}

export function overrideStatus(rec: VmRecord): OverrideStatus {
  const record = recordedOverride(rec.vm);
  if (!record) return { kind: "none" };
  const template = bootDevicesOf(templateSpecOf(rec.vm));
  const firstKey = Object.keys(record.applied).find(k => record.applied[k] === 1);
  const firstPresent = firstKey !== undefined && (template.some(d => d.key === firstKey) || isVirtualDriveKey(record, firstKey));
  const stillApplied = matchesOrders(template, record.applied) && firstPresent;
  if (!stillApplied) return { kind: "none", record };
  if (record.enabled === "Once" && vmiStartedFrom(record, rec.vmi)) return { kind: "used", record };
  return { kind: "active", record };
}

/** An override the running guest has not booted from yet: a restart must recreate the VMI to honour it. */
export function overrideAwaitingStart(rec: VmRecord): boolean {
  const status = overrideStatus(rec);
  if (status.kind !== "active") return false;
  return !rec.vmi || !matchesOrders(bootDevicesOf(vmiSpecOf(rec.vmi)), status.record.applied);
}


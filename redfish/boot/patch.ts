// PATCH of ComputerSystem.Boot: validation, then one JSON patch of the VM template (boot orders, firmware)
// and the override annotation.
import { z } from "zod";
import type { JsonPatchOp } from "../kubevirt/driver";
import type { VmRecord } from "../cache/types";
import { BASE_REGISTRY, MessageId, RedfishError } from "../errors";
import { removeAnnotationOps, resourceVersionTest, setAnnotationOps } from "../power/patch-ops";
import {
  applyOrdersToList,
  bootDevicesOf,
  emptyVirtualDrive,
  devicesOf,
  ordersOf,
  overrideOrders,
  restoredOrders,
  templateSpecOf,
  withOrders,
  type BootOrders,
  type OverrideTarget,
} from "./devices";
import { bootModeOps } from "./firmware";
import { CD_VOLUME } from "../media/model";
import { BOOT_OVERRIDE_ANNOTATION, overrideStatus, serializeOverride, type BootOverrideRecord } from "./override";

export const BOOT_TARGETS = ["None", "Pxe", "Cd", "Hdd"] as const;
export const BOOT_ENABLED = ["Disabled", "Once", "Continuous"] as const;
export const BOOT_MODES = ["UEFI", "Legacy"] as const;

const bootPatchSchema = z
  .object({
    BootSourceOverrideTarget: z.enum(BOOT_TARGETS).optional(),
    BootSourceOverrideEnabled: z.enum(BOOT_ENABLED).optional(),
    BootSourceOverrideMode: z.enum(BOOT_MODES).optional(),
  })
  .strict();

export type BootPatch = z.infer<typeof bootPatchSchema>;

/** Boot properties a client may read but not write (sent back verbatim by some clients). */
const READ_ONLY_BOOT_PROPERTIES = /@Redfish\.AllowableValues$|^BootOrder$|^BootNext$|^UefiTargetBootSourceOverride$/;

function describe(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value) ?? String(value);
}

/** Validates the `Boot` object of a ComputerSystem PATCH; errors name the property, as Redfish clients expect. */
export function parseBootPatch(boot: unknown): BootPatch {
  if (typeof boot !== "object" || boot === null || Array.isArray(boot)) {
    throw new RedfishError(400, MessageId.PropertyValueTypeError, `The value ${describe(boot)} for Boot must be an object.`, [
      describe(boot),
      "Boot",
    ]);
  }
  const parsed = bootPatchSchema.safeParse(boot);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0];
    if (READ_ONLY_BOOT_PROPERTIES.test(key)) {
      throw new RedfishError(400, MessageId.PropertyNotWritable, `The property Boot/${key} is read-only.`, [`Boot/${key}`]);
    }
    throw new RedfishError(400, MessageId.PropertyUnknown, `The property Boot/${key} is not a known writable Boot property.`, [
      `Boot/${key}`,
    ]);
  }
  const property = String(issue.path[0]);
  const value = (boot as Record<string, unknown>)[property];
  if (typeof value === "string") {
    const allowed = property === "BootSourceOverrideTarget" ? BOOT_TARGETS : property === "BootSourceOverrideEnabled" ? BOOT_ENABLED : BOOT_MODES;
    throw new RedfishError(
      400,
      MessageId.PropertyValueNotInList,
      `The value ${value} for Boot/${property} is not one of: ${allowed.join(", ")}.`,
      [value, `Boot/${property}`],
    );
  }
  throw new RedfishError(400, MessageId.PropertyValueTypeError, `The value ${describe(value)} for Boot/${property} must be a string.`, [
    describe(value),
    `Boot/${property}`,
  ]);
}

const TARGET_DEVICE: Record<Exclude<OverrideTarget, "Cd">, { what: string; hint: string }> = {
  Pxe: { what: "a network interface", hint: "Add an interface to the VirtualMachine." },
  Hdd: { what: "a disk", hint: "Add a disk to the VirtualMachine." },
};

function missingDevice(rec: VmRecord, target: Exclude<OverrideTarget, "Cd">): RedfishError {
  const { namespace, name } = rec.vm.metadata;
  const systemUri = `/redfish/v1/Systems/${namespace}.${name}`;
  const { what, hint } = TARGET_DEVICE[target];
  return new RedfishError(
    409,
    `${BASE_REGISTRY}.PropertyValueResourceConflict`,
    `Boot/BootSourceOverrideTarget ${target} needs ${what}, and VirtualMachine ${namespace}/${name} has none. ${hint}`,
    ["Boot/BootSourceOverrideTarget", target, systemUri],
    { relatedProperties: ["#/Boot/BootSourceOverrideTarget"] },
  );
}

/** The override the PATCH asks for, given the one in force: undefined = no override. */
function desiredOverride(
  patch: BootPatch,
  current: BootOverrideRecord | undefined,
): { target: OverrideTarget; enabled: "Once" | "Continuous" } | undefined {
  const target = patch.BootSourceOverrideTarget ?? current?.target ?? "None";
  const enabled = patch.BootSourceOverrideEnabled ?? (current ? current.enabled : "Once");
  if (target === "None" || enabled === "Disabled") return undefined;
  return { target, enabled };
}

/**
 * Replace of the template's disks / interfaces lists that the orders change, guarded by the VM's resourceVersion:
 * orders must stay unique across both lists, so a patch planned from a cache entry that is a moment old must not
 * land on lists someone else changed meanwhile (it fails, and is re-planned from a fresh read).
 */
export function bootOrderOps(rec: VmRecord, orders: BootOrders): JsonPatchOp[] {
  const templateSpec = templateSpecOf(rec.vm);
  const devices = devicesOf(templateSpec);
  const implicitDisks = bootDevicesOf(templateSpec)
    .filter(d => d.implicit)
    .map(d => d.name);
  const ops: JsonPatchOp[] = [];
  for (const [list, kind] of [
    ["disks", "disk"],
    ["interfaces", "interface"],
  ] as const) {
    const current = devices?.[list];
    const next = applyOrdersToList(Array.isArray(current) ? current : [], kind, orders, kind === "disk" ? implicitDisks : []);
    if (JSON.stringify(next) === JSON.stringify(current ?? [])) continue;
    const path = `/spec/template/spec/domain/devices/${list}`;
    ops.push({ op: Array.isArray(current) ? "replace" : "add", path, value: next });
  }
  return ops.length > 0 ? [resourceVersionTest(rec.vm), ...ops] : ops;
}

/**
 * The virtual-media drive, when the VM has one: a CD-ROM whose volume is a DataVolume the VM owns (virtual media
 * imports are owned by their VM). Cd prefers it over other CD-ROMs (e.g. a cloud-init or driver disk).
 */
export function virtualMediaCdrom(rec: VmRecord): string | undefined {
  const templateSpec = templateSpecOf(rec.vm);
  const volumes = Array.isArray(templateSpec?.volumes) ? (templateSpec.volumes as unknown[]) : [];
  const ownedClaims = new Set(
    rec.dataVolumes
      .filter(dv => (dv.metadata.ownerReferences ?? []).some(r => r.kind === "VirtualMachine" && r.uid === rec.vm.metadata.uid))
      .map(dv => dv.metadata.name),
  );
  const claimOf = (volume: unknown): string | undefined => {
    const v = volume as { dataVolume?: { name?: unknown }; persistentVolumeClaim?: { claimName?: unknown } } | null;
    const claim = v?.dataVolume?.name ?? v?.persistentVolumeClaim?.claimName;
    return typeof claim === "string" ? claim : undefined;
  };
  return bootDevicesOf(templateSpec)
    .filter(d => d.media === "cdrom")
    .find(d => {
      const volume = volumes.find(v => (v as { name?: unknown } | null)?.name === d.name);
      const claim = claimOf(volume);
      return claim !== undefined && ownedClaims.has(claim);
    })?.name;
}

/**
 * The VM patch for a Boot PATCH (empty when nothing changes). Orders are always computed from the original
 * order (the one before any override), so switching targets or modes never stacks overrides.
 */
export function planBootPatch(rec: VmRecord, patch: BootPatch): JsonPatchOp[] {
  const status = overrideStatus(rec);
  const templateDevices = bootDevicesOf(templateSpecOf(rec.vm));
  // With an override recorded and still in the template, the baseline is the saved original order.
  const original = status.kind === "none" ? ordersOf(templateDevices) : restoredOrders(templateDevices, status.record.original);
  const current = status.kind === "active" ? status.record : undefined;
  const wanted = desiredOverride(patch, current);

  const ops: JsonPatchOp[] = [];
  const touchesOverride = patch.BootSourceOverrideTarget !== undefined || patch.BootSourceOverrideEnabled !== undefined;
  if (touchesOverride || status.kind === "used") {
    if (!wanted) {
      ops.push(...bootOrderOps(rec, original), ...removeAnnotationOps(rec.vm, BOOT_OVERRIDE_ANNOTATION));
    } else {
      const devices = withOrders(templateDevices, original);
      // Cd on a VM without any CD-ROM targets the empty virtual drive: recorded now, on the drive InsertMedia adds.
      const applied =
        overrideOrders(devices, wanted.target, virtualMediaCdrom(rec)) ??
        (wanted.target === "Cd" ? overrideOrders([...devices, emptyVirtualDrive(devices, CD_VOLUME)], "Cd") : undefined);
      if (!applied) throw missingDevice(rec, wanted.target as Exclude<OverrideTarget, "Cd">);
      const record: BootOverrideRecord = {
        target: wanted.target,
        enabled: wanted.enabled,
        original,
        applied,
        ...(wanted.enabled === "Once" && rec.vmi?.metadata.uid ? { vmiUid: rec.vmi.metadata.uid } : {}),
      };
      const unchanged =
        current && current.target === record.target && current.enabled === record.enabled && JSON.stringify(current.applied) === JSON.stringify(applied);
      if (!unchanged) {
        ops.push(...bootOrderOps(rec, applied), ...setAnnotationOps(rec.vm, BOOT_OVERRIDE_ANNOTATION, serializeOverride(record)));
      }
    }
  }
  if (patch.BootSourceOverrideMode) ops.push(...bootModeOps(rec.vm, patch.BootSourceOverrideMode));
  return ops;
}

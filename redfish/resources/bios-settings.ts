// Pending Bios settings (the `@Redfish.Settings` object `Systems/{id}/Bios/Settings`): the writable attributes are
// the ones that map to a VM change, BootMode (the Boot BootSourceOverrideMode rebuild) and SecureBoot (the
// SecureBoot PATCH). A PATCH records them in a VM annotation, so a watcher restart keeps them; a Reset that starts the
// guest writes them into the template first (SupportedApplyTimes OnReset), so the new VMI boots with them.
import { z } from "zod";
import { Log } from "../platform";
import { patchWithRetry } from "../boot";
import { annotationJson } from "../boot/annotation-json";
import { bootModeOps, bootModeOf } from "../boot/firmware";
import type { ClusterCache, KubeObject, VmRecord } from "../cache/types";
import { BASE_REGISTRY, RedfishError, baseError } from "../errors";
import type { KubeVirtDriver } from "../kubevirt/driver";
import { redfishFailure } from "../kubevirt/failures";
import { templateSpecOf } from "../kubevirt/objects";
import { readFreshRecord } from "../kubevirt/records";
import { parseBody } from "../odata";
import { removeAnnotationOps, setAnnotationOps } from "../power/patch-ops";
import { systemUri } from "./context";
import { configuredFirmware } from "./hardware";
import { secureBootPlan } from "./secure-boot";

export const BIOS_SETTINGS_ANNOTATION = "kubevirt-infra.io/bios-settings";
export const BIOS_APPLY_TIMES = ["OnReset"] as const;

const bootModeValues = z.enum(["Uefi", "Bios"]);
const secureBootValues = z.enum(["Enabled", "Disabled"]);
const pendingSchema = z.strictObject({ BootMode: bootModeValues.optional(), SecureBoot: secureBootValues.optional() });

/** The attributes waiting for the next start, by Bios attribute name. */
export type PendingBiosSettings = z.infer<typeof pendingSchema>;
export const WRITABLE_BIOS_ATTRIBUTES: readonly string[] = Object.keys(pendingSchema.shape);

const settingsPatchSchema = z.strictObject({
  Attributes: pendingSchema,
  // sushy sends the annotation's type with it (#Settings.v1_0_0.PreferredApplyTime).
  "@Redfish.SettingsApplyTime": z.strictObject({ "@odata.type": z.string().optional(), ApplyTime: z.enum(BIOS_APPLY_TIMES) }).optional(),
});

/** The pending settings recorded on the VM; an unreadable annotation is logged (once) and counts as none. */
export function pendingBiosSettings(vm: Readonly<KubeObject>): PendingBiosSettings {
  return annotationJson(vm, BIOS_SETTINGS_ANNOTATION, pendingSchema) ?? {};
}

/**
 * The body of a Bios/Settings PATCH: `Attributes` with writable attributes and values from their lists, and
 * optionally `@Redfish.SettingsApplyTime` OnReset. `readOnly` are the attribute names Bios shows but that cannot be
 * set (400 PropertyNotWritable); any other name is 400 PropertyUnknown.
 */
export function parseBiosSettingsPatch(body: Record<string, unknown>, readOnly: readonly string[]): PendingBiosSettings {
  const properties = Object.fromEntries(Object.entries(body).filter(([key]) => !key.startsWith("@odata.")));
  for (const key of Object.keys(properties)) {
    if (key in settingsPatchSchema.shape) continue;
    const shown = key.slice(0, 100);
    const related = { relatedProperties: [`#/${shown}`] };
    if (["Id", "Name", "Description"].includes(key)) throw baseError(400, "PropertyNotWritable", [shown], related);
    throw baseError(400, "PropertyUnknown", [shown], related);
  }
  const attributes = properties.Attributes;
  if (attributes !== null && typeof attributes === "object" && !Array.isArray(attributes)) {
    for (const name of Object.keys(attributes)) {
      if (WRITABLE_BIOS_ATTRIBUTES.includes(name)) continue;
      const shown = name.slice(0, 100);
      const related = { relatedProperties: [`#/Attributes/${shown}`] };
      if (readOnly.includes(name)) throw baseError(400, "PropertyNotWritable", [`Attributes/${shown}`], related);
      throw baseError(400, "PropertyUnknown", [`Attributes/${shown}`], related);
    }
  }
  return parseBody(settingsPatchSchema, properties).Attributes;
}

/** 409 when the settings the next start would get ask for secure boot on legacy BIOS firmware. */
function checkConsistent(rec: VmRecord, pending: PendingBiosSettings): void {
  const bootMode = pending.BootMode ?? (bootModeOf(templateSpecOf(rec.vm)) === "UEFI" ? "Uefi" : "Bios");
  if (bootMode !== "Bios" || pending.SecureBoot !== "Enabled") return;
  const { namespace, name } = rec.vm.metadata;
  throw new RedfishError(
    409,
    `${BASE_REGISTRY}.PropertyValueResourceConflict`,
    `SecureBoot Enabled needs UEFI firmware, and VirtualMachine ${namespace}/${name} would start with legacy BIOS. Set the BootMode attribute to Uefi too.`,
    ["Attributes/SecureBoot", "Enabled", `${systemUri(`${namespace}.${name}`)}/Bios`],
    { relatedProperties: ["#/Attributes/SecureBoot"] },
  );
}

function recordPendingOps(rec: VmRecord, pending: PendingBiosSettings) {
  checkConsistent(rec, pending);
  if (Object.keys(pending).length === 0) return removeAnnotationOps(rec.vm, BIOS_SETTINGS_ANNOTATION);
  const value = JSON.stringify(pending);
  if (rec.vm.metadata.annotations?.[BIOS_SETTINGS_ANNOTATION] === value) return [];
  return setAnnotationOps(rec.vm, BIOS_SETTINGS_ANNOTATION, value);
}

async function writePending(driver: KubeVirtDriver, rec: VmRecord, plan: (rec: VmRecord) => PendingBiosSettings, what: string, shownBy?: ClusterCache) {
  try {
    await patchWithRetry(driver, rec, current => recordPendingOps(current, plan(current)), shownBy);
  } catch (e) {
    const { namespace, name } = rec.vm.metadata as { namespace: string; name: string };
    throw redfishFailure(e, { namespace, name }, what);
  }
}

/** Bios/Settings PATCH: the attributes are added to the ones already pending (the VM's annotation). */
export function recordBiosSettings(driver: KubeVirtDriver, rec: VmRecord, patch: PendingBiosSettings, shownBy?: ClusterCache): Promise<void> {
  return writePending(driver, rec, current => ({ ...pendingBiosSettings(current.vm), ...patch }), "the Bios settings change", shownBy);
}

/**
 * Bios.ResetBios: the writable attributes go back to the defaults of the VM's firmware kind at the next start, as on
 * a physical BIOS. UEFI: SecureBoot Disabled (what a switch to UEFI writes: secure boot needs SMM and signed
 * guests); legacy BIOS has no writable attribute to reset. The boot mode stays: it is the kind of firmware the VM
 * has, not a setting inside it. Replaces whatever was pending.
 */
export function resetBiosSettings(driver: KubeVirtDriver, rec: VmRecord, shownBy?: ClusterCache): Promise<void> {
  return writePending(
    driver,
    rec,
    current => (configuredFirmware(current).bootMode === "UEFI" ? { SecureBoot: "Disabled" } : {}),
    "Bios.ResetBios",
    shownBy,
  );
}

/**
 * Writes the pending settings into the template before a start (the boot mode rebuild, then secure boot with the
 * annotation removed in the same patch) and returns the VM as stored now, so the power plan sees the change.
 * Returns `rec` itself when nothing is pending. Each write is idempotent: one that fails leaves the rest pending,
 * and the next start finishes it.
 */
export async function applyPendingBiosSettings(driver: KubeVirtDriver, rec: VmRecord): Promise<VmRecord> {
  if (rec.vm.metadata.annotations?.[BIOS_SETTINGS_ANNOTATION] === undefined) return rec;
  const { namespace, name } = rec.vm.metadata as { namespace: string; name: string };
  try {
    await patchWithRetry(driver, rec, current => {
      const { BootMode } = pendingBiosSettings(current.vm);
      return BootMode ? bootModeOps(current.vm, BootMode === "Uefi" ? "UEFI" : "Legacy") : [];
    });
    const afterBootMode = await readFreshRecord(driver, rec);
    await patchWithRetry(driver, afterBootMode, current => {
      const { SecureBoot } = pendingBiosSettings(current.vm);
      const secureBoot = SecureBoot ? secureBootPlan(current, SecureBoot === "Enabled", { name: "Attributes/SecureBoot", value: SecureBoot }) : [];
      return [...secureBoot, ...removeAnnotationOps(current.vm, BIOS_SETTINGS_ANNOTATION)];
    });
  } catch (e) {
    throw redfishFailure(e, { namespace, name }, "applying the pending Bios settings");
  }
  Log.info({ namespace, name }, "pending Bios settings written to the template for this start");
  return readFreshRecord(driver, rec);
}

// Boot mode = the VM's firmware: `domain.firmware.bootloader.efi` is UEFI, `bios` (or nothing, KubeVirt's
// default) is Legacy. A change edits the template, so it takes effect at the next start of the VM.
import type { JsonPatchOp } from "../kubevirt/driver";
import { asObject, templateSpecOf } from "../kubevirt/objects";

export type BootMode = "UEFI" | "Legacy";

export function firmwareOf(podSpec: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  return asObject(asObject(podSpec?.domain)?.firmware);
}

export function bootModeOf(podSpec: Record<string, unknown> | undefined): BootMode {
  return asObject(firmwareOf(podSpec)?.bootloader)?.efi !== undefined ? "UEFI" : "Legacy";
}

/** Secure boot as KubeVirt reads the spec: only with EFI, and on for `efi: {}` unless `secureBoot: false`. */
function secureBootOf(podSpec: Record<string, unknown> | undefined): boolean {
  const efi = asObject(asObject(firmwareOf(podSpec)?.bootloader)?.efi);
  return efi !== undefined && efi.secureBoot !== false;
}

/** The running guest (VMI spec) has other firmware than the template: boot mode or secure boot changed since it started. */
export function firmwareChanged(vmiSpec: Record<string, unknown> | undefined, templateSpec: Record<string, unknown> | undefined): boolean {
  return bootModeOf(vmiSpec) !== bootModeOf(templateSpec) || secureBootOf(vmiSpec) !== secureBootOf(templateSpec);
}

/**
 * Patch operations that switch the template's bootloader. UEFI is written with `secureBoot: false`: KubeVirt's
 * default secure boot needs SMM and signed guests, which a Redfish client asking for UEFI does not imply.
 * Other firmware fields (uuid, serial) are left alone: the System UUID comes from them.
 */
export function bootModeOps(vm: { spec?: unknown }, mode: BootMode): JsonPatchOp[] {
  const templateSpec = templateSpecOf(vm);
  if (bootModeOf(templateSpec) === mode) return [];
  const bootloader = mode === "UEFI" ? { efi: { secureBoot: false } } : { bios: {} };
  const base = "/spec/template/spec/domain/firmware";
  const firmware = firmwareOf(templateSpec);
  if (!firmware) return [{ op: "add", path: base, value: { bootloader } }];
  if (firmware.bootloader === undefined) return [{ op: "add", path: `${base}/bootloader`, value: bootloader }];
  return [
    { op: "test", path: `${base}/bootloader`, value: firmware.bootloader },
    { op: "replace", path: `${base}/bootloader`, value: bootloader },
  ];
}

const DOMAIN = "/spec/template/spec/domain";

/**
 * Patch operations that set UEFI secure boot in the template (`efi.secureBoot`), with the SMM feature KubeVirt
 * requires for it when turning it on (SMM is left as it is when turning it off). Empty when the template already
 * says so; undefined when the VM boots legacy BIOS, which has no secure boot.
 */
export function secureBootOps(vm: { spec?: unknown }, enable: boolean): JsonPatchOp[] | undefined {
  const templateSpec = templateSpecOf(vm);
  const bootloader = asObject(firmwareOf(templateSpec)?.bootloader);
  const efi = asObject(bootloader?.efi);
  if (!efi) return undefined;
  const ops: JsonPatchOp[] = [];
  // KubeVirt's default for `efi: {}` is secure boot on.
  if ((efi.secureBoot !== false) !== enable) {
    const path = `${DOMAIN}/firmware/bootloader/efi`;
    ops.push({ op: "test", path, value: efi }, { op: "replace", path, value: { ...efi, secureBoot: enable } });
  }
  if (enable) {
    const features = asObject(asObject(templateSpec?.domain)?.features);
    const smm = asObject(features?.smm);
    if (!features) ops.push({ op: "add", path: `${DOMAIN}/features`, value: { smm: { enabled: true } } });
    else if (!smm) ops.push({ op: "add", path: `${DOMAIN}/features/smm`, value: { enabled: true } });
    else if (smm.enabled === false) {
      ops.push({ op: "test", path: `${DOMAIN}/features/smm`, value: smm }, { op: "replace", path: `${DOMAIN}/features/smm`, value: { ...smm, enabled: true } });
    }
  }
  return ops;
}

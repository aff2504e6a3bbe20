// SecureBoot: UEFI secure boot as the VM has it. SecureBootEnable is the template's setting (what the next start
// uses), SecureBootCurrentBoot what the running guest booted with. PATCH SecureBootEnable writes the template (with
// the SMM feature secure boot needs), applied at the next start; a legacy BIOS VM answers 409.
import { z } from "zod";
import { PATCH_BOOT } from "../auth/kubernetes";
import { patchWithRetry } from "../boot";
import { secureBootOps } from "../boot/firmware";
import { BASE_REGISTRY, RedfishError, baseError } from "../errors";
import { redfishFailure } from "../kubevirt/failures";
import type { VmRecord } from "../cache/types";
import { checkIfMatchEtag, envelope, readJsonObject, requestHeader, SERVICE_ROOT } from "../odata";
import { cachedSystemResource, resolveSystem, resource, sendSystemResource, systemUri, type RedfishContext, type ServiceDeps, type VisibleSystem, type ResourceRoutes } from "./context";
import { configuredFirmware, runningFirmware } from "./hardware";

export const secureBootUri = (systemId: string) => `${systemUri(systemId)}/SecureBoot`;

export function renderSecureBoot(system: VisibleSystem): Record<string, unknown> {
  const configured = configuredFirmware(system.rec);
  const running = runningFirmware(system.rec);
  // KubeVirt's secure-boot OVMF variable store has Microsoft's keys enrolled (user mode); the plain one has no
  // platform key (setup mode). Legacy BIOS has no secure boot at all.
  const mode = configured.bootMode === "Legacy" ? null : configured.secureBoot ? "UserMode" : "SetupMode";
  return {
    ...envelope("SecureBoot", secureBootUri(system.id)),
    Id: "SecureBoot",
    Name: "UEFI Secure Boot",
    Description: "UEFI secure boot of the KubeVirt VirtualMachine (spec.template.spec.domain.firmware.bootloader.efi.secureBoot)",
    SecureBootEnable: configured.secureBoot,
    SecureBootCurrentBoot: running?.secureBoot ? "Enabled" : "Disabled",
    SecureBootMode: mode,
  };
}

const READ_ONLY = new Set(["SecureBootCurrentBoot", "SecureBootMode", "SecureBootDatabases", "Id", "Name", "Description", "Actions"]);
const secureBootPatchSchema = z.strictObject({ SecureBootEnable: z.boolean() });

/** The body of a SecureBoot PATCH: SecureBootEnable (a boolean) and nothing else writable. */
export function parseSecureBootPatch(body: Record<string, unknown>): boolean {
  const properties = Object.fromEntries(Object.entries(body).filter(([key]) => !key.startsWith("@")));
  const other = Object.keys(properties).find(key => key !== "SecureBootEnable");
  if (other !== undefined) {
    const shown = other.slice(0, 100);
    if (READ_ONLY.has(other)) throw baseError(400, "PropertyNotWritable", [shown], { relatedProperties: [`#/${shown}`] });
    throw baseError(400, "PropertyUnknown", [shown], { relatedProperties: [`#/${shown}`] });
  }
  if (!("SecureBootEnable" in properties)) throw baseError(400, "EmptyJSON", [], { resolution: "Send SecureBootEnable (true or false)." });
  const parsed = secureBootPatchSchema.safeParse(properties);
  if (!parsed.success) {
    const value = JSON.stringify(properties.SecureBootEnable) ?? "undefined";
    throw baseError(400, "PropertyValueTypeError", [value.slice(0, 100), "SecureBootEnable"], { relatedProperties: ["#/SecureBootEnable"] });
  }
  return parsed.data.SecureBootEnable;
}

/**
 * The template patch that turns secure boot on or off; 409 naming `property` (what the client set) for a legacy BIOS
 * VM (secure boot is a UEFI feature). Used by the SecureBoot PATCH and by pending Bios settings.
 */
export function secureBootPlan(rec: VmRecord, enable: boolean, property = { name: "SecureBootEnable", value: "true" }) {
  const ops = secureBootOps(rec.vm, enable);
  if (ops) return ops;
  if (!enable) return []; // legacy BIOS: secure boot is off, as asked
  const { namespace, name } = rec.vm.metadata;
  throw new RedfishError(
    409,
    `${BASE_REGISTRY}.PropertyValueResourceConflict`,
    `${property.name} ${property.value} needs UEFI firmware, and VirtualMachine ${namespace}/${name} boots legacy BIOS. Set Boot/BootSourceOverrideMode to UEFI first.`,
    [property.name, property.value, `${systemUri(`${namespace}.${name}`)}`],
    { relatedProperties: [`#/${property.name}`] },
  );
}

export function registerSecureBoot(routes: ResourceRoutes, deps: ServiceDeps): void {
  const system = (c: RedfishContext) => resolveSystem(c, deps.cache, c.req.param("id") ?? "");
  const representation = (target: VisibleSystem) =>
    cachedSystemResource(deps, "SecureBoot", target, () => renderSecureBoot(target));
  resource(routes, `${SERVICE_ROOT}/Systems/:id/SecureBoot`, {
    GET: c => {
      const target = system(c);
      return sendSystemResource(c, deps, target, representation(target));
    },
    PATCH: async c => {
      const target = system(c);
      const enable = parseSecureBootPatch(readJsonObject(c));
      checkIfMatchEtag(requestHeader(c, "if-match"), representation(target).etag);
      await deps.auth.authorize(c.get("principal"), target.rec.vm.metadata.namespace!, [PATCH_BOOT]);
      try {
        await patchWithRetry(deps.driver, target.rec, rec => secureBootPlan(rec, enable), deps.cache);
      } catch (e) {
        const { namespace, name } = target.rec.vm.metadata as { namespace: string; name: string };
        throw redfishFailure(e, { namespace, name }, "the SecureBoot change");
      }
      return new Response(null, { status: 204 });
    },
  }, system);
}

// SecureBoot: UEFI secure boot as the VM has it. SecureBootEnable is the template's setting (what the next start
// uses), SecureBootCurrentBoot what the running guest booted with. Not writable yet: a PATCH gets an error that
// names the property, never a silent success.
import type { Hono } from "hono";
import { baseError } from "../errors";
import { envelope, readJsonObject, sendRepresentation, SERVICE_ROOT } from "../odata";
import { cachedSystemResource, resolveSystem, resource, systemUri, type RedfishContext, type RedfishEnv, type ServiceDeps, type VisibleSystem } from "./context";
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

export function registerSecureBoot(app: Hono<RedfishEnv>, deps: ServiceDeps): void {
  const system = (c: RedfishContext) => resolveSystem(c, deps.cache, c.req.param("id") ?? "");
  resource(app, `${SERVICE_ROOT}/Systems/:id/SecureBoot`, {
    GET: c => {
      const target = system(c);
      return sendRepresentation(c, cachedSystemResource(deps, "SecureBoot", target, () => renderSecureBoot(target)), { conditional: true });
    },
    PATCH: async c => {
      system(c);
      const body = await readJsonObject(c);
      const property = Object.keys(body).find(k => !k.startsWith("@")) ?? "SecureBootEnable";
      throw baseError(400, "PropertyNotWritable", [property], {
        relatedProperties: [`#/${property}`],
        resolution:
          "Secure boot is not writable through Redfish yet: set spec.template.spec.domain.firmware.bootloader.efi.secureBoot " +
          "(with features.smm.enabled) on the VirtualMachine; it applies at the next start.",
      });
    },
  }, system);
}

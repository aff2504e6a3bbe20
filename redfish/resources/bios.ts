// Bios: read-only Attributes that reflect the VM's firmware settings as its template has them (what the next
// start uses). No writable settings yet (no @Redfish.Settings): a PATCH is 405 with Allow: GET, HEAD.
import { envelope, sendJson, SERVICE_ROOT } from "../odata";
import { resolveSystem, resource, systemUri, type RedfishContext, type ServiceDeps, type VisibleSystem, type ResourceRoutes } from "./context";
import { biosVersion, configuredFirmware, cpuTopology, machineType } from "./hardware";

export const biosUri = (systemId: string) => `${systemUri(systemId)}/Bios`;

/** The attributes, named like common vendor BIOS attributes (Ironic stores them as its BIOS settings). */
export function biosAttributes(system: VisibleSystem): Record<string, string | number | boolean> {
  const firmware = configuredFirmware(system.rec);
  const cpu = cpuTopology(system.rec);
  return {
    BootMode: firmware.bootMode === "UEFI" ? "Uefi" : "Bios",
    SecureBoot: firmware.secureBoot ? "Enabled" : "Disabled",
    Smm: firmware.smm ? "Enabled" : "Disabled",
    PersistentEfiVariables: firmware.persistentEfi ? "Enabled" : "Disabled",
    MachineType: machineType(system.rec) ?? "default",
    ProcessorSockets: cpu.sockets,
    ProcessorCoresPerSocket: cpu.cores,
    ProcessorThreadsPerCore: cpu.threads,
  };
}

export function registerBios(routes: ResourceRoutes, deps: ServiceDeps): void {
  const system = (c: RedfishContext) => resolveSystem(c, deps.cache, c.req.param("id") ?? "");
  resource(routes, `${SERVICE_ROOT}/Systems/:id/Bios`, {
    GET: c => {
      const target = system(c);
      return sendJson(
        c,
        {
          ...envelope("Bios", biosUri(target.id)),
          Id: "Bios",
          Name: "BIOS Configuration",
          Description: `Firmware settings of the KubeVirt VirtualMachine (${biosVersion(target.rec)}), read-only`,
          Attributes: biosAttributes(target),
        },
        { conditional: true },
      );
    },
  }, system);
}

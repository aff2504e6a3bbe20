// Bios: Attributes that reflect the VM's firmware settings as its template has them (what the next start uses), and
// the `@Redfish.Settings` object Bios/Settings where BootMode and SecureBoot changes wait for the next start
// (bios-settings.ts). Bios itself is read-only (PATCH 405); Bios.ResetBios records the defaults as pending settings.
import { z } from "zod";
import { PATCH_BOOT } from "../auth/kubernetes";
import { checkIfMatchEtag, envelope, parseBody, readJsonObject, readRequestText, requestHeader, SERVICE_ROOT } from "../odata";
import { cachedSystemResource, resolveSystem, resource, sendSystemResource, systemUri, type RedfishContext, type ResourceRoutes, type ServiceDeps, type VisibleSystem } from "./context";
import { biosVersion, configuredFirmware, cpuTopology, machineType } from "./hardware";
import {
  BIOS_APPLY_TIMES,
  WRITABLE_BIOS_ATTRIBUTES,
  parseBiosSettingsPatch,
  pendingBiosSettings,
  recordBiosSettings,
  resetBiosSettings,
} from "./bios-settings";

export const biosUri = (systemId: string) => `${systemUri(systemId)}/Bios`;
const biosSettingsUri = (systemId: string) => `${biosUri(systemId)}/Settings`;
const RESET_BIOS_ACTION = "Bios.ResetBios";

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

function renderBios(system: VisibleSystem): Record<string, unknown> {
  const uri = biosUri(system.id);
  return {
    ...envelope("Bios", uri),
    Id: "Bios",
    Name: "BIOS Configuration",
    Description: `Firmware settings of the KubeVirt VirtualMachine (${biosVersion(system.rec)}); BootMode and SecureBoot are set through Bios/Settings and applied at the next start`,
    Attributes: biosAttributes(system),
    "@Redfish.Settings": {
      "@odata.type": "#Settings.v1_3_5.Settings",
      SettingsObject: { "@odata.id": biosSettingsUri(system.id) },
      SupportedApplyTimes: BIOS_APPLY_TIMES,
    },
    Actions: { [`#${RESET_BIOS_ACTION}`]: { target: `${uri}/Actions/${RESET_BIOS_ACTION}` } },
  };
}

/** The SettingsObject: only the attributes that are pending (empty when nothing waits for the next start). */
function renderBiosSettings(system: VisibleSystem): Record<string, unknown> {
  return {
    ...envelope("Bios", biosSettingsUri(system.id)),
    Id: "Settings",
    Name: "BIOS Pending Settings",
    Description: "BIOS attributes applied at the next start of the VirtualMachine (writable: BootMode, SecureBoot)",
    Attributes: pendingBiosSettings(system.rec.vm),
    "@Redfish.SettingsApplyTime": { "@odata.type": "#Settings.v1_1_0.PreferredApplyTime", ApplyTime: "OnReset", "ApplyTime@Redfish.AllowableValues": BIOS_APPLY_TIMES },
  };
}

const resetBiosBody = z.strictObject({});

export function registerBios(routes: ResourceRoutes, deps: ServiceDeps): void {
  const system = (c: RedfishContext) => resolveSystem(c, deps.cache, c.req.param("id") ?? "");
  const bios = (target: VisibleSystem) => cachedSystemResource(deps, "Bios", target, () => renderBios(target));
  const settings = (target: VisibleSystem) => cachedSystemResource(deps, "BiosSettings", target, () => renderBiosSettings(target));
  const readOnlyAttributes = (target: VisibleSystem) => Object.keys(biosAttributes(target)).filter(name => !WRITABLE_BIOS_ATTRIBUTES.includes(name));

  resource(routes, `${SERVICE_ROOT}/Systems/:id/Bios`, {
    GET: c => {
      const target = system(c);
      return sendSystemResource(c, deps, target, bios(target));
    },
  }, system);

  resource(routes, `${SERVICE_ROOT}/Systems/:id/Bios/Settings`, {
    GET: c => {
      const target = system(c);
      return sendSystemResource(c, deps, target, settings(target));
    },
    PATCH: async c => {
      const target = system(c);
      const patch = parseBiosSettingsPatch(readJsonObject(c), readOnlyAttributes(target));
      checkIfMatchEtag(requestHeader(c, "if-match"), settings(target).etag);
      await deps.auth.authorize(c.get("principal"), target.rec.vm.metadata.namespace!, [PATCH_BOOT]);
      await recordBiosSettings(deps.driver, target.rec, patch, deps.cache);
      return new Response(null, { status: 204 });
    },
  }, system);

  resource(routes, `${SERVICE_ROOT}/Systems/:id/Bios/Actions/${RESET_BIOS_ACTION}`, {
    POST: async c => {
      const target = system(c);
      // sushy posts ResetBios without a body first; an empty object is the same request.
      if (readRequestText(c).trim() !== "") parseBody(resetBiosBody, readJsonObject(c), RESET_BIOS_ACTION);
      await deps.auth.authorize(c.get("principal"), target.rec.vm.metadata.namespace!, [PATCH_BOOT]);
      await resetBiosSettings(deps.driver, target.rec, deps.cache);
      return new Response(null, { status: 204 });
    },
  }, system);
}

// ComputerSystem: one per VirtualMachine the user may see; its inventory (Processors, Memory, Storage, SimpleStorage,
// EthernetInterfaces), Bios and SecureBoot; the Reset action; PATCH Boot.
import { z } from "zod";
import { applyBootPatch, bootView } from "../boot";
import { PATCH_BOOT, resetPermissions } from "../auth/kubernetes";
import { baseError, notFound } from "../errors";
import {
  checkIfMatchEtag,
  collection,
  envelope,
  link,
  parseBody,
  readJsonObject,
  requestHeader,
  sendJson,
  SERVICE_ROOT,
  type Representation,
} from "../odata";
import { reportedPowerState, reset, RESET_TYPES, startsGuest } from "../power";
import { MediaService, mediaView } from "../media";
import {
  cachedSystemResource,
  chassisUri,
  managerUri,
  resolveSystem,
  resource,
  sendSystemResource,
  systemUri,
  visibleSystemIds,
  type RedfishContext,
  type ServiceDeps,
  type VisibleSystem,
  type ResourceRoutes,
} from "./context";
import { biosUri, registerBios } from "./bios";
import { applyPendingBiosSettings } from "./bios-settings";
import { biosVersion, cpuTopology, firmwareUuid, health, machineType, memoryGiB, networkInterfaces, serialNumber } from "./hardware";
import { registerMemory } from "./memory";
import { registerProcessors } from "./processors";
import { registerSecureBoot, secureBootUri } from "./secure-boot";
import { registerSimpleStorage } from "./simple-storage";
import { registerStorage } from "./storage";

const RESET_ACTION = "ComputerSystem.Reset";

export function renderSystem(system: VisibleSystem): Record<string, unknown> {
  const { rec, id } = system;
  const uri = systemUri(id);
  const cpu = cpuTopology(rec);
  const status = { State: "Enabled", Health: health(rec.vm), HealthRollup: health(rec.vm) };
  return {
    ...envelope("ComputerSystem", uri),
    Id: id,
    Name: rec.vm.metadata.name,
    Description: `KubeVirt VirtualMachine ${rec.vm.metadata.namespace}/${rec.vm.metadata.name}`,
    UUID: firmwareUuid(rec),
    SystemType: "Virtual",
    Manufacturer: "KubeVirt",
    Model: machineType(rec) ?? "VirtualMachine",
    SerialNumber: serialNumber(rec) ?? null,
    PowerState: reportedPowerState(rec),
    Status: status,
    ProcessorSummary: {
      Count: cpu.sockets,
      CoreCount: cpu.sockets * cpu.cores,
      LogicalProcessorCount: cpu.sockets * cpu.cores * cpu.threads,
      ...(cpu.model ? { Model: cpu.model } : {}),
      Status: { State: "Enabled", Health: "OK" },
    },
    MemorySummary: {
      TotalSystemMemoryGiB: memoryGiB(rec),
      Status: { State: "Enabled", Health: "OK" },
    },
    Boot: bootView(rec),
    BiosVersion: biosVersion(rec),
    Bios: link(biosUri(id)),
    SecureBoot: link(secureBootUri(id)),
    Processors: link(`${uri}/Processors`),
    Memory: link(`${uri}/Memory`),
    Storage: link(`${uri}/Storage`),
    SimpleStorage: link(`${uri}/SimpleStorage`),
    EthernetInterfaces: link(`${uri}/EthernetInterfaces`),
    VirtualMedia: link(`${uri}/VirtualMedia`),
    Links: {
      ManagedBy: [link(managerUri(id))],
      Chassis: system.chassis.map(name => link(chassisUri(name))),
    },
    Actions: {
      [`#${RESET_ACTION}`]: {
        target: `${uri}/Actions/${RESET_ACTION}`,
        "ResetType@Redfish.AllowableValues": [...RESET_TYPES],
      },
    },
  };
}

/** The serialized ComputerSystem as this principal sees it, rendered once per cache record and view. */
export function systemRepresentation(deps: Pick<ServiceDeps, "responses">, system: VisibleSystem): Representation {
  return cachedSystemResource(deps, "ComputerSystem", system, () => renderSystem(system));
}

function renderInterface(system: VisibleSystem, nicId: string): Record<string, unknown> | undefined {
  const nic = networkInterfaces(system.rec).find(n => n.name === nicId);
  if (!nic) return undefined;
  const details = [nic.binding, nic.model].filter(Boolean).join(", ");
  return {
    ...envelope("EthernetInterface", `${systemUri(system.id)}/EthernetInterfaces/${encodeURIComponent(nic.name)}`),
    Id: nic.name,
    Name: nic.name,
    Description: `KubeVirt interface ${nic.name}${details ? ` (${details})` : ""}`,
    MACAddress: nic.macAddress,
    PermanentMACAddress: nic.macAddress,
    InterfaceEnabled: true,
    LinkStatus: nic.linkUp ? "LinkUp" : "NoLink",
    // KubeVirt sets no link speed on virtual NICs (the guest sees none either): null, not an invented number.
    SpeedMbps: null,
    Status: { State: "Enabled", Health: "OK" },
    IPv4Addresses: nic.ipv4.map(Address => ({ Address, AddressOrigin: "DHCP" })),
    IPv6Addresses: nic.ipv6.map(Address => ({ Address })),
  };
}

/** PATCH body: only Boot is writable; other ComputerSystem properties are read-only here. */
const READ_ONLY_SYSTEM_PROPERTIES = new Set([
  "Id",
  "Name",
  "Description",
  "UUID",
  "SystemType",
  "Manufacturer",
  "Model",
  "SerialNumber",
  "PowerState",
  "Status",
  "ProcessorSummary",
  "MemorySummary",
  "BiosVersion",
  "Bios",
  "SecureBoot",
  "Processors",
  "Memory",
  "Storage",
  "SimpleStorage",
  "EthernetInterfaces",
  "VirtualMedia",
  "Links",
  "Actions",
  "AssetTag",
  "HostName",
  "IndicatorLED",
  "LocationIndicatorActive",
]);

const resetBody = z.strictObject({ ResetType: z.string() });

const POWER_OFF_TYPES = new Set(["ForceOff", "GracefulShutdown"]);

export function registerSystems(routes: ResourceRoutes, deps: ServiceDeps): void {
  // Only eject is used here, which needs no media settings.
  const mediaEject = new MediaService({ cache: deps.cache, driver: deps.driver, settings: () => undefined });
  const { cache } = deps;
  const system = (c: RedfishContext) => resolveSystem(c, cache, c.req.param("id") ?? "");

  resource(routes, `${SERVICE_ROOT}/Systems`, {
    GET: c =>
      sendJson(c, collection("ComputerSystemCollection", `${SERVICE_ROOT}/Systems`, "Computer System Collection", visibleSystemIds(c, cache).map(systemUri)), {
        conditional: true,
      }),
  });

  resource(routes, `${SERVICE_ROOT}/Systems/:id`, {
    GET: c => {
      const target = system(c);
      return sendSystemResource(c, deps, target, systemRepresentation(deps, target));
    },
    PATCH: async c => {
      const target = system(c);
      const body = readJsonObject(c);
      checkIfMatchEtag(requestHeader(c, "if-match"), systemRepresentation(deps, target).etag);
      const keys = Object.keys(body).filter(k => !k.startsWith("@"));
      if (keys.length === 0) throw baseError(400, "EmptyJSON");
      for (const key of keys) {
        if (key === "Boot") continue;
        if (READ_ONLY_SYSTEM_PROPERTIES.has(key)) throw baseError(400, "PropertyNotWritable", [key], { relatedProperties: [`#/${key}`] });
        throw baseError(400, "PropertyUnknown", [key], { relatedProperties: [`#/${key}`] });
      }
      await deps.auth.authorize(c.get("principal"), target.rec.vm.metadata.namespace!, [PATCH_BOOT]);
      await applyBootPatch(deps.driver, target.rec, body.Boot, deps.cache);
      return new Response(null, { status: 204 });
    },
  }, system);

  registerProcessors(routes, deps);
  registerMemory(routes, deps);
  registerStorage(routes, deps);
  registerSimpleStorage(routes, deps);
  registerBios(routes, deps);
  registerSecureBoot(routes, deps);

  resource(routes, `${SERVICE_ROOT}/Systems/:id/Actions/${RESET_ACTION}`, {
    POST: async c => {
      const target = system(c);
      const body = parseBody(resetBody, readJsonObject(c), RESET_ACTION);
      // The System is rendered for its ETag only when the client sent a precondition (a VM that just changed has
      // no cached rendering: rendering it would be the action's slowest step).
      const ifMatch = requestHeader(c, "if-match");
      if (ifMatch !== undefined) checkIfMatchEtag(ifMatch, systemRepresentation(deps, target).etag);
      if (!(RESET_TYPES as readonly string[]).includes(body.ResetType)) {
        throw baseError(400, "ActionParameterNotSupported", ["ResetType", RESET_ACTION], {
          resolution: `ResetType ${JSON.stringify(body.ResetType).slice(0, 64)} is not supported; use one of: ${RESET_TYPES.join(", ")}.`,
        });
      }
      await deps.auth.authorize(c.get("principal"), target.rec.vm.metadata.namespace!, resetPermissions(body.ResetType));
      // Pending Bios settings (SupportedApplyTimes OnReset) go into the template before a start creates the VMI.
      const rec = startsGuest(target.rec, body.ResetType) ? await applyPendingBiosSettings(deps.driver, target.rec) : target.rec;
      const { status } = await reset(rec, body.ResetType, {
        driver: deps.driver,
        settings: { powerOffStaysOff: c.get("settings").powerOffStaysOff },
      });
      // Ironic never ejects a drive that reads Inserted: false, so a failed import would stay on the VM (and
      // block every later start): a power off clears it. A healthy CD stays in the drive, as on a physical BMC.
      if (POWER_OFF_TYPES.has(body.ResetType) && mediaView(target.rec).import === "failed") await mediaEject.eject(target.rec);
      return new Response(null, { status });
    },
  }, system);

  resource(routes, `${SERVICE_ROOT}/Systems/:id/EthernetInterfaces`, {
    GET: c => {
      const target = system(c);
      const uri = `${systemUri(target.id)}/EthernetInterfaces`;
      const members = networkInterfaces(target.rec).map(n => `${uri}/${encodeURIComponent(n.name)}`);
      return sendJson(c, collection("EthernetInterfaceCollection", uri, "Ethernet Interface Collection", members), { conditional: true });
    },
  }, system);

  const nicOf = (c: RedfishContext) => {
    const nicId = c.req.param("nic") ?? "";
    const body = renderInterface(system(c), nicId);
    if (!body) throw notFound("EthernetInterface", nicId);
    return body;
  };
  resource(routes, `${SERVICE_ROOT}/Systems/:id/EthernetInterfaces/:nic`, { GET: c => sendJson(c, nicOf(c), { conditional: true }) }, nicOf);
}

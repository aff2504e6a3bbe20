// Memory: the guest memory as DIMM-like modules, one per socket, whose CapacityMiB add up to the guest memory
// (the ComputerSystem's MemorySummary is what Ironic's inspection reads for memory_mb).
import type { Hono } from "hono";
import { notFound } from "../errors";
import { collection, envelope, sendJson, SERVICE_ROOT } from "../odata";
import { resolveSystem, resource, systemUri, type RedfishContext, type RedfishEnv, type ServiceDeps, type VisibleSystem } from "./context";
import { cpuTopology, memoryBytes } from "./hardware";

const memoryUri = (systemId: string) => `${systemUri(systemId)}/Memory`;

/** Module sizes in MiB: the guest memory split over the sockets, the remainder on the first module. */
export function memoryModulesMiB(system: VisibleSystem): number[] {
  const bytes = memoryBytes(system.rec);
  if (bytes === undefined) return [];
  const totalMiB = Math.floor(bytes / 2 ** 20);
  const count = Math.max(1, Math.min(cpuTopology(system.rec).sockets, totalMiB));
  const each = Math.floor(totalMiB / count);
  return Array.from({ length: count }, (_, i) => (i === 0 ? totalMiB - each * (count - 1) : each));
}

const moduleId = (index: number) => `DIMM${index}`;

function renderModule(system: VisibleSystem, index: number, capacityMiB: number): Record<string, unknown> {
  const id = moduleId(index);
  return {
    ...envelope("Memory", `${memoryUri(system.id)}/${id}`),
    Id: id,
    Name: `Memory ${id}`,
    Description: "Guest memory of the KubeVirt VirtualMachine",
    MemoryType: "DRAM",
    CapacityMiB: capacityMiB,
    Status: { State: "Enabled", Health: "OK" },
  };
}

export function registerMemory(app: Hono<RedfishEnv>, deps: ServiceDeps): void {
  const system = (c: RedfishContext) => resolveSystem(c, deps.cache, c.req.param("id") ?? "");
  resource(app, `${SERVICE_ROOT}/Systems/:id/Memory`, {
    GET: c => {
      const target = system(c);
      const uri = memoryUri(target.id);
      const members = memoryModulesMiB(target).map((_, i) => `${uri}/${moduleId(i)}`);
      return sendJson(c, collection("MemoryCollection", uri, "Memory Collection", members), { conditional: true });
    },
  }, system);

  const memoryModule = (c: RedfishContext) => {
    const target = system(c);
    const id = c.req.param("module") ?? "";
    const modules = memoryModulesMiB(target);
    const index = modules.findIndex((_, i) => moduleId(i) === id);
    if (index < 0) throw notFound("Memory", id);
    return renderModule(target, index, modules[index]);
  };
  resource(app, `${SERVICE_ROOT}/Systems/:id/Memory/:module`, { GET: c => sendJson(c, memoryModule(c), { conditional: true }) }, memoryModule);
}

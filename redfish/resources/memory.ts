// Memory: the guest memory as DIMM-like modules, one per socket, whose CapacityMiB add up to the guest memory
// (the ComputerSystem's MemorySummary is what Ironic's inspection reads for memory_mb).
import { envelope } from "../odata";
import type { ServiceDeps, VisibleSystem, ResourceRoutes } from "./context";
import { cpuTopology, memoryBytes } from "./hardware";
import { registerSystemCollection, systemCollectionUri } from "./system-collection";

/** Module sizes in MiB: the guest memory split over the sockets, the remainder on the first module. */
export function memoryModulesMiB(system: VisibleSystem): number[] {
  const bytes = memoryBytes(system.rec);
  if (bytes === undefined) return [];
  const totalMiB = Math.floor(bytes / 2 ** 20);
  const count = Math.max(1, Math.min(cpuTopology(system.rec).sockets, totalMiB));
  const each = Math.floor(totalMiB / count);
  return Array.from({ length: count }, (_, i) => (i === 0 ? totalMiB - each * (count - 1) : each));
}

export function registerMemory(routes: ResourceRoutes, deps: ServiceDeps): void {
  registerSystemCollection(routes, deps, {
    segment: "Memory",
    type: "MemoryCollection",
    name: "Memory Collection",
    memberType: "Memory",
    members: system => memoryModulesMiB(system).map((capacityMiB, i) => [`DIMM${i}`, capacityMiB] as const),
    render: (system, id, capacityMiB) => ({
      ...envelope("Memory", `${systemCollectionUri(system.id, "Memory")}/${id}`),
      Id: id,
      Name: `Memory ${id}`,
      Description: "Guest memory of the KubeVirt VirtualMachine",
      MemoryType: "DRAM",
      CapacityMiB: capacityMiB,
      Status: { State: "Enabled", Health: "OK" },
    }),
  });
}

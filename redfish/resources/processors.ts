// Processors: one Processor per socket of the VM's CPU topology, as Ironic's redfish inspection reads them
// (cpus = the sum of TotalThreads, cpu_arch from ProcessorArchitecture).
import { envelope } from "../odata";
import type { ServiceDeps, VisibleSystem, ResourceRoutes } from "./context";
import { architecture, cpuTopology } from "./hardware";
import { registerSystemCollection, systemCollectionUri } from "./system-collection";

function renderProcessor(system: VisibleSystem, id: string): Record<string, unknown> {
  const cpu = cpuTopology(system.rec);
  const arch = architecture(system.rec);
  return {
    ...envelope("Processor", `${systemCollectionUri(system.id, "Processors")}/${id}`),
    Id: id,
    Name: `Processor ${id}`,
    Socket: id,
    ProcessorType: "CPU",
    ProcessorArchitecture: arch.processorArchitecture,
    InstructionSet: arch.instructionSet,
    // KubeVirt's CPU model (a libvirt model name, host-model or host-passthrough); absent when the cluster default applies.
    Model: cpu.model ?? null,
    TotalCores: cpu.cores,
    TotalThreads: cpu.cores * cpu.threads,
    Status: { State: "Enabled", Health: "OK" },
  };
}

export function registerProcessors(routes: ResourceRoutes, deps: ServiceDeps): void {
  registerSystemCollection(routes, deps, {
    segment: "Processors",
    type: "ProcessorCollection",
    name: "Processors Collection",
    memberType: "Processor",
    // One Processor per socket: CPU0, CPU1, ...
    members: system => Array.from({ length: cpuTopology(system.rec).sockets }, (_, socket) => [`CPU${socket}`, socket] as const),
    render: (system, id) => renderProcessor(system, id),
  });
}

// Processors: one Processor per socket of the VM's CPU topology, as Ironic's redfish inspection reads them
// (cpus = the sum of TotalThreads, cpu_arch from ProcessorArchitecture).
import type { Hono } from "hono";
import { notFound } from "../errors";
import { collection, envelope, sendJson, SERVICE_ROOT } from "../odata";
import { resolveSystem, resource, systemUri, type RedfishContext, type RedfishEnv, type ServiceDeps, type VisibleSystem } from "./context";
import { architecture, cpuTopology } from "./hardware";

const processorsUri = (systemId: string) => `${systemUri(systemId)}/Processors`;

/** Processor ids: CPU0, CPU1, ... one per socket. */
function processorIds(system: VisibleSystem): string[] {
  return Array.from({ length: cpuTopology(system.rec).sockets }, (_, socket) => `CPU${socket}`);
}

function renderProcessor(system: VisibleSystem, id: string): Record<string, unknown> {
  const cpu = cpuTopology(system.rec);
  const arch = architecture(system.rec);
  return {
    ...envelope("Processor", `${processorsUri(system.id)}/${id}`),
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

export function registerProcessors(app: Hono<RedfishEnv>, deps: ServiceDeps): void {
  const system = (c: RedfishContext) => resolveSystem(c, deps.cache, c.req.param("id") ?? "");
  resource(app, `${SERVICE_ROOT}/Systems/:id/Processors`, {
    GET: c => {
      const target = system(c);
      const uri = processorsUri(target.id);
      return sendJson(c, collection("ProcessorCollection", uri, "Processors Collection", processorIds(target).map(id => `${uri}/${id}`)), { conditional: true });
    },
  }, system);

  const processor = (c: RedfishContext) => {
    const target = system(c);
    const id = c.req.param("processor") ?? "";
    if (!processorIds(target).includes(id)) throw notFound("Processor", id);
    return renderProcessor(target, id);
  };
  resource(app, `${SERVICE_ROOT}/Systems/:id/Processors/:processor`, { GET: c => sendJson(c, processor(c), { conditional: true }) }, processor);
}

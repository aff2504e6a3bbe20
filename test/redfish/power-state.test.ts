// PowerState derivation over the VM/VMI shapes KubeVirt produces (unit).
import { describe, expect, it } from "vitest";
import { derivePowerState, reportedPowerState, POWER_ON_REQUESTED_ANNOTATION, type PowerState } from "../../redfish/power";
import { makeVm, makeVmi, rec } from "./power-fixtures";

const DELETED = "2024-05-01T10:00:00Z";
const pending = { [POWER_ON_REQUESTED_ANNOTATION]: "2024-05-01T10:00:00.000Z" };

describe("derivePowerState", () => {
  const cases: [string, () => ReturnType<typeof rec>, PowerState][] = [
    ["runStrategy Halted, no VMI", () => rec(makeVm({ runStrategy: "Halted" })), "Off"],
    ["spec.running false, no VMI", () => rec(makeVm({ running: false })), "Off"],
    ["neither running nor runStrategy (KubeVirt default Halted)", () => rec(makeVm()), "Off"],
    ["Always, no VMI yet (start accepted)", () => rec(makeVm({ runStrategy: "Always" })), "PoweringOn"],
    ["spec.running true, no VMI yet", () => rec(makeVm({ running: true })), "PoweringOn"],
    ["Always, VMI Running", () => { const vm = makeVm({ runStrategy: "Always" }); return rec(vm, makeVmi(vm)); }, "On"],
    ["Always, VMI Scheduling", () => { const vm = makeVm({ runStrategy: "Always" }); return rec(vm, makeVmi(vm, { phase: "Scheduling" })); }, "PoweringOn"],
    ["Always, VMI without phase", () => { const vm = makeVm({ runStrategy: "Always" }); return rec(vm, makeVmi(vm, { phase: "" })); }, "PoweringOn"],
    ["Always, VMI Unknown (node lost)", () => { const vm = makeVm({ runStrategy: "Always" }); return rec(vm, makeVmi(vm, { phase: "Unknown" })); }, "On"],
    ["Always, VMI Succeeded (virt-controller restarts it)", () => { const vm = makeVm({ runStrategy: "Always" }); return rec(vm, makeVmi(vm, { phase: "Succeeded" })); }, "PoweringOn"],
    ["Halted with a running VMI (stop accepted)", () => { const vm = makeVm({ runStrategy: "Halted" }); return rec(vm, makeVmi(vm)); }, "PoweringOff"],
    ["running false with a running VMI", () => { const vm = makeVm({ running: false }); return rec(vm, makeVmi(vm)); }, "PoweringOff"],
    ["Halted, VMI terminating", () => { const vm = makeVm({ runStrategy: "Halted" }); return rec(vm, makeVmi(vm, { deletionTimestamp: DELETED })); }, "PoweringOff"],
    ["Always, VMI deleted by someone (KubeVirt restarts)", () => { const vm = makeVm({ runStrategy: "Always" }); return rec(vm, makeVmi(vm, { deletionTimestamp: DELETED })); }, "PoweringOn"],
    ["Halted, VMI Succeeded", () => { const vm = makeVm({ runStrategy: "Halted" }); return rec(vm, makeVmi(vm, { phase: "Succeeded" })); }, "Off"],
    ["RerunOnFailure, guest powered off (VMI Succeeded)", () => { const vm = makeVm({ runStrategy: "RerunOnFailure", status: { runStrategy: "RerunOnFailure" } }); return rec(vm, makeVmi(vm, { phase: "Succeeded" })); }, "Off"],
    ["RerunOnFailure, VMI Failed (KubeVirt restarts it)", () => { const vm = makeVm({ runStrategy: "RerunOnFailure", status: { runStrategy: "RerunOnFailure" } }); return rec(vm, makeVmi(vm, { phase: "Failed" })); }, "PoweringOn"],
    ["RerunOnFailure, no VMI, already acted on", () => rec(makeVm({ runStrategy: "RerunOnFailure", status: { runStrategy: "RerunOnFailure" } })), "Off"],
    ["RerunOnFailure, no VMI, just switched from Halted", () => rec(makeVm({ runStrategy: "RerunOnFailure", status: { runStrategy: "Halted" } })), "PoweringOn"],
    ["RerunOnFailure, no VMI, start request", () => rec(makeVm({ runStrategy: "RerunOnFailure", status: { runStrategy: "RerunOnFailure", stateChangeRequests: [{ action: "Start" }] } })), "PoweringOn"],
    ["Manual, no VMI", () => rec(makeVm({ runStrategy: "Manual", status: { runStrategy: "Manual" } })), "Off"],
    ["Manual, start request", () => rec(makeVm({ runStrategy: "Manual", status: { stateChangeRequests: [{ action: "Start" }] } })), "PoweringOn"],
    ["Manual, VMI Failed", () => { const vm = makeVm({ runStrategy: "Manual" }); return rec(vm, makeVmi(vm, { phase: "Failed" })); }, "Off"],
    ["Manual, stop request for the VMI", () => { const vm = makeVm({ runStrategy: "Manual", status: { stateChangeRequests: [{ action: "Stop", uid: "uid-vmi-vm1" }] } }); return rec(vm, makeVmi(vm)); }, "PoweringOff"],
    ["Manual, stop request for an older VMI", () => { const vm = makeVm({ runStrategy: "Manual", status: { stateChangeRequests: [{ action: "Stop", uid: "older" }] } }); return rec(vm, makeVmi(vm)); }, "On"],
    ["RerunOnFailure, restart requested (stop + start)", () => { const vm = makeVm({ runStrategy: "RerunOnFailure", status: { stateChangeRequests: [{ action: "Stop", uid: "uid-vmi-vm1" }, { action: "Start" }] } }); return rec(vm, makeVmi(vm)); }, "PoweringOn"],
    ["Once, no VMI", () => rec(makeVm({ runStrategy: "Once" })), "PoweringOn"],
    ["Once, VMI Succeeded", () => { const vm = makeVm({ runStrategy: "Once" }); return rec(vm, makeVmi(vm, { phase: "Succeeded" })); }, "Off"],
    ["VMI Paused condition", () => { const vm = makeVm({ runStrategy: "Always" }); return rec(vm, makeVmi(vm, { conditions: [{ type: "Paused", status: "True" }] })); }, "Paused"],
    ["Paused condition False", () => { const vm = makeVm({ runStrategy: "Always" }); return rec(vm, makeVmi(vm, { conditions: [{ type: "Paused", status: "False" }] })); }, "On"],
    ["printableStatus Paused", () => { const vm = makeVm({ runStrategy: "Always", status: { printableStatus: "Paused" } }); return rec(vm, makeVmi(vm)); }, "Paused"],
    ["paused VMI being shut down", () => { const vm = makeVm({ runStrategy: "Halted" }); return rec(vm, makeVmi(vm, { conditions: [{ type: "Paused", status: "True" }] })); }, "PoweringOff"],
    ["VM being deleted with its VMI", () => { const vm = makeVm({ runStrategy: "Always", deletionTimestamp: DELETED }); return rec(vm, makeVmi(vm)); }, "PoweringOff"],
    ["VM being deleted, no VMI", () => rec(makeVm({ runStrategy: "Always", deletionTimestamp: DELETED })), "Off"],
    ["unknown runStrategy value (treated as Halted)", () => rec(makeVm({ runStrategy: "Sometimes" })), "Off"],
    ["deferred On while powering off", () => { const vm = makeVm({ runStrategy: "Halted", annotations: pending }); return rec(vm, makeVmi(vm, { deletionTimestamp: DELETED })); }, "PoweringOn"],
    ["deferred On, the VM is off now (controller about to start)", () => rec(makeVm({ runStrategy: "Halted", annotations: pending })), "PoweringOn"],
    ["deferred On, VM already on", () => { const vm = makeVm({ runStrategy: "Always", annotations: pending }); return rec(vm, makeVmi(vm)); }, "On"],
    ["deferred On on a VM being deleted", () => rec(makeVm({ runStrategy: "Halted", annotations: pending, deletionTimestamp: DELETED })), "Off"],
  ];
  it.each(cases)("%s → %s", (_name, build, expected) => {
    expect(derivePowerState(build())).toBe(expected);
  });

  it("never reports anything but the five Redfish values, whatever the objects look like", () => {
    const odd: unknown[] = [undefined, null, 42, "x", [], {}, { phase: 7 }, { conditions: "no" }, { conditions: [null, { type: 1 }] }];
    const allowed = new Set(["On", "Off", "PoweringOn", "PoweringOff", "Paused"]);
    for (const spec of odd) {
      for (const status of odd) {
        const vm = { apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", metadata: { name: "x", namespace: "n" }, spec, status };
        const vmi = { apiVersion: "kubevirt.io/v1", kind: "VirtualMachineInstance", metadata: { name: "x", namespace: "n" }, spec, status };
        expect(allowed.has(derivePowerState({ vm, dataVolumes: [] }))).toBe(true);
        expect(allowed.has(derivePowerState({ vm, vmi, dataVolumes: [] }))).toBe(true);
      }
    }
  });
});

describe("reportedPowerState (the System's PowerState)", () => {
  const halted = (grace?: number) => makeVm({ runStrategy: "Halted", ...(grace !== undefined ? { terminationGracePeriodSeconds: grace } : {}) });
  const cases: [string, () => ReturnType<typeof rec>, PowerState, PowerState][] = [
    ["graceful shutdown, guest still running", () => { const vm = halted(180); return rec(vm, makeVmi(vm, { deletionTimestamp: DELETED })); }, "PoweringOff", "On"],
    ["graceful shutdown, VMI without a grace period (KubeVirt's default 180 s)", () => { const vm = halted(); return rec(vm, makeVmi(vm, { deletionTimestamp: DELETED })); }, "PoweringOff", "On"],
    ["stop accepted, VMI not deleted yet", () => { const vm = halted(180); return rec(vm, makeVmi(vm)); }, "PoweringOff", "On"],
    ["ForceOff: grace period cut to 0", () => { const vm = halted(180); const vmi = makeVmi(vm, { deletionTimestamp: DELETED }); (vmi.spec as Record<string, unknown>).terminationGracePeriodSeconds = 0; return rec(vm, vmi); }, "PoweringOff", "PoweringOff"],
    ["the guest is off (VMI Succeeded)", () => { const vm = halted(180); return rec(vm, makeVmi(vm, { phase: "Succeeded", deletionTimestamp: DELETED })); }, "Off", "Off"],
    ["a paused guest being shut down", () => { const vm = halted(180); return rec(vm, makeVmi(vm, { conditions: [{ type: "Paused", status: "True" }] })); }, "PoweringOff", "PoweringOff"],
    ["VM being deleted with its VMI", () => { const vm = makeVm({ runStrategy: "Always", deletionTimestamp: DELETED }); return rec(vm, makeVmi(vm)); }, "PoweringOff", "PoweringOff"],
  ];
  it.each(cases)("%s: heading %s, reported %s", (_name, build, heading, reported) => {
    const r = build();
    expect(derivePowerState(r)).toBe(heading);
    expect(reportedPowerState(r)).toBe(reported);
  });
});

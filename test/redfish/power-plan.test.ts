// ResetType → KubeVirt operations, per PowerState and VM shape (unit; the sandbox test runs them for real).
import { describe, expect, it } from "vitest";
import { RedfishError } from "../../redfish/errors";
import { RESET_TYPES, POWER_ON_REQUESTED_ANNOTATION } from "../../redfish/power";
import { pendingPowerOnPlan, planReset, type PlanContext, type PowerPlan } from "../../redfish/power/plan";
import { makeVm, makeVmi, rec } from "./power-fixtures";

const NOW = new Date("2024-05-01T12:00:00.000Z");
const ctx = (o: Partial<PlanContext> & { staysOff?: boolean } = {}): PlanContext => ({
  settings: { powerOffStaysOff: o.staysOff ?? true },
  templateChangePending: o.templateChangePending ?? false,
  now: () => NOW,
});
const DELETED = "2024-05-01T10:00:00Z";
const pendingOn = { [POWER_ON_REQUESTED_ANNOTATION]: "2024-05-01T11:00:00.000Z" };

const off = () => rec(makeVm({ runStrategy: "Halted" }));
const on = (runStrategy = "RerunOnFailure", conditions?: { type: string; status: string }[]) => {
  const vm = makeVm({ runStrategy, status: { runStrategy } });
  return rec(vm, makeVmi(vm, { conditions }));
};
const poweringOff = (annotations?: Record<string, string>) => {
  const vm = makeVm({ runStrategy: "Halted", annotations });
  return rec(vm, makeVmi(vm, { deletionTimestamp: DELETED }));
};

function writes(plan: PowerPlan) {
  return plan.writes.map(w => w.write);
}

describe("planReset", () => {
  it("lists exactly the supported ResetTypes", () => {
    expect([...RESET_TYPES]).toEqual(["On", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "PushPowerButton", "Pause", "Resume"]);
  });

  it.each(["Nmi", "PowerCycle", "FullPowerCycle", "Suspend", "on", "", "On ", "__proto__"])("rejects %j with 400 ActionParameterNotSupported", type => {
    let err: unknown;
    try {
      planReset(on(), type, ctx());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RedfishError);
    expect((err as RedfishError).status).toBe(400);
    expect((err as RedfishError).messageId).toBe("Base.1.18.1.ActionParameterNotSupported");
    expect((err as RedfishError).message).toContain("Supported: On, ForceOff");
  });

  describe("On", () => {
    const mark = { op: "add", path: "/metadata/annotations", value: { [POWER_ON_REQUESTED_ANNOTATION]: NOW.toISOString() } };

    it("Halted VM → runStrategy Always and the On marked, in one test-guarded patch", () => {
      const plan = planReset(off(), "On", ctx());
      expect(plan.status).toBe(204);
      expect(writes(plan)).toEqual([
        {
          kind: "patch",
          ops: [{ op: "test", path: "/spec/runStrategy", value: "Halted" }, { op: "replace", path: "/spec/runStrategy", value: "Always" }, mark],
        },
      ]);
    });

    it("spec.running false → running true (the VM keeps its field until the controller moves it)", () => {
      const plan = planReset(rec(makeVm({ running: false })), "On", ctx());
      expect(writes(plan)).toEqual([
        { kind: "patch", ops: [{ op: "test", path: "/spec/running", value: false }, { op: "replace", path: "/spec/running", value: true }, mark] },
      ]);
    });

    it("a VM with neither field gets runStrategy Always", () => {
      expect(writes(planReset(rec(makeVm()), "On", ctx()))).toEqual([{ kind: "patch", ops: [{ op: "add", path: "/spec/runStrategy", value: "Always" }, mark] }]);
    });

    it("with powerOffStaysOff false a Halted VM is started by virt-api's start (→ Always / running: true), unmarked", () => {
      const plan = planReset(off(), "On", ctx({ staysOff: false }));
      expect(plan.writes).toEqual([{ write: { kind: "vm", subresource: "start" }, conflictMeansDone: true }]);
      const running = planReset(rec(makeVm({ running: false })), "On", ctx({ staysOff: false }));
      expect(writes(running)).toEqual([{ kind: "vm", subresource: "start" }]);
    });

    it("Manual / RerunOnFailure VMs that are off are started the same way, never with a start request", () => {
      for (const runStrategy of ["Manual", "RerunOnFailure"]) {
        const vm = makeVm({ runStrategy, status: { runStrategy } });
        const plan = planReset(rec(vm, makeVmi(vm, { phase: "Succeeded" })), "On", ctx());
        expect(writes(plan)).toEqual([
          {
            kind: "patch",
            ops: [{ op: "test", path: "/spec/runStrategy", value: runStrategy }, { op: "replace", path: "/spec/runStrategy", value: "Always" }, mark],
          },
        ]);
      }
    });

    it("is idempotent: On when On writes nothing", () => {
      expect(planReset(on(), "On", ctx())).toEqual({ status: 204, writes: [] });
      const starting = makeVm({ runStrategy: "RerunOnFailure", status: { runStrategy: "Halted" } });
      expect(planReset(rec(starting), "On", ctx())).toEqual({ status: 204, writes: [] });
      const marked = makeVm({ runStrategy: "Always", annotations: pendingOn });
      expect(planReset(rec(marked), "On", ctx())).toEqual({ status: 204, writes: [] });
    });

    it("On of an Always VM that is still starting marks it, so the controller applies the policy to its VMI", () => {
      expect(writes(planReset(rec(makeVm({ runStrategy: "Always" })), "On", ctx()))).toEqual([{ kind: "patch", ops: [mark] }]);
    });

    it("On of a running Always VM aligns it with the power-off policy", () => {
      expect(writes(planReset(on("Always"), "On", ctx()))).toEqual([
        {
          kind: "patch",
          ops: [
            { op: "test", path: "/spec/runStrategy", value: "Always" },
            { op: "replace", path: "/spec/runStrategy", value: "RerunOnFailure" },
          ],
        },
      ]);
      expect(writes(planReset(on("RerunOnFailure"), "On", ctx({ staysOff: false })))).toEqual([
        {
          kind: "patch",
          ops: [
            { op: "test", path: "/spec/runStrategy", value: "RerunOnFailure" },
            { op: "replace", path: "/spec/runStrategy", value: "Always" },
          ],
        },
      ]);
    });

    it("while powering off, the On is recorded on the VM and answered 202", () => {
      const plan = planReset(poweringOff(), "On", ctx());
      expect(plan.status).toBe(202);
      expect(writes(plan)).toEqual([
        { kind: "patch", ops: [{ op: "add", path: "/metadata/annotations", value: { [POWER_ON_REQUESTED_ANNOTATION]: NOW.toISOString() } }] },
      ]);
      // Already recorded: nothing more to write.
      expect(planReset(poweringOff(pendingOn), "On", ctx())).toEqual({ status: 202, writes: [] });
    });

    it("adds the annotation next to existing ones", () => {
      const plan = planReset(poweringOff({ "example.com/x": "y" }), "On", ctx());
      expect(writes(plan)).toEqual([
        { kind: "patch", ops: [{ op: "add", path: "/metadata/annotations/kubevirt-infra.io~1power-on-requested", value: NOW.toISOString() }] },
      ]);
    });
  });

  describe("ForceOff", () => {
    it("stops with gracePeriod 0, and a 409 (already stopping) counts as done", () => {
      expect(planReset(on(), "ForceOff", ctx()).writes).toEqual([{ write: { kind: "vm", subresource: "stop", gracePeriod: 0 }, conflictMeansDone: true }]);
    });
    it("cuts a graceful shutdown in progress short", () => {
      expect(writes(planReset(poweringOff(), "ForceOff", ctx()))).toEqual([{ kind: "vm", subresource: "stop", gracePeriod: 0 }]);
    });
    it("is idempotent: ForceOff when Off writes nothing", () => {
      expect(planReset(off(), "ForceOff", ctx())).toEqual({ status: 204, writes: [] });
    });
    it("cancels a start that has no VMI yet by setting Halted (spec.running VMs keep their field)", () => {
      expect(writes(planReset(rec(makeVm({ running: true })), "ForceOff", ctx()))).toEqual([
        {
          kind: "patch",
          ops: [
            { op: "test", path: "/spec/running", value: true },
            { op: "replace", path: "/spec/running", value: false },
          ],
        },
      ]);
    });
    it("cancels a deferred On first, then stops", () => {
      expect(writes(planReset(poweringOff(pendingOn), "ForceOff", ctx()))).toEqual([
        {
          kind: "patch",
          ops: [
            { op: "test", path: "/metadata/annotations/kubevirt-infra.io~1power-on-requested", value: pendingOn[POWER_ON_REQUESTED_ANNOTATION] },
            { op: "remove", path: "/metadata/annotations/kubevirt-infra.io~1power-on-requested" },
          ],
        },
        { kind: "vm", subresource: "stop", gracePeriod: 0 },
      ]);
    });
  });

  describe("GracefulShutdown", () => {
    it("stops without a grace override (ACPI, terminationGracePeriodSeconds honoured)", () => {
      expect(writes(planReset(on(), "GracefulShutdown", ctx()))).toEqual([{ kind: "vm", subresource: "stop" }]);
    });
    it("does nothing when off or already shutting down", () => {
      expect(planReset(off(), "GracefulShutdown", ctx()).writes).toEqual([]);
      expect(planReset(poweringOff(), "GracefulShutdown", ctx()).writes).toEqual([]);
    });
    it("cancels a deferred On", () => {
      expect(writes(planReset(poweringOff(pendingOn), "GracefulShutdown", ctx()))[0]).toMatchObject({ kind: "patch" });
    });
  });

  describe("ForceRestart", () => {
    it("hard-resets the VMI, with a force restart as fallback where virt-api has no reset", () => {
      expect(planReset(on(), "ForceRestart", ctx()).writes).toEqual([
        { write: { kind: "vmi", subresource: "reset" }, fallbackIfMissing: { kind: "vm", subresource: "restart", gracePeriodSeconds: 0 } },
      ]);
    });
    it("recreates the VMI (restart, grace 0) when the template changed, e.g. a boot override", () => {
      expect(writes(planReset(on(), "ForceRestart", ctx({ templateChangePending: true })))).toEqual([{ kind: "vm", subresource: "restart", gracePeriodSeconds: 0 }]);
    });
    it("restarts a paused VMI instead of resetting it", () => {
      expect(writes(planReset(on("Always", [{ type: "Paused", status: "True" }]), "ForceRestart", ctx()))).toEqual([
        { kind: "vm", subresource: "restart", gracePeriodSeconds: 0 },
      ]);
    });
    it("powers an Off system on, defers while powering off, and leaves a starting one alone", () => {
      expect(writes(planReset(off(), "ForceRestart", ctx()))[0]).toMatchObject({ kind: "patch" });
      expect(planReset(poweringOff(), "ForceRestart", ctx()).status).toBe(202);
      expect(planReset(rec(makeVm({ runStrategy: "Always" })), "ForceRestart", ctx())).toEqual({ status: 204, writes: [] });
    });
  });

  describe("GracefulRestart", () => {
    it("soft-reboots when the guest agent is connected", () => {
      expect(writes(planReset(on("Always", [{ type: "AgentConnected", status: "True" }]), "GracefulRestart", ctx()))).toEqual([
        { kind: "vmi", subresource: "softreboot" },
      ]);
    });
    it("restarts the VM without an agent", () => {
      expect(writes(planReset(on(), "GracefulRestart", ctx()))).toEqual([{ kind: "vm", subresource: "restart" }]);
    });
    it("restarts (new VMI) when the template changed, even with an agent", () => {
      const plan = planReset(on("Always", [{ type: "AgentConnected", status: "True" }]), "GracefulRestart", ctx({ templateChangePending: true }));
      expect(writes(plan)).toEqual([{ kind: "vm", subresource: "restart" }]);
    });
  });

  describe("PushPowerButton", () => {
    it("toggles: on when off, graceful shutdown when on, on again while powering off", () => {
      expect(writes(planReset(off(), "PushPowerButton", ctx()))[0]).toMatchObject({ kind: "patch" });
      expect(writes(planReset(on(), "PushPowerButton", ctx()))).toEqual([{ kind: "vm", subresource: "stop" }]);
      expect(planReset(poweringOff(), "PushPowerButton", ctx()).status).toBe(202);
    });
  });

  describe("Pause / Resume", () => {
    it("pause a running VMI, resume a paused one; repeated requests are no-ops", () => {
      expect(writes(planReset(on(), "Pause", ctx()))).toEqual([{ kind: "vmi", subresource: "pause" }]);
      const paused = on("Always", [{ type: "Paused", status: "True" }]);
      expect(planReset(paused, "Pause", ctx()).writes).toEqual([]);
      expect(writes(planReset(paused, "Resume", ctx()))).toEqual([{ kind: "vmi", subresource: "unpause" }]);
      expect(planReset(on(), "Resume", ctx()).writes).toEqual([]);
    });
    it("refuse a system that is off with 409 and a clear message", () => {
      for (const type of ["Pause", "Resume"]) {
        let err: unknown;
        try {
          planReset(off(), type, ctx());
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(RedfishError);
        expect((err as RedfishError).status).toBe(409);
        expect((err as RedfishError).message).toContain("PowerState is Off");
      }
    });
  });

  describe("pending On (power controller)", () => {
    const pendingVm = (o: Parameters<typeof makeVm>[0]) => makeVm({ annotations: pendingOn, ...o });

    it("waits while the VM powers off, then starts it (mark kept)", () => {
      expect(pendingPowerOnPlan(poweringOff(pendingOn), ctx())).toBeUndefined();
      const offNow = rec(pendingVm({ runStrategy: "Halted" }));
      expect(writes(pendingPowerOnPlan(offNow, ctx())!)).toEqual([
        { kind: "patch", ops: [{ op: "test", path: "/spec/runStrategy", value: "Halted" }, { op: "replace", path: "/spec/runStrategy", value: "Always" }] },
      ]);
    });

    it("waits for the new VMI, then moves the VM to RerunOnFailure and drops the mark in one patch", () => {
      expect(pendingPowerOnPlan(rec(pendingVm({ runStrategy: "Always" })), ctx())).toBeUndefined();
      const vm = pendingVm({ runStrategy: "Always" });
      expect(writes(pendingPowerOnPlan(rec(vm, makeVmi(vm, { phase: "Scheduling" })), ctx())!)).toEqual([
        {
          kind: "patch",
          ops: [
            { op: "test", path: "/spec/runStrategy", value: "Always" },
            { op: "replace", path: "/spec/runStrategy", value: "RerunOnFailure" },
            { op: "test", path: "/metadata/annotations/kubevirt-infra.io~1power-on-requested", value: pendingOn[POWER_ON_REQUESTED_ANNOTATION] },
            { op: "remove", path: "/metadata/annotations/kubevirt-infra.io~1power-on-requested" },
          ],
        },
      ]);
    });

    it("moves a spec.running VM to runStrategy (never both fields)", () => {
      const vm = pendingVm({ running: true });
      expect(writes(pendingPowerOnPlan(rec(vm, makeVmi(vm)), ctx())!)[0]).toEqual({
        kind: "patch",
        ops: [
          { op: "test", path: "/spec/running", value: true },
          { op: "remove", path: "/spec/running" },
          { op: "add", path: "/spec/runStrategy", value: "RerunOnFailure" },
          { op: "test", path: "/metadata/annotations/kubevirt-infra.io~1power-on-requested", value: pendingOn[POWER_ON_REQUESTED_ANNOTATION] },
          { op: "remove", path: "/metadata/annotations/kubevirt-infra.io~1power-on-requested" },
        ],
      });
    });

    it("does not switch strategy under a VMI that is shutting down (the old one of a restart)", () => {
      const vm = pendingVm({ runStrategy: "Always" });
      expect(pendingPowerOnPlan(rec(vm, makeVmi(vm, { deletionTimestamp: DELETED })), ctx())).toBeUndefined();
    });

    it("with powerOffStaysOff false only drops the mark; without a mark there is nothing to do", () => {
      const vm = pendingVm({ runStrategy: "Always" });
      expect(writes(pendingPowerOnPlan(rec(vm, makeVmi(vm)), ctx({ staysOff: false }))!)[0]).toMatchObject({
        ops: [{ op: "test" }, { op: "remove" }],
      });
      expect(pendingPowerOnPlan(on("Always"), ctx())).toBeUndefined();
    });
  });
});

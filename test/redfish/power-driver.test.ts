// ResetType semantics against the in-memory KubeVirt behind the driver seam (fake-kubevirt.ts): which writes
// each ResetType makes in each state, what PowerState reads after them, the power controller's follow-up, and
// the real API server's refusals. The sandbox end-to-end cases stay in power-sandbox.test.ts.
import { afterEach, describe, expect, it, vi } from "vitest";
import { derivePowerState, reset, startPowerController, POWER_ON_REQUESTED_ANNOTATION, type PowerDeps } from "../../redfish/power";
import { KUBEVIRT_SUBRESOURCE_API, KubeVirtApiUnavailable } from "../../redfish/kubevirt/failures";
import { FakeKubeVirt, PAGE_NOT_FOUND, PATCH_TEST_FAILED } from "./fake-kubevirt";
import { makeVm, type VmShape } from "./power-fixtures";

const NS = "tenant1";
const stops: (() => void)[] = [];
afterEach(() => stops.splice(0).forEach(stop => stop()));

function setup(o: { powerOffStaysOff?: boolean } = {}) {
  const fake = new FakeKubeVirt();
  const power: PowerDeps = { driver: fake, settings: { powerOffStaysOff: o.powerOffStaysOff ?? true } };
  stops.push(startPowerController(fake.cache, { driver: fake, settings: () => power.settings }));
  const state = (name: string) => derivePowerState(fake.record(NS, name));
  const press = (name: string, type: string) => reset(fake.record(NS, name), type, power);
  const spec = (name: string) => fake.vm(NS, name)!.spec as { runStrategy?: string; running?: boolean };
  const annotation = (name: string) => fake.vm(NS, name)!.metadata.annotations?.[POWER_ON_REQUESTED_ANNOTATION];
  const writes = () => fake.calls.filter(c => !c.method.startsWith("read")).map(c => c.method);
  /** On, KubeVirt starts the VMI, the power controller finishes (mark gone, policy applied). */
  const powerOn = async (name: string) => {
    expect(await press(name, "On")).toEqual({ status: 204 });
    fake.settle();
    await vi.waitFor(() => expect(annotation(name)).toBeUndefined());
    expect(state(name)).toBe("On");
  };
  const add = (name: string, shape: VmShape = {}, opts: { running?: boolean } = {}) => fake.addVm(makeVm({ namespace: NS, name, ...shape }), opts);
  return { fake, power, state, press, spec, annotation, writes, powerOn, add };
}

describe("ResetType semantics (fake KubeVirt)", () => {
  it("On: one patch (Always + mark), PoweringOn at once, then RerunOnFailure once the VMI exists", async () => {
    const t = setup();
    t.add("vm", { runStrategy: "Halted" });
    expect(await t.press("vm", "On")).toEqual({ status: 204 });
    expect(t.writes()).toEqual(["patchVm"]);
    expect(t.spec("vm").runStrategy).toBe("Always");
    expect(t.state("vm")).toBe("PoweringOn");
    t.fake.settle();
    await vi.waitFor(() => expect(t.spec("vm").runStrategy).toBe("RerunOnFailure"));
    expect(t.annotation("vm")).toBeUndefined();
    expect(t.state("vm")).toBe("On");
  });

  it("On when On and ForceOff/GracefulShutdown when Off write nothing", async () => {
    const t = setup();
    t.add("vm", { runStrategy: "Halted" });
    expect(await t.press("vm", "ForceOff")).toEqual({ status: 204 });
    expect(await t.press("vm", "GracefulShutdown")).toEqual({ status: 204 });
    expect(t.writes()).toEqual([]);
    await t.powerOn("vm");
    const rv = t.fake.vm(NS, "vm")!.metadata.resourceVersion;
    const before = t.fake.calls.length;
    expect(await t.press("vm", "On")).toEqual({ status: 204 });
    expect(t.fake.calls.length).toBe(before);
    expect(t.fake.vm(NS, "vm")!.metadata.resourceVersion).toBe(rv);
  });

  it("ForceOff is virt-api stop with gracePeriod 0, GracefulShutdown without; both read PoweringOff until the VMI is gone", async () => {
    const t = setup();
    t.add("hard", { runStrategy: "Halted", terminationGracePeriodSeconds: 180 });
    t.add("soft", { runStrategy: "Halted", terminationGracePeriodSeconds: 180 });
    await t.powerOn("hard");
    await t.powerOn("soft");
    t.fake.calls.length = 0;
    expect(await t.press("hard", "ForceOff")).toEqual({ status: 204 });
    expect(await t.press("soft", "GracefulShutdown")).toEqual({ status: 204 });
    expect(t.fake.calls.filter(c => c.method === "stopVm").map(c => [c.name, c.detail])).toEqual([
      ["hard", { gracePeriod: 0 }],
      ["soft", { gracePeriod: undefined }],
    ]);
    expect(t.fake.vmi(NS, "hard")!.spec).toMatchObject({ terminationGracePeriodSeconds: 0 });
    expect([t.state("hard"), t.state("soft")]).toEqual(["PoweringOff", "PoweringOff"]);
    expect(await t.press("soft", "GracefulShutdown")).toEqual({ status: 204 }); // repeated while going down: no write
    expect(t.fake.calls.filter(c => c.method === "stopVm")).toHaveLength(2);
    t.fake.settle();
    expect([t.state("hard"), t.state("soft")]).toEqual(["Off", "Off"]);
  });

  it("a VM on the deprecated spec.running keeps that field where it can, and never has both", async () => {
    const t = setup();
    t.add("vm", { running: true }, { running: true });
    await t.press("vm", "ForceOff");
    t.fake.settle();
    expect(t.spec("vm")).toMatchObject({ running: false });
    expect(t.spec("vm").runStrategy).toBeUndefined();
    await t.powerOn("vm");
    // RerunOnFailure cannot be said with spec.running: moved to runStrategy in one patch.
    expect(t.spec("vm").running).toBeUndefined();
    expect(t.spec("vm").runStrategy).toBe("RerunOnFailure");

    t.power.settings = { powerOffStaysOff: false };
    t.add("legacy", { running: false });
    await t.powerOn("legacy");
    expect(t.spec("legacy")).toMatchObject({ running: true });
    expect(t.spec("legacy").runStrategy).toBeUndefined();
  });

  it("powerOffStaysOff: a guest power-off after On stays off; with false, KubeVirt restarts it", async () => {
    const t = setup();
    t.add("stays", { runStrategy: "Halted" });
    await t.powerOn("stays");
    t.fake.mutate("VirtualMachineInstance", NS, "stays", vmi => (vmi.status = { phase: "Succeeded" }));
    t.fake.settle();
    expect(t.state("stays")).toBe("Off");

    t.power.settings = { powerOffStaysOff: false };
    t.add("restarts", { runStrategy: "Halted" });
    await t.powerOn("restarts");
    expect(t.spec("restarts").runStrategy).toBe("Always");
    const first = t.fake.vmi(NS, "restarts")!.metadata.uid;
    t.fake.mutate("VirtualMachineInstance", NS, "restarts", vmi => (vmi.status = { phase: "Succeeded" }));
    t.fake.settle();
    expect(t.state("restarts")).toBe("On");
    expect(t.fake.vmi(NS, "restarts")!.metadata.uid).not.toBe(first);
  });

  it("On while powering off is deferred (202, PoweringOn) and started by the controller once off; ForceOff cancels it", async () => {
    const t = setup();
    t.add("vm", { runStrategy: "Halted" });
    await t.powerOn("vm");
    await t.press("vm", "GracefulShutdown");
    expect(await t.press("vm", "On")).toEqual({ status: 202 });
    expect(t.annotation("vm")).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(t.state("vm")).toBe("PoweringOn");
    const writes = t.writes().length;
    expect(await t.press("vm", "On")).toEqual({ status: 202 }); // repeated: no new write
    expect(t.writes().length).toBe(writes);
    t.fake.settle(); // the old VMI goes away: the controller starts the VM
    await vi.waitFor(() => expect(t.spec("vm").runStrategy).toBe("Always"));
    t.fake.settle();
    await vi.waitFor(() => expect(t.annotation("vm")).toBeUndefined());
    expect(t.state("vm")).toBe("On");

    await t.press("vm", "GracefulShutdown");
    expect(await t.press("vm", "On")).toEqual({ status: 202 });
    expect(await t.press("vm", "ForceOff")).toEqual({ status: 204 });
    expect(t.annotation("vm")).toBeUndefined(); // cleared before the stop
    t.fake.settle();
    expect(t.state("vm")).toBe("Off");
  });

  it("ForceRestart resets the VMI; GracefulRestart soft-reboots with the agent and restarts the VM without", async () => {
    const t = setup();
    t.add("vm", { runStrategy: "Halted" });
    await t.powerOn("vm");
    const uid = t.fake.vmi(NS, "vm")!.metadata.uid;
    t.fake.calls.length = 0;
    expect(await t.press("vm", "ForceRestart")).toEqual({ status: 204 });
    expect(t.fake.calls.map(c => [c.method, c.detail])).toEqual([["guestAction", "reset"]]);
    expect(t.fake.vmi(NS, "vm")!.metadata.uid).toBe(uid);

    t.fake.calls.length = 0;
    expect(await t.press("vm", "GracefulRestart")).toEqual({ status: 204 });
    expect(t.writes()).toEqual(["restartVm"]);
    t.fake.settle();
    expect(t.fake.vmi(NS, "vm")!.metadata.uid).not.toBe(uid);

    t.fake.mutate("VirtualMachineInstance", NS, "vm", vmi => (vmi.status = { ...(vmi.status as object), conditions: [{ type: "AgentConnected", status: "True" }] }));
    t.fake.calls.length = 0;
    expect(await t.press("vm", "GracefulRestart")).toEqual({ status: 204 });
    expect(t.fake.calls.map(c => [c.method, c.detail])).toEqual([["guestAction", "softreboot"]]);
  });

  it("ForceRestart where virt-api has no VMI reset (older KubeVirt: 404) falls back to a restart with grace 0", async () => {
    const t = setup();
    t.add("vm", { runStrategy: "Halted" });
    await t.powerOn("vm");
    t.fake.failNext("guestAction", PAGE_NOT_FOUND);
    t.fake.calls.length = 0;
    expect(await t.press("vm", "ForceRestart")).toEqual({ status: 204 });
    expect(t.fake.calls.map(c => [c.method, c.detail])).toEqual([
      ["guestAction", "reset"],
      ["restartVm", { gracePeriodSeconds: 0 }],
    ]);
  });

  it("PushPowerButton toggles; Pause and Resume need On and Paused", async () => {
    const t = setup();
    t.add("vm", { runStrategy: "Halted" });
    await t.press("vm", "PushPowerButton");
    t.fake.settle();
    await vi.waitFor(() => expect(t.annotation("vm")).toBeUndefined());
    expect(t.state("vm")).toBe("On");
    expect(await t.press("vm", "Resume")).toEqual({ status: 204 }); // On already: nothing to do
    expect(await t.press("vm", "Pause")).toEqual({ status: 204 });
    expect(t.state("vm")).toBe("Paused");
    expect(await t.press("vm", "Pause")).toEqual({ status: 204 });
    expect(await t.press("vm", "Resume")).toEqual({ status: 204 });
    expect(t.state("vm")).toBe("On");
    await t.press("vm", "PushPowerButton");
    expect(t.state("vm")).toBe("PoweringOff");
    t.fake.settle();
    await expect(t.press("vm", "Pause")).rejects.toMatchObject({ status: 409, messageId: "Base.1.18.1.ActionParameterValueConflict" });
  });

  it("Nmi, PowerCycle and unknown values are 400 ActionParameterNotSupported and write nothing", async () => {
    const t = setup();
    t.add("vm", { runStrategy: "Halted" });
    for (const type of ["Nmi", "PowerCycle", "Bogus"]) {
      await expect(t.press("vm", type)).rejects.toMatchObject({ status: 400, messageId: "Base.1.18.1.ActionParameterNotSupported" });
    }
    expect(t.fake.calls).toEqual([]);
  });

  it("On while a DataVolume imports: PoweringOn until the import succeeds; a ForceOff meanwhile cancels the start", async () => {
    const t = setup();
    const volumes = [{ name: "rootdisk", containerDisk: { image: "quay.io/example/root" } }, { name: "media", dataVolume: { name: "iso" } }];
    const disks = [{ name: "rootdisk", disk: {} }, { name: "media", cdrom: { bus: "sata" } }];
    await t.fake.createDataVolume({ apiVersion: "cdi.kubevirt.io/v1beta1", kind: "DataVolume", metadata: { name: "iso", namespace: NS } });
    t.add("vm", { runStrategy: "Halted", disks, volumes });
    t.add("cancel", { runStrategy: "Halted", disks, volumes });
    expect(await t.press("vm", "On")).toEqual({ status: 204 });
    expect(await t.press("cancel", "On")).toEqual({ status: 204 });
    t.fake.settle();
    expect([t.state("vm"), t.state("cancel")]).toEqual(["PoweringOn", "PoweringOn"]);
    expect(await t.press("cancel", "ForceOff")).toEqual({ status: 204 });
    expect(t.state("cancel")).toBe("Off");
    t.fake.setImport(NS, "iso", "Succeeded", { progress: "100.0%" });
    t.fake.settle();
    await vi.waitFor(() => expect(t.annotation("vm")).toBeUndefined());
    expect([t.state("vm"), t.state("cancel")]).toEqual(["On", "Off"]);
    expect(t.annotation("cancel")).toBeUndefined();
  });
});

describe("the real API server's answers", () => {
  it("a patch planned from a stale cache entry (real 422 without causes) is re-planned once from a fresh read", async () => {
    const t = setup();
    t.add("vm", { runStrategy: "Halted" });
    const stale = t.fake.record(NS, "vm");
    t.fake.mutate("VirtualMachine", NS, "vm", vm => ((vm.spec as { runStrategy: string }).runStrategy = "Manual"));
    expect(await reset(stale, "On", t.power)).toEqual({ status: 204 });
    expect(t.fake.calls.map(c => c.method)).toEqual(["patchVm", "readVm", "readVmi", "patchVm"]);
    expect(t.spec("vm").runStrategy).toBe("Always");
  });

  it("a patch that conflicts again after the fresh read is 409 ResourceInUse, not a 500", async () => {
    const t = setup();
    t.add("vm", { runStrategy: "Halted" });
    t.fake.failNext("patchVm", PATCH_TEST_FAILED);
    t.fake.failNext("patchVm", PATCH_TEST_FAILED);
    await expect(t.press("vm", "On")).rejects.toMatchObject({ status: 409, messageId: "Base.1.18.1.ResourceInUse" });
  });

  it("a missing KubeVirt subresource API is a 503 naming it, never 'ComputerSystem not found'", async () => {
    const t = setup();
    t.add("vm", { runStrategy: "Halted" });
    await t.powerOn("vm");
    // As the cluster driver reports it (the API named), and as a bare 404 page-not-found from any driver.
    t.fake.failNext("stopVm", new KubeVirtApiUnavailable(KUBEVIRT_SUBRESOURCE_API, "404 page not found"));
    const named = await t.press("vm", "ForceOff").catch(e => e);
    expect(named).toMatchObject({ status: 503, messageId: "Base.1.18.1.ServiceTemporarilyUnavailable", headers: { "Retry-After": "30" } });
    expect(named.message).toContain("subresources.kubevirt.io/v1");
    expect(named.message).toContain("ComputerSystem.Reset ForceOff");
    t.fake.failNext("stopVm", PAGE_NOT_FOUND);
    const bare = await t.press("vm", "ForceOff").catch(e => e);
    expect(bare).toMatchObject({ status: 503 });
    expect(bare.message).not.toMatch(/not found/i);
    expect(t.state("vm")).toBe("On");
  });
});

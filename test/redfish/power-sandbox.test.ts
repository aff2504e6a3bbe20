// ResetTypes against the sandbox API server and KubeVirt simulator: real HTTP writes through the gateway,
// VMs and VMIs that really start, stop (with grace periods), reboot and pause; PowerState read from a WatchCache.
// The per-ResetType semantics (writes, refusals, idempotency, policy) run against the fake driver in power-driver.test.ts.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { POWER_ON_REQUESTED_ANNOTATION, reportedPowerState, reset, type PowerState } from "../../redfish/power";
import { SANDBOX_ANNOTATIONS } from "../../sandbox/simulators";
import { makeVm } from "./power-fixtures";
import { runStrategyFields, startPowerSandbox, type PowerSandbox } from "./power-sandbox";
import { present } from "../helpers/present";

let sb: PowerSandbox;
let seq = 0;
const uniqueName = (base: string) => `${base}-${++seq}`;

beforeAll(async () => {
  sb = await startPowerSandbox();
});
afterAll(async () => sb?.stop());
afterEach(() => (sb.power.settings = { powerOffStaysOff: true }));

/** A VM with a long grace period; `acpiSeconds`: the guest honours the ACPI button after that long. */
function createVm(name: string, o: Parameters<typeof makeVm>[0] & { acpiSeconds?: number; agent?: boolean } = {}) {
  const templateAnnotations: Record<string, string> = {};
  if (o.acpiSeconds !== undefined) templateAnnotations[SANDBOX_ANNOTATIONS.acpiShutdownSeconds] = String(o.acpiSeconds);
  if (o.agent) templateAnnotations[SANDBOX_ANNOTATIONS.guestAgent] = "true";
  sb.createVm(makeVm({ name, terminationGracePeriodSeconds: 180, templateAnnotations, ...o }));
  return vi.waitFor(() => present(sb.cache.getVm(sb.namespace, name), `${name} in the cache`), { timeout: 10_000, interval: 10 });
}

/** On, and wait until it is finished: VMI running and the power controller done (mark gone, policy applied). */
async function powerOn(name: string) {
  expect(await reset(sb.record(name), "On", sb.power)).toEqual({ status: 204 });
  await expect.poll(() => sb.state(name) === "On" && sb.record(name).vm.metadata.annotations?.[POWER_ON_REQUESTED_ANNOTATION] === undefined, { message: `${name} On` }).toBeTruthy();
}

const vmiUid = (name: string) => sb.vmi(name)?.metadata.uid;
const bootCount = (name: string) => Number(sb.vmi(name)?.metadata.annotations?.[SANDBOX_ANNOTATIONS.bootCount] ?? 0);

describe("power on sandbox KubeVirt", () => {
  it("On: PoweringOn as soon as the reply is sent, then On; the VM ends in RerunOnFailure", async () => {
    const name = uniqueName("on");
    await createVm(name, { runStrategy: "Halted" });
    const states = sb.watchStates(name);
    expect(sb.state(name)).toBe("Off");
    expect(await reset(sb.record(name), "On", sb.power)).toEqual({ status: 204 });
    expect(sb.state(name)).toBe("PoweringOn"); // the cache has seen the write when the API call returned
    await expect.poll(() => sb.state(name), { message: "On" }).toBe("On");
    expect(states).toEqual(["Off", "PoweringOn", "On"]);
    // The power controller applied the power-off policy once the VMI existed, and dropped its mark.
    await expect.poll(() => sb.vm(name).metadata.annotations?.[POWER_ON_REQUESTED_ANNOTATION], { message: "On finished" }).toBeUndefined();
    expect(runStrategyFields(sb.vm(name))).toEqual({ running: undefined, runStrategy: "RerunOnFailure" });
    expect(sb.vmi(name)?.status).toMatchObject({ phase: "Running" });
  });

  it("ForceOff of a VM with terminationGracePeriodSeconds 180 is Off within seconds", async () => {
    const name = uniqueName("forceoff");
    await createVm(name, { runStrategy: "Halted" });
    await powerOn(name);
    const states = sb.watchStates(name);
    const started = Date.now();
    expect(await reset(sb.record(name), "ForceOff", sb.power)).toEqual({ status: 204 });
    await expect.poll(() => sb.state(name), { message: "Off after ForceOff", timeout: 5000 }).toBe("Off");
    const took = Date.now() - started;
    expect(took).toBeLessThan(5000);
    expect(states).toEqual(["On", "PoweringOff", "Off"]);
    expect(sb.vmi(name)).toBeUndefined();
  });

  it("GracefulShutdown honours the grace period (ACPI); ForceOff cuts a long one short", async () => {
    const name = uniqueName("graceful");
    await createVm(name, { runStrategy: "Halted" }); // no ACPI reaction: only the 180 s grace period ends it
    await powerOn(name);
    expect(await reset(sb.record(name), "GracefulShutdown", sb.power)).toEqual({ status: 204 });
    expect(sb.state(name)).toBe("PoweringOff");
    // Not vacuous: a VM started after the shutdown runs only after several simulator steps, by when a shutdown
    // that ignored the grace period would have ended.
    await createVm(`${name}-later`, { runStrategy: "Always" });
    await expect.poll(() => sb.state(`${name}-later`), { message: "a VM started later is On" }).toBe("On");
    expect(sb.state(name)).toBe("PoweringOff"); // still shutting down: the guest has its grace period
    expect(await reset(sb.record(name), "GracefulShutdown", sb.power)).toEqual({ status: 204 }); // repeated: fine
    expect(await reset(sb.record(name), "ForceOff", sb.power)).toEqual({ status: 204 });
    await expect.poll(() => sb.state(name), { message: "Off" }).toBe("Off");

    const acpi = uniqueName("acpi");
    await createVm(acpi, { runStrategy: "Halted", acpiSeconds: 0.2 });
    await powerOn(acpi);
    const states = sb.watchStates(acpi);
    await reset(sb.record(acpi), "GracefulShutdown", sb.power);
    await expect.poll(() => sb.state(acpi), { message: "guest powered off on ACPI" }).toBe("Off");
    expect(states).toEqual(["On", "PoweringOff", "Off"]);
  });

  it("GracefulShutdown: the System reports On until the guest is off (sushy and Ironic count PoweringOff as off)", async () => {
    const name = uniqueName("soft");
    await createVm(name, { runStrategy: "Halted", acpiSeconds: 1 });
    await powerOn(name);
    const reported: PowerState[] = [];
    const unsubscribe = sb.cache.onChange(ev => {
      const rec = ev.namespace === sb.namespace && ev.name === name ? sb.cache.getVm(sb.namespace, name) : undefined;
      if (rec && reported[reported.length - 1] !== reportedPowerState(rec)) reported.push(reportedPowerState(rec));
    });
    try {
      expect(await reset(sb.record(name), "GracefulShutdown", sb.power)).toEqual({ status: 204 });
      expect(sb.state(name)).toBe("PoweringOff"); // heading off: PushPowerButton now means On
      expect(reportedPowerState(sb.record(name))).toBe("On"); // the guest still runs
      await expect.poll(() => reportedPowerState(sb.record(name)), { timeout: 10_000 }).toBe("Off");
      expect(reported).toEqual(["On", "Off"]);
    } finally {
      unsubscribe();
    }
  });

  it("a guest that powers itself off after a Redfish On stays off", async () => {
    const name = uniqueName("guestoff");
    await createVm(name, { runStrategy: "Always" }); // created running, like many VMs
    await expect.poll(() => sb.state(name), { message: "initially On" }).toBe("On");
    await reset(sb.record(name), "ForceOff", sb.power);
    await expect.poll(() => sb.state(name), { message: "Off" }).toBe("Off");
    await powerOn(name);
    sb.kubevirt.guestPowerOff(sb.namespace, name);
    await expect.poll(() => sb.state(name), { message: "Off after the guest powered off" }).toBe("Off");
    // Not vacuous: a VM created now is On only after the simulator steps a restart of this one would take.
    await createVm(`${name}-later`, { runStrategy: "Always" });
    await expect.poll(() => sb.state(`${name}-later`), { message: "a VM started later is On" }).toBe("On");
    expect(sb.state(name)).toBe("Off");
    expect(sb.vmi(name)).toBeUndefined();
    // And it powers on again normally.
    await powerOn(name);
  });

  it("On while powering off is recorded on the VM, reported PoweringOn, and applied once the VM is off", async () => {
    const name = uniqueName("deferred");
    await createVm(name, { runStrategy: "Halted", acpiSeconds: 0.4 });
    await powerOn(name);
    const first = vmiUid(name);
    await reset(sb.record(name), "GracefulShutdown", sb.power);
    expect(sb.state(name)).toBe("PoweringOff");
    const states = sb.watchStates(name);
    expect(await reset(sb.record(name), "On", sb.power)).toEqual({ status: 202 });
    expect(sb.vm(name).metadata.annotations?.[POWER_ON_REQUESTED_ANNOTATION]).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(sb.state(name)).toBe("PoweringOn");
    expect(await reset(sb.record(name), "On", sb.power)).toEqual({ status: 202 }); // repeated: still deferred, no new write
    await expect.poll(() => sb.state(name) === "On" && vmiUid(name) !== first, { message: "started after the power-off", timeout: 5000 }).toBeTruthy();
    expect(sb.vm(name).metadata.annotations?.[POWER_ON_REQUESTED_ANNOTATION]).toBeUndefined();
    expect(states[0]).toBe("PoweringOff");
    expect(states).not.toContain("Off"); // the deferred On is reported from the moment it is accepted
    expect(states[states.length - 1]).toBe("On");
  });

  it("ForceRestart hard-resets the running VMI (same VMI, boots again)", async () => {
    const name = uniqueName("reset");
    await createVm(name, { runStrategy: "Halted" });
    await powerOn(name);
    const uid = vmiUid(name);
    const boots = bootCount(name);
    expect(await reset(sb.record(name), "ForceRestart", sb.power)).toEqual({ status: 204 });
    await expect.poll(() => bootCount(name), { message: "second boot" }).toBe(boots + 1);
    expect(vmiUid(name)).toBe(uid);
    expect(sb.state(name)).toBe("On");
  });

  it("a stale cache entry does not make a write fail: the plan is redone from a fresh read", async () => {
    const name = uniqueName("stale");
    await createVm(name, { runStrategy: "Halted" });
    const stale = sb.record(name);
    // Someone else starts the VM meanwhile (runStrategy changes): the patch planned from `stale` fails its test.
    sb.api.store.mutate("virtualmachines.kubevirt.io", sb.namespace, name, obj => ({ ...obj, spec: { ...(obj.spec as object), runStrategy: "Manual" } }));
    expect(await reset(stale, "On", sb.power)).toEqual({ status: 204 });
    await expect.poll(() => sb.state(name), { message: "On" }).toBe("On");
    await expect.poll(() => runStrategyFields(sb.vm(name)).runStrategy, { message: "policy applied" }).toBe("RerunOnFailure");
  });

});

describe("power on a KubeVirt without the VMI reset subresource", () => {
  it("ForceRestart falls back to a force restart of the VM (new VMI, grace 0)", async () => {
    // Older virt-api has no `reset`: the aggregated API answers 404 for the path.
    sb.api.registerSubresource("subresources.kubevirt.io", "v1", "virtualmachineinstances", "reset", async () => ({
      status: 404,
      body: { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404, message: "the server could not find the requested resource" },
    }));
    const name = uniqueName("noreset");
    await createVm(name, { runStrategy: "Halted" }); // grace 180 s, no ACPI: only grace 0 ends the old VMI quickly
    await powerOn(name);
    const before = vmiUid(name);
    const started = Date.now();
    expect(await reset(sb.record(name), "ForceRestart", sb.power)).toEqual({ status: 204 });
    await expect.poll(() => sb.state(name) === "On" && vmiUid(name) !== before, { message: "new VMI running", timeout: 5000 }).toBeTruthy();
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

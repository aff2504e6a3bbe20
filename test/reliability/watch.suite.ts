// Reliability: watch interruptions. The sandbox API server drops every watch (cleanly, with an in-stream
// 410 Gone, or by restarting), the cluster changes while the watcher is not watching, and the watcher's cache
// must converge through its own re-list: no process restart, no stale PowerState once it has resynced.
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RELIABILITY_NAMESPACE as NS, RELIABILITY_USER as OPS, startReliabilityCluster, vmObject, VM_KEY, type RedfishClient, type SuiteCluster } from "./support";

// The informers resume a watch the server ended at once, re-list after a 410, and back off (0.5 s → 10 s)
// while the API server is unreachable, so convergence after an outage takes at most one back-off step.
const RESYNC_BOUND_MS = 15_000;

let c: SuiteCluster;
let rf: RedfishClient;

beforeAll(async () => {
  // Debug logs show the informers' watch opens and re-lists, so the tests can see the path taken.
  ({ c, rf } = await startReliabilityCluster(undefined, { LOG_LEVEL: "debug" }));
});
afterAll(async () => {
  rf?.close();
  await c?.stop();
});

const system = async (name: string) => rf.request("GET", `/redfish/v1/Systems/${NS}.${name}`, { user: OPS });
const powerState = async (name: string) => (await system(name)).body?.PowerState as string | undefined;

async function poweredOnThroughRedfish(name: string): Promise<void> {
  c.api.store.create(VM_KEY, vmObject(NS, name));
  await expect.poll(async () => (await system(name)).status, { message: `${name} in Redfish` }).toBe(200);
  const reset = await rf.request("POST", `/redfish/v1/Systems/${NS}.${name}/Actions/ComputerSystem.Reset`, { user: OPS, body: { ResetType: "On" } });
  expect(reset.status).toBe(204);
  await expect.poll(() => powerState(name), { message: `${name} On` }).toBe("On");
  // The power controller has switched the VM to RerunOnFailure: a guest power-off now stays off.
  await expect.poll(() => (c.api.store.get(VM_KEY, NS, name)?.spec as { runStrategy?: string }).runStrategy, { message: `${name} RerunOnFailure` }).toBe("RerunOnFailure");
}

/** Changes made while no watch is open: a guest power-off, a spec change, a deletion and a new VM. */
function changeClusterNow(prefix: string): void {
  c.simulators.kubevirt.guestPowerOff(NS, `${prefix}-run`);
  c.api.store.mutate(VM_KEY, NS, `${prefix}-steady`, vm => {
    const spec = vm.spec as { template: { spec: { domain: { firmware: { serial?: string } } } } };
    spec.template.spec.domain.firmware.serial = `${prefix}-changed`;
    return vm;
  });
  c.api.store.delete(VM_KEY, NS, `${prefix}-gone`);
  c.api.store.create(VM_KEY, vmObject(NS, `${prefix}-new`));
}

async function prepare(prefix: string): Promise<void> {
  await poweredOnThroughRedfish(`${prefix}-run`);
  for (const name of [`${prefix}-steady`, `${prefix}-gone`]) c.api.store.create(VM_KEY, vmObject(NS, name));
  await expect.poll(async () => [(await system(`${prefix}-gone`)).status, (await system(`${prefix}-steady`)).status], { message: "VMs in Redfish" }).toEqual([200, 200]);
}

async function expectConverged(prefix: string, watcherPid: number | undefined): Promise<number> {
  const started = Date.now();
  await expect
    .poll(
      async () => ({
        run: await powerState(`${prefix}-run`),
        steady: (await system(`${prefix}-steady`)).body?.SerialNumber,
        gone: (await system(`${prefix}-gone`)).status,
        new: (await system(`${prefix}-new`)).status,
      }),
      { message: "the cache to show every change made while it was not watching", timeout: RESYNC_BOUND_MS },
    )
    .toEqual({ run: "Off", steady: `${prefix}-changed`, gone: 404, new: 200 });
  const took = Date.now() - started;
  // No stale PowerState after the resync: it stays Off (the guest powered off; RerunOnFailure keeps it off).
  for (let i = 0; i < 10; i++) {
    expect(await powerState(`${prefix}-run`)).toBe("Off");
    await sleep(100);
  }
  // Resynced inside the same process.
  expect(c.watcher!.child.pid).toBe(watcherPid);
  expect(c.watcher!.child.exitCode).toBeNull();
  return took;
}

const watcherLines = (pattern: RegExp) => c.watcher!.logs.filter(l => pattern.test(l)).length;

describe("watch interruptions", () => {
  it("dropped watches: the watcher re-lists and converges without a restart", async () => {
    await prepare("drop");
    const pid = c.watcher!.child.pid;
    const connectsBefore = watcherLines(/informer: watching/);
    const dropped = c.api.dropWatches();
    expect(dropped).toBeGreaterThan(0);
    changeClusterNow("drop"); // synchronously: no watch can have reconnected yet
    const took = await expectConverged("drop", pid);
    expect(watcherLines(/informer: watching/)).toBeGreaterThan(connectsBefore);
    console.log(`dropped ${dropped} watches; converged after ${took} ms`);
  });

  it("410 Gone on the open watches: the watcher drops its resourceVersion, re-lists and converges", async () => {
    await prepare("gone");
    const pid = c.watcher!.child.pid;
    const expiredBefore = watcherLines(/resourceVersion expired \(410\), re-listing/);
    const dropped = c.api.dropWatches({ expired: true });
    expect(dropped).toBeGreaterThan(0);
    changeClusterNow("gone");
    const took = await expectConverged("gone", pid);
    // The 410 path really ran (the informers log each re-list it forces).
    expect(watcherLines(/resourceVersion expired \(410\), re-listing/)).toBeGreaterThan(expiredBefore);
    console.log(`410 on ${dropped} watches; converged after ${took} ms`);
  });

  it("API server restart (2 s down): Redfish keeps answering from the cache, then converges", async () => {
    await prepare("restart");
    const pid = c.watcher!.child.pid;
    const restarted = c.api.restart(2_000); // watches end synchronously; the port closes
    changeClusterNow("restart");
    // While the API server is down, reads are served from the watch cache and writes fail cleanly.
    const whileDown = await rf.request("GET", "/redfish/v1/Systems", { user: OPS });
    expect(whileDown.status).toBe(200);
    const actionWhileDown = await rf.request("POST", `/redfish/v1/Systems/${NS}.restart-steady/Actions/ComputerSystem.Reset`, { user: OPS, body: { ResetType: "On" } });
    // Either reported as a server-side failure with a Redfish error body, or completed once the API server is back.
    if (actionWhileDown.status !== 204) {
      expect(actionWhileDown.status, actionWhileDown.text).toBeGreaterThanOrEqual(500);
      expect(actionWhileDown.body?.error?.["@Message.ExtendedInfo"]?.length ?? 0, actionWhileDown.text).toBeGreaterThan(0);
    }
    await restarted;
    const took = await expectConverged("restart", pid);
    // Writes work again once the API server is back.
    const after = await rf.request("POST", `/redfish/v1/Systems/${NS}.restart-steady/Actions/ComputerSystem.Reset`, { user: OPS, body: { ResetType: "On" } });
    expect(after.status).toBe(204);
    await expect.poll(() => powerState("restart-steady"), { message: "restart-steady On after the outage" }).toBe("On");
    console.log(`API server down 2 s: a Reset meanwhile answered ${actionWhileDown.status}; converged ${took} ms after it came back`);
  });
});

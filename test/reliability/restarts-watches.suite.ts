// Reliability: the watcher's access layer through watch expiries and API server restarts. Watches end every
// 2-4 s (KUBEVIRT_INFRA_WATCH_TIMEOUT_SECONDS=2) and the API server restarts 5 times; the open watch streams
// per kind must be what they were before, the TCP connections from the watcher to the API server bounded
// (≤ 10) throughout, and the cache must show every change made meanwhile, in the same watcher process.
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { establishedConnections } from "../../scripts/bench/connections";
import { RELIABILITY_NAMESPACE as NS, RELIABILITY_USER as OPS, startReliabilityCluster, vmObject, VM_KEY, type RedfishClient, type SuiteCluster } from "./support";

const RESTARTS = 5;
/** The module's client multiplexes every request and watch over one HTTP/2 connection (two while one closes);
 * the rest are Pepr's own HTTP/1.1 calls. The bound holds through the restarts too (issue 15). */
const MAX_CONNECTIONS = 10;

let c: SuiteCluster;
let rf: RedfishClient;

beforeAll(async () => {
  ({ c, rf } = await startReliabilityCluster(undefined, { KUBEVIRT_INFRA_WATCH_TIMEOUT_SECONDS: "2" }));
});
afterAll(async () => {
  rf?.close();
  await c?.stop();
});

const systemStatus = async (name: string) => (await rf.request("GET", `/redfish/v1/Systems/${NS}.${name}`, { user: OPS })).status;
const connections = () => establishedConnections(c.watcher!.child.pid!, c.api.port);

/** Samples the watcher's connections to the API server every 100 ms while `work` runs; returns the maximum. */
async function maxConnectionsDuring(work: () => Promise<void>): Promise<number> {
  let max = connections();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      max = Math.max(max, connections());
      await sleep(100);
    }
  })();
  try {
    await work();
  } finally {
    sampling = false;
    await sampler;
  }
  return max;
}

describe("access layer through watch expiries and API server restarts", () => {
  it(`keeps one watch per kind and ≤ ${MAX_CONNECTIONS} connections through ${RESTARTS} restarts, and converges`, async () => {
    c.api.store.create(VM_KEY, vmObject(NS, "before"));
    await expect.poll(() => systemStatus("before"), { message: "the first VM in Redfish" }).toBe(200);
    const pid = c.watcher!.child.pid;
    // Pepr's own start-up calls (kubernetes-fluent-client: a new undici Agent per call) leave idle
    // connections for a few seconds; the bound is for the watcher once started.
    const startupMax = await maxConnectionsDuring(async () => void (await sleep(5_000)));

    // Several watch expiries (2-4 s each): every watch resumes, none is duplicated.
    let baseline: Record<string, number> = {};
    const steadyMax = await maxConnectionsDuring(async () => {
      await sleep(9_000);
      baseline = c.api.openWatches();
    });
    for (const kind of ["virtualmachines.kubevirt.io", "virtualmachineinstances.kubevirt.io", "datavolumes.cdi.kubevirt.io", "configmaps", "secrets"]) {
      expect(baseline[kind], `${kind} watch streams in ${JSON.stringify(baseline)}`).toBe(1);
    }
    expect(baseline.nodes, "role both without node-identity enabled still watches Nodes once").toBeLessThanOrEqual(1);

    const restartsMax = await maxConnectionsDuring(async () => {
      for (let i = 0; i < RESTARTS; i++) {
        const restarted = c.api.restart(300);
        // Changes while the API server is down or coming back: the informers must catch up by themselves.
        c.api.store.create(VM_KEY, vmObject(NS, `during-${i}`));
        if (i > 0) c.api.store.delete(VM_KEY, NS, `during-${i - 1}`);
        await restarted;
        await sleep(1_000);
      }
      await expect
        .poll(async () => [await systemStatus(`during-${RESTARTS - 1}`), await systemStatus(`during-${RESTARTS - 2}`)], { message: "the cache to converge after the restarts", timeout: 30_000 })
        .toEqual([200, 404]);
      // Watches are open again, one per kind, as before.
      await vi.waitFor(() => expect(c.api.openWatches()).toEqual(baseline), { timeout: 20_000, interval: 200 });
    });
    const after = c.api.openWatches();
    console.log(
      `watch streams before ${JSON.stringify(baseline)}, after ${RESTARTS} restarts ${JSON.stringify(after)}; ` +
        `max watcher connections to the API server: ${startupMax} in the 5 s after start, ${steadyMax} with watch expiries, ${restartsMax} through the restarts, ${connections()} now`,
    );
    expect(after).toEqual(baseline);
    expect(steadyMax).toBeLessThanOrEqual(MAX_CONNECTIONS);
    expect(restartsMax).toBeLessThanOrEqual(MAX_CONNECTIONS);
    // Idle connections left by Pepr's reconnects close: under the bound, with no restart of the watcher.
    await vi.waitFor(() => expect(connections()).toBeLessThanOrEqual(MAX_CONNECTIONS), { timeout: 15_000, interval: 250 });
    expect(c.watcher!.child.pid).toBe(pid);
    expect(c.watcher!.child.exitCode).toBeNull();
  }, 180_000);
});

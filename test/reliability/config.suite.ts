// Reliability: configuration changes while Redfish is under load (no failed request; the new configuration in
// force within seconds; an invalid change refused while the last good one stays), and Node writes while the
// module is broken (admission server killed, configuration invalid): the Node webhook never blocks a Node.
import { setTimeout as sleep } from "node:timers/promises";
import { CoreV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createNamespace, startSuiteCluster, vmObject, VM_KEY, type RedfishClient, type SuiteCluster } from "./support";

const NS = "rel-vms";
const NS2 = "rel2-vms";
const OPS_PASSWORD = "ops-password-1";
const OPS = `ops:${OPS_PASSWORD}`;

const baseConfig = (o: { sessionTimeoutSeconds?: number; secondChassis?: boolean; nodeMapping?: unknown[] } = {}) => ({
  chassis: [{ name: "rel", namespace: NS }, ...(o.secondChassis ? [{ name: "rel2", namespace: NS2 }] : [])],
  authentication: { sessionTimeoutSeconds: o.sessionTimeoutSeconds ?? 600 },
  infra: { namespace: NS },
  nodeIdentity: { enabled: true },
  nodeMapping: o.nodeMapping ?? [{ nodeName: "worker-a", vmName: "vm-a" }],
});
const users = (o: { secondChassis?: boolean; newbie?: boolean } = {}) => [
  { username: "ops", password: OPS_PASSWORD, chassis: o.secondChassis ? ["rel", "rel2"] : ["rel"] },
  ...(o.newbie ? [{ username: "newbie", password: "newbie-password-1", chassis: ["rel"] }] : []),
];

let c: SuiteCluster;
let rf: RedfishClient;

beforeAll(async () => {
  c = await startSuiteCluster({ config: baseConfig(), users: users(), kubevirt: { stepDelayMs: 50 } });
  rf = c.client();
  createNamespace(c, NS);
  createNamespace(c, NS2);
  c.api.store.create(VM_KEY, vmObject(NS, "vm-a"));
  c.api.store.create(VM_KEY, vmObject(NS2, "vm-b"));
  await vi.waitFor(async () => expect((await rf.request("GET", `/redfish/v1/Systems/${NS}.vm-a`, { user: OPS })).status, "vm-a in Redfish").toBe(200), { timeout: 20_000, interval: 100 });
});
afterAll(async () => {
  rf?.close();
  await c?.stop();
});

/** Closed-loop Redfish load (Basic auth and a session token) until stopped; every failure is kept. */
function startLoad(workers: number): { stop: () => Promise<{ requests: number; failures: string[] }> } {
  let running = true;
  let requests = 0;
  const failures: string[] = [];
  const loop = async (worker: number): Promise<void> => {
    const login = await rf.request("POST", "/redfish/v1/SessionService/Sessions", { body: { UserName: "ops", Password: OPS_PASSWORD } });
    const token = login.headers["x-auth-token"] as string;
    const steps: [string, { user?: string; token?: string }][] = [
      [`/redfish/v1/Systems/${NS}.vm-a`, { user: OPS }],
      ["/redfish/v1/Systems", { token }],
      ["/redfish/v1/SessionService", { user: OPS }],
      [`/redfish/v1/Managers/${NS}.vm-a`, { token }],
    ];
    for (let i = worker; running; i++) {
      const [path, auth] = steps[i % steps.length];
      try {
        const res = await rf.request("GET", path, auth);
        if (res.status !== 200) failures.push(`${path} -> ${res.status} ${res.text.slice(0, 200)}`);
      } catch (e) {
        failures.push(`${path} -> ${(e as Error).message}`);
      }
      requests++;
    }
  };
  const loops = Array.from({ length: workers }, (_, w) => loop(w));
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return { requests, failures };
    },
  };
}

/** Applies a change and measures how long until `inForce` holds (checked through Redfish). */
async function timeUntilInForce(change: () => Promise<void>, inForce: () => Promise<boolean>, what: string): Promise<number> {
  const started = Date.now();
  await change();
  await expect.poll(inForce, { message: what, timeout: 10_000, interval: 50 }).toBe(true);
  return Date.now() - started;
}

describe("configuration changes under load", () => {
  it("no failed request while the config changes; each change is in force within seconds; an invalid one is refused", async () => {
    const load = startLoad(8);
    await sleep(1_000);
    const sessionTimeout = async () => (await rf.request("GET", "/redfish/v1/SessionService", { user: OPS })).body?.SessionTimeout;
    const delays: Record<string, number> = {};

    delays.sessionTimeout = await timeUntilInForce(() => c.applyConfig(baseConfig({ sessionTimeoutSeconds: 900 })), async () => (await sessionTimeout()) === 900, "SessionTimeout 900");
    await sleep(500);
    delays.newChassis = await timeUntilInForce(
      () => c.applyConfig(baseConfig({ sessionTimeoutSeconds: 900, secondChassis: true }), users({ secondChassis: true })),
      async () => (await rf.request("GET", `/redfish/v1/Systems/${NS2}.vm-b`, { user: OPS })).status === 200,
      "ops sees the new chassis",
    );
    await sleep(500);
    delays.newUser = await timeUntilInForce(
      () => c.applyConfig(baseConfig({ sessionTimeoutSeconds: 900, secondChassis: true }), users({ secondChassis: true, newbie: true })),
      async () => (await rf.request("GET", "/redfish/v1/Systems", { user: "newbie:newbie-password-1" })).status === 200,
      "the new user logs in",
    );
    await sleep(500);
    // Invalid: session timeout below the schema's minimum. Refused; the last good configuration stays in force.
    const refusedBefore = c.watcher!.logs.filter(l => l.includes("config refused")).length;
    await c.applyConfig({ ...baseConfig({ secondChassis: true }), authentication: { sessionTimeoutSeconds: 5 } });
    await expect.poll(() => c.watcher!.logs.filter(l => l.includes("config refused")).length, { message: "the invalid config refused" }).toBeGreaterThan(refusedBefore);
    expect(await sessionTimeout()).toBe(900);
    await sleep(500);
    delays.afterInvalid = await timeUntilInForce(() => c.applyConfig(baseConfig({ sessionTimeoutSeconds: 1200, secondChassis: true })), async () => (await sessionTimeout()) === 1200, "SessionTimeout 1200");
    await sleep(1_000);

    const { requests, failures } = await load.stop();
    console.log(`config changes under load: ${requests} requests, ${failures.length} failed; in force after ${JSON.stringify(delays)} ms`);
    expect(failures).toEqual([]);
    expect(requests).toBeGreaterThan(100);
    for (const [change, ms] of Object.entries(delays)) expect(ms, change).toBeLessThan(5_000);
  });
});

describe("Node writes with the module broken", () => {
  const core = () => c.kc.makeApiClient(CoreV1Api);
  const apiserverLines = (pattern: RegExp) => c.logs.filter(l => l.source === "apiserver" && pattern.test(l.line));

  async function nodeWritesSucceed(name: string): Promise<void> {
    await core().createNode({ body: { metadata: { name, labels: { "kubernetes.io/hostname": name } }, spec: {} } });
    await core().patchNode({ name, body: [{ op: "add", path: "/metadata/labels/reliability", value: "patched" }] });
    const node = await core().readNode({ name });
    expect(node.metadata?.labels?.reliability).toBe("patched");
  }

  it("admission server killed: Node creates and updates succeed (failurePolicy Ignore)", async () => {
    await c.applyConfig(baseConfig({ sessionTimeoutSeconds: 1200, secondChassis: true }), users({ secondChassis: true }));
    await c.stopModule(["admission"]);
    await nodeWritesSucceed("broken-admission-down");
    expect(apiserverLines(/broken-admission-down.*call failed|call failed.*broken-admission-down/).length).toBeGreaterThan(0);
    await c.startModule(["admission"]);
    await nodeWritesSucceed("broken-admission-back");
    expect(apiserverLines(/broken-admission-back.*allowed/).length).toBeGreaterThan(0);
  });

  it("configuration invalid: Node writes succeed through the running admission server", async () => {
    const refusedBefore = c.watcher!.logs.filter(l => l.includes("config refused")).length;
    // Two nodes mapped to one VM: refused by the schema.
    await c.applyConfig(baseConfig({ nodeMapping: [{ nodeName: "worker-a", vmName: "vm-a" }, { nodeName: "worker-b", vmName: "vm-a" }] }));
    await expect.poll(() => c.watcher!.logs.filter(l => l.includes("config refused")).length, { message: "the invalid config refused" }).toBeGreaterThan(refusedBefore);
    await nodeWritesSucceed("broken-config-running");
    expect(apiserverLines(/broken-config-running.*allowed/).length).toBeGreaterThan(0);
  });

  it("module processes restarted with an invalid ConfigMap in place: Node writes succeed", async () => {
    await c.stopModule(["admission", "watcher"]);
    await c.applyConfig({ ...baseConfig(), nodeMapping: [{ nodeName: "worker-a" }] }); // vmName missing
    await c.startModule(["admission", "watcher"]);
    await nodeWritesSucceed("broken-config-fresh");
    expect(apiserverLines(/broken-config-fresh.*(allowed|call failed)/).length).toBeGreaterThan(0);
    // The admission server answered (it did not just time out): the write was admitted, not failed open by the API server.
    expect(apiserverLines(/broken-config-fresh.*allowed/).length).toBeGreaterThan(0);
  });
});

// EventService end to end with the BUILT module on the sandbox cluster (demo data): an SSE client over HTTPS sees a
// PowerState change within 1 s of the VMI changing; tenant1's stream and subscription never carry tenant2's events;
// an http subscriber on loopback (allowed only by this test's imageUrlPolicy) receives events and the module
// retries while it is down; a subscription survives a watcher restart.
import { createServer, type Server } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { demoConfig } from "../../sandbox/demo";
import { startTestCluster, type TestCluster } from "../helpers/cluster";

const ADMIN = "admin:admin123";
const TENANT1 = "tenant1:tenant1-pass";
const VMI_KEY = "virtualmachineinstances.kubevirt.io";
const VM_KEY = "virtualmachines.kubevirt.io";

let c: TestCluster;
let receiver: Server;
const received: any[] = [];
let answer = 204;
let attempts = 0;
let receiverUrl = "";

beforeAll(async () => {
  receiver = createServer((req, res) => {
    let text = "";
    req.on("data", chunk => (text += chunk));
    req.on("end", () => {
      attempts++;
      if (answer < 300) received.push({ headers: req.headers, body: JSON.parse(text) });
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>(resolve => receiver.listen(0, "127.0.0.1", resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/ironic-events`;
  c = await startTestCluster({
    demo: true,
    config: { redfish: { ...demoConfig.redfish, imageUrlPolicy: { allowCidrs: ["127.0.0.0/8"] } } },
  });
  await redfishUp();
}, 180_000);

afterAll(async () => {
  await c?.stop();
  await new Promise(resolve => receiver?.close(resolve));
});

async function redfishUp(): Promise<void> {
  await c.waitFor(async () => (await c.redfish("GET", "/redfish/v1/EventService", { user: TENANT1 })).status === 200, {
    timeoutMs: 60_000,
    what: "the Redfish server of the watcher",
  });
}

/** An SSE client over HTTPS: every `data:` event with the time it arrived. */
function sseClient(user: string): { events: { at: number; body: any; id: string }[]; close: () => void; raw: () => string } {
  const events: { at: number; body: any; id: string }[] = [];
  let buffer = "";
  let all = "";
  const req = https.get(
    {
      host: "127.0.0.1",
      port: c.redfishPort,
      path: "/redfish/v1/EventService/SSE",
      ca: c.caPem,
      servername: "localhost",
      headers: { Authorization: `Basic ${Buffer.from(user).toString("base64")}`, Accept: "text/event-stream" },
    },
    res => {
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        all += chunk;
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").find(l => l.startsWith("data: "));
          const id = block.split("\n").find(l => l.startsWith("id: "));
          if (data) events.push({ at: Date.now(), body: JSON.parse(data.slice(6)), id: id?.slice(4) ?? "" });
        }
      });
    },
  );
  req.on("error", () => undefined);
  return { events, close: () => req.destroy(), raw: () => all };
}

const records = (bodies: any[]) => bodies.flatMap(b => b.Events as any[]);
const origins = (bodies: any[]) => records(bodies).map(e => e.OriginOfCondition["@odata.id"] as string);

/** Starts or stops a VM the way a cluster user would (runStrategy), so KubeVirt changes its VMI. */
function setRunning(system: string, running: boolean): void {
  const [namespace, name] = system.split(".");
  const vm = c.api.store.get(VM_KEY, namespace, name)!;
  c.api.store.update(VM_KEY, { ...vm, spec: { ...(vm.spec as object), runStrategy: running ? "Always" : "Halted" } });
}

/** When the VMI in the API server first reached `phase` (polled every 10 ms). */
async function whenVmiPhase(namespace: string, name: string, phase: string): Promise<number> {
  return c.waitFor(() => ((c.api.store.get(VMI_KEY, namespace, name)?.status as { phase?: string } | undefined)?.phase === phase ? Date.now() : 0), {
    timeoutMs: 30_000,
    intervalMs: 10,
    what: `VMI ${namespace}/${name} ${phase}`,
  });
}

describe("EventService with the built module", () => {
  let subscription = "";

  it("streams a PowerState change over SSE within 1 s of the VMI changing, and only tenant1's systems to tenant1", async () => {
    const tenant1 = sseClient(TENANT1);
    const created = await c.redfish("POST", "/redfish/v1/EventService/Subscriptions", {
      user: TENANT1,
      body: { Destination: receiverUrl, Protocol: "Redfish", Context: "tenant1-ironic", HttpHeaders: [{ "X-Subscriber-Token": "abc123" }] },
    });
    expect(created.status, created.text).toBe(201);
    subscription = created.headers.location as string;
    expect(created.text).not.toContain("abc123");
    await new Promise(resolve => setTimeout(resolve, 300)); // the stream is open

    setRunning("tenant2-vms.vm-1", true);
    setRunning("tenant1-vms.vm-1", true);
    const running = await whenVmiPhase("tenant1-vms", "vm-1", "Running");
    const poweredOn = await c.waitFor(
      () => tenant1.events.find(e => records([e.body]).some(r => r.MessageId === "ResourceEvent.1.3.0.ResourcePoweredOn")),
      { timeoutMs: 10_000, intervalMs: 10, what: "ResourcePoweredOn on the SSE stream" },
    );
    expect(poweredOn.at - running).toBeLessThan(1000);
    expect(poweredOn.id).toMatch(/^\d+$/);
    expect(records([poweredOn.body])[0]).toMatchObject({ OriginOfCondition: { "@odata.id": "/redfish/v1/Systems/tenant1-vms.vm-1" }, EventTimestamp: expect.any(String) });

    await whenVmiPhase("tenant2-vms", "vm-1", "Running");
    await c.waitFor(() => received.length > 0, { timeoutMs: 10_000, what: "a pushed event" });
    await new Promise(resolve => setTimeout(resolve, 1000));
    tenant1.close();
    expect(origins(tenant1.events.map(e => e.body)).every(o => o.includes("/tenant1-vms."))).toBe(true);
    expect(origins(received.map(r => r.body)).every(o => o.includes("/tenant1-vms."))).toBe(true);
    expect(received[0].body.Context).toBe("tenant1-ironic");
    expect(received[0].headers["x-subscriber-token"]).toBe("abc123");
    // admin cannot see tenant1's subscription.
    expect((await c.redfish("GET", subscription, { user: ADMIN })).status).toBe(404);
  }, 60_000);

  it("retries while the subscriber is down", async () => {
    answer = 503;
    const before = attempts;
    const delivered = received.length;
    setRunning("tenant1-vms.vm-1", false);
    await c.waitFor(() => attempts >= before + 2, { timeoutMs: 30_000, what: "a retried delivery" });
    answer = 204;
    // The demo VMs shut down gracefully (180 s): PoweringOff is the event of this change.
    await c.waitFor(() => records(received.slice(delivered).map(r => r.body)).some(r => r.MessageId === "ResourceEvent.1.3.0.ResourcePoweringOff"), {
      timeoutMs: 30_000,
      what: "the event delivered once the subscriber is back",
    });
  }, 60_000);

  it("keeps the subscription across a watcher restart (a Secret in the module namespace)", async () => {
    const storedIds = () => Object.keys((c.api.store.get("secrets", "pepr-system", "kubevirt-infra-event-subscriptions")?.data as Record<string, string> | undefined) ?? {});
    expect(storedIds()).toHaveLength(1);
    expect(subscription.endsWith(`/${storedIds()[0]}`)).toBe(true);
    await c.stopModule(["watcher"]);
    await c.startModule(["watcher"]);
    await redfishUp();
    await c.waitFor(async () => (await c.redfish("GET", subscription, { user: TENANT1 })).status === 200, { timeoutMs: 20_000, what: "the subscription after the restart" });
    const delivered = received.length;
    setRunning("tenant1-vms.vm-1", true);
    await c.waitFor(() => received.length > delivered, { timeoutMs: 30_000, what: "an event after the restart" });
    expect((await c.redfish("DELETE", subscription, { user: TENANT1 })).status).toBe(204);
    await c.waitFor(() => storedIds().length === 0, { what: "the subscription removed from its Secret" });
  }, 120_000);
});

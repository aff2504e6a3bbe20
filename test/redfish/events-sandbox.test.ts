// EventService end to end with the BUILT module on the sandbox cluster (demo data): an SSE client over HTTPS sees a
// PowerState change within 1 s of the VMI changing; tenant1's stream and subscription never carry tenant2's events;
// an http subscriber on loopback (allowed only by this test's imageUrlPolicy) receives events and the module
// retries while it is down; a subscription survives a watcher restart.
import https from "node:https";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { demoConfig } from "../../sandbox/demo";
import { SANDBOX_ANNOTATIONS } from "../../sandbox/simulators";
import { startTestCluster, type TestCluster } from "../helpers/cluster";
import { present } from "../helpers/present";
import { eventReceiver, type EventReceiver } from "./event-receiver";

const ADMIN = "admin:admin123";
const TENANT1 = "tenant1:tenant1-pass";
const VMI_KEY = "virtualmachineinstances.kubevirt.io";
const VM_KEY = "virtualmachines.kubevirt.io";

let c: TestCluster;
let receiver: EventReceiver;
let answer = 204;

beforeAll(async () => {
  receiver = await eventReceiver(() => answer, "/ironic-events");
  c = await startTestCluster({
    demo: true,
    config: { redfish: { ...demoConfig.redfish, imageUrlPolicy: { allowCidrs: ["127.0.0.0/8"] } } },
  });
  await redfishUp();
}, 180_000);

afterAll(async () => {
  await c?.stop();
  await receiver?.close();
});

async function redfishUp(): Promise<void> {
  await vi.waitFor(
    async () => expect((await c.redfish("GET", "/redfish/v1/EventService", { user: TENANT1 })).status, "the Redfish server of the watcher").toBe(200),
    { timeout: 60_000, interval: 100 },
  );
}

/**
 * An SSE client over HTTPS: every `data:` event with the time it arrived. `opened` resolves with the response
 * headers: the server registers the stream with its event hub before it answers.
 */
function sseClient(user: string): { events: { at: number; body: any; id: string }[]; opened: Promise<void>; close: () => void; raw: () => string } {
  const events: { at: number; body: any; id: string }[] = [];
  let buffer = "";
  let all = "";
  let onOpen: () => void = () => undefined;
  const opened = new Promise<void>(resolve => (onOpen = resolve));
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
      expect(res.statusCode, "the SSE stream").toBe(200);
      onOpen();
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
  return { events, opened, close: () => req.destroy(), raw: () => all };
}

const records = (bodies: any[]) => bodies.flatMap(b => b.Events as any[]);
const origins = (bodies: any[]) => records(bodies).map(e => e.OriginOfCondition["@odata.id"] as string);

/** Starts or stops a VM the way a cluster user would (runStrategy), so KubeVirt changes its VMI. */
function setRunning(system: string, running: boolean): void {
  const [namespace, name] = system.split(".");
  const vm = c.api.store.get(VM_KEY, namespace, name)!;
  c.api.store.update(VM_KEY, { ...vm, spec: { ...(vm.spec as object), runStrategy: running ? "Always" : "Halted" } });
}

/** The guest of the VM's next VMI powers off `seconds` after the ACPI power button (the demo VMs' grace period is 180 s). */
function honourAcpi(system: string, seconds: number): void {
  const [namespace, name] = system.split(".");
  const vm = c.api.store.get(VM_KEY, namespace, name)!;
  const template = structuredClone((vm.spec as { template: { metadata?: { annotations?: Record<string, string> } } }).template);
  template.metadata = { ...template.metadata, annotations: { ...template.metadata?.annotations, [SANDBOX_ANNOTATIONS.acpiShutdownSeconds]: String(seconds) } };
  c.api.store.update(VM_KEY, { ...vm, spec: { ...(vm.spec as object), template } });
}

/** When the VMI in the API server first reached `phase` (polled every 10 ms). */
async function whenVmiPhase(namespace: string, name: string, phase: string): Promise<number> {
  return vi.waitFor(
    () => present((c.api.store.get(VMI_KEY, namespace, name)?.status as { phase?: string } | undefined)?.phase === phase && Date.now(), `VMI ${namespace}/${name} ${phase}`),
    { timeout: 30_000, interval: 10 },
  );
}

describe("EventService with the built module", () => {
  let subscription = "";

  it("streams a PowerState change over SSE within 1 s of the VMI changing, and only tenant1's systems to tenant1", async () => {
    const tenant1 = sseClient(TENANT1);
    const created = await c.redfish("POST", "/redfish/v1/EventService/Subscriptions", {
      user: TENANT1,
      body: { Destination: receiver.url, Protocol: "Redfish", Context: "tenant1-ironic", HttpHeaders: [{ "X-Subscriber-Token": "abc123" }] },
    });
    expect(created.status, created.text).toBe(201);
    subscription = created.headers.location as string;
    expect(created.text).not.toContain("abc123");
    await tenant1.opened;

    setRunning("tenant2-vms.vm-1", true);
    honourAcpi("tenant1-vms.vm-1", 2);
    setRunning("tenant1-vms.vm-1", true);
    const running = await whenVmiPhase("tenant1-vms", "vm-1", "Running");
    const poweredOn = await vi.waitFor(
      () => present(tenant1.events.find(e => records([e.body]).some(r => r.MessageId === "ResourceEvent.1.3.0.ResourcePoweredOn")), "ResourcePoweredOn on the SSE stream"),
      { timeout: 10_000, interval: 10 },
    );
    expect(poweredOn.at - running).toBeLessThan(1000);
    expect(poweredOn.id).toMatch(/^\d+$/);
    expect(records([poweredOn.body])[0]).toMatchObject({ OriginOfCondition: { "@odata.id": "/redfish/v1/Systems/tenant1-vms.vm-1" }, EventTimestamp: expect.any(String) });

    await whenVmiPhase("tenant2-vms", "vm-1", "Running");
    await expect.poll(() => receiver.received.length, { timeout: 10_000, message: "a pushed event" }).toBeGreaterThan(0);
    // Not vacuous: the stream and the subscription carry events in order, so once both have an event of a tenant1 VM
    // started after tenant2's VM ran, an event of tenant2's routed to tenant1 would have arrived before it.
    setRunning("tenant1-vms.vm-2", true);
    const marker = "/redfish/v1/Systems/tenant1-vms.vm-2";
    await expect.poll(() => origins(tenant1.events.map(e => e.body)), { timeout: 20_000, message: "vm-2's event on the SSE stream" }).toContain(marker);
    await expect.poll(() => origins(receiver.received.map(r => r.body)), { timeout: 20_000, message: "vm-2's event pushed" }).toContain(marker);
    tenant1.close();
    expect(origins(tenant1.events.map(e => e.body)).every(o => o.includes("/tenant1-vms."))).toBe(true);
    expect(origins(receiver.received.map(r => r.body)).every(o => o.includes("/tenant1-vms."))).toBe(true);
    expect(receiver.received[0].body.Context).toBe("tenant1-ironic");
    expect(receiver.received[0].headers["x-subscriber-token"]).toBe("abc123");
    // admin cannot see tenant1's subscription.
    expect((await c.redfish("GET", subscription, { user: ADMIN })).status).toBe(404);
  }, 60_000);

  it("retries while the subscriber is down; a graceful shutdown is announced once the guest is off, never as PoweringOff", async () => {
    answer = 503;
    const before = receiver.attempts();
    const delivered = receiver.received.length;
    setRunning("tenant1-vms.vm-1", false);
    await expect.poll(() => receiver.attempts(), { timeout: 30_000, message: "a retried delivery" }).toBeGreaterThanOrEqual(before + 2);
    answer = 204;
    // A graceful shutdown (the guest honours ACPI after 2 s): the System reads On until the guest is off, then Off,
    // and its events say the same. Deliveries keep their order, so a PoweringOff would arrive before the PoweredOff.
    const messageIds = () => records(receiver.received.slice(delivered).map(r => r.body)).map(r => r.MessageId as string);
    await expect.poll(messageIds, { timeout: 30_000, message: "the event delivered once the subscriber is back" }).toContain("ResourceEvent.1.3.0.ResourcePoweredOff");
    expect(messageIds()).not.toContain("ResourceEvent.1.3.0.ResourcePoweringOff");
  }, 60_000);

  it("keeps the subscription across a watcher restart (a Secret in the module namespace)", async () => {
    const storedIds = () => Object.keys((c.api.store.get("secrets", "pepr-system", "kubevirt-infra-event-subscriptions")?.data as Record<string, string> | undefined) ?? {});
    expect(storedIds()).toHaveLength(1);
    expect(subscription.endsWith(`/${storedIds()[0]}`)).toBe(true);
    await c.stopModule(["watcher"]);
    await c.startModule(["watcher"]);
    await redfishUp();
    await expect.poll(async () => (await c.redfish("GET", subscription, { user: TENANT1 })).status, { timeout: 20_000, interval: 100, message: "the subscription after the restart" }).toBe(200);
    const delivered = receiver.received.length;
    setRunning("tenant1-vms.vm-1", true);
    await expect.poll(() => receiver.received.length, { timeout: 30_000, message: "an event after the restart" }).toBeGreaterThan(delivered);
    expect((await c.redfish("DELETE", subscription, { user: TENANT1 })).status).toBe(204);
    await expect.poll(storedIds, { message: "the subscription removed from its Secret" }).toEqual([]);
  }, 120_000);
});

// EventService: events derived from the watch cache (unit), subscription filters, the Subscriptions collection
// (per-user ownership, URL policy, HttpHeaders never shown), push delivery with retries to a real loopback HTTP
// server, and the SSE stream — against the in-process app over a real WatchCache.
import { afterEach, describe, expect, it } from "vitest";
import type { VmRecord } from "../../redfish/cache/types";
import { diffSnapshots, snapshotOf } from "../../redfish/events/derive";
import { renderSystem } from "../../redfish/resources/systems";
import { subscriptionWants } from "../../redfish/events/subscriptions";
import { AUTH, revise, runningVmi, testConfig, testService, vm, type TestService } from "./fixtures";
import { eventReceiver, type EventReceiver } from "./event-receiver";

const LOOPBACK_ALLOWED = { redfish: { imageUrlPolicy: { allowCidrs: ["127.0.0.0/8"] } } };

function record(o: Partial<VmRecord> & Pick<VmRecord, "vm">): VmRecord {
  return { dataVolumes: [], ...o };
}

describe("events derived from snapshots", () => {
  const on = vm("ns", "vm-1", { runStrategy: "Always", printableStatus: "Running" });
  const before = snapshotOf(record({ vm: on, vmi: runningVmi(on) }), []);

  it("turns a power change into ResourcePowered* plus ResourceChanged of the system", () => {
    const off = revise(on, v => {
      (v.spec as Record<string, unknown>).runStrategy = "Halted";
      (v.status as Record<string, unknown>).printableStatus = "Stopped";
    });
    const events = diffSnapshots("ns", "vm-1", before, snapshotOf(record({ vm: off }), []));
    expect(events.map(e => [e.messageKey, e.resourceType, e.origin])).toEqual([
      ["ResourcePoweredOff", "ComputerSystem", "/redfish/v1/Systems/ns.vm-1"],
      ["ResourceChanged", "ComputerSystem", "/redfish/v1/Systems/ns.vm-1"],
    ]);
    expect(events[0]).toMatchObject({ eventType: "StatusChange", messageArgs: ["/redfish/v1/Systems/ns.vm-1"], namespace: "ns", vmName: "vm-1" });
  });

  it("reports health changes, task state changes, appearing and disappearing systems; nothing when nothing changed", () => {
    const broken = revise(on, v => ((v.status as Record<string, unknown>).printableStatus = "CrashLoopBackOff"));
    const health = diffSnapshots("ns", "vm-1", before, snapshotOf(record({ vm: broken, vmi: runningVmi(on) }), []));
    expect(health.map(e => e.messageKey)).toContain("ResourceStatusChangedWarning");
    expect(health.find(e => e.messageKey === "ResourceStatusChangedWarning")!.messageArgs).toEqual(["/redfish/v1/Systems/ns.vm-1", "Warning"]);

    const task = (state: string) => [{ id: "t1", namespace: "ns", vmName: "vm-1", body: { TaskState: state } }];
    const rec = record({ vm: on, vmi: runningVmi(on) });
    const started = diffSnapshots("ns", "vm-1", snapshotOf(rec, task("Pending")), snapshotOf(rec, task("Running")));
    expect(started.map(e => [e.messageKey, e.origin, e.messageArgs])).toEqual([["TaskStarted", "/redfish/v1/TaskService/Tasks/t1", ["t1"]]]);
    expect(diffSnapshots("ns", "vm-1", snapshotOf(rec, task("Running")), snapshotOf(rec, task("Exception")))[0].messageKey).toBe("TaskAborted");

    expect(diffSnapshots("ns", "vm-1", undefined, before).map(e => e.messageKey)).toEqual(["ResourceCreated"]);
    expect(diffSnapshots("ns", "vm-1", before, undefined).map(e => e.messageKey)).toEqual(["ResourceRemoved"]);
    expect(diffSnapshots("ns", "vm-1", before, snapshotOf(record({ vm: on, vmi: runningVmi(on) }), []))).toEqual([]);
  });

  it("a ForceOff (grace period 0) reads PoweringOff in the System and in the event", () => {
    const dying = revise(runningVmi(on), v => {
      v.metadata.deletionTimestamp = "2025-01-01T00:00:00Z";
      (v.spec as Record<string, unknown>).terminationGracePeriodSeconds = 0;
    });
    const halted = revise(on, v => ((v.spec as Record<string, unknown>).runStrategy = "Halted"));
    const rec = record({ vm: halted, vmi: dying });
    expect(renderSystem({ id: "ns.vm-1", rec, chassis: [] }).PowerState).toBe("PoweringOff");
    expect(diffSnapshots("ns", "vm-1", before, snapshotOf(rec, [])).map(e => e.messageKey)).toContain("ResourcePoweringOff");
  });

  it("subscription filters: empty lists admit everything, every non-empty list must admit the event", () => {
    const [powered, changed] = diffSnapshots("ns", "vm-1", before, snapshotOf(record({ vm: revise(on, v => ((v.spec as Record<string, unknown>).runStrategy = "Halted")) }), []));
    const none = { eventTypes: [], registryPrefixes: [], resourceTypes: [] };
    expect(subscriptionWants(none, powered)).toBe(true);
    expect(subscriptionWants({ ...none, eventTypes: ["ResourceUpdated"] }, powered)).toBe(false);
    expect(subscriptionWants({ ...none, eventTypes: ["ResourceUpdated"] }, changed)).toBe(true);
    expect(subscriptionWants({ ...none, registryPrefixes: ["TaskEvent"] }, powered)).toBe(false);
    expect(subscriptionWants({ ...none, resourceTypes: ["VirtualMedia"] }, changed)).toBe(false);
  });
});

// ---- the service in process ----

const receivers: EventReceiver[] = [];
afterEach(async () => {
  await Promise.all(receivers.splice(0).map(r => r.close()));
});

/** A subscriber closed after the test. */
async function receiver(answer?: (attempt: number) => number): Promise<EventReceiver> {
  const r = await eventReceiver(answer);
  receivers.push(r);
  return r;
}

function serviceWithLoopback(retryIntervalSeconds = 0.05): TestService {
  const service = testService({ events: { retryAttempts: 3, retryIntervalSeconds } });
  service.config.current = testConfig(LOOPBACK_ALLOWED);
  return service;
}

async function subscribe(service: TestService, auth: string, body: Record<string, unknown>): Promise<Response> {
  return service.request("/redfish/v1/EventService/Subscriptions", {
    method: "POST",
    headers: { Authorization: auth, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

function powerOff(service: TestService, namespace: string, name: string): void {
  const rec = service.cache.getVm(namespace, name)!;
  service.cache.apply("VirtualMachine", "MODIFIED", revise(rec.vm, v => {
    (v.spec as Record<string, unknown>).runStrategy = "Halted";
    (v.status as Record<string, unknown>).printableStatus = "Stopped";
  }));
  if (rec.vmi) service.cache.apply("VirtualMachineInstance", "DELETED", rec.vmi);
}

describe("EventService and Subscriptions", () => {
  it("describes the service and links it from the ServiceRoot", async () => {
    const service = testService();
    const root: any = await (await service.request("/redfish/v1/", {})).json();
    expect(root.EventService).toEqual({ "@odata.id": "/redfish/v1/EventService" });
    const res = await service.request("/redfish/v1/EventService", { headers: { Authorization: AUTH.alice } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      "@odata.type": "#EventService.v1_10_0.EventService",
      ServiceEnabled: true,
      DeliveryRetryAttempts: 3,
      DeliveryRetryIntervalSeconds: 5,
      ServerSentEventUri: "/redfish/v1/EventService/SSE",
      Subscriptions: { "@odata.id": "/redfish/v1/EventService/Subscriptions" },
    });
    expect(await (await service.request("/redfish/v1/$metadata", {})).text()).toContain('Namespace="EventDestination.v1_13_0"');
  });

  it("refuses destinations the URL policy denies, bad bodies and credentials in the URL, with the field named", async () => {
    const service = testService();
    // The default policy (the shared test config allows the tests' loopback lab).
    service.config.current = testConfig({ redfish: { imageUrlPolicy: {} } });
    const loopback = await subscribe(service, AUTH.alice, { Destination: "http://127.0.0.1:9/x", Protocol: "Redfish" });
    expect(loopback.status).toBe(400);
    expect(JSON.stringify(await loopback.json())).toMatch(/Destination.*loopback|loopback.*Destination/s);
    const metadata = await subscribe(service, AUTH.alice, { Destination: "http://169.254.169.254/latest", Protocol: "Redfish" });
    expect(metadata.status).toBe(400);
    const protocol = await subscribe(service, AUTH.alice, { Destination: "http://192.0.2.1/", Protocol: "SNMPv2c" });
    expect(protocol.status).toBe(400);
    expect(JSON.stringify(await protocol.json())).toContain("Protocol");
    const headers = await subscribe(service, AUTH.alice, { Destination: "http://192.0.2.1/", Protocol: "Redfish", HttpHeaders: { Authorization: "Bearer s3cr3t-value" } });
    expect(headers.status).toBe(400);
    expect(await headers.text()).not.toContain("s3cr3t-value");
    const userinfo = await subscribe(service, AUTH.alice, { Destination: "http://user:pa55word@192.0.2.1/", Protocol: "Redfish" });
    expect(userinfo.status).toBe(400);
    expect(await userinfo.text()).not.toContain("pa55word");
  });

  it("keeps subscriptions per user: never shows HttpHeaders, 404 for another user's, DELETE by the owner", async () => {
    const service = serviceWithLoopback();
    const created = await subscribe(service, AUTH.alice, {
      Destination: "http://127.0.0.1:9/events",
      Protocol: "Redfish",
      Context: "ironic-node-1",
      EventTypes: ["StatusChange"],
      HttpHeaders: [{ Authorization: "Bearer s3cr3t-value" }],
    });
    expect(created.status).toBe(201);
    const location = created.headers.get("Location")!;
    const body = await created.json();
    expect(body).toMatchObject({ "@odata.id": location, Destination: "http://127.0.0.1:9/events", Context: "ironic-node-1", Protocol: "Redfish", HttpHeaders: [] });
    const shown = await service.request(location, { headers: { Authorization: AUTH.alice } });
    expect(shown.status).toBe(200);
    expect(await shown.text()).not.toContain("s3cr3t-value");

    expect((await service.request(location, { headers: { Authorization: AUTH.bob } })).status).toBe(404);
    expect((await service.request(location, { method: "DELETE", headers: { Authorization: AUTH.bob } })).status).toBe(404);
    const bobs: any = await (await service.request("/redfish/v1/EventService/Subscriptions", { headers: { Authorization: AUTH.bob } })).json();
    expect(bobs["Members@odata.count"]).toBe(0);
    const alices: any = await (await service.request("/redfish/v1/EventService/Subscriptions", { headers: { Authorization: AUTH.alice } })).json();
    expect(alices.Members).toEqual([{ "@odata.id": location }]);

    expect((await service.request(location, { method: "DELETE", headers: { Authorization: AUTH.alice } })).status).toBe(204);
    expect((await service.request(location, { headers: { Authorization: AUTH.alice } })).status).toBe(404);
  });

  it("pushes events of the owner's systems only, with Context and HttpHeaders, and retries while the receiver fails", async () => {
    const flaky = await receiver(n => (n <= 2 ? 503 : 204));
    const other = await receiver();
    const service = serviceWithLoopback();
    expect((await subscribe(service, AUTH.alice, { Destination: flaky.url, Protocol: "Redfish", Context: "alice-ctx", HttpHeaders: [{ "X-Token": "t0k" }] })).status).toBe(201);
    expect((await subscribe(service, AUTH.bob, { Destination: other.url, Protocol: "Redfish", Context: "bob-ctx" })).status).toBe(201);

    powerOff(service, "tenant1-vms", "vm-a");
    await expect
      .poll(() => flaky.received.flatMap(r => r.body.Events).map((e: any) => e.MessageId), { timeout: 10_000 })
      .toContain("ResourceEvent.1.3.0.ResourcePoweredOff");
    // The first event was refused twice (503) and sent again until delivered: every attempt after those two is a
    // delivery (counted when the PoweredOff arrived: a later event may still be on its way, so no fixed total).
    expect(flaky.attempts()).toBe(2 + flaky.received.length);
    const first = flaky.received[0];
    expect(first.headers["x-token"]).toBe("t0k");
    expect(first.body).toMatchObject({ "@odata.type": "#Event.v1_7_0.Event", Context: "alice-ctx" });
    const records = flaky.received.flatMap(r => r.body.Events);
    expect(records.map((e: any) => e.MessageId)).toContain("ResourceEvent.1.3.0.ResourcePoweredOff");
    expect(records[0]).toMatchObject({ OriginOfCondition: { "@odata.id": "/redfish/v1/Systems/tenant1-vms.vm-a" }, EventTimestamp: expect.any(String), EventId: expect.any(String) });

    // bob (tenant2) got nothing of tenant1; a tenant2 change reaches bob and not alice.
    expect(other.received).toEqual([]);
    const vmC = service.cache.getVm("tenant2-vms", "vm-c")!.vm;
    service.cache.apply("VirtualMachine", "MODIFIED", revise(vmC, v => ((v.status as Record<string, unknown>).printableStatus = "CrashLoopBackOff")));
    await expect.poll(() => other.received.length, { timeout: 10_000 }).toBeGreaterThan(0);
    expect(other.received.flatMap(r => r.body.Events).every((e: any) => e.OriginOfCondition["@odata.id"].includes("tenant2-vms."))).toBe(true);
    expect(other.received[0].body.Context).toBe("bob-ctx");
    // Not vacuous: a subscription's events are sent in order, so once alice has a tenant1 event raised after the
    // tenant2 change, a tenant2 event routed to her would have arrived before it.
    const vmB = service.cache.getVm("tenant1-vms", "vm-b")!.vm;
    service.cache.apply("VirtualMachine", "MODIFIED", revise(vmB, v => ((v.status as Record<string, unknown>).printableStatus = "CrashLoopBackOff")));
    await expect
      .poll(() => flaky.received.flatMap(r => r.body.Events).map((e: any) => e.OriginOfCondition["@odata.id"]), { timeout: 10_000 })
      .toContain("/redfish/v1/Systems/tenant1-vms.vm-b");
    expect(flaky.received.flatMap(r => r.body.Events).every((e: any) => e.OriginOfCondition["@odata.id"].includes("tenant1-vms."))).toBe(true);
  });

  it("announces what GET shows during a graceful shutdown: On until the guest is off, then ResourcePoweredOff, never PoweringOff", async () => {
    const subscriber = await receiver();
    const service = serviceWithLoopback();
    expect((await subscribe(service, AUTH.alice, { Destination: subscriber.url, Protocol: "Redfish" })).status).toBe(201);
    const powerState = async () => ((await (await service.request("/redfish/v1/Systems/tenant1-vms.vm-a", { headers: { Authorization: AUTH.alice } })).json()) as any).PowerState;
    const powerEvents = () => subscriber.received.flatMap(r => r.body.Events as any[]).map(e => e.MessageId as string).filter(id => id.includes(".ResourcePower"));
    expect(await powerState()).toBe("On");

    // KubeVirt's graceful stop: the VM halted, its VMI marked for deletion, the guest still running its 180 s grace period.
    const { vm: running, vmi } = service.cache.getVm("tenant1-vms", "vm-a")!;
    service.cache.apply("VirtualMachine", "MODIFIED", revise(running, v => {
      (v.spec as Record<string, unknown>).runStrategy = "Halted";
      (v.status as Record<string, unknown>).printableStatus = "Stopping";
    }));
    const shuttingDown = revise(vmi!, v => {
      v.metadata.deletionTimestamp = "2025-01-01T00:00:00Z";
      (v.spec as Record<string, unknown>).terminationGracePeriodSeconds = 180;
    });
    service.cache.apply("VirtualMachineInstance", "MODIFIED", shuttingDown);
    expect(await powerState()).toBe("On");

    // The guest is off: the VMI's final phase, then the object goes.
    service.cache.apply("VirtualMachineInstance", "MODIFIED", revise(shuttingDown, v => ((v.status as Record<string, unknown>).phase = "Succeeded")));
    service.cache.apply("VirtualMachineInstance", "DELETED", shuttingDown);
    service.cache.apply("VirtualMachine", "MODIFIED", revise(service.cache.getVm("tenant1-vms", "vm-a")!.vm, v => ((v.status as Record<string, unknown>).printableStatus = "Stopped")));
    expect(await powerState()).toBe("Off");
    // Deliveries keep their order: once PoweredOff arrived, any event of the shutdown's start had arrived before it.
    await expect.poll(powerEvents, { timeout: 10_000 }).toContain("ResourceEvent.1.3.0.ResourcePoweredOff");
    expect(powerEvents()).toEqual(["ResourceEvent.1.3.0.ResourcePoweredOff"]);
  });

  it("gives an event up after DeliveryRetryAttempts retries and delivers the next one", async () => {
    const down = await receiver(n => (n <= 4 ? 500 : 204));
    const service = serviceWithLoopback();
    expect((await subscribe(service, AUTH.alice, { Destination: down.url, Protocol: "Redfish", EventTypes: ["StatusChange"] })).status).toBe(201);
    const vmB = service.cache.getVm("tenant1-vms", "vm-b")!.vm;
    service.cache.apply("VirtualMachine", "MODIFIED", revise(vmB, v => ((v.status as Record<string, unknown>).printableStatus = "CrashLoopBackOff")));
    await expect.poll(() => down.attempts(), { timeout: 10_000 }).toBe(4);
    expect(down.received).toEqual([]);
    // The next event goes through.
    powerOff(service, "tenant1-vms", "vm-a");
    await expect.poll(() => down.received.length, { timeout: 10_000 }).toBeGreaterThan(0);
    expect(down.received[0].body.Events[0].MessageId).toMatch(/^ResourceEvent\.1\.3\.0\.ResourcePower/);
    // Tried 1 + 3 times, then dropped: no fifth attempt. The receiver answers 204 from the fifth request on, and a
    // subscription delivers in order, so a fifth attempt of vm-b's event would have arrived before vm-a's.
    expect(down.received.flatMap(r => r.body.Events).filter((e: any) => e.OriginOfCondition["@odata.id"].endsWith("/tenant1-vms.vm-b"))).toEqual([]);
  });
});

describe("ServerSentEventUri", () => {
  it("streams the principal's events as text/event-stream with an id per event, and nothing of other tenants", async () => {
    const service = testService({ events: { keepAliveMs: 50 } });
    const res = await service.request("/redfish/v1/EventService/SSE", { headers: { Authorization: AUTH.bob } });
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    const readUntil = async (pattern: RegExp) => {
      const deadline = Date.now() + 5000;
      while (!pattern.test(text) && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      return text;
    };
    powerOff(service, "tenant1-vms", "vm-a"); // tenant1: not bob's
    const vmC = service.cache.getVm("tenant2-vms", "vm-c")!.vm;
    service.cache.apply("VirtualMachine", "MODIFIED", revise(vmC, v => ((v.status as Record<string, unknown>).printableStatus = "CrashLoopBackOff")));
    await readUntil(/ResourceStatusChangedWarning[\s\S]*\n\n/);
    await readUntil(/: keep-alive/);
    await reader.cancel();
    expect(text).toMatch(/^id: \d+$/m);
    const events = text
      .split("\n")
      .filter(line => line.startsWith("data: "))
      .flatMap(line => JSON.parse(line.slice(6)).Events);
    expect(events.map((e: any) => e.MessageId)).toContain("ResourceEvent.1.3.0.ResourceStatusChangedWarning");
    expect(events.every((e: any) => e.OriginOfCondition["@odata.id"] === "/redfish/v1/Systems/tenant2-vms.vm-c")).toBe(true);
    expect(text).toContain(": keep-alive");
  });
});

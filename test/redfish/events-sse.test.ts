// The SSE stream's $filter (DSP0266 "Server-sent events"), Last-Event-ID replay, EventService.SubmitTestEvent, and
// events for Kubernetes identities (streams and subscriptions receive only what their RBAC lets them see) —
// against the in-process app over a real WatchCache.
import { afterEach, describe, expect, it } from "vitest";
import { parseSseFilter, SseFilterError, type SseFilterSubject } from "../../redfish/events/sse-filter";
import type { AccessAttributes, IdentityReviews, ReviewedUser } from "../../redfish/kubevirt/driver";
import { AUTH, revise, testConfig, testService, type TestService } from "./fixtures";
import { eventReceiver } from "./event-receiver";

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** An SSE client over app.request: the parsed events so far, read in the background. */
function sse(service: TestService, query = "", headers: Record<string, string> = { Authorization: AUTH.carol }) {
  const events: { id: string; body: any }[] = [];
  const response = service.request(`/redfish/v1/EventService/SSE${query}`, { headers });
  const reading = (async () => {
    const res = await response;
    if (res.status !== 200) return;
    const reader = res.body!.getReader();
    closers.push(() => reader.cancel());
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true as const }));
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end).split("\n");
        buffer = buffer.slice(end + 2);
        const data = block.find(l => l.startsWith("data: "));
        if (data) events.push({ id: block.find(l => l.startsWith("id: "))?.slice(4) ?? "", body: JSON.parse(data.slice(6)) });
      }
    }
  })();
  void reading;
  return { response, events, messages: () => events.flatMap(e => e.body.Events.map((r: any) => `${r.MessageId} ${r.OriginOfCondition["@odata.id"]}`)) };
}

/** Changes a VM's printableStatus in the cache (health and ResourceChanged events of its system). */
function setStatus(service: TestService, namespace: string, name: string, printableStatus: string): void {
  const current = service.cache.getVm(namespace, name)!.vm;
  service.cache.apply("VirtualMachine", "MODIFIED", revise(current, v => ((v.status as Record<string, unknown>).printableStatus = printableStatus)));
}

const subject = (o: Partial<SseFilterSubject>): SseFilterSubject => ({
  EventFormatType: "Event",
  EventType: "StatusChange",
  MessageId: "ResourceEvent.1.3.0.ResourcePoweredOn",
  OriginResource: "/redfish/v1/Systems/ns.vm-1",
  RegistryPrefix: "ResourceEvent",
  ResourceType: "ComputerSystem",
  ...o,
});

describe("SSE $filter grammar", () => {
  it("matches eq on each supported property, with and/or/not and parentheses, quoted or bare values", () => {
    expect(parseSseFilter("EventType eq 'StatusChange'")(subject({}))).toBe(true);
    expect(parseSseFilter("EventType eq ResourceUpdated")(subject({}))).toBe(false);
    expect(parseSseFilter("(RegistryPrefix eq 'TaskEvent') or (OriginResource eq '/redfish/v1/Systems/ns.vm-1')")(subject({}))).toBe(true);
    expect(parseSseFilter("ResourceType eq 'Task' or ResourceType eq 'VirtualMedia'")(subject({}))).toBe(false);
    // and binds tighter than or
    expect(parseSseFilter("EventType eq 'X' and MessageId eq 'Y' or ResourceType eq 'ComputerSystem'")(subject({}))).toBe(true);
    expect(parseSseFilter("not (EventType eq 'StatusChange')")(subject({}))).toBe(false);
    expect(parseSseFilter("MessageId eq 'it''s'")(subject({ MessageId: "it's" }))).toBe(true);
    expect(parseSseFilter("EventFormatType eq Event")(subject({}))).toBe(true);
  });

  it("refuses what it does not understand, naming the problem", () => {
    const cases: [string, RegExp][] = [
      ["", /empty/],
      ["Foo eq 'x'", /"Foo" is not a filterable property/],
      ["EventType ne 'x'", /only eq is supported/],
      ["EventType eq", /expected a value/],
      ["(EventType eq 'x'", /expected '\)'/],
      ["EventType eq 'x' EventType eq 'y'", /join conditions with and \/ or/],
      ["MessageId eq 'open", /not closed/],
      ["(".repeat(40) + "EventType eq x" + ")".repeat(40), /nests deeper/],
      ["EventType eq 'x' or ".repeat(200) + "EventType eq 'y'", /longer than/],
    ];
    for (const [text, message] of cases) expect(() => parseSseFilter(text), text).toThrow(message);
    expect(() => parseSseFilter("x eq")).toThrow(SseFilterError);
  });
});

describe("SSE stream: $filter, Last-Event-ID", () => {
  it("sends only events the filter admits; a bad filter is a 400 naming the problem; other query options stay 501", async () => {
    const service = testService({ events: { keepAliveMs: 60_000 } });
    const all = sse(service);
    const onlyHealth = sse(service, `?$filter=${encodeURIComponent("MessageId eq 'ResourceEvent.1.3.0.ResourceStatusChangedWarning'")}`);
    const onlyVmC = sse(service, `?$filter=${encodeURIComponent("OriginResource eq '/redfish/v1/Systems/tenant2-vms.vm-c' and EventType eq ResourceUpdated")}`);
    expect((await all.response).status).toBe(200);
    expect((await onlyHealth.response).status).toBe(200);
    setStatus(service, "tenant1-vms", "vm-b", "CrashLoopBackOff");
    setStatus(service, "tenant2-vms", "vm-c", "CrashLoopBackOff");
    await expect.poll(() => all.messages().filter(m => m.includes("ResourceStatusChangedWarning")).length).toBe(2);
    await expect.poll(() => onlyVmC.messages().length).toBe(1);
    expect(onlyHealth.messages().sort()).toEqual([
      "ResourceEvent.1.3.0.ResourceStatusChangedWarning /redfish/v1/Systems/tenant1-vms.vm-b",
      "ResourceEvent.1.3.0.ResourceStatusChangedWarning /redfish/v1/Systems/tenant2-vms.vm-c",
    ]);
    expect(onlyVmC.messages()).toEqual(["ResourceEvent.1.3.0.ResourceChanged /redfish/v1/Systems/tenant2-vms.vm-c"]);

    const bad = await service.request(`/redfish/v1/EventService/SSE?$filter=${encodeURIComponent("Colour eq 'red'")}`, { headers: { Authorization: AUTH.carol } });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain("is not a filterable property");
    expect((await service.request("/redfish/v1/EventService/SSE?$top=1", { headers: { Authorization: AUTH.carol } })).status).toBe(501);
    expect((await service.request(`/redfish/v1/Systems?$filter=x`, { headers: { Authorization: AUTH.carol } })).status).toBe(501);
  });

  it("replays the kept events after Last-Event-ID that the user may see, then streams new ones", async () => {
    const service = testService({ events: { keepAliveMs: 60_000 } });
    const first = sse(service);
    await first.response;
    setStatus(service, "tenant1-vms", "vm-b", "CrashLoopBackOff");
    setStatus(service, "tenant2-vms", "vm-c", "CrashLoopBackOff");
    await expect.poll(() => first.events.length).toBeGreaterThanOrEqual(4);
    const seen = first.events.map(e => Number(e.id));
    const firstId = Math.min(...seen);
    // alice (tenant1 only) reconnects after the first event: she gets the rest of tenant1's, none of tenant2's.
    const again = sse(service, "", { Authorization: AUTH.alice, "Last-Event-ID": String(firstId) });
    await expect.poll(() => again.events.length).toBeGreaterThan(0);
    expect(again.events.every(e => Number(e.id) > firstId)).toBe(true);
    expect(again.messages().every(m => m.includes("tenant1-vms.vm-b"))).toBe(true);
    const expected = first.events.filter(e => Number(e.id) > firstId && JSON.stringify(e.body).includes("tenant1-vms.vm-b")).map(e => e.id);
    await expect.poll(() => again.events.map(e => e.id)).toEqual(expected);
    // then live
    setStatus(service, "tenant1-vms", "vm-b", "Stopped");
    await expect.poll(() => again.messages().some(m => m.includes("ResourceStatusChangedOK"))).toBe(true);
    // A Last-Event-ID that is not an id replays nothing (and is not an error).
    const junk = sse(service, "", { Authorization: AUTH.alice, "Last-Event-ID": "yesterday" });
    expect((await junk.response).status).toBe(200);
  });
});

describe("EventService.SubmitTestEvent", () => {
  it("is advertised, checks its parameters, and reaches only the caller's own streams and subscriptions", async () => {
    const service = testService({ events: { keepAliveMs: 60_000 } });
    const root = (await (await service.request("/redfish/v1/EventService", { headers: { Authorization: AUTH.alice } })).json()) as any;
    expect(root.Actions["#EventService.SubmitTestEvent"].target).toBe("/redfish/v1/EventService/Actions/EventService.SubmitTestEvent");
    expect(root.SSEFilterPropertiesSupported).toMatchObject({ EventType: true, MessageId: true, OriginResource: true, RegistryPrefix: true, ResourceType: true });

    const subscriber = await eventReceiver();
    closers.push(() => subscriber.close());
    const received = subscriber.received;
    const destination = subscriber.url;
    const subscribe = (auth: string, context: string) =>
      service.request("/redfish/v1/EventService/Subscriptions", {
        method: "POST",
        headers: { Authorization: auth, "Content-Type": "application/json" },
        body: JSON.stringify({ Destination: destination, Protocol: "Redfish", Context: context, EventTypes: ["ResourceAdded"] }),
      });
    expect((await subscribe(AUTH.alice, "alice-sub")).status).toBe(201);
    expect((await subscribe(AUTH.bob, "bob-sub")).status).toBe(201);
    const aliceStream = sse(service, "", { Authorization: AUTH.alice });
    const bobStream = sse(service, "", { Authorization: AUTH.bob });
    await aliceStream.response;
    await bobStream.response;

    const submit = (body: unknown) =>
      service.request("/redfish/v1/EventService/Actions/EventService.SubmitTestEvent", {
        method: "POST",
        headers: { Authorization: AUTH.alice, "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    const missing = await submit({ Message: "no id" });
    expect(missing.status).toBe(400);
    expect(JSON.stringify(await missing.json())).toContain("ActionParameterMissing");
    expect((await submit({ MessageId: "Base.1.0.Success", Colour: "red" })).status).toBe(400);
    expect((await submit({ MessageId: "Base.1.0.Success", MessageSeverity: "Dire" })).status).toBe(400);

    const ok = await submit({ MessageId: "Alert.1.0.TestMessage", Message: "Hello from the test", MessageArgs: ["a"], MessageSeverity: "Warning", OriginOfCondition: "/redfish/v1/Systems/tenant1-vms.vm-a" });
    expect(ok.status).toBe(204);
    // Delivered whatever the subscription's filters (EventTypes here): it tests the path, not the filter.
    await expect.poll(() => received.map(r => r.body.Context)).toEqual(["alice-sub"]);
    expect(received[0].body.Events[0]).toMatchObject({ MessageId: "Alert.1.0.TestMessage", Message: "Hello from the test", MessageArgs: ["a"], MessageSeverity: "Warning", OriginOfCondition: { "@odata.id": "/redfish/v1/Systems/tenant1-vms.vm-a" } });
    await expect.poll(() => aliceStream.messages()).toEqual(["Alert.1.0.TestMessage /redfish/v1/Systems/tenant1-vms.vm-a"]);
    expect(bobStream.events).toEqual([]);
  });
});

describe("events for Kubernetes identities", () => {
  const TOKEN = "tenant1-events-token";
  const USER = { username: "system:serviceaccount:tenant1-vms:events", groups: ["system:serviceaccounts"] };
  class Reviews implements IdentityReviews {
    seeTenant1 = true;
    /** Access reviews asked, by namespace and verb. */
    readonly asked: string[] = [];
    async reviewToken(token: string) {
      return token === TOKEN ? { authenticated: true, user: USER } : {};
    }
    async reviewAccess(user: ReviewedUser, a: AccessAttributes) {
      this.asked.push(`${a.namespace} ${a.verb}`);
      return this.seeTenant1 && user.username === USER.username && a.namespace === "tenant1-vms" && a.verb === "get" && a.resource === "virtualmachines";
    }
  }

  it("a token's stream and subscription receive tenant1's events only, and stop when its access is revoked", async () => {
    const reviews = new Reviews();
    const config = testConfig({ redfish: { kubernetesIdentities: { enabled: true, accessReviewCacheSeconds: 1 } } });
    const service = testService({ reviews, events: { keepAliveMs: 60_000 } });
    service.config.current = config;
    const subscriber = await eventReceiver();
    closers.push(() => subscriber.close());
    const received = subscriber.received;
    const bearer = { Authorization: `Bearer ${TOKEN}` };
    const created = await service.request("/redfish/v1/EventService/Subscriptions", {
      method: "POST",
      headers: { ...bearer, "Content-Type": "application/json" },
      body: JSON.stringify({ Destination: subscriber.url, Protocol: "Redfish", Context: "k8s" }),
    });
    expect(created.status).toBe(201);
    // Only its owner sees it.
    expect((await service.request(created.headers.get("Location")!, { headers: { Authorization: AUTH.carol } })).status).toBe(404);
    expect((await service.request(created.headers.get("Location")!, { headers: bearer })).status).toBe(200);
    const stream = sse(service, "", bearer);
    expect((await stream.response).status).toBe(200);

    setStatus(service, "tenant2-vms", "vm-c", "CrashLoopBackOff");
    setStatus(service, "tenant1-vms", "vm-b", "CrashLoopBackOff");
    // vm-b's health change and its ResourceChanged, on both paths.
    await expect.poll(() => stream.events.length).toBe(2);
    await expect.poll(() => received.length).toBe(2);
    expect(stream.messages().filter(m => m.includes("Warning"))).toHaveLength(1);
    const origins = [...stream.messages(), ...received.flatMap(r => r.body.Events.map((e: any) => `${e.MessageId} ${e.OriginOfCondition["@odata.id"]}`))];
    expect(origins.every(o => o.endsWith("/redfish/v1/Systems/tenant1-vms.vm-b"))).toBe(true);
    // Each event's delivery asked GET's question, answered from its cache: one review per namespace in all.
    expect(reviews.asked.filter(q => q.startsWith("tenant1-vms ")).length).toBe(1);
    expect(reviews.asked.filter(q => q.startsWith("tenant2-vms ")).length).toBeLessThanOrEqual(1);

    // Revoked: after the cached decision expires, no more events of tenant1 either.
    reviews.seeTenant1 = false;
    service.clock.now += 1_000;
    const before = { stream: stream.events.length, pushed: received.length };
    setStatus(service, "tenant1-vms", "vm-b", "Stopped");
    // A marker the identity does receive (its own test event, queued behind the revoked event's access check) proves
    // that event was decided before it.
    await service.request("/redfish/v1/EventService/Actions/EventService.SubmitTestEvent", {
      method: "POST",
      headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
      body: JSON.stringify({ MessageId: "Alert.1.0.Marker" }),
    });
    await expect.poll(() => stream.messages().some(m => m.startsWith("Alert.1.0.Marker"))).toBe(true);
    await expect.poll(() => received.some(r => r.body.Events[0].MessageId === "Alert.1.0.Marker")).toBe(true);
    expect(stream.events.length).toBe(before.stream + 1);
    expect(received.length).toBe(before.pushed + 1);
  });
});

// Protocol rules: OData headers, ETags and conditional requests, 405/Allow, Redfish error bodies for
// every kind of bad input (never a 5xx), size limits, query options, and a fuzz run over the tree.
import { Log } from "pepr";
import { afterEach, describe, expect, it, vi } from "vitest";
import { RegExpRouter } from "hono/router/reg-exp-router";
import type { ClusterCache } from "../../redfish/cache/types";
import { AUTH, PASSWORDS, testService } from "./fixtures";

type Json = Record<string, any>;  

const SYSTEM = "/redfish/v1/Systems/tenant1-vms.vm-a";
const RESET = `${SYSTEM}/Actions/ComputerSystem.Reset`;

afterEach(() => {
  vi.restoreAllMocks();
});

function send(s: ReturnType<typeof testService>, path: string, method: string, body?: string, headers: Record<string, string> = {}) {
  return s.request(path, {
    method,
    headers: { Authorization: AUTH.alice, "Content-Type": "application/json", ...headers },
    ...(body !== undefined ? { body } : {}),
  });
}

async function expectRedfishError(res: Response, status: number, messageKey: string, label = ""): Promise<Json> {
  expect(res.status, label).toBe(status);
  expect(res.headers.get("Content-Type"), label).toContain("application/json");
  const body = (await res.json()) as Json;
  expect(body.error.code, label).toBe(`Base.1.18.1.${messageKey}`);
  expect(typeof body.error.message).toBe("string");
  expect(body.error["@Message.ExtendedInfo"][0]).toMatchObject({ MessageId: `Base.1.18.1.${messageKey}` });
  return body;
}

describe("headers and conditional requests", () => {
  it("sends OData-Version and a strong ETag; If-None-Match gives 304 until the resource changes", async () => {
    const s = testService();
    const first = await send(s, SYSTEM, "GET");
    expect(first.headers.get("OData-Version")).toBe("4.0");
    expect(first.headers.get("Cache-Control")).toBe("private, no-cache");
    const etag = first.headers.get("ETag")!;
    expect(etag).toMatch(/^"[^"]+"$/);
    expect((await send(s, SYSTEM, "GET")).headers.get("ETag")).toBe(etag);

    const notModified = await send(s, SYSTEM, "GET", undefined, { "If-None-Match": etag });
    expect(notModified.status).toBe(304);
    expect(notModified.headers.get("ETag")).toBe(etag);
    expect(await notModified.text()).toBe("");
    expect((await send(s, SYSTEM, "GET", undefined, { "If-None-Match": `W/${etag}` })).status).toBe(304);
    expect((await send(s, SYSTEM, "GET", undefined, { "If-None-Match": '"other", ' + etag })).status).toBe(304);
    expect((await send(s, SYSTEM, "GET", undefined, { "If-None-Match": '"other"' })).status).toBe(200);
  });

  it("honours If-Match on PATCH and POST: 412 PreconditionFailed on mismatch", async () => {
    const s = testService();
    const etag = (await send(s, SYSTEM, "GET")).headers.get("ETag")!;
    await expectRedfishError(await send(s, SYSTEM, "PATCH", JSON.stringify({ Boot: {} }), { "If-Match": '"stale"' }), 412, "PreconditionFailed");
    await expectRedfishError(await send(s, RESET, "POST", JSON.stringify({ ResetType: "On" }), { "If-Match": '"stale"' }), 412, "PreconditionFailed");
    // a weak tag never matches strongly
    await expectRedfishError(await send(s, RESET, "POST", JSON.stringify({ ResetType: "On" }), { "If-Match": `W/${etag}` }), 412, "PreconditionFailed");
    // matching ETag or "*" passes the precondition (and then reaches validation)
    await expectRedfishError(await send(s, RESET, "POST", JSON.stringify({ ResetType: "Nmi" }), { "If-Match": etag }), 400, "ActionParameterNotSupported");
    await expectRedfishError(await send(s, RESET, "POST", JSON.stringify({ ResetType: "Nmi" }), { "If-Match": "*" }), 400, "ActionParameterNotSupported");
    await expectRedfishError(await send(s, SYSTEM, "PATCH", JSON.stringify({ Name: "x" }), { "If-Match": etag }), 400, "PropertyNotWritable");
  });

  it("rejects an unsupported OData-Version with 412 and unsupported query options with 501", async () => {
    const s = testService();
    await expectRedfishError(await send(s, SYSTEM, "GET", undefined, { "OData-Version": "3.0" }), 412, "PreconditionFailed");
    await expectRedfishError(await send(s, "/redfish/v1/Systems?$expand=.", "GET"), 501, "QueryNotSupported");
    await expectRedfishError(await send(s, "/redfish/v1/Systems?only", "GET"), 501, "QueryNotSupported");
    // other parameters are ignored
    expect((await send(s, "/redfish/v1/Systems?foo=bar", "GET")).status).toBe(200);
  });

  it("accepts trailing slashes and answers HEAD like GET without a body", async () => {
    const s = testService();
    for (const path of ["/redfish/", "/redfish/v1", "/redfish/v1/Systems/", `${SYSTEM}/`, "/redfish/v1/SessionService/Sessions/"]) {
      expect((await send(s, path, "GET")).status, path).toBe(200);
    }
    const head = await send(s, SYSTEM, "HEAD");
    expect(head.status).toBe(200);
    expect(head.headers.get("ETag")).toBe((await send(s, SYSTEM, "GET")).headers.get("ETag"));
    expect(await head.text()).toBe("");
  });
});

describe("methods", () => {
  it("answers 405 with Allow and a Redfish body for methods a resource does not support", async () => {
    const s = testService();
    const cases: [string, string, string][] = [
      ["/redfish/v1/", "POST", "GET, HEAD"],
      ["/redfish/v1/Systems", "POST", "GET, HEAD"],
      ["/redfish/v1/Systems", "DELETE", "GET, HEAD"],
      [SYSTEM, "DELETE", "GET, HEAD, PATCH"],
      [SYSTEM, "PUT", "GET, HEAD, PATCH"],
      [RESET, "GET", "POST"],
      ["/redfish/v1/SessionService", "PATCH", "GET, HEAD"],
      ["/redfish/v1/SessionService/Sessions", "DELETE", "GET, HEAD, POST"],
      ["/redfish/v1/AccountService/Accounts/alice", "PATCH", "GET, HEAD"],
      ["/redfish/v1/$metadata", "POST", "GET, HEAD"],
    ];
    for (const [path, method, allow] of cases) {
      const res = await send(s, path, method, method === "GET" || method === "DELETE" ? undefined : "{}");
      await expectRedfishError(res, 405, "OperationNotAllowed", `${method} ${path}`);
      expect(res.headers.get("Allow"), `${method} ${path}`).toBe(allow);
    }
    expect((await send(s, SYSTEM, "GET")).headers.get("Allow")).toBe("GET, HEAD, PATCH");
  });

  it("asks for credentials before telling whether a path exists", async () => {
    const s = testService();
    const unauthenticated = await s.request("/redfish/v1/NoSuchThing");
    expect(unauthenticated.status).toBe(401);
    await expectRedfishError(await send(s, "/redfish/v1/NoSuchThing", "GET"), 404, "ResourceMissingAtURI");
    expect((await s.request("/not-redfish")).status).toBe(404);
  });
});

describe("bad input is a 4xx Redfish error, never a 5xx", () => {
  it("PATCH system: malformed JSON, empty, unknown and read-only properties", async () => {
    const s = testService();
    await expectRedfishError(await send(s, SYSTEM, "PATCH", "{"), 400, "MalformedJSON");
    await expectRedfishError(await send(s, SYSTEM, "PATCH", ""), 400, "MalformedJSON");
    await expectRedfishError(await send(s, SYSTEM, "PATCH", "null"), 400, "MalformedJSON");
    await expectRedfishError(await send(s, SYSTEM, "PATCH", '"Boot"'), 400, "MalformedJSON");
    await expectRedfishError(await send(s, SYSTEM, "PATCH", "{}"), 400, "EmptyJSON");
    const unknown = await expectRedfishError(await send(s, SYSTEM, "PATCH", JSON.stringify({ NoSuchProperty: {} })), 400, "PropertyUnknown");
    expect(unknown.error["@Message.ExtendedInfo"][0].MessageArgs).toEqual(["NoSuchProperty"]);
    await expectRedfishError(await send(s, SYSTEM, "PATCH", JSON.stringify({ PowerState: "On" })), 400, "PropertyNotWritable");
    // Bios is a read-only link now, not an unknown property
    await expectRedfishError(await send(s, SYSTEM, "PATCH", JSON.stringify({ Bios: {} })), 400, "PropertyNotWritable");
  });

  it("Reset action: missing, mistyped, unknown and unsupported parameters", async () => {
    const s = testService();
    const cases: [string, string, string[]?][] = [
      ["{}", "ActionParameterMissing", ["ComputerSystem.Reset", "ResetType"]],
      [JSON.stringify({ ResetType: 5 }), "ActionParameterValueTypeError", ["5", "ResetType", "ComputerSystem.Reset"]],
      [JSON.stringify({ ResetType: null }), "ActionParameterValueTypeError"],
      [JSON.stringify({ ResetType: "On", Force: true }), "ActionParameterUnknown", ["ComputerSystem.Reset", "Force"]],
      [JSON.stringify({ ResetType: "Nmi" }), "ActionParameterNotSupported", ["ResetType", "ComputerSystem.Reset"]],
      [JSON.stringify({ ResetType: "PowerCycle" }), "ActionParameterNotSupported"],
      [JSON.stringify({ ResetType: "on" }), "ActionParameterNotSupported"],
      ["[1,2]", "MalformedJSON"],
      ["{'ResetType':'On'}", "MalformedJSON"],
    ];
    for (const [body, key, args] of cases) {
      const err = await expectRedfishError(await send(s, RESET, "POST", body), 400, key, body);
      if (args) expect(err.error["@Message.ExtendedInfo"][0].MessageArgs, body).toEqual(args);
    }
  });

  it("refuses bodies that are not declared JSON with 415 (no cross-site text/plain form posts)", async () => {
    const s = testService();
    const logins = (contentType?: string) =>
      s.request("/redfish/v1/SessionService/Sessions", {
        method: "POST",
        headers: contentType === undefined ? {} : { "Content-Type": contentType },
        body: JSON.stringify({ UserName: "alice", Password: "x" }),
      });
    for (const [path, method, body] of [
      [RESET, "POST", '{"ResetType":"On"}'],
      [SYSTEM, "PATCH", '{"Boot":{"BootSourceOverrideTarget":"Pxe"}}'],
      [`${SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`, "POST", '{"Image":"http://example.test/a.iso"}'],
    ]) {
      for (const contentType of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]) {
        const res = await s.request(path, { method, headers: { Authorization: AUTH.alice, ...(contentType ? { "Content-Type": contentType } : {}) }, body });
        await expectRedfishError(res, 415, "GeneralError", `${method} ${path} as ${contentType || "no Content-Type"}`);
      }
    }
    await expectRedfishError(await logins("text/plain"), 415, "GeneralError", "login as text/plain");
    await expectRedfishError(await logins(), 415, "GeneralError", "login without Content-Type");
    // JSON with parameters is JSON; a body-less POST needs no Content-Type
    expect((await logins("Application/JSON; charset=utf-8")).status).toBe(401);
    const eject = (headers: Record<string, string>) => s.request(`${SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia`, { method: "POST", headers: { Authorization: AUTH.alice, ...headers } });
    const [bare, declared] = [await eject({}), await eject({ "Content-Type": "application/json" })];
    expect(bare.status).toBe(declared.status);
    expect(bare.status).not.toBe(415);
  });

  it("refuses deeply nested JSON with 400 MalformedJSON before parsing it, never a 500 or an error log", async () => {
    const errors = vi.spyOn(Log, "error");
    const s = testService();
    const nested = (depth: number, leaf: string) => "[".repeat(depth) + leaf + "]".repeat(depth);
    const login = await s.request("/redfish/v1/SessionService/Sessions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: `{"UserName":${nested(30_000, '"alice"')},"Password":"x"}`,
    });
    await expectRedfishError(login, 400, "MalformedJSON", "30,000-deep login");
    await expectRedfishError(await send(s, RESET, "POST", `{"ResetType":${nested(5_000, '"On"')}}`), 400, "MalformedJSON", "5,000-deep Reset");
    await expectRedfishError(await send(s, SYSTEM, "PATCH", `{"Boot":${"{\"a\":".repeat(5_000)}1${"}".repeat(5_000)}}`), 400, "MalformedJSON", "5,000-deep PATCH");
    // brackets inside strings do not count; 32 levels are fine
    await expectRedfishError(await send(s, RESET, "POST", `{"ResetType":"${"[".repeat(1000)}"}`), 400, "ActionParameterNotSupported", "brackets in a string");
    expect((await send(s, SYSTEM, "PATCH", `{"Oem":${nested(31, "1")}}`)).status).not.toBe(500);
    expect(errors).not.toHaveBeenCalled();
  });

  it("refuses bodies over 64 KiB with 413, with or without Content-Length", async () => {
    const s = testService();
    const big = JSON.stringify({ ResetType: "On", pad: "x".repeat(70 * 1024) });
    await expectRedfishError(await send(s, RESET, "POST", big), 413, "GeneralError");
    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 80; i++) controller.enqueue(new TextEncoder().encode("x".repeat(1024)));
        controller.close();
      },
    });
    const streamed = await s.request(RESET, {
      method: "POST",
      headers: { Authorization: AUTH.alice },
      body: chunks,
      duplex: "half",
    } as RequestInit);
    await expectRedfishError(streamed, 413, "GeneralError");
  });

  it("an unexpected failure is a logged 500 with a Redfish body and no request headers in the log", async () => {
    const errors: unknown[][] = [];
    vi.spyOn(Log, "error").mockImplementation(((...args: unknown[]) => errors.push(args)) as never);
    const s = testService();
    const failing: ClusterCache = {
      ...s.cache,
      getVm: () => {
        throw new Error("cache corrupted");
      },
      listVms: ns => s.cache.listVms(ns),
      listVmsInChassis: ch => s.cache.listVmsInChassis(ch),
      chassisOf: (ns, n) => s.cache.chassisOf(ns, n),
      onChange: fn => s.cache.onChange(fn),
      synced: () => true,
    };
    const broken = testService({ cache: failing });
    const res = await send(broken, SYSTEM, "GET");
    await expectRedfishError(res, 500, "InternalError");
    expect(errors).toHaveLength(1);
    const logged = JSON.stringify(errors);
    expect(logged).toContain("cache corrupted");
    expect(logged).not.toContain(AUTH.alice.slice(6));
  });
});

describe("routing", () => {
  it("every route fits Hono's RegExpRouter, so the app never falls back to a slower router", async () => {
    const s = testService();
    const router = new RegExpRouter<string>();
    for (const route of s.app.routes) router.add(route.method, route.path, route.path);
    // RegExpRouter compiles on the first match and throws UnsupportedPathError for routes it cannot hold together.
    expect(() => router.match("GET", SYSTEM)).not.toThrow();
    expect((await send(s, SYSTEM, "GET")).status).toBe(200);
    expect((s.app.router as unknown as { activeRouter: { name: string } }).activeRouter.name).toBe("RegExpRouter");
    // `Members` shares the `Sessions/:id` route: a login there, a 404 for an unknown session, 405 for GET on Members.
    const login = await s.request("/redfish/v1/SessionService/Sessions/Members", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ UserName: "alice", Password: PASSWORDS.alice }),
    });
    expect(login.status).toBe(201);
    expect((await send(s, "/redfish/v1/SessionService/Sessions/nope", "GET")).status).toBe(404);
    const membersGet = await send(s, "/redfish/v1/SessionService/Sessions/Members", "GET");
    expect(membersGet.status).toBe(405);
    expect(membersGet.headers.get("Allow")).toBe("POST");
  });
});

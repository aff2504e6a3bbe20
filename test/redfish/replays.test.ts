// Replays of hot GETs over real sockets (redfish/replays.ts): a repeated GET is answered with the bytes the app gave,
// without the app, and never once anything the app would decide differently has changed: the VM, the chassis, the
// configuration, the session, the credentials, or a request field the app reads.
import type http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { createCertificateAuthority, issueServerCertificate } from "../../capabilities/common/tls";
import { startRedfishServer, type RedfishServer } from "../../redfish/server";
import { chassisDefinitions } from "../../redfish/settings";
import { call, type Reply } from "../helpers/http-call";
import { AUTH, basic, PASSWORDS, revise, testConfig, testService, type TestService } from "./fixtures";

const SYSTEM = "/redfish/v1/Systems/tenant1-vms.vm-a";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

/** The service behind a real server, and whether each request was replayed (true) or left to the app (false). */
async function served(s: TestService, tls = false): Promise<{ base: string; replayed: boolean[]; ca?: string }> {
  const replayed: boolean[] = [];
  const pki = tls ? (() => {
    const ca = createCertificateAuthority("replays-test-ca");
    return { ca: ca.certPem, pair: issueServerCertificate(ca, { commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] }) };
  })() : undefined;
  const server: RedfishServer = startRedfishServer({
    fetch: s.app.fetch,
    replay: (request, response) => {
      const hit = s.replay(request, response);
      replayed.push(hit);
      return hit;
    },
    port: 0,
    host: "127.0.0.1",
    tls: pki?.pair ?? false,
  });
  cleanup.push(() => server.close());
  const port = await server.ready;
  return { base: `${tls ? "https" : "http"}://127.0.0.1:${port}`, replayed, ...(pki ? { ca: pki.ca } : {}) };
}

/** Response headers without the ones that differ per response (Date) or per connection. */
function stableHeaders(reply: Reply): http.IncomingHttpHeaders {
  const { date: _date, connection: _connection, ...rest } = reply.headers;
  return rest;
}

describe("replayed GETs", () => {
  it("answer a repeated GET with the app's status, headers and bytes, for System, SecureBoot, Bios and Manager, with HSTS over TLS", async () => {
    const s = testService();
    const { base, replayed, ca } = await served(s, true);
    for (const path of [SYSTEM, `${SYSTEM}/SecureBoot`, `${SYSTEM}/Bios`, `${SYSTEM}/Bios/Settings`, "/redfish/v1/Managers/tenant1-vms.vm-a"]) {
      replayed.length = 0;
      const first = await call(`${base}${path}`, { headers: { Authorization: AUTH.alice, "OData-Version": "4.0" }, ca });
      const second = await call(`${base}${path}`, { headers: { Authorization: AUTH.alice, "OData-Version": "4.0" }, ca });
      expect(replayed).toEqual([false, true]);
      expect(first.status).toBe(200);
      expect(second.status).toBe(200);
      expect(second.body).toBe(first.body);
      expect(stableHeaders(second)).toEqual(stableHeaders(first));
      expect(second.headers["strict-transport-security"]).toBe("max-age=31536000");
      expect(second.headers.etag).toMatch(/^"/);
    }
  });

  it("follow a change of the VM's record at once: the new body from the app, then replayed", async () => {
    const s = testService();
    const { base, replayed } = await served(s);
    const get = () => call(`${base}${SYSTEM}`, { headers: { Authorization: AUTH.alice } });
    const before = await get();
    await get();
    const vmi = s.cache.getVm("tenant1-vms", "vm-a")!.vmi!;
    s.cache.apply("VirtualMachineInstance", "DELETED", vmi as any);
    const after = await get();
    expect(JSON.parse(before.body).PowerState).toBe("On");
    expect(JSON.parse(after.body).PowerState).toBe("PoweringOn");
    expect(after.headers.etag).not.toBe(before.headers.etag);
    expect((await get()).body).toBe(after.body);
    expect(replayed).toEqual([false, true, false, true]);
  });

  it("never answer once the VM leaves the principal's chassis, its labels change, or the configuration changes", async () => {
    const s = testService();
    const { base, replayed } = await served(s);
    const bobGets = () => call(`${base}/redfish/v1/Systems/tenant2-vms.vm-c`, { headers: { Authorization: AUTH.bob } });
    expect((await bobGets()).status).toBe(200);
    expect((await bobGets()).status).toBe(200);
    // The chassis definitions change under the same record (the cache's chassis alone): 404, not the old answer.
    s.cache.setChassis([{ name: "tenant1", namespace: "tenant1-vms", vmSelector: {} }, { name: "tenant2", namespace: "tenant2-vms", vmSelector: { matchLabels: { redfish: "no" } } }] as any);
    expect((await bobGets()).status).toBe(404);
    s.cache.setChassis(chassisDefinitions(s.config.current));
    expect((await bobGets()).status).toBe(200);
    expect((await bobGets()).status).toBe(200);
    // The VM loses the label that puts it in bob's chassis.
    const vmc = s.cache.getVm("tenant2-vms", "vm-c")!.vm;
    s.cache.apply("VirtualMachine", "MODIFIED", revise(vmc as any, (v: any) => (v.metadata.labels = {})));
    expect((await bobGets()).status).toBe(404);
    expect(replayed).toEqual([false, true, false, false, true, false]);

    // A new configuration in which alice's password changed: her old credentials are refused at once.
    const aliceGets = () => call(`${base}${SYSTEM}`, { headers: { Authorization: AUTH.alice } });
    await aliceGets();
    replayed.length = 0;
    expect((await aliceGets()).status).toBe(200);
    s.config.current = testConfig({
      authentication: { users: [{ username: "alice", password: "alice-New-Secret-9!", chassis: ["tenant1"] }], sessionTimeoutSeconds: 600, lockout: { maxFailures: 3, baseDelaySeconds: 2, maxDelaySeconds: 60 } },
    });
    expect((await aliceGets()).status).toBe(401);
    expect(replayed).toEqual([true, false]);
  });

  it("end with the session: a token's GET is replayed while the session lives, refused once it is deleted", async () => {
    const s = testService();
    const { base, replayed } = await served(s);
    const login = await call(`${base}/redfish/v1/SessionService/Sessions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ UserName: "alice", Password: PASSWORDS.alice }),
    });
    expect(login.status).toBe(201);
    const token = login.headers["x-auth-token"] as string;
    const get = () => call(`${base}${SYSTEM}`, { headers: { "X-Auth-Token": token } });
    expect((await get()).status).toBe(200);
    replayed.length = 0;
    expect((await get()).status).toBe(200);
    expect((await call(`${base}${login.headers.location}`, { method: "DELETE", headers: { "X-Auth-Token": token } })).status).toBe(204);
    expect((await get()).status).toBe(401);
    expect(replayed).toEqual([true, false, false]);
  });

  it("replay a Kubernetes identity's GET (Bearer and token login) while its reviews are cached, and stop when they expire", async () => {
    const token = "k".repeat(1_100); // a projected ServiceAccount token is about this long
    let accessReviews = 0;
    const reviews = {
      reviewToken: async (t: string) => (t === token ? { authenticated: true, user: { username: "system:serviceaccount:tenant1-vms:bmc", uid: "u1", groups: [] } } : { user: { username: "" } }),
      reviewAccess: async (_user: unknown, a: { namespace?: string }) => (accessReviews++, a.namespace === "tenant1-vms"),
    };
    const s = testService({ reviews: reviews as never });
    s.config.current = testConfig({ redfish: { kubernetesIdentities: { enabled: true, tokenReviewCacheSeconds: 30, accessReviewCacheSeconds: 5 } } });
    const { base, replayed } = await served(s);
    const bearer = () => call(`${base}${SYSTEM}`, { headers: { Authorization: `Bearer ${token}` } });
    const tokenLogin = () => call(`${base}${SYSTEM}`, { headers: { Authorization: basic("kubernetes", token) } });
    for (const get of [bearer, tokenLogin]) {
      replayed.length = 0;
      expect((await get()).status).toBe(200);
      expect((await get()).status).toBe(200);
      expect(replayed).toEqual([false, true]);
    }
    // The access decisions expire: the app reviews again (a new principal object), then replays that.
    const reviewed = accessReviews;
    s.clock.now += 6_000;
    replayed.length = 0;
    expect((await bearer()).status).toBe(200);
    expect((await bearer()).status).toBe(200);
    expect(replayed).toEqual([false, true]);
    expect(accessReviews).toBeGreaterThan(reviewed);
  });

  it("leave to the app whatever it would answer differently: other credentials, two Authorization fields, conditions, queries, HEAD, a bare VM name, other fields", async () => {
    const s = testService();
    const { base, replayed } = await served(s);
    const first = await call(`${base}${SYSTEM}`, { headers: { Authorization: AUTH.alice } });
    expect(first.status).toBe(200);
    replayed.length = 0;
    const answers = [
      await call(`${base}${SYSTEM}`, { headers: { Authorization: AUTH.bob } }),
      await call(`${base}${SYSTEM}`, { headers: { Authorization: basic("alice", "wrong") } }),
      await call(`${base}${SYSTEM}`, { headers: { Authorization: [AUTH.alice, basic("alice", "wrong")] } }),
      await call(`${base}${SYSTEM}`, { headers: { Authorization: AUTH.alice, "If-None-Match": first.headers.etag! } }),
      await call(`${base}${SYSTEM}`, { headers: { Authorization: AUTH.alice, "OData-Version": "4.01" } }),
      await call(`${base}${SYSTEM}?$expand=.`, { headers: { Authorization: AUTH.alice } }),
      await call(`${base}${SYSTEM}`, { method: "HEAD", headers: { Authorization: AUTH.alice } }),
      await call(`${base}${SYSTEM}`, { headers: { Authorization: AUTH.alice, "X-Forwarded-For": "198.51.100.7" } }),
    ];
    expect(answers.map(a => a.status)).toEqual([404, 401, 401, 304, 412, 501, 200, 200]);
    expect(replayed).toEqual([false, false, false, false, false, false, false, false]);

    // A bare VM name resolves against the other VMs alice sees: the app answers it every time.
    replayed.length = 0;
    for (let i = 0; i < 2; i++) expect((await call(`${base}/redfish/v1/Systems/vm-a`, { headers: { Authorization: AUTH.alice } })).status).toBe(200);
    expect(replayed).toEqual([false, false]);
  });
});

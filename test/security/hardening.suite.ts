// Issue #12's HTTP findings against the BUILT module (the watcher serving Redfish over HTTPS with its default
// limits), one cluster for the file. Each case failed before its fix:
//   - lockout of a victim by name from another address (2)          - unauthenticated memory growth (3)
//   - slow clients held for minutes (6)                              - bcrypt on the event loop (7)
//   - deep JSON → 500 with a stack trace (8)                         - bodies without a JSON Content-Type (9)
//   - TLS suites without forward secrecy or with CBC, no HSTS (10)   - 400 (not 501) for an unknown method
import bcrypt from "bcryptjs";
import fs from "node:fs";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createNamespace, startSuiteCluster, vmObject, VM_KEY, type RedfishResponse, type SuiteCluster } from "../reliability/support";
import { encodeRequest, exchange } from "./raw-client";

const TENANT = { username: "tenant1", password: "tenant1-Secret-1!" };
const OTHER = { username: "other", password: "other-Secret-2!" };
/** Cost 10, as `htpasswd -B` and most bcrypt tools make them: ~70 ms of CPU per check. */
const BCRYPT_USER = { username: "hashed", password: "hashed-Secret-3!" };
const SYSTEM = "/redfish/v1/Systems/hard-vms.vm-1";
const LOGIN = "/redfish/v1/SessionService/Sessions";

let c: SuiteCluster;

beforeAll(async () => {
  c = await startSuiteCluster({
    config: {
      chassis: [{ name: "hard", namespace: "hard-vms" }],
      authentication: { lockout: { maxFailures: 5, baseDelaySeconds: 2, maxDelaySeconds: 300 } },
    },
    users: [
      { username: TENANT.username, passwordHash: bcrypt.hashSync(TENANT.password, 4), chassis: ["hard"] },
      { username: OTHER.username, password: OTHER.password, chassis: ["hard"] },
      { username: BCRYPT_USER.username, passwordHash: bcrypt.hashSync(BCRYPT_USER.password, 10), chassis: ["hard"] },
    ],
    kubevirt: { stepDelayMs: 50 },
  });
  createNamespace(c, "hard-vms");
  c.api.store.create(VM_KEY, vmObject("hard-vms", "vm-1"));
  const rf = c.client();
  await vi.waitFor(async () => expect((await rf.request("GET", SYSTEM, { user: `${OTHER.username}:${OTHER.password}` })).status, "the VM in Redfish").toBe(200), { timeout: 20_000, interval: 100 });
  rf.close();
});
afterAll(async () => {
  await c?.stop();
});

const basic = (u: { username: string; password: string }) => `${u.username}:${u.password}`;

async function from(address: string, method: string, path: string, o: Parameters<ReturnType<SuiteCluster["client"]>["request"]>[2] = {}): Promise<RedfishResponse> {
  const client = c.client({ localAddress: address });
  try {
    return await client.request(method, path, o);
  } finally {
    client.close();
  }
}

function watcherRssBytes(): number {
  const status = fs.readFileSync(`/proc/${c.watcher!.child.pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

describe("login back-off cannot be used against the victim (#12.2)", () => {
  it("the correct password works, by Basic and by session login, while another address guesses it", async () => {
    const attacker = "127.0.0.40";
    let attackerRefused = false;
    const attack = (async () => {
      for (let i = 0; i < 30; i++) {
        const guess = await from(attacker, "GET", "/redfish/v1/Systems", { user: `${TENANT.username}:guess-${i}` });
        const sessionGuess = await from(attacker, "POST", LOGIN, { body: { UserName: TENANT.username, Password: `guess-s-${i}` } });
        if (guess.headers["retry-after"] || sessionGuess.headers["retry-after"]) attackerRefused = true;
      }
    })();
    // The attacker's guesses are answered with Retry-After: its address is locked now.
    await expect.poll(() => attackerRefused, { message: "the attacker's address locked", timeout: 10_000 }).toBe(true);
    const locked = await from(attacker, "GET", "/redfish/v1/Systems", { user: basic(TENANT) });
    expect(locked.status).toBe(401);
    expect(Number(locked.headers["retry-after"])).toBeGreaterThan(0);
    // The victim's first login since the module started: nothing about it is cached.
    const login = await from("127.0.0.41", "POST", LOGIN, { body: { UserName: TENANT.username, Password: TENANT.password } });
    expect(login.status, login.text).toBe(201);
    expect((await from("127.0.0.42", "GET", SYSTEM, { user: basic(TENANT) })).status).toBe(200);
    expect((await from("127.0.0.41", "GET", SYSTEM, { token: login.headers["x-auth-token"] as string })).status).toBe(200);
    await attack;
    // After 60 failures from the attacker, the victim's known credential still gets in at once from anywhere.
    const started = Date.now();
    expect((await from("127.0.0.43", "GET", SYSTEM, { user: basic(TENANT) })).status).toBe(200);
    expect(Date.now() - started).toBeLessThan(1_500);
  });
});

describe("unauthenticated memory (#12.3)", () => {
  it("3,000 failed logins with unique 60,000-character user names move the watcher's RSS by less than 20 MB", async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 8, ca: c.caPem, localAddress: "127.0.0.50" });
    const login = (i: number) =>
      new Promise<number>((resolve, reject) => {
        const body = JSON.stringify({ UserName: `${i}-${"x".repeat(60_000 - String(i).length - 1)}`, Password: "whatever" });
        const req = https.request(
          { host: "127.0.0.1", port: c.redfishPort, path: LOGIN, method: "POST", agent, servername: "localhost", headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) } },
          res => {
            res.resume();
            res.on("end", () => resolve(res.statusCode!));
          },
        );
        req.on("error", reject);
        req.end(body);
      });
    const run = async (count: number) => {
      const statuses = new Map<number, number>();
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < count) {
            const status = await login(next++);
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
          }
        }),
      );
      return statuses;
    };
    try {
      await run(300); // warm up: buffers, JIT, the connection pool
      await sleep(1_000);
      const before = watcherRssBytes();
      const statuses = await run(3_000);
      await sleep(2_000);
      const after = watcherRssBytes();
      console.log(`memory: watcher RSS ${(before / 2 ** 20).toFixed(1)} MB -> ${(after / 2 ** 20).toFixed(1)} MB over 3,000 long-name logins; statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
      expect(Object.fromEntries(statuses)).toEqual({ 401: 3_000 });
      expect(after - before).toBeLessThan(20 * 2 ** 20);
    } finally {
      agent.destroy();
    }
  });
});

describe("bcrypt off the event loop (#12.7)", () => {
  it("100 failed logins against a bcrypt user do not raise another user's GET median materially", async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: c.caPem, localAddress: "127.0.0.60" });
    const timedGet = () =>
      new Promise<number>((resolve, reject) => {
        const started = process.hrtime.bigint();
        const req = https.get(
          { host: "127.0.0.1", port: c.redfishPort, path: SYSTEM, agent, servername: "localhost", headers: { Authorization: `Basic ${Buffer.from(basic(OTHER)).toString("base64")}` } },
          res => {
            res.resume();
            res.on("end", () => (res.statusCode === 200 ? resolve(Number(process.hrtime.bigint() - started) / 1e6) : reject(new Error(`GET ${res.statusCode}`))));
          },
        );
        req.on("error", reject);
      });
    const sample = async (until: () => boolean, max: number) => {
      const times: number[] = [];
      while (!until() && times.length < max) times.push(await timedGet());
      return times;
    };
    try {
      await sample(() => false, 20); // warm up
      const baseline = await sample(() => false, 60);
      // 100 wrong passwords from 100 addresses: every one is a real bcrypt check (no refusal without a check). They
      // queue for the bcrypt workers (a cost-10 check is 70-350 ms here, depending on the load): no client timeout.
      let done = false;
      const failedLogin = (i: number) =>
        new Promise<number>((resolve, reject) => {
          const req = https.get(
            {
              host: "127.0.0.1",
              port: c.redfishPort,
              path: "/redfish/v1/Systems",
              localAddress: `127.0.1.${i + 1}`,
              ca: c.caPem,
              servername: "localhost",
              agent: false,
              headers: { Authorization: `Basic ${Buffer.from(`${BCRYPT_USER.username}:wrong-${i}`).toString("base64")}` },
            },
            res => {
              res.resume();
              res.on("end", () => resolve(res.statusCode!));
            },
          );
          req.on("error", reject);
        });
      const failures = Promise.all(Array.from({ length: 100 }, (_, i) => failedLogin(i))).then(results => {
        done = true;
        return results;
      });
      const during = await sample(() => done, 50_000);
      const results = await failures;
      expect(results.every(status => status === 401)).toBe(true);
      console.log(`bcrypt: GET median ${median(baseline).toFixed(1)} ms before, ${median(during).toFixed(1)} ms during 100 failed bcrypt logins (${during.length} GETs)`);
      expect(during.length).toBeGreaterThan(10);
      expect(median(during)).toBeLessThan(Math.max(3 * median(baseline), median(baseline) + 20));
    } finally {
      agent.destroy();
    }
  }, 300_000);
});

describe("request bodies (#12.8, #12.9)", () => {
  it("deep JSON is a 400, never a 500 or an error-level stack trace: a 30,000-deep login and a 5,000-deep Reset", async () => {
    const errorLinesBefore = c.watcher!.logs.filter(l => l.includes('"level":50')).length;
    const nested = (depth: number, leaf: string) => "[".repeat(depth) + leaf + "]".repeat(depth);
    const login = await from("127.0.0.70", "POST", LOGIN, { body: `{"UserName":${nested(30_000, '"tenant1"')},"Password":"x"}` });
    expect(login.status, login.text).toBe(400);
    expect(login.body.error["@Message.ExtendedInfo"][0].MessageId).toMatch(/MalformedJSON$/);
    const reset = await from("127.0.0.70", "POST", `${SYSTEM}/Actions/ComputerSystem.Reset`, { user: basic(OTHER), body: `{"ResetType":${nested(5_000, '"On"')}}` });
    expect(reset.status, reset.text).toBe(400);
    const patch = await from("127.0.0.70", "PATCH", SYSTEM, { user: basic(OTHER), body: `{"Boot":${'{"a":'.repeat(5_000)}1${"}".repeat(5_000)}}` });
    expect(patch.status, patch.text).toBe(400);
    await c.watcherLogsFlushed();
    const errorLines = c.watcher!.logs.filter(l => l.includes('"level":50'));
    expect(errorLines.slice(errorLinesBefore)).toEqual([]);
  });

  it("Reset, InsertMedia, PATCH Boot and login as text/plain or without Content-Type are 415", async () => {
    const bootPatch = '{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}';
    const cases: [string, string, string, boolean][] = [
      ["POST", `${SYSTEM}/Actions/ComputerSystem.Reset`, '{"ResetType":"On"}', true],
      ["POST", `${SYSTEM}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`, '{"Image":"http://127.0.0.1:1/x.iso"}', true],
      ["PATCH", SYSTEM, bootPatch, true],
      ["POST", LOGIN, JSON.stringify({ UserName: OTHER.username, Password: OTHER.password }), false],
    ];
    const vmBefore = JSON.stringify(c.api.store.get(VM_KEY, "hard-vms", "vm-1")?.spec);
    for (const [method, path, body, authenticated] of cases) {
      for (const contentType of ["text/plain", undefined]) {
        const headers: [string, string][] = [];
        if (authenticated) headers.push(["Authorization", `Basic ${Buffer.from(basic(OTHER)).toString("base64")}`]);
        if (contentType) headers.push(["Content-Type", contentType]);
        const res = await exchange({ port: c.redfishPort, ca: c.caPem, localAddress: "127.0.0.71", bytes: encodeRequest({ method, target: path, headers, body }) });
        expect(res.status, `${method} ${path} as ${contentType ?? "no Content-Type"}: ${res.body}`).toBe(415);
        expect(res.headers["x-auth-token"]).toBeUndefined();
      }
    }
    // Nothing to wait for: the module answers Reset, InsertMedia and PATCH Boot after the API server accepted their
    // writes, and refuses a body's type before any plan; a write one of these requests made would be in the store now.
    expect(JSON.stringify(c.api.store.get(VM_KEY, "hard-vms", "vm-1")?.spec)).toBe(vmBefore);
    // As it is for the same PATCH as JSON, the moment its 204 arrives.
    const accepted = await from("127.0.0.71", "PATCH", SYSTEM, { user: basic(OTHER), body: bootPatch });
    expect(accepted.status, accepted.text).toBe(204);
    expect(JSON.stringify(c.api.store.get(VM_KEY, "hard-vms", "vm-1")?.spec)).not.toBe(vmBefore);
  });
});

// ---- the connection level, with raw sockets ----

function tlsConnect(options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port: c.redfishPort, servername: "localhost", ca: c.caPem, ...options }, () => resolve(socket));
    socket.once("error", reject);
  });
}

function closed(socket: net.Socket): Promise<{ text: string; afterMs: number }> {
  const started = Date.now();
  return new Promise(resolve => {
    let text = "";
    socket.on("data", chunk => (text += chunk.toString("latin1")));
    socket.on("error", () => undefined);
    socket.on("close", () => resolve({ text, afterMs: Date.now() - started }));
  });
}

describe("slow clients (#12.6)", () => {
  it("closes a connection without a ClientHello in ~10 s, a trickled request head in ~10 s (408) and a trickled body in ~30 s", async () => {
    const silent = net.connect({ host: "127.0.0.1", port: c.redfishPort });
    const silentClosed = closed(silent);
    const head = await tlsConnect();
    const headClosed = closed(head);
    const headText = "GET /redfish/v1/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + "s".repeat(1_000);
    let i = 0;
    const headTimer = setInterval(() => head.writable && head.write(headText[i++ % headText.length]), 1_000);
    const body = await tlsConnect();
    const bodyClosed = closed(body);
    body.write(`POST ${LOGIN} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`);
    const bodyTimer = setInterval(() => body.writable && body.write(" "), 1_000);
    try {
      const [a, b, d] = await Promise.all([silentClosed, headClosed, bodyClosed]);
      console.log(`slow clients closed after: no ClientHello ${a.afterMs} ms, trickled head ${b.afterMs} ms, trickled body ${d.afterMs} ms`);
      expect(a.afterMs).toBeLessThan(12_500);
      expect(b.afterMs).toBeLessThan(12_500);
      expect(b.text).toMatch(/^HTTP\/1\.1 408 /);
      expect(d.afterMs).toBeLessThan(32_500);
    } finally {
      clearInterval(headTimer);
      clearInterval(bodyTimer);
    }
  }, 60_000);
});

describe("TLS and protocol (#12.10, #17.7)", () => {
  it("refuses suites without forward secrecy and CBC suites, accepts ECDHE+AEAD, sends HSTS, and resumes sessions", async () => {
    for (const cipher of ["AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA", "AES256-SHA256", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384"]) {
      await expect(tlsConnect({ maxVersion: "TLSv1.2", ciphers: cipher }), cipher).rejects.toThrow();
    }
    await expect(tlsConnect({ minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT:@SECLEVEL=0" }), "TLS 1.1").rejects.toThrow();
    for (const cipher of ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"]) {
      const socket = await tlsConnect({ maxVersion: "TLSv1.2", ciphers: cipher });
      socket.destroy();
    }
    const root = await from("127.0.0.80", "GET", "/redfish/v1/");
    expect(root.headers["strict-transport-security"]).toMatch(/^max-age=\d{7,}/);

    // sushy's pattern: a new connection per request; the second one resumes the first one's session
    const first = await tlsConnect();
    const ticket = new Promise<Buffer>(resolve => first.once("session", resolve));
    first.write("GET /redfish HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    const session = await ticket;
    first.destroy();
    const second = await tlsConnect({ session });
    expect(second.isSessionReused()).toBe(true);
    second.destroy();
  });

  it("answers an unknown method (FAKEMETHODFORTEST) with 501 and a Redfish error body", async () => {
    const res = await exchange({ port: c.redfishPort, ca: c.caPem, localAddress: "127.0.0.81", bytes: encodeRequest({ method: "FAKEMETHODFORTEST", target: "/redfish/v1/" }) });
    expect(res.status, res.body).toBe(501);
    expect(JSON.parse(res.body).error["@Message.ExtendedInfo"]).toHaveLength(1);
  });
});

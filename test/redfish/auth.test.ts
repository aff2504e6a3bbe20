// Authentication: Basic, sessions (login, use, logout, timeout), back-off per username and per address
// (forwarded headers only from trusted proxies), config changes, and no secret in any log call.
import bcrypt from "bcryptjs";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { Log } from "pepr";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Authenticator } from "../../redfish/auth";
import { backoffKeys, MAX_BACKOFF_BYTES, MAX_LOGIN_DELAY_MS } from "../../redfish/auth/backoff";
import { BcryptPool } from "../../redfish/auth/bcrypt-pool";
import { BCRYPTJS_UMD_SOURCE, BCRYPTJS_VERSION } from "../../redfish/auth/bcryptjs-umd.generated";
import { clientAddress } from "../../redfish/auth/client-address";
import { UserDirectory } from "../../redfish/auth/users";
import { serviceSettings } from "../../redfish/settings";
import { AUTH, basic, PASSWORDS, testConfig, testService } from "./fixtures";

type Json = Record<string, any>;  

const SYSTEM = "/redfish/v1/Systems/tenant1-vms.vm-a";

function login(s: ReturnType<typeof testService>, username: string, password: string, address?: string) {
  return s.request("/redfish/v1/SessionService/Sessions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ UserName: username, Password: password }),
    ...(address ? { address } : {}),
  });
}

const logCalls: unknown[][] = [];
beforeEach(() => {
  logCalls.length = 0;
  for (const level of ["debug", "info", "warn", "error", "fatal", "trace"] as const) {
    vi.spyOn(Log, level).mockImplementation(((...args: unknown[]) => {
      logCalls.push(args);
    }) as never);
  }
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe("HTTP Basic", () => {
  it("admits configured users (bcrypt and plain) and answers 401 with WWW-Authenticate otherwise", async () => {
    const s = testService();
    expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.alice } })).status).toBe(200);
    expect((await s.request("/redfish/v1/Systems", { headers: { Authorization: AUTH.bob } })).status).toBe(200);
    for (const authorization of [undefined, basic("alice", "wrong"), basic("nobody", "x"), "Basic !!!", "Bearer abc", "Basic " + Buffer.from("no-colon").toString("base64")]) {
      const res = await s.request(SYSTEM, { headers: authorization ? { Authorization: authorization } : {} });
      expect(res.status, String(authorization)).toBe(401);
      expect(res.headers.get("WWW-Authenticate")).toMatch(/^Basic realm=/);
      const body = (await res.json()) as Json;
      expect(body.error.code).toBe("Base.1.18.1.NoValidSession");
      expect(body.error["@Message.ExtendedInfo"][0].MessageId).toBe("Base.1.18.1.NoValidSession");
    }
  });

  it("does not cost a bcrypt hash per request: one verification (on a worker thread), then a cache", async () => {
    const s = testService();
    const compare = vi.spyOn(BcryptPool.prototype, "compare");
    const results = await Promise.all(Array.from({ length: 20 }, () => s.request(SYSTEM, { headers: { Authorization: AUTH.alice } })));
    expect(results.every(r => r.status === 200)).toBe(true);
    for (let i = 0; i < 20; i++) expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.alice } })).status).toBe(200);
    expect(compare).toHaveBeenCalledTimes(1);
    // a wrong password is never remembered as good
    expect((await s.request(SYSTEM, { headers: { Authorization: basic("alice", "nope") } })).status).toBe(401);
    expect(compare).toHaveBeenCalledTimes(2);
  });

  it("applies a password change at once: the old password and its sessions stop working", async () => {
    const s = testService();
    const token = (await login(s, "bob", PASSWORDS.bob)).headers.get("X-Auth-Token")!;
    expect((await s.request("/redfish/v1/Systems", { headers: { Authorization: AUTH.bob } })).status).toBe(200);
    s.config.current = testConfig({
      authentication: {
        users: [
          { username: "alice", password: PASSWORDS.alice, chassis: ["tenant1"] },
          { username: "bob", password: "new-bob-password", chassis: ["tenant2"] },
        ],
      },
    });
    expect((await s.request("/redfish/v1/Systems", { headers: { Authorization: AUTH.bob } })).status).toBe(401);
    expect((await s.request("/redfish/v1/Systems", { headers: { "X-Auth-Token": token } })).status).toBe(401);
    expect((await s.request("/redfish/v1/Systems", { headers: { Authorization: basic("bob", "new-bob-password") } })).status).toBe(200);
    // carol was removed: her credentials no longer work
    expect((await s.request("/redfish/v1/Systems", { headers: { Authorization: AUTH.carol } })).status).toBe(401);
  });

  it("applies a chassis change of a user at once", async () => {
    const s = testService();
    expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.bob } })).status).toBe(404);
    s.config.current = testConfig({
      authentication: { users: [{ username: "bob", password: PASSWORDS.bob, chassis: ["tenant1", "tenant2"] }] },
    });
    expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.bob } })).status).toBe(200);
  });
});

describe("sessions", () => {
  it("login → 201 with X-Auth-Token, Location and a Session body; the token authenticates; logout invalidates it", async () => {
    const s = testService();
    const res = await login(s, "alice", PASSWORDS.alice);
    expect(res.status).toBe(201);
    const token = res.headers.get("X-Auth-Token")!;
    const location = res.headers.get("Location")!;
    expect(token.length).toBeGreaterThanOrEqual(43);
    expect(location).toMatch(/^\/redfish\/v1\/SessionService\/Sessions\/[0-9a-f]+$/);
    expect(res.headers.get("Cache-Control")).toBe("no-store");
    const body = (await res.json()) as Json;
    expect(body).toMatchObject({ "@odata.id": location, "@odata.type": "#Session.v1_7_0.Session", UserName: "alice", SessionType: "Redfish" });
    expect(JSON.stringify(body)).not.toContain(token);

    expect((await s.request(SYSTEM, { headers: { "X-Auth-Token": token } })).status).toBe(200);
    const session = await s.request(location, { headers: { "X-Auth-Token": token } });
    expect(((await session.json()) as Json).Id).toBe(location.split("/").pop());
    const collection = (await (await s.request("/redfish/v1/SessionService/Sessions", { headers: { "X-Auth-Token": token } })).json()) as Json;
    expect(collection.Members).toEqual([{ "@odata.id": location }]);

    const service = (await (await s.request("/redfish/v1/SessionService", { headers: { "X-Auth-Token": token } })).json()) as Json;
    expect(service).toMatchObject({ ServiceEnabled: true, SessionTimeout: 600, Sessions: { "@odata.id": "/redfish/v1/SessionService/Sessions" } });

    const logout = await s.request(location, { method: "DELETE", headers: { "X-Auth-Token": token } });
    expect(logout.status).toBe(204);
    expect((await s.request(SYSTEM, { headers: { "X-Auth-Token": token } })).status).toBe(401);
    // a present but invalid token is not silently replaced by Basic credentials
    expect((await s.request(SYSTEM, { headers: { "X-Auth-Token": token, Authorization: AUTH.alice } })).status).toBe(401);
  });

  it("times out after SessionTimeout seconds of inactivity; use keeps it alive", async () => {
    const s = testService();
    const token = (await login(s, "alice", PASSWORDS.alice)).headers.get("X-Auth-Token")!;
    s.clock.now += 590_000;
    expect((await s.request(SYSTEM, { headers: { "X-Auth-Token": token } })).status).toBe(200);
    s.clock.now += 590_000; // 1180 s after login, 590 s after last use
    expect((await s.request(SYSTEM, { headers: { "X-Auth-Token": token } })).status).toBe(200);
    s.clock.now += 600_000;
    expect((await s.request(SYSTEM, { headers: { "X-Auth-Token": token } })).status).toBe(401);
  });

  it("a user sees and deletes only its own sessions", async () => {
    const s = testService();
    const alice = await login(s, "alice", PASSWORDS.alice);
    const aliceLocation = alice.headers.get("Location")!;
    const bobToken = (await login(s, "bob", PASSWORDS.bob)).headers.get("X-Auth-Token")!;
    expect((await s.request(aliceLocation, { headers: { "X-Auth-Token": bobToken } })).status).toBe(404);
    expect((await s.request(aliceLocation, { method: "DELETE", headers: { "X-Auth-Token": bobToken } })).status).toBe(404);
    const bobList = (await (await s.request("/redfish/v1/SessionService/Sessions", { headers: { "X-Auth-Token": bobToken } })).json()) as Json;
    expect(bobList.Members).toHaveLength(1);
    expect(bobList.Members[0]["@odata.id"]).not.toBe(aliceLocation);
    expect((await s.request(SYSTEM, { headers: { "X-Auth-Token": alice.headers.get("X-Auth-Token")! } })).status).toBe(200);
  });

  it("keeps at most 64 sessions per user, closing the least recently used one", async () => {
    const s = testService();
    const tokens: string[] = [];
    for (let i = 0; i < 64; i++) {
      tokens.push((await login(s, "bob", PASSWORDS.bob)).headers.get("X-Auth-Token")!);
      s.clock.now += 1000;
    }
    // use the oldest one: the second oldest becomes the least recently used
    expect((await s.request("/redfish/v1/Systems", { headers: { "X-Auth-Token": tokens[0] } })).status).toBe(200);
    tokens.push((await login(s, "bob", PASSWORDS.bob)).headers.get("X-Auth-Token")!);
    expect((await s.request("/redfish/v1/Systems", { headers: { "X-Auth-Token": tokens[1] } })).status).toBe(401);
    expect((await s.request("/redfish/v1/Systems", { headers: { "X-Auth-Token": tokens[0] } })).status).toBe(200);
    expect((await s.request("/redfish/v1/Systems", { headers: { "X-Auth-Token": tokens[64] } })).status).toBe(200);
    const list = (await (await s.request("/redfish/v1/SessionService/Sessions", { headers: { "X-Auth-Token": tokens[0] } })).json()) as Json;
    expect(list.Members).toHaveLength(64);
  });

  it("rejects bad login bodies with 4xx Redfish errors and wrong credentials with 401", async () => {
    const s = testService();
    const post = (body: string) =>
      s.request("/redfish/v1/SessionService/Sessions", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    const cases: [string, number, string][] = [
      ["{", 400, "MalformedJSON"],
      ["[]", 400, "MalformedJSON"],
      [JSON.stringify({ UserName: "alice" }), 400, "PropertyMissing"],
      [JSON.stringify({ UserName: "alice", Password: 5 }), 400, "PropertyValueTypeError"],
      [JSON.stringify({ UserName: "alice", Password: "x", Role: "admin" }), 400, "PropertyUnknown"],
      [JSON.stringify({ UserName: "alice", Password: "wrong" }), 401, "NoValidSession"],
    ];
    for (const [body, status, id] of cases) {
      const res = await post(body);
      expect(res.status, body).toBe(status);
      expect(((await res.json()) as Json).error.code, body).toBe(`Base.1.18.1.${id}`);
    }
    // a password of the wrong type is not echoed back
    const echoed = await (await post(JSON.stringify({ UserName: "alice", Password: 123456789 }))).text();
    expect(echoed).not.toContain("123456789");
  });
});

describe("failed-login back-off", () => {
  it("refuses a username only at the address that guessed it (401 + Retry-After); the right password works from elsewhere at once", async () => {
    const s = testService();
    // lockout: 3 failures, base 2 s, max 60 s
    for (let i = 0; i < 3; i++) {
      expect((await s.request(SYSTEM, { headers: { Authorization: basic("alice", `guess-${i}`) }, address: "198.51.100.1" })).status).toBe(401);
    }
    const locked = await s.request(SYSTEM, { headers: { Authorization: AUTH.alice }, address: "198.51.100.1" });
    expect(locked.status).toBe(401);
    expect(locked.headers.get("Retry-After")).toBe("2");
    // the victim, from its own address, during the attack: in (the username's failures only hold it back a little)
    const before = s.clock.now;
    expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.alice }, address: "203.0.113.77" })).status).toBe(200);
    expect(s.clock.now - before).toBeLessThanOrEqual(MAX_LOGIN_DELAY_MS);
    // other users are not affected
    expect((await s.request("/redfish/v1/Systems", { headers: { Authorization: AUTH.bob }, address: "198.51.100.1" })).status).toBe(200);
  });

  it("a credential verified before is never refused, even from the address that is locked for its username", async () => {
    const s = testService();
    expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.alice }, address: "198.51.100.2" })).status).toBe(200);
    for (let i = 0; i < 6; i++) await s.request(SYSTEM, { headers: { Authorization: basic("alice", `guess-${i}`) }, address: "198.51.100.2" });
    expect(Number((await s.request(SYSTEM, { headers: { Authorization: basic("alice", "another") }, address: "198.51.100.2" })).headers.get("Retry-After"))).toBeGreaterThan(0);
    const before = s.clock.now;
    expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.alice }, address: "198.51.100.2" })).status).toBe(200);
    expect((await login(s, "alice", PASSWORDS.alice, "198.51.100.2")).status).toBe(201);
    expect(s.clock.now).toBe(before); // not even held back
  });

  it("doubles the lock with every further failure, up to the maximum, and lets the right password in after it", async () => {
    const s = testService();
    const fail = () => s.request(SYSTEM, { headers: { Authorization: basic("alice", "bad") } });
    for (let i = 0; i < 3; i++) await fail();
    const delays: string[] = [];
    for (let i = 0; i < 7; i++) {
      const wait = Number((await fail()).headers.get("Retry-After"));
      delays.push(String(wait));
      s.clock.now += wait * 1000;
      await fail(); // a real attempt after the lock expired: counts
    }
    expect(delays).toEqual(["2", "4", "8", "16", "32", "60", "60"]);
    s.clock.now += 60_000;
    expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.alice } })).status).toBe(200);
  });

  it("holds back, never refuses, an address that sprays usernames: the right password from there gets in after the delay", async () => {
    const s = testService();
    for (const user of ["u1", "u2", "u3"]) {
      expect((await s.request(SYSTEM, { headers: { Authorization: basic(user, "x") }, address: "198.51.100.9" })).status).toBe(401);
    }
    let before = s.clock.now;
    expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.alice }, address: "198.51.100.9" })).status).toBe(200);
    expect(s.clock.now - before).toBe(2_000);
    before = s.clock.now;
    expect((await s.request("/redfish/v1/Systems", { headers: { Authorization: AUTH.bob }, address: "198.51.100.10" })).status).toBe(200);
    expect(s.clock.now).toBe(before);
  });

  it("ignores X-Forwarded-For from untrusted peers: spoofing it does not escape the address back-off", async () => {
    const s = testService();
    for (let i = 0; i < 3; i++) {
      await s.request(SYSTEM, {
        headers: { Authorization: basic(`spray${i}`, "x"), "X-Forwarded-For": `10.9.9.${i}` },
        address: "198.51.100.20",
      });
    }
    const before = s.clock.now;
    const spoofed = await s.request(SYSTEM, { headers: { Authorization: basic("spray9", "x"), "X-Forwarded-For": "10.1.1.1" }, address: "198.51.100.20" });
    expect(spoofed.status).toBe(401);
    expect(s.clock.now - before).toBe(2_000);
  });

  it("honours X-Forwarded-For from a configured trusted proxy (per real client)", async () => {
    const s = testService();
    s.config.current = testConfig({
      authentication: {
        users: [{ username: "alice", password: PASSWORDS.alice, chassis: ["tenant1"] }],
        trustedProxies: ["10.128.0.0/14"],
        lockout: { maxFailures: 3, baseDelaySeconds: 2, maxDelaySeconds: 60 },
      },
    });
    const viaProxy = (client: string, user: string, password: string) =>
      s.request(SYSTEM, { headers: { Authorization: basic(user, password), "X-Forwarded-For": client }, address: "::ffff:10.128.3.4" });
    for (let i = 0; i < 3; i++) await viaProxy("198.51.100.30", "alice", `guess-${i}`);
    expect((await viaProxy("198.51.100.30", "alice", "guess-4")).headers.get("Retry-After")).toBe("2");
    // another client behind the same proxy is a different address
    expect((await viaProxy("198.51.100.31", "alice", PASSWORDS.alice)).status).toBe(200);
  });

  it("applies to session logins too", async () => {
    const s = testService();
    for (let i = 0; i < 3; i++) expect((await login(s, "alice", `bad-${i}`, "198.51.100.40")).status).toBe(401);
    const res = await login(s, "alice", PASSWORDS.alice, "198.51.100.40");
    expect(res.status).toBe(401);
    expect(res.headers.get("X-Auth-Token")).toBeNull();
    expect((await login(s, "alice", PASSWORDS.alice, "198.51.100.41")).status).toBe(201);
  });

  it("refuses user names over 256 bytes before using them, and keeps its memory bounded whatever the names", async () => {
    const s = testService();
    const auth = new Authenticator(() => serviceSettings(s.config.current), { sleep: async () => undefined });
    const huge = "u".repeat(60_000);
    await expect(auth.verifyPassword(huge, "x", "198.51.100.50")).rejects.toMatchObject({ status: 401 });
    expect(auth.backoff.size).toBe(2); // the address and its unknown-user pair: nothing keyed by the name
    expect(JSON.stringify(logCalls)).not.toContain("u".repeat(257));
    // 257 bytes in 86 characters is refused as well (the bound is in bytes)
    await expect(auth.verifyPassword("€".repeat(86), "x", "198.51.100.50")).rejects.toMatchObject({ status: 401 });
    // Distinct names and addresses beyond the bound: the oldest records go, the count stays within the byte budget.
    const settings = serviceSettings(s.config.current);
    for (let i = 0; i < 25_000; i++) {
      auth.backoff.recordFailure(backoffKeys(`user-${i}-${"n".repeat(200)}`, `198.51.${i >> 8}.${i & 255}`), settings.lockout);
    }
    expect(auth.backoff.size).toBeLessThanOrEqual(MAX_BACKOFF_BYTES / 200);
    expect(auth.backoff.size).toBeGreaterThan(10_000);
    await auth.close();
  });
});

describe("repeated credentials", () => {
  it("a repeated Basic header or session token is a map lookup: no password check, no digest", async () => {
    const s = testService();
    const verify = vi.spyOn(UserDirectory.prototype, "verify");
    const knownGood = vi.spyOn(UserDirectory.prototype, "knownGood");
    const token = (await login(s, "bob", PASSWORDS.bob)).headers.get("X-Auth-Token")!;
    expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.alice } })).status).toBe(200);
    const [verifyCalls, knownGoodCalls] = [verify.mock.calls.length, knownGood.mock.calls.length];
    for (let i = 0; i < 50; i++) {
      expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.alice } })).status).toBe(200);
      expect((await s.request("/redfish/v1/Systems", { headers: { "X-Auth-Token": token } })).status).toBe(200);
    }
    expect([verify.mock.calls.length, knownGood.mock.calls.length]).toEqual([verifyCalls, knownGoodCalls]);
    // the cache belongs to one configuration: a new one checks again
    s.config.current = testConfig();
    expect((await s.request(SYSTEM, { headers: { Authorization: AUTH.alice } })).status).toBe(200);
    expect(verify.mock.calls.length).toBe(verifyCalls + 1);
  });
});

describe("bcrypt on worker threads", () => {
  it("checks hashes off the event loop with at most `size` at a time, and answers false for a malformed hash", async () => {
    const pool = new BcryptPool(2);
    try {
      const hash = bcrypt.hashSync("right", 8);
      const loop: number[] = [];
      const ticker = setInterval(() => loop.push(Date.now()), 5);
      const started = Date.now();
      const results = await Promise.all([...Array.from({ length: 6 }, () => pool.compare("wrong", hash)), pool.compare("right", hash), pool.compare("x", "not-a-hash")]);
      clearInterval(ticker);
      expect(results).toEqual([false, false, false, false, false, false, true, false]);
      // the event loop kept ticking while 7 cost-8 hashes ran
      const gaps = loop.map((t, i) => t - (i === 0 ? started : loop[i - 1]));
      expect(Math.max(...gaps)).toBeLessThan(250);
      expect(loop.length).toBeGreaterThan(3);
    } finally {
      await pool.close();
    }
  });

  it("embeds exactly the installed bcryptjs (regenerate: UPDATE_BCRYPT_SOURCE=1 npx vitest run test/redfish/auth.test.ts)", () => {
    const require = createRequire(import.meta.url);
    const umd = require.resolve("bcryptjs"); // require() gets bcryptjs/umd/index.js
    expect(umd.endsWith(path.join("bcryptjs", "umd", "index.js"))).toBe(true);
    const installed = fs.readFileSync(umd, "utf8");
    const version = (JSON.parse(fs.readFileSync(path.join(umd, "../../package.json"), "utf8")) as { version: string }).version;
    if (process.env.UPDATE_BCRYPT_SOURCE === "1") {
      const file = new URL("../../redfish/auth/bcryptjs-umd.generated.ts", import.meta.url);
      const header = fs.readFileSync(file, "utf8").split("\n").filter(l => l.startsWith("//")).join("\n").replace(/bcryptjs [^ ]+ /, `bcryptjs ${version} `);
      fs.writeFileSync(file, `${header}\nexport const BCRYPTJS_VERSION = ${JSON.stringify(version)};\nexport const BCRYPTJS_UMD_SOURCE = ${JSON.stringify(installed)};\n`);
      return;
    }
    expect(BCRYPTJS_VERSION).toBe(version);
    expect(BCRYPTJS_UMD_SOURCE === installed).toBe(true);
  });
});

describe("client address", () => {
  const trusted = (a: string) => a === "10.0.0.1" || a === "10.0.0.2";
  it("uses the socket address unless the peer is a trusted proxy, then the nearest untrusted hop", () => {
    expect(clientAddress("::ffff:192.0.2.1", "203.0.113.5", trusted)).toBe("192.0.2.1");
    expect(clientAddress("10.0.0.1", "203.0.113.5", trusted)).toBe("203.0.113.5");
    expect(clientAddress("10.0.0.1", "198.51.100.1, 203.0.113.5, 10.0.0.2", trusted)).toBe("203.0.113.5");
    expect(clientAddress("10.0.0.1", "garbage, 203.0.113.5", trusted)).toBe("203.0.113.5");
    expect(clientAddress("10.0.0.1", "203.0.113.5, not-an-ip", trusted)).toBe("10.0.0.1");
    expect(clientAddress(undefined, "203.0.113.5", trusted)).toBe("unknown");
  });
});

describe("logs", () => {
  it("never contain a password, a token or an Authorization header", async () => {
    const s = testService();
    const token = (await login(s, "alice", PASSWORDS.alice)).headers.get("X-Auth-Token")!;
    await s.request(SYSTEM, { headers: { "X-Auth-Token": token } });
    for (let i = 0; i < 5; i++) await s.request(SYSTEM, { headers: { Authorization: basic("alice", `secret-guess-${i}`) } });
    await login(s, "bob", "bob-wrong-password-xyz");
    await s.request(SYSTEM, { headers: { Authorization: AUTH.carol } });
    // a failing request handler logs the request, not its headers
    await s.request(SYSTEM, { headers: { Authorization: AUTH.bob } });
    const logged = JSON.stringify(logCalls);
    expect(logCalls.length).toBeGreaterThan(0); // the failures and the lockout were logged
    for (const secret of [PASSWORDS.alice, PASSWORDS.bob, PASSWORDS.carol, token, "secret-guess", "bob-wrong-password-xyz", AUTH.alice.slice(6), AUTH.carol.slice(6)]) {
      expect(logged).not.toContain(secret);
    }
    expect(logged).toContain("alice"); // usernames are logged (they are not secrets)
  });
});

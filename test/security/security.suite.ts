// Security suite against the BUILT module (the watcher serving Redfish over HTTPS, the admission server, the
// sandbox API server), one cluster for the whole suite so the final log check covers everything it did:
//   1. tenant isolation: every user x every system (full and bare ids) x every verb of every system-scoped
//      resource; systems outside the user's chassis are the same 404 as systems that do not exist, and no
//      write ever lands on them; collections, chassis, sessions and tasks of others are invisible too
//   2. fuzzing of every endpoint (ids, methods, bodies, headers, raw protocol): zero 5xx, zero crashes
//   3. brute force: a username is refused only at the address that guessed it, failures elsewhere only slow
//      logins down; spoofed X-Forwarded-For / Forwarded headers do not get around it (they count only from a
//      configured trusted proxy)
//   4. no secret in any log line of any process, nor in any response body
// Kubernetes identities (ServiceAccount tokens, RBAC in the sandbox) run through the same isolation matrix, and
// event subscriptions of users and identities are isolated from each other.
import bcrypt from "bcryptjs";
import fs from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import {
  createNamespace,
  DV_KEY,
  httpSourceUrl,
  MEDIA_FOR_LABEL,
  startSuiteCluster,
  vmObject,
  VM_KEY,
  type RedfishClient,
  type RedfishResponse,
  type SuiteCluster,
} from "../reliability/support";
import { fuzzCases, type FuzzCase } from "./fuzz-cases";
import { exchange } from "./raw-client";

// ---- the tenants ----

const USERS = {
  alice: { password: "alice-Secret-1!", chassis: ["alpha"] },
  bob: { password: "bob-Secret-2!", chassis: ["beta"] },
  carol: { password: "carol-Secret-3!", chassis: ["alpha", "gold"] },
  dave: { password: "dave-Secret-4!", chassis: ["gold"] },
  erin: { password: "erin-Secret-5!", chassis: ["beta"] }, // stored as a bcrypt hash
} as const;
type User = keyof typeof USERS;
const USER_NAMES = Object.keys(USERS) as User[];
const ERIN_HASH = bcrypt.hashSync(USERS.erin.password, 4);
/**
 * Users outside the isolation matrix, for the brute-force cases: their first login happens under back-off (a
 * credential verified before passes regardless, so the matrix users cannot show a refusal).
 */
const FRANK = { username: "frank", password: "frank-Secret-6!", chassis: ["beta"] }; // bcrypt
const FRANK_HASH = bcrypt.hashSync(FRANK.password, 4);
const GRACE = { username: "grace", password: "grace-Secret-7!", chassis: ["beta"] };
const HEIDI = { username: "heidi", password: "heidi-Secret-8!", chassis: ["gold"] };

const SYSTEMS = ["sec-a.web", "sec-a.db", "sec-b.web", "sec-b.gold-1", "sec-c.lonely"];
/** What each user may see: chassis alpha = sec-a; beta = sec-b; gold = sec-b VMs labelled tier=gold; sec-c is in no chassis. */
const VISIBLE: Record<User, string[]> = {
  alice: ["sec-a.web", "sec-a.db"],
  bob: ["sec-b.web", "sec-b.gold-1"],
  carol: ["sec-a.web", "sec-a.db", "sec-b.gold-1"],
  dave: ["sec-b.gold-1"],
  erin: ["sec-b.web", "sec-b.gold-1"],
};
const CHASSIS = ["alpha", "beta", "gold"];

const basic = (user: User) => `${user}:${USERS[user].password}`;

/**
 * Kubernetes identities (redfish.kubernetesIdentities): ivan's Role in sec-a allows everything Redfish asks for;
 * judy's Role in sec-b only `get virtualmachines` (she sees sec-b's systems, every write is a 403).
 */
const IDENTITIES: Record<"ivan" | "judy", { token: string; namespace: string; fullRights: boolean; visible: readonly string[] }> = {
  ivan: { token: "sec-sa-token-ivan-5e8b1f0c7a", namespace: "sec-a", fullRights: true, visible: ["sec-a.web", "sec-a.db"] },
  judy: { token: "sec-sa-token-judy-92d4c6e1b3", namespace: "sec-b", fullRights: false, visible: ["sec-b.web", "sec-b.gold-1"] },
};
type Identity = keyof typeof IDENTITIES;
const IDENTITY_NAMES = Object.keys(IDENTITIES) as Identity[];
const identityUser = (who: Identity) => ({
  username: `system:serviceaccount:${IDENTITIES[who].namespace}:${who}`,
  groups: ["system:serviceaccounts", `system:serviceaccounts:${IDENTITIES[who].namespace}`, "system:authenticated"],
});
const bearer = (who: Identity) => ({ Authorization: `Bearer ${IDENTITIES[who].token}` });
const FULL_RIGHTS = [
  { apiGroups: ["kubevirt.io"], resources: ["virtualmachines"], verbs: ["get", "patch"] },
  { apiGroups: ["subresources.kubevirt.io"], resources: ["virtualmachines/start", "virtualmachines/stop", "virtualmachines/restart", "virtualmachineinstances/pause", "virtualmachineinstances/unpause"], verbs: ["update"] },
  { apiGroups: ["cdi.kubevirt.io"], resources: ["datavolumes"], verbs: ["create", "delete"] },
];
const GET_ONLY = [{ apiGroups: ["kubevirt.io"], resources: ["virtualmachines"], verbs: ["get"] }];

/** Ids a user may address: every full id, every bare name (visible when exactly one visible VM has it), none-such. */
function idsFor(user: User): { id: string; target?: string }[] {
  return idsForVisible(VISIBLE[user]);
}

function idsForVisible(visible: readonly string[]): { id: string; target?: string }[] {
  const full = SYSTEMS.map(id => ({ id, target: visible.includes(id) ? id : undefined }));
  const bare = [...new Set(SYSTEMS.map(id => id.split(".")[1]))].map(name => {
    const matches = visible.filter(id => id.split(".")[1] === name);
    return { id: name, target: matches.length === 1 ? matches[0] : undefined };
  });
  return [...full, ...bare, { id: "sec-a.nope" }, { id: "nope" }];
}

let c: SuiteCluster;
let rf: RedfishClient;
/** Every response body the suite received (checked for secrets at the end). */
const responseBodies: string[] = [];
/** Passwords tried in the brute-force tests and media credentials: secrets too. */
const extraSecrets: string[] = [];

beforeAll(async () => {
  c = await startSuiteCluster({
    config: {
      chassis: [
        { name: "alpha", namespace: "sec-a" },
        { name: "beta", namespace: "sec-b" },
        { name: "gold", namespace: "sec-b", vmSelector: { matchLabels: { tier: "gold" } } },
      ],
      // A lock of 3 s after 3 failures: long enough to observe on a loaded machine, short enough to wait out.
      authentication: { lockout: { maxFailures: 3, baseDelaySeconds: 3, maxDelaySeconds: 6 }, trustedProxies: ["127.0.0.9"] },
      datavolume: { storageSize: "1Gi" },
      // The local image server is on loopback: allowed explicitly (the SSRF tests use other loopback spellings).
      redfish: { imageUrlPolicy: { allowCidrs: ["127.0.0.1/32"] }, kubernetesIdentities: { enabled: true, accessReviewCacheSeconds: 2 } },
    },
    tokens: IDENTITY_NAMES.map(who => ({ token: IDENTITIES[who].token, user: identityUser(who) })),
    users: [
      ...USER_NAMES.map(u =>
        u === "erin" ? { username: u, passwordHash: ERIN_HASH, chassis: [...USERS[u].chassis] } : { username: u, password: USERS[u].password, chassis: [...USERS[u].chassis] },
      ),
      { username: FRANK.username, passwordHash: FRANK_HASH, chassis: FRANK.chassis },
      { ...GRACE },
      { ...HEIDI },
    ],
    kubevirt: { stepDelayMs: 50 },
    iso: { sizeBytes: 256 * 1024, slowChunkIntervalMs: 20 },
    // The most verbose level an operator can choose: no secret may reach the logs even there.
    moduleEnv: { LOG_LEVEL: "debug" },
  });
  for (const ns of ["sec-a", "sec-b", "sec-c"]) createNamespace(c, ns);
  for (const who of IDENTITY_NAMES) {
    const { namespace, fullRights } = IDENTITIES[who];
    c.api.store.create("roles.rbac.authorization.k8s.io", { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: `bmc-${who}`, namespace }, rules: fullRights ? FULL_RIGHTS : GET_ONLY });
    c.api.store.create("rolebindings.rbac.authorization.k8s.io", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: `bmc-${who}`, namespace },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: `bmc-${who}` },
      subjects: [{ kind: "ServiceAccount", name: who, namespace }],
    });
    extraSecrets.push(IDENTITIES[who].token);
  }
  for (const id of SYSTEMS) {
    const [ns, name] = id.split(".");
    c.api.store.create(VM_KEY, vmObject(ns, name, name.startsWith("gold") ? { labels: { tier: "gold" } } : {}));
  }
  const client = c.client({ localAddress: "127.0.0.2" });
  rf = {
    request: async (method, p, o) => {
      const res = await client.request(method, p, o);
      responseBodies.push(res.text);
      return res;
    },
    close: () => client.close(),
  };
  await vi.waitFor(async () => expect((await rf.request("GET", "/redfish/v1/Systems", { user: basic("carol") })).body?.["Members@odata.count"], "the VMs in Redfish").toBe(3), { timeout: 20_000, interval: 100 });
});
afterAll(async () => {
  rf?.close();
  await c?.stop();
});

// ---- 1. tenant isolation ----

interface SystemRequest {
  name: string;
  method: string;
  path: (id: string) => string;
  body?: (user: User, id: string) => unknown;
  /** Status codes allowed when the user may see the system. */
  visible: number[];
}

const image = (user: User, id: string) => `${c.isoServer.url}/images/${user}-${id.replace(/[^a-z0-9-]/g, "-")}.iso`;
const sys = (id: string) => `/redfish/v1/Systems/${encodeURIComponent(id)}`;
const mgr = (id: string) => `/redfish/v1/Managers/${encodeURIComponent(id)}`;

const SYSTEM_REQUESTS: SystemRequest[] = [
  { name: "GET system", method: "GET", path: sys, visible: [200] },
  { name: "HEAD system", method: "HEAD", path: sys, visible: [200] },
  { name: "PATCH boot override", method: "PATCH", path: sys, body: () => ({ Boot: { BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Continuous" } }), visible: [200, 204] },
  { name: "PUT system", method: "PUT", path: sys, body: () => ({}), visible: [405] },
  { name: "POST system", method: "POST", path: sys, body: () => ({}), visible: [405] },
  { name: "DELETE system", method: "DELETE", path: sys, visible: [405] },
  { name: "Reset ForceOff", method: "POST", path: id => `${sys(id)}/Actions/ComputerSystem.Reset`, body: () => ({ ResetType: "ForceOff" }), visible: [204] },
  { name: "Reset Nmi", method: "POST", path: id => `${sys(id)}/Actions/ComputerSystem.Reset`, body: () => ({ ResetType: "Nmi" }), visible: [400] },
  { name: "GET Reset", method: "GET", path: id => `${sys(id)}/Actions/ComputerSystem.Reset`, visible: [405] },
  { name: "GET EthernetInterfaces", method: "GET", path: id => `${sys(id)}/EthernetInterfaces`, visible: [200] },
  { name: "GET EthernetInterface", method: "GET", path: id => `${sys(id)}/EthernetInterfaces/default`, visible: [200] },
  { name: "POST EthernetInterfaces", method: "POST", path: id => `${sys(id)}/EthernetInterfaces`, body: () => ({}), visible: [405] },
  { name: "GET Manager", method: "GET", path: mgr, visible: [200] },
  { name: "PATCH Manager", method: "PATCH", path: mgr, body: () => ({}), visible: [400, 405] },
  { name: "GET VirtualMedia", method: "GET", path: id => `${sys(id)}/VirtualMedia`, visible: [200] },
  { name: "GET Cd", method: "GET", path: id => `${sys(id)}/VirtualMedia/Cd`, visible: [200] },
  { name: "InsertMedia", method: "POST", path: id => `${sys(id)}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`, body: (u, id) => ({ Image: image(u, id) }), visible: [202, 204] },
  { name: "EjectMedia", method: "POST", path: id => `${sys(id)}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia`, body: () => ({}), visible: [204] },
  { name: "GET Manager Cd", method: "GET", path: id => `${mgr(id)}/VirtualMedia/Cd`, visible: [200] },
  { name: "Manager InsertMedia", method: "POST", path: id => `${mgr(id)}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`, body: (u, id) => ({ Image: image(u, `m-${id}`) }), visible: [202, 204] },
];

/** A 404 body with the addressed id replaced, so a foreign system's answer can be compared with a missing one's. */
const normalized = (res: RedfishResponse, id: string) => ({
  status: res.status,
  body: res.text.split(id).join("<id>").split(encodeURIComponent(id)).join("<id>"),
  allow: res.headers.allow,
  etag: res.headers.etag,
  location: res.headers.location,
});

/** Resolves once no VM or DataVolume has changed for `quietMs` (work started by earlier requests has finished). */
async function settle(quietMs = 500, timeoutMs = 15_000): Promise<void> {
  let last = Date.now();
  const stops = [VM_KEY, DV_KEY].map(key => c.api.store.watch(key, undefined, () => (last = Date.now())));
  try {
    await vi.waitFor(
      () => {
        const quietFor = Date.now() - last;
        if (quietFor < quietMs) throw new Error(`VMs and DataVolumes still changing: last change ${quietFor} ms ago, waiting for ${quietMs} ms of quiet`);
      },
      { timeout: timeoutMs, interval: 50 },
    );
  } finally {
    stops.forEach(stop => stop());
  }
}

/** The cluster state of a VM that a write through Redfish could change: its spec and its media DataVolumes. */
function footprint(id: string): string {
  const [ns, name] = id.split(".");
  const vm = c.api.store.get(VM_KEY, ns, name);
  const dvs = c.api.store.list(DV_KEY, ns).filter(dv => dv.metadata.labels?.[MEDIA_FOR_LABEL] === name).map(dv => dv.metadata.name);
  return JSON.stringify({ spec: vm?.spec, annotations: vm?.metadata.annotations, dvs });
}

/**
 * One matrix answer: for a visible system one of `visibleStatuses`; otherwise exactly the answer `send` gets for a
 * system that does not exist. Problems are collected, not thrown, so one run lists them all.
 */
async function checkMatrixAnswer(
  problems: string[],
  label: string,
  id: string,
  res: RedfishResponse,
  visibleStatuses: number[] | undefined,
  send: (addressed: string) => Promise<RedfishResponse>,
): Promise<void> {
  if (visibleStatuses) {
    if (!visibleStatuses.includes(res.status)) problems.push(`${label}: ${res.status} (expected ${visibleStatuses.join("/")}) ${res.text.slice(0, 200)}`);
    return;
  }
  const missingId = id.includes(".") ? "sec-a.does-not-exist" : "does-not-exist";
  const reference = await send(missingId);
  if (res.status !== 404) problems.push(`${label}: ${res.status}, expected 404 ${res.text.slice(0, 200)}`);
  else if (JSON.stringify(normalized(res, id)) !== JSON.stringify(normalized(reference, missingId))) {
    problems.push(`${label}: differs from a missing system: ${JSON.stringify(normalized(res, id))} vs ${JSON.stringify(normalized(reference, missingId))}`);
  }
}

describe("tenant isolation", () => {
  it("every user x every system x every verb: 404 outside the user's chassis, identical to a missing system, and no write lands there", async () => {
    const createdDataVolumes: { namespace: string; vm: string; url?: string }[] = [];
    const unwatch = c.api.store.watch(DV_KEY, undefined, ev => {
      if (ev.type === "ADDED") createdDataVolumes.push({ namespace: ev.object.metadata.namespace!, vm: ev.object.metadata.labels?.[MEDIA_FOR_LABEL] ?? "", url: httpSourceUrl(ev.object) });
    });
    let cases = 0;
    const problems: string[] = [];
    try {
      for (const user of USER_NAMES) {
        const foreign = SYSTEMS.filter(id => !VISIBLE[user].includes(id));
        await settle();
        const before = new Map(foreign.map(id => [id, footprint(id)]));
        for (const { id, target } of idsFor(user)) {
          for (const req of SYSTEM_REQUESTS) {
            const send = (addressed: string) =>
              rf.request(req.method, req.path(addressed), { user: basic(user), ...(req.body ? { body: req.body(user, target ?? addressed) } : {}) });
            cases++;
            // Not visible: exactly the answer for a system that does not exist.
            await checkMatrixAnswer(problems, `${user} ${req.name} ${id}`, id, await send(id), target ? req.visible : undefined, send);
          }
        }
        await settle(); // writes the module might still make after a reply would show up here
        for (const id of foreign) if (footprint(id) !== before.get(id)) problems.push(`${user} changed ${id}, outside its chassis`);
      }
    } finally {
      unwatch();
    }
    // Every DataVolume created during the matrix belongs to a system visible to the user whose image it imports.
    for (const dv of createdDataVolumes) {
      const owner = USER_NAMES.find(u => dv.url?.includes(`/images/${u}-`));
      if (!owner || !VISIBLE[owner].includes(`${dv.namespace}.${dv.vm}`)) problems.push(`DataVolume for ${dv.namespace}/${dv.vm} from ${dv.url}`);
    }
    console.log(`tenant isolation matrix: ${cases} cases (${USER_NAMES.length} users x ${idsFor("alice").length} ids x ${SYSTEM_REQUESTS.length} requests), ${createdDataVolumes.length} DataVolumes created, ${problems.length} problems`);
    expect(problems).toEqual([]);
    expect(createdDataVolumes.length).toBeGreaterThan(0);
  });

  it("collections and chassis show only the user's own; foreign chassis are 404", async () => {
    let cases = 0;
    for (const user of USER_NAMES) {
      const members = async (p: string) => (((await rf.request("GET", p, { user: basic(user) })).body?.Members ?? []) as { "@odata.id": string }[]).map(m => m["@odata.id"]).sort();
      expect(await members("/redfish/v1/Systems"), user).toEqual(VISIBLE[user].map(sys).sort());
      expect(await members("/redfish/v1/Managers"), user).toEqual(VISIBLE[user].map(mgr).sort());
      expect(await members("/redfish/v1/Chassis"), user).toEqual(USERS[user].chassis.map(ch => `/redfish/v1/Chassis/${ch}`).sort());
      cases += 3;
      for (const chassis of [...CHASSIS, "nope"]) {
        const own = (USERS[user].chassis as readonly string[]).includes(chassis);
        const got = await rf.request("GET", `/redfish/v1/Chassis/${chassis}`, { user: basic(user) });
        expect(got.status, `${user} GET chassis ${chassis}`).toBe(own ? 200 : 404);
        if (own) {
          const linked = ((got.body?.Links?.ComputerSystems ?? []) as { "@odata.id": string }[]).map(l => l["@odata.id"]);
          for (const link of linked) expect(VISIBLE[user].map(sys), `${user} chassis ${chassis} links`).toContain(link);
        }
        for (const method of ["PATCH", "DELETE", "POST"]) {
          const write = await rf.request(method, `/redfish/v1/Chassis/${chassis}`, { user: basic(user), ...(method === "DELETE" ? {} : { body: {} }) });
          expect(write.status, `${user} ${method} chassis ${chassis}`).toBe(own ? 405 : 404);
        }
        cases += 4;
      }
    }
    console.log(`collections and chassis: ${cases} cases`);
  });

  it("sessions: a user's session and token are invisible and unusable for another user; logout ends the token", async () => {
    const sessions = new Map<User, { token: string; location: string }>();
    for (const user of USER_NAMES) {
      const login = await rf.request("POST", "/redfish/v1/SessionService/Sessions", { body: { UserName: user, Password: USERS[user].password } });
      expect(login.status, user).toBe(201);
      sessions.set(user, { token: login.headers["x-auth-token"] as string, location: login.headers.location as string });
    }
    let cases = 0;
    for (const user of USER_NAMES) {
      const own = sessions.get(user)!;
      // With its own token, a user sees exactly its systems.
      for (const id of SYSTEMS) {
        const res = await rf.request("GET", sys(id), { token: own.token });
        expect(res.status, `${user} token GET ${id}`).toBe(VISIBLE[user].includes(id) ? 200 : 404);
        cases++;
      }
      for (const other of USER_NAMES.filter(u => u !== user)) {
        const theirs = sessions.get(other)!;
        for (const method of ["GET", "DELETE"]) {
          expect((await rf.request(method, theirs.location, { token: own.token })).status, `${user} ${method} ${other}'s session`).toBe(404);
          cases++;
        }
      }
      const listed = ((await rf.request("GET", "/redfish/v1/SessionService/Sessions", { token: own.token })).body?.Members ?? []) as { "@odata.id": string }[];
      expect(listed.map(m => m["@odata.id"]), user).toEqual([own.location]);
    }
    // Every session survived the others' attempts; logout invalidates the token.
    for (const user of USER_NAMES) {
      const own = sessions.get(user)!;
      expect((await rf.request("GET", own.location, { token: own.token })).status).toBe(200);
      expect((await rf.request("DELETE", own.location, { token: own.token })).status).toBe(204);
      expect((await rf.request("GET", "/redfish/v1/Systems", { token: own.token })).status).toBe(401);
    }
    console.log(`sessions: ${cases} cross-user cases`);
  });

  it("tasks: an import's Task and TaskMonitor are visible only to users who see its system", async () => {
    const insert = await rf.request("POST", `${sys("sec-a.db")}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`, {
      user: basic("alice"),
      body: { Image: `${c.isoServer.url}/images/task-probe.iso` },
    });
    expect(insert.status, insert.text).toBe(202);
    const task = insert.body["@odata.id"] as string;
    const monitor = insert.headers.location as string;
    for (const user of USER_NAMES) {
      const sees = VISIBLE[user].includes("sec-a.db");
      expect((await rf.request("GET", task, { user: basic(user) })).status, `${user} task`).toBe(sees ? 200 : 404);
      expect([200, 202, 204].includes((await rf.request("GET", monitor, { user: basic(user) })).status), `${user} monitor`).toBe(sees);
      const listed = (((await rf.request("GET", "/redfish/v1/TaskService/Tasks", { user: basic(user) })).body?.Members ?? []) as { "@odata.id": string }[]).map(m => m["@odata.id"]);
      expect(listed.includes(task), `${user} task list`).toBe(sees);
    }
  });
});

// ---- 1b. Kubernetes identities and event subscriptions ----

/** Requests that write: an identity without the Kubernetes right gets 403 InsufficientPrivilege on a visible system. */
const WRITES = new Set(["PATCH boot override", "Reset ForceOff", "InsertMedia", "EjectMedia", "Manager InsertMedia"]);

describe("Kubernetes identities", () => {
  it("every identity x every system x every verb: 404 where its RBAC cannot get the VM (identical to a missing one), 403 for writes it lacks, and no write lands outside", async () => {
    let cases = 0;
    const problems: string[] = [];
    for (const who of IDENTITY_NAMES) {
      const { visible, fullRights } = IDENTITIES[who];
      const foreign = SYSTEMS.filter(id => !visible.includes(id));
      await settle();
      const before = new Map(SYSTEMS.filter(id => foreign.includes(id) || !fullRights).map(id => [id, footprint(id)]));
      for (const { id, target } of idsForVisible(visible)) {
        for (const req of SYSTEM_REQUESTS) {
          const send = (addressed: string) =>
            rf.request(req.method, req.path(addressed), { headers: bearer(who), ...(req.body ? { body: req.body("alice", `${who}-${target ?? addressed}`) } : {}) });
          const res = await send(id);
          cases++;
          const label = `${who} ${req.name} ${id}`;
          const expected = !fullRights && WRITES.has(req.name) ? [403] : req.visible;
          await checkMatrixAnswer(problems, label, id, res, target ? expected : undefined, send);
          if (res.status === 403 && !/InsufficientPrivilege/.test(res.text)) problems.push(`${label}: 403 without InsufficientPrivilege`);
        }
      }
      await settle();
      // Nothing changed outside what the identity sees, nor anything a get-only identity sees.
      for (const [id, footprintBefore] of before) if (footprint(id) !== footprintBefore) problems.push(`${who} changed ${id}`);
    }
    console.log(`Kubernetes identity matrix: ${cases} cases, ${problems.length} problems`);
    expect(problems).toEqual([]);
    expect(cases).toBeGreaterThan(400);
  });

  it("collections show only what the identity's RBAC lets it get; the token as a password and a session keep that view", async () => {
    for (const who of IDENTITY_NAMES) {
      const members = async (o: Record<string, unknown>) => (((await rf.request("GET", "/redfish/v1/Systems", o)).body?.Members ?? []) as { "@odata.id": string }[]).map(m => m["@odata.id"]).sort();
      const expected = IDENTITIES[who].visible.map(sys).sort();
      expect(await members({ headers: bearer(who) }), who).toEqual(expected);
      expect(await members({ user: `kubernetes:${IDENTITIES[who].token}` }), `${who} as Basic`).toEqual(expected);
      const login = await rf.request("POST", "/redfish/v1/SessionService/Sessions", { body: { UserName: "kubernetes", Password: IDENTITIES[who].token } });
      expect(login.status, who).toBe(201);
      expect(await members({ token: login.headers["x-auth-token"] as string }), `${who} session`).toEqual(expected);
      expect((await rf.request("DELETE", login.headers.location as string, { token: login.headers["x-auth-token"] as string })).status).toBe(204);
    }
    expect((await rf.request("GET", "/redfish/v1/Systems", { headers: { Authorization: "Bearer sec-not-a-token" } })).status).toBe(401);
  });

  it("event subscriptions of users and identities: each owner alone sees its own, and receives only events of systems it may see", async () => {
    const received: { context: string; events: any[] }[] = [];
    const receiver = createServer((req, res) => {
      let text = "";
      req.on("data", chunk => (text += chunk));
      req.on("end", () => {
        const body = JSON.parse(text);
        received.push({ context: body.Context, events: body.Events });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>(resolve => receiver.listen(0, "127.0.0.1", resolve));
    try {
      const destination = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/events`;
      const owners: { name: string; auth: Record<string, unknown>; visible: readonly string[] }[] = [
        { name: "alice", auth: { user: basic("alice") }, visible: VISIBLE.alice },
        { name: "bob", auth: { user: basic("bob") }, visible: VISIBLE.bob },
        ...IDENTITY_NAMES.map(who => ({ name: who, auth: { headers: bearer(who) }, visible: IDENTITIES[who].visible })),
      ];
      const subscriptions = new Map<string, string>();
      for (const o of owners) {
        const created = await rf.request("POST", "/redfish/v1/EventService/Subscriptions", { ...o.auth, body: { Destination: destination, Protocol: "Redfish", Context: o.name } });
        expect(created.status, o.name).toBe(201);
        subscriptions.set(o.name, created.headers.location as string);
      }
      let cases = 0;
      for (const o of owners) {
        const listed = (((await rf.request("GET", "/redfish/v1/EventService/Subscriptions", o.auth)).body?.Members ?? []) as { "@odata.id": string }[]).map(m => m["@odata.id"]);
        expect(listed, o.name).toEqual([subscriptions.get(o.name)]);
        for (const other of owners.filter(x => x !== o)) {
          const theirs = subscriptions.get(other.name)!;
          const missing = `/redfish/v1/EventService/Subscriptions/00000000-0000-4000-8000-000000000000`;
          for (const method of ["GET", "DELETE"]) {
            const res = await rf.request(method, theirs, o.auth);
            const reference = await rf.request(method, missing, o.auth);
            expect(res.status, `${o.name} ${method} ${other.name}'s subscription`).toBe(404);
            expect(res.text.split(theirs.split("/").pop()!).join("<id>"), `${o.name} ${method} ${other.name}'s`).toBe(reference.text.split(missing.split("/").pop()!).join("<id>"));
            cases++;
          }
        }
      }
      // Power events on one system of each namespace; each subscriber gets exactly the ones it may see.
      for (const id of ["sec-a.db", "sec-b.web", "sec-c.lonely"]) {
        const [ns, name] = id.split(".");
        const vm = c.api.store.get(VM_KEY, ns, name)!;
        const running = (vm.spec as { runStrategy?: string }).runStrategy === "Always";
        c.api.store.update(VM_KEY, { ...vm, spec: { ...(vm.spec as object), runStrategy: running ? "Halted" : "Always" } });
      }
      const originsOf = (name: string) => received.filter(r => r.context === name).flatMap(r => r.events.map(e => e.OriginOfCondition["@odata.id"] as string));
      await expect.poll(() => owners.every(o => originsOf(o.name).length > 0), { timeout: 30_000, interval: 200 }).toBe(true);
      // A test event goes to its submitter only.
      expect((await rf.request("POST", "/redfish/v1/EventService/Actions/EventService.SubmitTestEvent", { headers: bearer("judy"), body: { MessageId: "Alert.1.0.SecurityProbe" } })).status).toBe(204);
      await expect.poll(() => received.some(r => r.context === "judy" && r.events[0].MessageId === "Alert.1.0.SecurityProbe"), { timeout: 15_000 }).toBe(true);
      await settle(1000);
      for (const o of owners) {
        const outside = originsOf(o.name).filter(origin => origin.startsWith("/redfish/v1/Systems/") && !o.visible.map(sys).some(v => origin === v || origin.startsWith(`${v}/`)));
        expect(outside, `${o.name} received events of systems it may not see`).toEqual([]);
        const probes = received.filter(r => r.context === o.name && r.events.some(e => e.MessageId === "Alert.1.0.SecurityProbe"));
        expect(probes.length, `${o.name} test events`).toBe(o.name === "judy" ? 1 : 0);
        cases++;
      }
      for (const [name, location] of subscriptions) {
        const owner = owners.find(o => o.name === name)!;
        expect((await rf.request("DELETE", location, owner.auth)).status).toBe(204);
      }
      console.log(`subscription isolation: ${cases} cases, ${received.length} deliveries`);
    } finally {
      await new Promise(resolve => receiver.close(resolve));
    }
  });
});

// ---- 2. fuzzing ----

describe("fuzzing every endpoint", () => {
  it("answers every case with a status below 500 and keeps running", async () => {
    const login = await rf.request("POST", "/redfish/v1/SessionService/Sessions", { body: { UserName: "alice", Password: USERS.alice.password } });
    const insert = await rf.request("POST", `${sys("sec-a.web")}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`, {
      user: basic("alice"),
      body: { Image: `${c.isoServer.url}/images/fuzz-slot.iso` },
    });
    const taskId = String(insert.body?.Id ?? "1");
    const cases = fuzzCases({
      slots: { system: "sec-a.web", nic: "default", media: "Cd", chassis: "alpha", session: String(login.body?.Id), account: "alice", task: taskId },
      authorization: `Basic ${Buffer.from(basic("alice")).toString("base64")}`,
      isoUrl: `${c.isoServer.url}/images/fuzz.iso`,
      token: login.headers["x-auth-token"] as string,
    });
    const watcherPid = c.watcher!.child.pid;
    const admissionPid = c.admission!.child.pid;
    const failures: string[] = [];
    const statuses = new Map<number, number>();
    const byGroup = new Map<FuzzCase["group"], number>();
    let next = 0;
    const worker = async () => {
      while (next < cases.length) {
        const fuzz = cases[next++];
        const res = await exchange({
          port: c.redfishPort,
          ca: c.caPem,
          // Cases that fail authentication come from their own address: their back-off must not lock the rest out.
          localAddress: fuzz.failsAuthentication ? "127.0.0.3" : "127.0.0.2",
          bytes: fuzz.bytes,
        });
        byGroup.set(fuzz.group, (byGroup.get(fuzz.group) ?? 0) + 1);
        if (res.status !== undefined) statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.headers["x-auth-token"]) c.issuedTokens.add(res.headers["x-auth-token"]);
        responseBodies.push(res.body);
        if (res.status === undefined) {
          if (!fuzz.mayCloseWithoutAnswer || res.error) failures.push(`${fuzz.label}: no response (${res.error ?? "connection closed"})`);
        } else if (res.status >= 500 && !(res.status === 501 && res.body.includes('"error"'))) {
          // 501 with a Redfish error body is an answer (unknown method, unsupported query), not a failure
          failures.push(`${fuzz.label}: ${res.status} ${res.body.slice(0, 200)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));

    // Still alive and answering: the same processes, a normal request works.
    expect(c.watcher!.child.pid).toBe(watcherPid);
    expect(c.watcher!.child.exitCode).toBeNull();
    expect(c.admission!.child.pid).toBe(admissionPid);
    expect(c.admission!.child.exitCode).toBeNull();
    expect((await rf.request("GET", "/redfish/v1/Systems", { user: basic("alice") })).status).toBe(200);
    // No handler failed behind a non-5xx answer either (the app logs every internal error).
    const internalErrors = c.watcher!.logs.filter(l => l.includes("Redfish request failed"));
    console.log(
      `fuzzing: ${cases.length} cases (${[...byGroup].map(([g, n]) => `${g} ${n}`).join(", ")}); statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}; ${failures.length} failures`,
    );
    expect(failures).toEqual([]);
    // A request the app answered through its internal-error path (logged "Redfish request failed") is a defect even
    // when the client never saw the 500 (e.g. it had gone away mid-body).
    const internal = internalErrors.map(line => {
      const entry = JSON.parse(line) as { method?: string; path?: string; err?: { message?: string } };
      return `${entry.method} ${entry.path}: ${entry.err?.message}`;
    });
    if (internal.length) console.log(internalErrors.join("\n"));
    expect(internal, "requests that ended in the Redfish app's internal-error path").toEqual([]);
    expect(cases.length).toBeGreaterThan(2_000);
  });
});

// ---- 3. brute force ----

describe("brute-force back-off", () => {
  const attempt = async (from: string, user: string, password: string, headers: Record<string, string> = {}, viaSession = false) => {
    const client = c.client({ localAddress: from });
    try {
      const res = viaSession
        ? await client.request("POST", "/redfish/v1/SessionService/Sessions", { body: { UserName: user, Password: password }, headers })
        : await client.request("GET", "/redfish/v1/Systems", { user: `${user}:${password}`, headers });
      responseBodies.push(res.text);
      return res;
    } finally {
      client.close();
    }
  };
  const spoofed = (i: number) => ({ "X-Forwarded-For": `203.0.113.${i}`, Forwarded: `for=203.0.113.${i}`, "X-Real-IP": `203.0.113.${i}` });
  const locked = (res: RedfishResponse) => res.status === 401 && Number(res.headers["retry-after"] ?? 0) > 0;

  it("per username and address: guessing grace's password locks grace at the guessing address only; her right password works elsewhere during the attack", async () => {
    extraSecrets.push(GRACE.password);
    const results: RedfishResponse[] = [];
    for (let i = 0; i < 6; i++) {
      const wrong = `wrong-grace-${i}`;
      extraSecrets.push(wrong);
      results.push(await attempt("127.0.0.4", GRACE.username, wrong, spoofed(i), i % 2 === 1));
    }
    expect(results.map(r => r.status)).toEqual([401, 401, 401, 401, 401, 401]);
    expect(results.slice(0, 2).some(locked)).toBe(false);
    expect(results.slice(2).every(locked), JSON.stringify(results.map(r => r.headers["retry-after"]))).toBe(true);
    // The right password is refused at the guessing address, whatever the forwarded headers say...
    const stillLocked = await attempt("127.0.0.4", GRACE.username, GRACE.password, spoofed(99));
    expect(locked(stillLocked)).toBe(true);
    // ...but not from grace's own address, during the attack (session login, then Basic).
    expect((await attempt("127.0.0.5", GRACE.username, GRACE.password, {}, true)).status).toBe(201);
    expect((await attempt("127.0.0.5", GRACE.username, GRACE.password)).status).toBe(200);
    // Others are not affected; once verified, grace's credential passes at the guessing address too.
    expect((await attempt("127.0.0.4", "erin", USERS.erin.password)).status).toBe(200);
    expect((await attempt("127.0.0.4", GRACE.username, GRACE.password)).status).toBe(200);
  });

  it("per socket address: guessing usernames with rotating spoofed headers slows that address down, and refuses no right password", async () => {
    for (let i = 0; i < 6; i++) {
      const wrong = `guess-password-${i}`;
      extraSecrets.push(wrong);
      await attempt("127.0.0.6", `guess-${i}`, wrong, spoofed(i));
    }
    // frank (a bcrypt user, first login) with the right password: held back at the spraying address, then admitted.
    extraSecrets.push(FRANK.password);
    let started = Date.now();
    expect((await attempt("127.0.0.6", FRANK.username, FRANK.password, spoofed(42))).status).toBe(200);
    const heldBack = Date.now() - started;
    // erin (a bcrypt user) from elsewhere: at once.
    started = Date.now();
    expect((await attempt("127.0.0.7", "erin", USERS.erin.password)).status).toBe(200);
    const elsewhere = Date.now() - started;
    expect(heldBack, `held back ${heldBack} ms, elsewhere ${elsewhere} ms`).toBeGreaterThan(elsewhere + 1_000);
  });

  it("X-Forwarded-For counts only from a trusted proxy (127.0.0.9): there each forwarded client has its own back-off", async () => {
    const proxy = "127.0.0.9";
    extraSecrets.push(HEIDI.password);
    // Through the proxy, one client guesses heidi's password: heidi is locked for that client...
    for (let i = 0; i < 4; i++) {
      const wrong = `proxied-guess-${i}`;
      extraSecrets.push(wrong);
      await attempt(proxy, HEIDI.username, wrong, { "X-Forwarded-For": "198.51.100.7" });
    }
    expect(locked(await attempt(proxy, HEIDI.username, HEIDI.password, { "X-Forwarded-For": "198.51.100.7" }))).toBe(true);
    // ...while another client behind the same proxy is not.
    expect((await attempt(proxy, HEIDI.username, HEIDI.password, { "X-Forwarded-For": "198.51.100.8" })).status).toBe(200);
  });
});

// ---- 4. secrets ----

/** The users Secret's users.yaml as the API server stores it (base64). */
function usersSecretData(cluster: SuiteCluster): string {
  const data = cluster.api.store.get("secrets", "pepr-system", "kubevirt-infra-users")?.data as Record<string, string> | undefined;
  const value = data?.["users.yaml"];
  if (!value) throw new Error("the users Secret has no users.yaml");
  return value;
}

describe("no secret in logs or responses", () => {
  it("no password, credential header, hash, token or key in any log line of any process, nor in a response body", async () => {
    // Media credentials go into a Secret; a URL with credentials is refused. Neither may reach a log.
    const mediaPassword = "media-Secret-6!";
    const urlPassword = "url-Secret-7!";
    extraSecrets.push(mediaPassword);
    const withCredentials = await rf.request("POST", `${sys("sec-a.db")}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`, {
      user: basic("alice"),
      body: { Image: `${c.isoServer.url}/images/credentials.iso`, UserName: "iso-user", Password: mediaPassword },
    });
    expect(withCredentials.status, withCredentials.text).toBe(202);
    const port = new URL(c.isoServer.url).port;
    const inUrl = await rf.request("POST", `${sys("sec-a.db")}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`, {
      user: basic("alice"),
      body: { Image: `http://iso-user:${encodeURIComponent(urlPassword)}@127.0.0.1:${port}/images/credentials.iso` },
    });
    expect(inUrl.status).toBe(400);
    // A Node write goes through the module's Node webhook, so the API server logs an admission call too.
    const node = await fetch(`${c.api.url}/api/v1/nodes`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: "secrets-probe" } }),
    });
    expect(node.status).toBe(201);
    // Every process has logged what it logs about these requests: the import with credentials has ended, the
    // admission server has logged the Node write, and the watcher's output has caught up.
    const monitor = withCredentials.headers.location as string;
    await expect.poll(async () => (await rf.request("GET", monitor, { user: basic("alice") })).status, { message: "the import with credentials to end", timeout: 30_000 }).not.toBe(202);
    await c.admission!.waitForLog(/secrets-probe/, 10_000);
    await c.watcherLogsFlushed();

    const credentialHeaders = USER_NAMES.map(u => Buffer.from(basic(u)).toString("base64"));
    const tlsKeyLines = fs.readFileSync(path.join(c.stateDir, "tls.key"), "utf8").split("\n").filter(l => l.length > 40);
    const tokens = [...c.issuedTokens];
    const secrets: [string, string][] = [
      ...USER_NAMES.map(u => [`password of ${u}`, USERS[u].password] as [string, string]),
      ["erin's bcrypt hash", ERIN_HASH],
      ...credentialHeaders.map(h => ["a Basic credential", h] as [string, string]),
      ...extraSecrets.map(s => ["a password tried or given", s] as [string, string]),
      ["a password in an image URL", urlPassword],
      ...tokens.map(t => ["a session token", t] as [string, string]),
      ...tlsKeyLines.map(l => ["the Redfish TLS key", l] as [string, string]),
      // The users Secret as the API server stores it (base64): what a debug log of the watched object would show.
      ["the users Secret's data", usersSecretData(c).slice(0, 60)],
    ];
    expect(tokens.length).toBeGreaterThanOrEqual(USER_NAMES.length + 1);
    const sources = new Map<string, number>();
    for (const { source } of c.logs) sources.set(source, (sources.get(source) ?? 0) + 1);
    expect(sources.get("watcher") ?? 0).toBeGreaterThan(0);
    expect(sources.get("admission") ?? 0).toBeGreaterThan(0);
    expect(sources.get("apiserver") ?? 0).toBeGreaterThan(0);

    const leaks: string[] = [];
    for (const { source, line } of c.logs) {
      for (const [what, secret] of secrets) if (line.includes(secret)) leaks.push(`${source} log: ${what}: ${line.slice(0, 300)}`);
    }
    // Response bodies: the service never returns a password, hash or token in a body (tokens travel in a header).
    // The URL password is excluded here: the 400 for it quotes the caller's own input back to the caller.
    const notInBodies = secrets.filter(([what]) => what !== "a password in an image URL");
    for (const body of responseBodies) {
      for (const [what, secret] of notInBodies) if (body.includes(secret)) leaks.push(`response body: ${what}: ${body.slice(0, 300)}`);
    }
    console.log(
      `secrets: ${secrets.length} secrets (${tokens.length} session tokens) searched in ${c.logs.length} log lines (${JSON.stringify(Object.fromEntries(sources))}) and ${responseBodies.length} response bodies; ${leaks.length} found`,
    );
    expect(leaks).toEqual([]);
  });
});

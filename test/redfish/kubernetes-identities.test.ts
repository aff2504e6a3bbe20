// Kubernetes identities through the in-process Redfish app, with the reviews answered by a recording fake (the
// sandbox's real TokenReview/SubjectAccessReview and the built module are in kubernetes-identities-sandbox.test.ts):
// what an identity sees and may do, the 404/403 split, the login forms, sessions, caching and its bounds.
import { afterEach, describe, expect, it } from "vitest";
import { createRedfishApp } from "../../redfish/app";
import { KubernetesIdentities, MAX_CACHED_TOKENS, MAX_TOKEN_KEY_LENGTH } from "../../redfish/auth/kubernetes";
import { startPowerController } from "../../redfish/power";
import type { AccessAttributes, IdentityReviews, ReviewedUser } from "../../redfish/kubevirt/driver";
import { chassisDefinitions } from "../../redfish/settings";
import { kubernetesIdentitiesSchema } from "../../capabilities/config/schema";
import { FakeKubeVirt } from "./fake-kubevirt";
import { AUTH, basic, testConfig, vm } from "./fixtures";

const TENANT1_TOKEN = "tenant1-bmc-token-0123456789";
const TENANT1_USER = { username: "system:serviceaccount:tenant1-vms:bmc", uid: "uid-1", groups: ["system:serviceaccounts", "system:authenticated"] };

/** A fake API server's reviews: static tokens, and a set of allowed "user|namespace|verb|group|resource|subresource". */
class FakeReviews implements IdentityReviews {
  readonly tokens = new Map<string, ReviewedUser>([[TENANT1_TOKEN, TENANT1_USER]]);
  readonly allowed = new Set<string>();
  tokenReviews = 0;
  accessReviews = 0;
  failing = false;

  allow(user: string, namespace: string, verb: string, group: string, resource: string, subresource = ""): void {
    this.allowed.add([user, namespace, verb, group, resource, subresource].join("|"));
  }

  async reviewToken(token: string): Promise<{ authenticated?: boolean; user?: ReviewedUser }> {
    this.tokenReviews++;
    if (this.failing) throw new Error("connect ECONNREFUSED");
    const user = this.tokens.get(token);
    return user ? { authenticated: true, user } : { user: { username: "" } };
  }

  async reviewAccess(user: ReviewedUser, a: AccessAttributes): Promise<boolean> {
    this.accessReviews++;
    if (this.failing) throw new Error("connect ECONNREFUSED");
    return this.allowed.has([user.username, a.namespace, a.verb, a.group, a.resource, a.subresource ?? ""].join("|"));
  }
}

const stops: (() => void)[] = [];
afterEach(() => stops.splice(0).forEach(stop => stop()));

function setup(identities: Record<string, unknown> = { enabled: true, tokenReviewCacheSeconds: 30, accessReviewCacheSeconds: 5 }) {
  const config = testConfig({ redfish: { kubernetesIdentities: identities } });
  const fake = new FakeKubeVirt(chassisDefinitions(config));
  for (const [ns, name, labels] of [
    ["tenant1-vms", "vm-a", {}],
    ["tenant1-vms", "vm-b", {}],
    ["tenant2-vms", "vm-c", { redfish: "true" }],
  ] as const) {
    fake.addVm({ ...vm(ns, name, { labels: { ...labels }, runStrategy: "Halted" }), status: {} });
  }
  stops.push(startPowerController(fake.cache, { driver: fake, settings: () => ({ powerOffStaysOff: true }) }));
  const reviews = new FakeReviews();
  // Role in tenant1-vms: get VMs and start them.
  reviews.allow(TENANT1_USER.username, "tenant1-vms", "get", "kubevirt.io", "virtualmachines");
  reviews.allow(TENANT1_USER.username, "tenant1-vms", "update", "subresources.kubevirt.io", "virtualmachines", "start");
  const clock = { now: Date.parse("2026-01-01T00:00:00Z") };
  const app = createRedfishApp({ cache: fake.cache, config: () => config, driver: fake, reviews, now: () => clock.now });
  const request = (path: string, init: { method?: string; body?: unknown; headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { ...init.headers };
    let body: string | undefined;
    if (init.body !== undefined) {
      body = JSON.stringify(init.body);
      headers["Content-Type"] = "application/json";
    }
    return Promise.resolve(app.request(path, { method: init.method ?? (body === undefined ? "GET" : "POST"), headers, body }, { incoming: { socket: { remoteAddress: "192.0.2.9" } } }));
  };
  return { fake, reviews, clock, request, bearer: { Authorization: `Bearer ${TENANT1_TOKEN}` } };
}

const members = async (res: Response) => ((await res.json()) as { Members: { "@odata.id": string }[] }).Members.map(m => m["@odata.id"]);
const resetUri = (id: string) => `/redfish/v1/Systems/${id}/Actions/ComputerSystem.Reset`;

describe("Kubernetes identities (in-process, fake reviews)", () => {
  it("sees exactly the systems of namespaces where it may get VMs; a foreign system is the same 404 as a missing one", async () => {
    const t = setup();
    const list = await t.request("/redfish/v1/Systems", { headers: t.bearer });
    expect(list.status).toBe(200);
    expect(await members(list)).toEqual(["/redfish/v1/Systems/tenant1-vms.vm-a", "/redfish/v1/Systems/tenant1-vms.vm-b"]);
    expect((await t.request("/redfish/v1/Systems/tenant1-vms.vm-a", { headers: t.bearer })).status).toBe(200);
    const chassis = await t.request("/redfish/v1/Chassis", { headers: t.bearer });
    expect(await members(chassis)).toEqual(["/redfish/v1/Chassis/tenant1"]);

    const foreign = await t.request("/redfish/v1/Systems/tenant2-vms.vm-c", { headers: t.bearer });
    const missing = await t.request("/redfish/v1/Systems/tenant2-vms.no-such-vm", { headers: t.bearer });
    expect(foreign.status).toBe(404);
    const text = (res: Response) => res.text().then(s => s.replaceAll("vm-c", "X").replaceAll("no-such-vm", "X"));
    expect(await text(foreign)).toBe(await text(missing));
    // Acting on a foreign system is the 404 too, never the 403 that would confirm it exists.
    const act = await t.request(resetUri("tenant2-vms.vm-c"), { headers: t.bearer, body: { ResetType: "ForceOff" } });
    expect(act.status).toBe(404);
  });

  it("may power on with virtualmachines/start; ForceOff, boot override and InsertMedia without their rights are 403 InsufficientPrivilege", async () => {
    const t = setup();
    const on = await t.request(resetUri("tenant1-vms.vm-a"), { headers: t.bearer, body: { ResetType: "On" } });
    expect(on.status).toBeLessThan(300);
    await expect.poll(() => (t.fake.vm("tenant1-vms", "vm-a")!.spec as { runStrategy?: string }).runStrategy).not.toBe("Halted");
    const writesBefore = t.fake.calls.filter(c => !c.method.startsWith("read")).length;
    for (const [path, body] of [
      [resetUri("tenant1-vms.vm-a"), { ResetType: "ForceOff" }],
      [resetUri("tenant1-vms.vm-a"), { ResetType: "ForceRestart" }],
      [resetUri("tenant1-vms.vm-a"), { ResetType: "Pause" }],
      [resetUri("tenant1-vms.vm-a"), { ResetType: "PushPowerButton" }],
      ["/redfish/v1/Systems/tenant1-vms.vm-a/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", { Image: "http://images.example.org/a.iso" }],
      ["/redfish/v1/Systems/tenant1-vms.vm-a/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia", {}],
    ] as const) {
      const res = await t.request(path, { headers: t.bearer, body });
      expect(res.status, `${path} ${JSON.stringify(body)}`).toBe(403);
      expect(((await res.json()) as any).error["@Message.ExtendedInfo"][0].MessageId).toBe("Base.1.18.1.InsufficientPrivilege");
    }
    for (const [path, body] of [
      ["/redfish/v1/Systems/tenant1-vms.vm-a", { Boot: { BootSourceOverrideTarget: "Cd" } }],
      ["/redfish/v1/Systems/tenant1-vms.vm-a/SecureBoot", { SecureBootEnable: false }],
      ["/redfish/v1/Systems/tenant1-vms.vm-a/Bios/Settings", { Attributes: { BootMode: "Bios" } }],
    ] as const) {
      const patch = await t.request(path, { method: "PATCH", headers: t.bearer, body });
      expect(patch.status, path).toBe(403);
    }
    const resetBios = await t.request("/redfish/v1/Systems/tenant1-vms.vm-a/Bios/Actions/Bios.ResetBios", { headers: t.bearer, body: {} });
    expect(resetBios.status).toBe(403);
    // Refused before anything was written.
    expect(t.fake.calls.filter(c => !c.method.startsWith("read")).length).toBe(writesBefore);
    // An unsupported ResetType is still the 400 it is for everyone.
    expect((await t.request(resetUri("tenant1-vms.vm-a"), { headers: t.bearer, body: { ResetType: "Nmi" } })).status).toBe(400);
  });

  it("once stop is granted, ForceOff works (the decision is cached for accessReviewCacheSeconds, then asked again)", async () => {
    const t = setup();
    expect((await t.request(resetUri("tenant1-vms.vm-b"), { headers: t.bearer, body: { ResetType: "ForceOff" } })).status).toBe(403);
    t.reviews.allow(TENANT1_USER.username, "tenant1-vms", "update", "subresources.kubevirt.io", "virtualmachines", "stop");
    expect((await t.request(resetUri("tenant1-vms.vm-b"), { headers: t.bearer, body: { ResetType: "ForceOff" } })).status).toBe(403);
    t.clock.now += 5_000;
    expect((await t.request(resetUri("tenant1-vms.vm-b"), { headers: t.bearer, body: { ResetType: "ForceOff" } })).status).toBe(204);
  });

  it("revoking access takes effect within accessReviewCacheSeconds; the hot path asks nothing", async () => {
    const t = setup();
    for (let i = 0; i < 50; i++) expect((await t.request("/redfish/v1/Systems/tenant1-vms.vm-a", { headers: t.bearer })).status).toBe(200);
    // One TokenReview; one access review per chassis namespace.
    expect({ tokens: t.reviews.tokenReviews, access: t.reviews.accessReviews }).toEqual({ tokens: 1, access: 2 });
    t.reviews.allowed.clear();
    t.clock.now += 4_000;
    expect((await t.request("/redfish/v1/Systems/tenant1-vms.vm-a", { headers: t.bearer })).status).toBe(200);
    t.clock.now += 1_000;
    expect((await t.request("/redfish/v1/Systems/tenant1-vms.vm-a", { headers: t.bearer })).status).toBe(404);
    expect(await members(await t.request("/redfish/v1/Systems", { headers: t.bearer }))).toEqual([]);
    expect(t.reviews.tokenReviews).toBe(1);
  });

  it("takes the token as the password of the configured user name, in Basic and in a session that keeps the identity", async () => {
    const t = setup();
    const viaBasic = await t.request("/redfish/v1/Systems", { headers: { Authorization: basic("kubernetes", TENANT1_TOKEN) } });
    expect(await members(viaBasic)).toHaveLength(2);
    const login = await t.request("/redfish/v1/SessionService/Sessions", { body: { UserName: "kubernetes", Password: TENANT1_TOKEN } });
    expect(login.status).toBe(201);
    const token = login.headers.get("X-Auth-Token")!;
    expect(token).not.toContain(TENANT1_TOKEN);
    const session = await login.json() as { UserName: string };
    expect(session.UserName).toBe("kubernetes:system:serviceaccount:tenant1-vms:bmc");
    expect(await members(await t.request("/redfish/v1/Systems", { headers: { "X-Auth-Token": token } }))).toHaveLength(2);
    expect((await t.request("/redfish/v1/Systems/tenant2-vms.vm-c", { headers: { "X-Auth-Token": token } })).status).toBe(404);
    expect((await t.request(resetUri("tenant1-vms.vm-b"), { headers: { "X-Auth-Token": token }, body: { ResetType: "ForceOff" } })).status).toBe(403);
    // Its account is its own, under the identity's name.
    const accounts = await (await t.request("/redfish/v1/AccountService/Accounts", { headers: t.bearer })).json() as any;
    const own = accounts.Members[0]["@odata.id"] as string;
    expect(own).toBe(`/redfish/v1/AccountService/Accounts/${encodeURIComponent("kubernetes:system:serviceaccount:tenant1-vms:bmc")}`);
    expect(((await (await t.request(own, { headers: t.bearer })).json()) as any).UserName).toBe("kubernetes:system:serviceaccount:tenant1-vms:bmc");
    expect((await t.request(own, { headers: { Authorization: AUTH.carol } })).status).toBe(404);
    // Configured users are unaffected.
    expect(await members(await t.request("/redfish/v1/Systems", { headers: { Authorization: AUTH.carol } }))).toHaveLength(3);
  });

  it("a repeated token login is found without a review, and no longer than its token's review: an expired one is reviewed again", async () => {
    const t = setup();
    const login = { Authorization: basic("kubernetes", TENANT1_TOKEN) };
    for (let i = 0; i < 3; i++) expect(await members(await t.request("/redfish/v1/Systems", { headers: login }))).toHaveLength(2);
    expect(t.reviews.tokenReviews).toBe(1);
    // Past tokenReviewCacheSeconds (30) the remembered login header does not stand in for the token's review.
    t.clock.now += 31_000;
    t.reviews.tokens.delete(TENANT1_TOKEN);
    expect((await t.request("/redfish/v1/Systems", { headers: login })).status).toBe(401);
    expect(t.reviews.tokenReviews).toBe(2);
  });

  it("refuses unknown tokens (401), answers 503 when the API server cannot review, and ignores tokens while disabled", async () => {
    const t = setup();
    const bad = await t.request("/redfish/v1/Systems", { headers: { Authorization: "Bearer not-a-token" } });
    expect(bad.status).toBe(401);
    expect((await t.request("/redfish/v1/Systems", { headers: { Authorization: basic("kubernetes", "not-a-token") } })).status).toBe(401);
    t.reviews.failing = true;
    const down = await t.request("/redfish/v1/Systems", { headers: { Authorization: "Bearer another-token" } });
    expect(down.status).toBe(503);
    expect(down.headers.get("Retry-After")).toBe("5");

    const off = setup({ enabled: false });
    expect((await off.request("/redfish/v1/Systems", { headers: off.bearer })).status).toBe(401);
    expect((await off.request("/redfish/v1/Systems", { headers: { Authorization: basic("kubernetes", TENANT1_TOKEN) } })).status).toBe(401);
    expect(off.reviews.tokenReviews).toBe(0);
  });

  it("bounds the token cache in entries, drops expired tokens when the next one is cached, and caches over-long tokens too", async () => {
    const reviews = new FakeReviews();
    const clock = { now: 0 };
    const identities = new KubernetesIdentities(reviews, () => clock.now);
    const config = kubernetesIdentitiesSchema.parse({ enabled: true, tokenReviewCacheSeconds: 60 });
    for (let i = 0; i < MAX_CACHED_TOKENS + 50; i++) await identities.authenticate(`token-${i}`, config);
    expect(identities.cacheSizes.tokens).toBe(MAX_CACHED_TOKENS);
    await identities.authenticate(TENANT1_TOKEN, config);
    const reviewsBefore = reviews.tokenReviews;
    expect(await identities.authenticate(TENANT1_TOKEN, config)).toMatchObject({ username: TENANT1_USER.username });
    expect(identities.cachedToken(TENANT1_TOKEN)).toMatchObject({ username: TENANT1_USER.username });
    expect(reviews.tokenReviews).toBe(reviewsBefore);

    // A token ending like a cached one (JWTs end in their signature) is another token: reviewed, never given the
    // cached identity; the two share a place in the cache, so the first is reviewed again after it.
    const signature = "s".repeat(64);
    const jwt = `header.payload.${signature}`;
    const lookalike = `other.claims.${signature}`;
    reviews.tokens.set(jwt, TENANT1_USER);
    expect(await identities.authenticate(jwt, config)).toMatchObject({ username: TENANT1_USER.username });
    expect(identities.cachedToken(lookalike)).toBeUndefined();
    const reviewsOfJwt = reviews.tokenReviews;
    expect(await identities.authenticate(lookalike, config)).toBeNull();
    expect(identities.cachedToken(lookalike)).toBeNull();
    expect(identities.cachedToken(jwt)).toBeUndefined();
    expect(await identities.authenticate(jwt, config)).toMatchObject({ username: TENANT1_USER.username });
    expect(reviews.tokenReviews).toBe(reviewsOfJwt + 2);

    // Past tokenReviewCacheSeconds the next cached token takes every expired one out of memory, and the old token is reviewed again.
    clock.now += 60_000;
    await identities.authenticate("token-after-expiry", config);
    expect(identities.cacheSizes.tokens).toBe(1);
    expect(identities.cachedToken(TENANT1_TOKEN)).toBeUndefined();

    // A token longer than MAX_TOKEN_KEY_LENGTH (kept under a digest) is cached like any other and is not another token.
    const long = `${TENANT1_TOKEN}-${"x".repeat(MAX_TOKEN_KEY_LENGTH)}`;
    reviews.tokens.set(long, { ...TENANT1_USER, username: "long-token-user" });
    expect(await identities.authenticate(long, config)).toMatchObject({ username: "long-token-user" });
    const reviewsOfLong = reviews.tokenReviews;
    expect(identities.cachedToken(long)).toMatchObject({ username: "long-token-user" });
    expect(await identities.authenticate(long, config)).toMatchObject({ username: "long-token-user" });
    expect(reviews.tokenReviews).toBe(reviewsOfLong);
    expect(identities.cachedToken(long.slice(0, MAX_TOKEN_KEY_LENGTH))).toBeUndefined();
    expect(identities.cacheSizes.tokens).toBe(2);
  });
});

// Kubernetes identities end to end: the sandbox API server's TokenReview and SubjectAccessReview through
// @kubernetes/client-node (the caller needs the create right, as in kube), then the BUILT module under its generated
// RBAC with identities enabled: a ServiceAccount token bound to a Role with `get` + `virtualmachines/start` in
// tenant1-vms sees exactly tenant1's systems, powers one on, gets 404 for tenant2's and 403 for ForceOff, and loses
// access within accessReviewCacheSeconds of its RoleBinding being deleted.
import { AuthenticationV1Api, AuthorizationV1Api, KubeConfig, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { demoConfig } from "../../sandbox/demo";
import { API_AUDIENCES } from "../../sandbox/apiserver/reviews";
import { startTestCluster, type TestCluster } from "../helpers/cluster";

const NS = "tenant1-vms";
const BMC_TOKEN = "sandbox-sa-token-tenant1-bmc-4f9c2e";
const BMC_USER = { username: `system:serviceaccount:${NS}:bmc`, uid: "sa-uid-bmc", groups: ["system:serviceaccounts", `system:serviceaccounts:${NS}`, "system:authenticated"] };
/** A token whose user has no rights at all: it may not even create reviews. */
const NOBODY_TOKEN = "sandbox-token-nobody-7d1a";
const NOBODY_USER = { username: "nobody", groups: ["system:authenticated"] };
const ACCESS_REVIEW_CACHE_SECONDS = 2;

let c: TestCluster;

beforeAll(async () => {
  c = await startTestCluster({
    demo: true,
    config: {
      redfish: {
        ...demoConfig.redfish,
        kubernetesIdentities: { enabled: true, tokenReviewCacheSeconds: 30, accessReviewCacheSeconds: ACCESS_REVIEW_CACHE_SECONDS },
      },
    },
    tokens: [
      { token: BMC_TOKEN, user: BMC_USER },
      { token: NOBODY_TOKEN, user: NOBODY_USER },
    ],
  });
  // The Redfish server of the watcher answers (vi.waitFor: expect.poll is for tests, not hooks).
  await vi.waitFor(async () => expect((await c.redfish("GET", "/redfish/v1/Systems", { user: "admin:admin123" })).status).toBe(200), { timeout: 60_000, interval: 200 });
}, 180_000);

afterAll(async () => {
  await c?.stop();
});

/** A client-node config for the sandbox API server with a bearer token instead of the admin's credentials. */
function kubeConfigWithToken(token: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(JSON.stringify({ ...JSON.parse(c.kc.exportConfig()), users: [{ name: "u", user: { token } }], contexts: [{ name: "x", context: { cluster: c.kc.getCurrentCluster()!.name, user: "u" } }], "current-context": "x" }));
  return kc;
}

const bearer = { Authorization: `Bearer ${BMC_TOKEN}` };
const members = (body: any) => (body.Members as { "@odata.id": string }[]).map(m => m["@odata.id"]);

async function bindBmcRole(): Promise<void> {
  const rbac = c.kc.makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({
    namespace: NS,
    body: {
      metadata: { name: "bmc-operator", namespace: NS },
      rules: [
        { apiGroups: ["kubevirt.io"], resources: ["virtualmachines"], verbs: ["get"] },
        { apiGroups: ["subresources.kubevirt.io"], resources: ["virtualmachines/start"], verbs: ["update"] },
      ],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace: NS,
    body: {
      metadata: { name: "bmc-operator", namespace: NS },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "bmc-operator" },
      subjects: [{ kind: "ServiceAccount", name: "bmc", namespace: NS }],
    },
  });
}

describe("sandbox TokenReview and SubjectAccessReview (client-node)", () => {
  it("reviews its tokens, with audiences, and refuses unknown ones", async () => {
    const authn = c.kc.makeApiClient(AuthenticationV1Api);
    const known = await authn.createTokenReview({ body: { spec: { token: BMC_TOKEN } } });
    expect(known.status).toMatchObject({ authenticated: true, user: { username: BMC_USER.username, uid: BMC_USER.uid, groups: BMC_USER.groups }, audiences: API_AUDIENCES });
    const unknown = await authn.createTokenReview({ body: { spec: { token: "no-such-token" } } });
    expect(unknown.status?.authenticated).toBeFalsy();
    const otherAudience = await authn.createTokenReview({ body: { spec: { token: BMC_TOKEN, audiences: ["https://redfish.example"] } } });
    expect(otherAudience.status?.authenticated).toBeFalsy();
    expect(otherAudience.status?.error).toMatch(/invalid for the target audiences/);
    await expect(authn.createTokenReview({ body: { spec: {} } })).rejects.toMatchObject({ code: 400 });
  });

  it("answers access through its RBAC evaluator, and only to callers allowed to create reviews", async () => {
    await bindBmcRole();
    const authz = c.kc.makeApiClient(AuthorizationV1Api);
    const ask = (resourceAttributes: Record<string, string>) =>
      authz.createSubjectAccessReview({ body: { spec: { user: BMC_USER.username, groups: BMC_USER.groups, resourceAttributes } } }).then(r => r.status?.allowed);
    expect(await ask({ namespace: NS, verb: "get", group: "kubevirt.io", resource: "virtualmachines" })).toBe(true);
    expect(await ask({ namespace: NS, verb: "update", group: "subresources.kubevirt.io", resource: "virtualmachines", subresource: "start" })).toBe(true);
    expect(await ask({ namespace: NS, verb: "update", group: "subresources.kubevirt.io", resource: "virtualmachines", subresource: "stop" })).toBe(false);
    expect(await ask({ namespace: "tenant2-vms", verb: "get", group: "kubevirt.io", resource: "virtualmachines" })).toBe(false);
    await expect(authz.createSubjectAccessReview({ body: { spec: { resourceAttributes: { verb: "get" } } } })).rejects.toMatchObject({ code: 400 });

    const nobody = kubeConfigWithToken(NOBODY_TOKEN);
    await expect(nobody.makeApiClient(AuthenticationV1Api).createTokenReview({ body: { spec: { token: BMC_TOKEN } } })).rejects.toMatchObject({ code: 403 });
    await expect(
      nobody.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({ body: { spec: { user: "x", resourceAttributes: { verb: "get", resource: "pods" } } } }),
    ).rejects.toMatchObject({ code: 403 });
  });
});

describe("the built module with Kubernetes identities", () => {
  it("a ServiceAccount token with get + virtualmachines/start sees exactly tenant1, powers on, 404 for tenant2, 403 for ForceOff", async () => {
    const list = await c.redfish("GET", "/redfish/v1/Systems", { headers: bearer });
    expect(list.status).toBe(200);
    expect(members(list.body).sort()).toEqual(["/redfish/v1/Systems/tenant1-vms.vm-1", "/redfish/v1/Systems/tenant1-vms.vm-2"]);

    const foreign = await c.redfish("GET", "/redfish/v1/Systems/tenant2-vms.vm-1", { headers: bearer });
    const missing = await c.redfish("GET", "/redfish/v1/Systems/tenant2-vms.vm-9", { headers: bearer });
    expect(foreign.status).toBe(404);
    expect(foreign.text.replaceAll("vm-1", "X")).toBe(missing.text.replaceAll("vm-9", "X"));
    expect((await c.redfish("POST", "/redfish/v1/Systems/tenant2-vms.vm-1/Actions/ComputerSystem.Reset", { headers: bearer, body: { ResetType: "On" } })).status).toBe(404);

    const on = await c.redfish("POST", "/redfish/v1/Systems/tenant1-vms.vm-1/Actions/ComputerSystem.Reset", { headers: bearer, body: { ResetType: "On" } });
    expect(on.status).toBe(204);
    await expect
      .poll(async () => (await c.redfish("GET", "/redfish/v1/Systems/tenant1-vms.vm-1", { headers: bearer })).body?.PowerState, { timeout: 30_000, interval: 200 })
      .toBe("On");

    const off = await c.redfish("POST", "/redfish/v1/Systems/tenant1-vms.vm-1/Actions/ComputerSystem.Reset", { headers: bearer, body: { ResetType: "ForceOff" } });
    expect(off.status).toBe(403);
    expect(off.body.error["@Message.ExtendedInfo"][0].MessageId).toMatch(/\.InsufficientPrivilege$/);
    expect((await c.redfish("GET", "/redfish/v1/Systems/tenant1-vms.vm-1", { headers: bearer })).body.PowerState).toBe("On");

    // Ironic's form: the token as the password of the configured user name, Basic and session login.
    expect((await c.redfish("GET", "/redfish/v1/Systems/tenant1-vms.vm-2", { user: `kubernetes:${BMC_TOKEN}` })).status).toBe(200);
    const login = await c.redfish("POST", "/redfish/v1/SessionService/Sessions", { body: { UserName: "kubernetes", Password: BMC_TOKEN } });
    expect(login.status).toBe(201);
    const session = String(login.headers["x-auth-token"]);
    expect(members((await c.redfish("GET", "/redfish/v1/Systems", { token: session })).body)).toHaveLength(2);
  }, 90_000);

  it("deleting the RoleBinding takes effect within accessReviewCacheSeconds", async () => {
    expect((await c.redfish("GET", "/redfish/v1/Systems/tenant1-vms.vm-2", { headers: bearer })).status).toBe(200);
    await c.kc.makeApiClient(RbacAuthorizationV1Api).deleteNamespacedRoleBinding({ name: "bmc-operator", namespace: NS });
    const revoked = Date.now();
    await expect
      .poll(async () => (await c.redfish("GET", "/redfish/v1/Systems/tenant1-vms.vm-2", { headers: bearer })).status, { timeout: 10_000, interval: 100 })
      .toBe(404);
    const tookMs = Date.now() - revoked;
    // The documented bound, plus one poll interval and a request under load.
    expect(tookMs).toBeLessThanOrEqual(ACCESS_REVIEW_CACHE_SECONDS * 1000 + 1500);
    expect(members((await c.redfish("GET", "/redfish/v1/Systems", { headers: bearer })).body)).toEqual([]);
  }, 30_000);

  it("never logs the tokens", async () => {
    const logs = [...(c.watcher?.logs ?? []), ...(c.admission?.logs ?? [])].join("\n");
    expect(logs.length).toBeGreaterThan(0);
    expect(logs).not.toContain(BMC_TOKEN);
    expect(logs).not.toContain(NOBODY_TOKEN);
  });
});

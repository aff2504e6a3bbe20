// Dynamic admission of the sandbox API server against a real local HTTPS webhook.
import https from "node:https";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { ApiException, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createCertificateAuthority, createSelfSignedServerCertificate, issueServerCertificate } from "../../capabilities/common/tls";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";

interface Review {
  apiVersion: string;
  kind: string;
  request: {
    uid: string;
    kind: { group: string; version: string; kind: string };
    resource: { group: string; version: string; resource: string };
    subResource?: string;
    name: string;
    namespace?: string;
    operation: string;
    userInfo: { username: string; uid?: string; groups: string[] };
    object: { metadata: { name?: string; labels?: Record<string, string> } } | null;
    oldObject: { metadata: { name?: string } } | null;
    dryRun: boolean;
    options: { kind?: string };
  };
}
type Responder = (review: Review) => Promise<Record<string, unknown>> | Record<string, unknown>;

let api: ApiServer;
let dir: string;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let webhook: https.Server;
let webhookUrl: string;
let caBundle: string;
let otherCaBundle: string;
let ca: ReturnType<typeof createCertificateAuthority>;
const logs: string[] = [];
const responders = new Map<string, Responder>();
const received: { path: string; review: Review }[] = [];

const MUTATING = "mutatingwebhookconfigurations.admissionregistration.k8s.io";
const VALIDATING = "validatingwebhookconfigurations.admissionregistration.k8s.io";

beforeAll(async () => {
  ca = createCertificateAuthority("test-webhook-ca");
  const other = createCertificateAuthority("some-other-ca");
  const serving = issueServerCertificate(ca, { commonName: "webhook", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
  caBundle = Buffer.from(ca.certPem).toString("base64");
  otherCaBundle = Buffer.from(other.certPem).toString("base64");
  webhook = https.createServer({ key: serving.keyPem, cert: serving.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", c => chunks.push(c));
    req.on("end", async () => {
      const review = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Review;
      const p = new URL(req.url ?? "/", "https://x").pathname;
      received.push({ path: p, review });
      const responder = responders.get(p) ?? (() => ({ allowed: true }));
      const response = await responder(review);
      const body = JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { uid: review.request.uid, ...response } });
      res.writeHead(200, { "Content-Type": "application/json" }).end(body);
    });
  });
  await new Promise<void>(resolve => webhook.listen(0, "127.0.0.1", resolve));
  webhookUrl = `https://127.0.0.1:${(webhook.address() as AddressInfo).port}`;

  api = await startApiServer({
    tokens: [{ token: "alice-token", user: { username: "alice", uid: "alice-uid", groups: ["devs", "system:authenticated"] } }],
    log: l => logs.push(l),
  });
  // RBAC applies to token users: alice's group is bound to the bootstrap cluster-admin role.
  api.store.create("clusterrolebindings.rbac.authorization.k8s.io", {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: "devs-admin" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
    subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "devs" }],
  });
  dir = mkdtempSync(path.join(tmpdir(), "admission-test-"));
  const kubeconfig = path.join(dir, "kubeconfig");
  await api.writeKubeconfig(kubeconfig, { token: "alice-token" });
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
});

afterAll(async () => {
  await api.close();
  webhook.closeAllConnections();
  await new Promise(resolve => webhook.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  for (const key of [MUTATING, VALIDATING]) for (const c of api.store.list(key)) api.store.delete(key, undefined, c.metadata.name!);
  responders.clear();
  received.length = 0;
});

function webhookConfig(
  kind: "Mutating" | "Validating",
  name: string,
  hooks: { name: string; path: string; ca?: string; rules?: object[]; [k: string]: unknown }[],
): { apiVersion: string; kind: string; metadata: { name: string }; webhooks: object[] } {
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: `${kind}WebhookConfiguration`,
    metadata: { name },
    webhooks: hooks.map(({ path: p, ca, rules, ...rest }) => ({
      clientConfig: { url: `${webhookUrl}${p}`, caBundle: ca ?? caBundle },
      rules: rules ?? [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["configmaps"] }],
      sideEffects: "None",
      admissionReviewVersions: ["v1"],
      ...rest,
    })),
  };
}

async function install(kind: "Mutating" | "Validating", cfg: ReturnType<typeof webhookConfig>): Promise<void> {
  const res = await fetch(`${api.url}/apis/admissionregistration.k8s.io/v1/${kind.toLowerCase()}webhookconfigurations`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(cfg),
  });
  expect(res.status, await res.clone().text()).toBe(201);
}

async function failure(p: Promise<unknown>): Promise<{ code: number; reason?: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiException) return typeof err.body === "string" ? JSON.parse(err.body) : err.body;
    throw err;
  }
  throw new Error("expected the call to fail");
}

let nsCounter = 0;
async function freshNamespace(labels?: Record<string, string>): Promise<string> {
  const name = `adm${++nsCounter}`;
  api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name, labels } });
  return name;
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64");

describe("mutating admission", () => {
  it("sends a complete AdmissionReview with the caller's userInfo and applies the JSONPatch", async () => {
    const ns = await freshNamespace();
    responders.set("/mutate", () => ({ allowed: true, patchType: "JSONPatch", patch: b64([{ op: "add", path: "/metadata/labels", value: { mutated: "yes" } }]) }));
    await install("Mutating", webhookConfig("Mutating", "m", [{ name: "label.example.com", path: "/mutate" }]));
    const created = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "cm" }, data: { a: "1" } } });
    expect(created.metadata?.labels).toEqual({ mutated: "yes" });
    expect(received).toHaveLength(1);
    const req = received[0].review.request;
    expect(received[0].review).toMatchObject({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview" });
    expect(req).toMatchObject({
      kind: { group: "", version: "v1", kind: "ConfigMap" },
      resource: { group: "", version: "v1", resource: "configmaps" },
      name: "cm",
      namespace: ns,
      operation: "CREATE",
      userInfo: { username: "alice", uid: "alice-uid", groups: ["devs", "system:authenticated"] },
      object: { metadata: { name: "cm" }, data: { a: "1" } },
      oldObject: null,
      dryRun: false,
      options: { kind: "CreateOptions" },
    });
    expect(req.uid).toMatch(/^[0-9a-f-]{36}$/);

    await core.patchNamespacedConfigMap({ namespace: ns, name: "cm", body: { data: { a: "2" } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    expect(received[1].review.request).toMatchObject({ operation: "UPDATE", object: { data: { a: "2" } }, oldObject: { data: { a: "1" } }, options: { kind: "PatchOptions" } });
    expect(logs.some(l => l.includes('admission webhook "label.example.com" (mutating) CREATE') && /allowed in [0-9.]+ms/.test(l))).toBe(true);
  });

  it("calls configurations in name order and webhooks in order, each seeing the previous patches", async () => {
    const ns = await freshNamespace();
    const order: string[] = [];
    const appender = (tag: string) => (review: Review) => {
      order.push(tag);
      const labels = review.request.object?.metadata.labels ?? {};
      return { allowed: true, patchType: "JSONPatch", patch: b64([{ op: "add", path: "/metadata/labels", value: { ...labels, [tag]: String(Object.keys(labels).length) } }]) };
    };
    responders.set("/a1", appender("a1"));
    responders.set("/a2", appender("a2"));
    responders.set("/b1", appender("b1"));
    await install("Mutating", webhookConfig("Mutating", "bbb", [{ name: "b1.example.com", path: "/b1" }]));
    await install("Mutating", webhookConfig("Mutating", "aaa", [{ name: "a1.example.com", path: "/a1" }, { name: "a2.example.com", path: "/a2" }]));
    const created = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "ordered" } } });
    expect(order).toEqual(["a1", "a2", "b1"]);
    expect(created.metadata?.labels).toEqual({ a1: "0", a2: "1", b1: "2" });
  });

  it("returns webhook warnings as Warning: 299 headers", async () => {
    const ns = await freshNamespace();
    responders.set("/warn", () => ({ allowed: true, warnings: ['field "x" is deprecated'] }));
    await install("Validating", webhookConfig("Validating", "w", [{ name: "warn.example.com", path: "/warn" }]));
    const res = await fetch(`${api.url}/api/v1/namespaces/${ns}/configmaps`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "warned" } }),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get("warning")).toBe('299 - "field \\"x\\" is deprecated"');
  });
});

describe("validating admission", () => {
  it("denies with the webhook's message and code like kube", async () => {
    const ns = await freshNamespace();
    responders.set("/deny", () => ({ allowed: false, status: { code: 403, reason: "Forbidden", message: "tenant label missing" } }));
    responders.set("/deny-plain", () => ({ allowed: false }));
    await install("Validating", webhookConfig("Validating", "v", [{ name: "deny.example.com", path: "/deny" }]));
    const denied = await failure(core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "nope" } } }));
    expect(denied).toMatchObject({ code: 403, reason: "Forbidden", message: 'admission webhook "deny.example.com" denied the request: tenant label missing' });
    expect(api.store.get("configmaps", ns, "nope")).toBeUndefined();

    api.store.delete(VALIDATING, undefined, "v");
    await install("Validating", webhookConfig("Validating", "v2", [{ name: "plain.example.com", path: "/deny-plain" }]));
    const plain = await failure(core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "nope" } } }));
    expect(plain).toMatchObject({ code: 400, message: 'admission webhook "plain.example.com" denied the request without explanation' });
  });

  it("verifies the webhook certificate against caBundle: a wrong CA fails the call (Fail rejects, Ignore admits)", async () => {
    const ns = await freshNamespace();
    await install("Validating", webhookConfig("Validating", "wrong-ca", [{ name: "strict.example.com", path: "/ok", ca: otherCaBundle, failurePolicy: "Fail" }]));
    const rejected = await failure(core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "blocked" } } }));
    expect(rejected.code).toBe(500);
    expect(rejected.reason).toBe("InternalError");
    expect(rejected.message).toMatch(/^Internal error occurred: failed calling webhook "strict.example.com": failed to call webhook: Post "https:\/\/127\.0\.0\.1:\d+\/ok\?timeout=10s": /);
    expect(rejected.message).toMatch(/certificate|self.signed|verify/i);
    expect(received).toHaveLength(0);

    api.store.delete(VALIDATING, undefined, "wrong-ca");
    await install("Validating", webhookConfig("Validating", "wrong-ca-ignore", [{ name: "lenient.example.com", path: "/ok", ca: otherCaBundle, failurePolicy: "Ignore" }]));
    const admitted = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "allowed" } } });
    expect(admitted.metadata?.name).toBe("allowed");
    expect(logs.some(l => l.includes('"lenient.example.com"') && l.includes("failurePolicy=Ignore"))).toBe(true);
  });

  it("honours timeoutSeconds", async () => {
    const ns = await freshNamespace();
    responders.set("/slow", () => new Promise(resolve => setTimeout(() => resolve({ allowed: true }), 2500)));
    await install("Validating", webhookConfig("Validating", "slow", [{ name: "slow.example.com", path: "/slow", timeoutSeconds: 1 }]));
    const started = Date.now();
    const timedOut = await failure(core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "late" } } }));
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(elapsed).toBeLessThan(2300);
    expect(timedOut.code).toBe(500);
    expect(timedOut.message).toContain("context deadline exceeded");
  });

  it("treats a service-only clientConfig as unreachable (failurePolicy applies)", async () => {
    const ns = await freshNamespace();
    const cfg = webhookConfig("Validating", "svc", [{ name: "svc.example.com", path: "/x" }]);
    (cfg.webhooks[0] as { clientConfig: object }).clientConfig = { service: { namespace: "pepr-system", name: "pepr", path: "/validate" }, caBundle };
    await install("Validating", cfg);
    expect((await failure(core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "s" } } }))).code).toBe(500);
  });
});

describe("matching", () => {
  it("skips namespaces excluded by namespaceSelector and objects excluded by objectSelector", async () => {
    const included = await freshNamespace({ tenant: "a" });
    const excluded = await freshNamespace({ "kubernetes.io/metadata.name-ignored": "x" });
    const systemNs = await freshNamespace({ system: "true" });
    responders.set("/deny", () => ({ allowed: false, status: { message: "no" } }));
    await install(
      "Validating",
      webhookConfig("Validating", "sel", [
        {
          name: "sel.example.com",
          path: "/deny",
          namespaceSelector: { matchLabels: { tenant: "a" }, matchExpressions: [{ key: "system", operator: "DoesNotExist" }] },
          objectSelector: { matchExpressions: [{ key: "skip", operator: "NotIn", values: ["true"] }] },
        },
      ]),
    );
    expect((await failure(core.createNamespacedConfigMap({ namespace: included, body: { metadata: { name: "c" } } }))).code).toBe(400);
    await core.createNamespacedConfigMap({ namespace: included, body: { metadata: { name: "c", labels: { skip: "true" } } } });
    await core.createNamespacedConfigMap({ namespace: excluded, body: { metadata: { name: "c" } } });
    await core.createNamespacedConfigMap({ namespace: systemNs, body: { metadata: { name: "c" } } });
    expect(received).toHaveLength(1);
  });

  it("checks status-subresource writes as subResource status (rules like datavolumes/status) and DELETE with oldObject", async () => {
    const ns = await freshNamespace();
    const DV = { group: "cdi.kubevirt.io", version: "v1beta1", plural: "datavolumes" };
    await install(
      "Validating",
      webhookConfig("Validating", "dv", [
        { name: "dv-status.example.com", path: "/dv-status", rules: [{ apiGroups: ["cdi.kubevirt.io"], apiVersions: ["*"], operations: ["UPDATE"], resources: ["datavolumes/status"] }] },
        { name: "dv-delete.example.com", path: "/dv-delete", rules: [{ apiGroups: ["*"], apiVersions: ["*"], operations: ["DELETE"], resources: ["datavolumes"], scope: "Namespaced" }] },
      ]),
    );
    responders.set("/dv-status", r => ({ allowed: (r.request.object as { status?: { phase?: string } }).status?.phase !== "Bogus", status: { message: "bogus phase" } }));
    await custom.createNamespacedCustomObject({ ...DV, namespace: ns, body: { apiVersion: "cdi.kubevirt.io/v1beta1", kind: "DataVolume", metadata: { name: "dv" }, spec: {} } });
    await custom.patchNamespacedCustomObject({ ...DV, namespace: ns, name: "dv", body: { spec: { x: 1 } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    expect(received).toHaveLength(0);
    await custom.patchNamespacedCustomObjectStatus({ ...DV, namespace: ns, name: "dv", body: { status: { phase: "Succeeded" } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    expect(received).toHaveLength(1);
    expect(received[0].review.request).toMatchObject({ subResource: "status", operation: "UPDATE", kind: { kind: "DataVolume" }, resource: { resource: "datavolumes" } });
    const bogus = await failure(custom.patchNamespacedCustomObjectStatus({ ...DV, namespace: ns, name: "dv", body: { status: { phase: "Bogus" } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch)));
    expect(bogus.message).toBe('admission webhook "dv-status.example.com" denied the request: bogus phase');

    await custom.deleteNamespacedCustomObject({ ...DV, namespace: ns, name: "dv" });
    const del = received.find(r => r.path === "/dv-delete")!.review.request;
    expect(del).toMatchObject({ operation: "DELETE", name: "dv", object: null, oldObject: { metadata: { name: "dv" } }, options: { kind: "DeleteOptions" } });
  });

  it("sends dryRun to webhooks and persists nothing on dry-run writes", async () => {
    const ns = await freshNamespace();
    await install("Validating", webhookConfig("Validating", "dry", [{ name: "dry.example.com", path: "/ok", sideEffects: "NoneOnDryRun" }]));
    const res = await fetch(`${api.url}/api/v1/namespaces/${ns}/configmaps?dryRun=All`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "dry" } }),
    });
    expect(res.status).toBe(201);
    expect(received[0].review.request.dryRun).toBe(true);
    expect(api.store.get("configmaps", ns, "dry")).toBeUndefined();
  });

  it("does not run webhooks for ObjectStore (controller) writes", async () => {
    const ns = await freshNamespace();
    responders.set("/deny", () => ({ allowed: false }));
    await install("Validating", webhookConfig("Validating", "all", [{ name: "all.example.com", path: "/deny", rules: [{ apiGroups: ["*"], apiVersions: ["*"], operations: ["*"], resources: ["*/*"] }] }]));
    api.store.create("configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "internal", namespace: ns } });
    expect(received).toHaveLength(0);
  });

  it("validates webhook configurations like kube (sideEffects required, https URL)", async () => {
    const cfg = webhookConfig("Validating", "invalid", [{ name: "bad.example.com", path: "/x" }]);
    delete (cfg.webhooks[0] as { sideEffects?: string }).sideEffects;
    const res = await fetch(`${api.url}/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(cfg) });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { message: string }).message).toContain("webhooks[0].sideEffects: Required value");
    const stored = api.store.create(VALIDATING, webhookConfig("Validating", "defaults", [{ name: "d.example.com", path: "/x" }]) as never);
    expect((stored.webhooks as object[])[0]).toMatchObject({ failurePolicy: "Fail", timeoutSeconds: 10, matchPolicy: "Equivalent", namespaceSelector: {}, objectSelector: {} });
  });
});

describe("tls helpers (webhook and Redfish certificates)", () => {
  it("issues certificates Node's TLS verifies by IP and DNS name; a self-signed pair is its own trust anchor", async () => {
    const pair = createSelfSignedServerCertificate({ commonName: "redfish", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
    const server = https.createServer({ key: pair.keyPem, cert: pair.certPem }, (_req, res) => res.end("ok"));
    await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const get = (host: string, ca: string) =>
      new Promise<string>(resolve => {
        https
          .get({ host, port, ca, agent: false }, res => {
            res.resume();
            resolve(String(res.statusCode));
          })
          .on("error", err => resolve(err.message));
      });
    try {
      expect(await get("127.0.0.1", pair.certPem)).toBe("200");
      expect(await get("localhost", pair.certPem)).toBe("200");
      expect(await get("127.0.0.1", Buffer.from(otherCaBundle, "base64").toString())).toMatch(/self.signed|unable to verify|certificate/i);
    } finally {
      await new Promise(resolve => server.close(resolve));
    }
    expect(() => issueServerCertificate(ca, { commonName: "x", dnsNames: [], ipAddresses: ["not-an-ip"] })).toThrow(/not an IP address/);
  });
});

// Security suite, issue #12 (1, 4, 5, 12): the policies a hostile tenant or cluster user would try to get around.
//   (4) DataVolume policy bypasses, against the BUILT admission server through the sandbox API server: the
//       managed-by label no longer exempts anyone, a label swap and a move between tenants are denied, and the
//       webhook fails closed, scoped to the policed namespaces, in the manifest and for `npx pepr deploy`;
//   (5) least privilege in the built manifest: two ServiceAccounts, no cluster-wide write on tenant resources;
//   (1) every image URL spelling of the report is refused by the URL policy, naming the rule;
//   (12) a Node cannot steer its identity into another tenant's namespace, nor claim another Node's VM.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { moduleConfigSchema } from "../../capabilities/config/schema";
import { decide, VmClaims } from "../../capabilities/node-identity/decide";
import { CLUSTER_NAMESPACE_ANNOTATION, toNodeView, VM_NAME_ANNOTATION, VM_NAMESPACE_ANNOTATION } from "../../capabilities/node-identity/identity";
import { nodeIdentitySettings } from "../../capabilities/node-identity/settings";
import { checkImageUrl, imageUrlPolicySchema } from "../../redfish/url-policy";
import { demoConfig } from "../../sandbox/demo";
import { parseManifest } from "../../scripts/post-build";
import { permissionsOf, type PolicyRule } from "../../scripts/deploy/rbac";
import { build, copyDist, fullValues, NAME, removeDir, UUID, type Built } from "../deploy/helpers";
import { dataVolume, NS, TENANT1_LABELS, TENANT2_LABELS, TWO_TENANTS } from "../datavolume-policy/policy-helpers";
import { startTestCluster, type TestCluster } from "../helpers/cluster";

const DV_PATH = `/apis/cdi.kubevirt.io/v1beta1/namespaces/${NS}/datavolumes`;
const MANAGED_BY = { "app.kubernetes.io/managed-by": "kubevirt-infra" };

let c: TestCluster;

/** A DataVolume write as a cluster user (the sandbox's untokened requests are system:admin). */
async function write(method: "POST" | "PATCH", pathSuffix: string, body: unknown): Promise<{ status: number; message: string }> {
  const headers = { "Content-Type": method === "PATCH" ? "application/merge-patch+json" : "application/json" };
  const res = await fetch(`${c.api.url}${DV_PATH}${pathSuffix}`, { method, headers, body: JSON.stringify(body) });
  return { status: res.status, message: ((await res.json()) as { message?: string }).message ?? "" };
}

const withoutUid = (obj: Record<string, unknown>) => ({ ...obj, metadata: { ...(obj.metadata as object), uid: undefined } });

describe("(4) DataVolume policy bypasses, end to end", () => {
  beforeAll(async () => {
    c = await startTestCluster({ demo: true });
    await c.applyConfig({ ...demoConfig, datavolumePolicy: { ...demoConfig.datavolumePolicy, ...TWO_TENANTS } });
    // In force once tenant2's labels are accepted (the demo config alone requires tenant1's): probed with a dry run.
    await vi.waitFor(
      async () => expect((await write("POST", "?dryRun=All", withoutUid(dataVolume("pvc-probe", { labels: TENANT2_LABELS })))).status, "the policy in force").toBe(201),
      { timeout: 30_000, interval: 100 },
    );
  }, 480_000);

  afterAll(async () => {
    await c?.stop();
  });

  it("pvc-c carrying only the managed-by label is judged like any CSI volume", async () => {
    const result = await write("POST", "", withoutUid(dataVolume("pvc-c", { labels: MANAGED_BY })));
    expect(result.status).toBe(422);
    expect(result.message).toContain("label csi-driver/cluster is missing");
  });

  it("a patch that removes the tenant label while adding the managed-by label is denied", async () => {
    expect((await write("POST", "", withoutUid(dataVolume("pvc-swap", { labels: TENANT2_LABELS })))).status).toBe(201);
    const labels = { "csi-driver/cluster": null, ...MANAGED_BY };
    const result = await write("PATCH", "/pvc-swap", { metadata: { labels } });
    expect(result.status).toBe(422);
  });

  it("a cluster user cannot move a DataVolume from tenant2's labels to tenant1's", async () => {
    expect((await write("POST", "", withoutUid(dataVolume("pvc-move", { labels: TENANT2_LABELS })))).status).toBe(201);
    const result = await write("PATCH", "/pvc-move", { metadata: { labels: TENANT1_LABELS } });
    expect(result.status).toBe(422);
    expect(result.message).toContain(`moves the DataVolume from tenant "tenant2"`);
    expect((c.api.store.get("datavolumes.cdi.kubevirt.io", NS, "pvc-move")?.metadata.labels ?? {})["csi-driver/cluster"]).toBe("tenant2");
  });
});

describe("(4, 5) the built deployment", () => {
  let dist: string;
  let built: Built;
  beforeAll(async () => {
    dist = await copyDist();
    built = await build(dist, fullValues());
  });
  afterAll(() => removeDir(dist));

  it("fails the DataVolume webhook closed, scoped to the policed namespaces, also for `npx pepr deploy`", () => {
    const hook = (built.get("ValidatingWebhookConfiguration", NAME).webhooks as any[])[0];
    expect(hook.failurePolicy).toBe("Fail");
    expect(hook.namespaceSelector.matchExpressions).toEqual([{ key: "kubernetes.io/metadata.name", operator: "In", values: [NS] }]);
    expect((built.get("MutatingWebhookConfiguration", NAME).webhooks as any[])[0].failurePolicy).toBe("Ignore");
    const extras = parseManifest(fs.readFileSync(path.join(dist, `${UUID}-extras.yaml`), "utf8"), "extras");
    const patch = extras.find(o => o.kind === "ValidatingWebhookConfiguration");
    expect((patch?.webhooks as any[])[0]).toMatchObject({ name: `${NAME}.pepr.dev`, failurePolicy: "Fail" });
  });

  it("runs admission and watcher as separate accounts, with no cluster-wide write on VMs, DataVolumes or Secrets", () => {
    const deploymentAccount = (name: string) => (built.get("Deployment", name).spec as any).template.spec.serviceAccountName;
    expect(deploymentAccount(NAME)).toBe(NAME);
    expect(deploymentAccount(`${NAME}-watcher`)).toBe(`${NAME}-watcher`);
    for (const role of built.objects.filter(o => o.kind === "ClusterRole")) {
      const writes = [...permissionsOf(role.rules as PolicyRule[])].filter(
        p => /^(kubevirt\.io|subresources\.kubevirt\.io|cdi\.kubevirt\.io|core\/secrets)/.test(p) && !/:(list|watch)@/.test(p),
      );
      expect(writes, role.metadata.name).toEqual([]);
    }
    const admissionRules = built.objects.filter(o => (o.kind === "Role" || o.kind === "ClusterRole") && (o.metadata.name === NAME || o.metadata.name === `${NAME}-store`));
    expect(admissionRules.flatMap(o => [...permissionsOf(o.rules as PolicyRule[])]).filter(p => p.startsWith("core/secrets"))).toEqual([]);
  });
});

describe("(1) image URLs", () => {
  const policy = imageUrlPolicySchema.parse({ serviceCidrs: ["10.96.0.0/12"] });
  const noDns = async (host: string) => {
    throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: "ENOTFOUND" });
  };
  it.each([
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://metadata.google.internal/",
    "http://kubernetes.default.svc/",
    "http://minio.storage.svc.cluster.local/x.iso",
    "http://10.0.0.1/",
    "http://100.64.0.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://127.1/",
    "http://[::ffff:127.0.0.1]/",
  ])("refuses %s, naming the rule", async url => {
    const result = await checkImageUrl(url, policy, noDns);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.message).toMatch(/^image URL refused \(rule [a-z0-9-]+\): /);
  });
});

describe("(12) node identity steering", () => {
  const settings = (() => {
    const result = nodeIdentitySettings(moduleConfigSchema.parse({ role: "nested", infra: { namespace: "tenant1-vms" }, nodeIdentity: { enabled: true } }));
    if (!result.active) throw new Error(result.reason);
    return result.settings;
  })();
  const nodeObject = (name: string, annotations: Record<string, string> = {}) =>
    toNodeView({ metadata: { name, resourceVersion: "1", annotations }, spec: { providerID: "kubevirt://vm-2" }, status: {} });

  it("a Node naming tenant2-vms in cluster.x-k8s.io/cluster-namespace still maps into infra.namespace", () => {
    const decision = decide(nodeObject("evil", { [CLUSTER_NAMESPACE_ANNOTATION]: "tenant2-vms" }), settings);
    expect(decision.changes.annotations[VM_NAMESPACE_ANNOTATION]).toBe("tenant1-vms");
  });

  it("a second Node claiming a VM is refused in enforce mode", () => {
    const claims = new VmClaims();
    claims.observe(nodeObject("owner", { [VM_NAME_ANNOTATION]: "vm-2", [VM_NAMESPACE_ANNOTATION]: "tenant1-vms" }));
    const decision = decide(nodeObject("intruder"), settings, undefined, claims);
    expect(decision).toMatchObject({ apply: false, verification: { problem: "DuplicateClaim" } });
  });
});

// End to end: the sandbox API server calls the BUILT module's admission server (HTTPS webhook) for DataVolume
// writes, and the built watcher audits existing DataVolumes. Starts from the `npm start` demo config (policy
// enforced in tenant1-vms, required labels csi-driver/cluster=tenant1, CSI volumes = pvc-*).
import { CustomObjectsApi } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { demoConfig } from "../../sandbox/demo";
import { AUDIT_CONFIGMAP } from "../../capabilities/datavolume-policy/summary";
import { startTestCluster, type TestCluster } from "../helpers/cluster";
import { dataVolume, NS, TENANT1_LABELS, TENANT1_SA, TENANT2_LABELS, TENANT2_SA, TWO_TENANTS } from "./policy-helpers";
import { present } from "../helpers/present";

const TOKENS = { tenant1: "tenant1-csi-token", tenant2: "tenant2-csi-token" };
const DV = "datavolumes.cdi.kubevirt.io";

let c: TestCluster;

interface WriteResult {
  status: number;
  body: { message?: string; metadata?: { name?: string } };
  warnings: string;
}

/** A DataVolume CREATE over plain HTTP, as kubectl does it (optionally as a service account, optionally dry-run). */
async function createDataVolume(obj: Record<string, unknown>, opts: { token?: string; dryRun?: boolean } = {}): Promise<WriteResult> {
  const { namespace } = obj.metadata as { namespace: string };
  const url = `${c.api.url}/apis/cdi.kubevirt.io/v1beta1/namespaces/${namespace}/datavolumes${opts.dryRun ? "?dryRun=All" : ""}`;
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  const res = await fetch(url, { method: "POST", headers, body: JSON.stringify(stripUid(obj)) });
  return { status: res.status, body: (await res.json()) as WriteResult["body"], warnings: res.headers.get("warning") ?? "" };
}

function stripUid(obj: Record<string, unknown>): Record<string, unknown> {
  const metadata = { ...(obj.metadata as Record<string, unknown>) };
  delete metadata.uid;
  return { ...obj, metadata };
}

/** Applies a config and waits until the admission pods act on it (probed with dry-run requests). */
async function useConfig(policy: Record<string, unknown>, inForce: () => Promise<boolean>): Promise<void> {
  await c.applyConfig({ ...demoConfig, datavolumePolicy: { ...demoConfig.datavolumePolicy, ...policy } });
  await vi.waitFor(async () => expect(await inForce(), `policy config ${JSON.stringify(policy)} in force`).toBe(true), { timeout: 20_000, interval: 200 });
}

const policyEvents = (namespace: string, name: string) =>
  c.api.store
    .list("events", namespace)
    .filter(e => (e.involvedObject as { name?: string }).name === name && (e.source as { component?: string }).component === "kubevirt-infra");

beforeAll(async () => {
  c = await startTestCluster({
    demo: true,
    tokens: [
      { token: TOKENS.tenant1, user: { username: TENANT1_SA, groups: ["system:serviceaccounts", "system:authenticated"] } },
      { token: TOKENS.tenant2, user: { username: TENANT2_SA, groups: ["system:serviceaccounts", "system:authenticated"] } },
    ],
  });
  // The sandbox authorizes token users by RBAC: the tenants' CSI controllers may write DataVolumes in the infra
  // namespace (as the KubeVirt CSI driver's Role allows), so what stops them below is the policy.
  c.api.store.create("roles.rbac.authorization.k8s.io", {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name: "csi-datavolumes", namespace: NS },
    rules: [{ apiGroups: ["cdi.kubevirt.io"], resources: ["datavolumes"], verbs: ["get", "create", "update", "patch"] }],
  });
  c.api.store.create("rolebindings.rbac.authorization.k8s.io", {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "csi-datavolumes", namespace: NS },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "csi-datavolumes" },
    subjects: [TENANT1_SA, TENANT2_SA].map(username => ({ kind: "User", apiGroup: "rbac.authorization.k8s.io", name: username })),
  });
  // The demo config reaches the admission pods through the Pepr Store: wait until it denies.
  await vi.waitFor(
    async () => expect((await createDataVolume(dataVolume("pvc-probe"), { dryRun: true })).status, "the demo policy to be in force").toBe(422),
    { timeout: 30_000, interval: 100 },
  );
}, 480_000);

afterAll(async () => {
  await c?.stop();
});

describe("datavolume-policy end to end (built module, sandbox API server)", () => {
  it("admits a compliant CSI DataVolume (client-node)", async () => {
    const api = c.kc.makeApiClient(CustomObjectsApi);
    const created = (await api.createNamespacedCustomObject({
      group: "cdi.kubevirt.io",
      version: "v1beta1",
      namespace: NS,
      plural: "datavolumes",
      body: stripUid(dataVolume("pvc-compliant", { labels: TENANT1_LABELS })),
    })) as { metadata: { name: string; labels: Record<string, string> } };
    expect(created.metadata).toMatchObject({ name: "pvc-compliant", labels: TENANT1_LABELS });
    expect(c.api.store.get(DV, NS, "pvc-compliant")).toBeDefined();
  });

  it("denies a CSI DataVolume missing the label, naming the label and the expected value", async () => {
    const result = await createDataVolume(dataVolume("pvc-unlabelled"));
    expect(result.status).toBe(422);
    expect(result.body.message).toContain(`label csi-driver/cluster is missing (expected "tenant1")`);
    expect(result.body.message).toContain("infra.labels");
    expect(c.api.store.get(DV, NS, "pvc-unlabelled")).toBeUndefined();
  });

  it("admits a VM root-disk DataVolume without labels in the same namespace", async () => {
    const result = await createDataVolume(dataVolume("vm-1-rootdisk"));
    expect(result.status).toBe(201);
    expect(result.warnings).toBe("");
  });

  it("denies removing the required label on UPDATE", async () => {
    // A merge patch carries no resourceVersion: the CDI simulator updating the volume's status meanwhile
    // cannot turn this into a 409, as a PUT of a copy read a moment earlier can.
    const labels = Object.fromEntries(Object.keys(c.api.store.get(DV, NS, "pvc-compliant")!.metadata.labels ?? {}).map(k => [k, null]));
    const res = await fetch(`${c.api.url}/apis/cdi.kubevirt.io/v1beta1/namespaces/${NS}/datavolumes/pvc-compliant`, {
      method: "PATCH",
      headers: { "Content-Type": "application/merge-patch+json" },
      body: JSON.stringify({ metadata: { labels } }),
    });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { message: string }).message).toContain("this update removes or changes required labels");
  });

  it("denies a cross-tenant DataVolume and admits the tenant's own", async () => {
    const crossTenant = dataVolume("pvc-cross", { labels: TENANT1_LABELS });
    await useConfig(TWO_TENANTS, async () => (await createDataVolume(crossTenant, { token: TOKENS.tenant2, dryRun: true })).status === 422);
    const denied = await createDataVolume(crossTenant, { token: TOKENS.tenant2 });
    expect(denied.status).toBe(422);
    expect(denied.body.message).toContain(`service account ${TENANT2_SA} is bound to tenant "tenant2"`);
    expect(denied.body.message).toContain(`labelled for tenant "tenant1"`);
    expect((await createDataVolume(dataVolume("pvc-own", { labels: TENANT2_LABELS }), { token: TOKENS.tenant2 })).status).toBe(201);
    expect((await createDataVolume(dataVolume("pvc-own1", { labels: TENANT1_LABELS }), { token: TOKENS.tenant1 })).status).toBe(201);
  });

  it("denies a disallowed storage class", async () => {
    const slow = dataVolume("pvc-slow", { labels: TENANT1_LABELS, storageClassName: "slow" });
    await useConfig(
      { storageClassEnforcement: { allowAll: false, allowDefault: true, allowList: ["fast"] } },
      async () => (await createDataVolume(slow, { dryRun: true })).status === 422,
    );
    const denied = await createDataVolume(slow);
    expect(denied.status).toBe(422);
    expect(denied.body.message).toContain(`storage class "slow" (spec.storage.storageClassName) is not allowed`);
    expect((await createDataVolume(dataVolume("pvc-fast", { labels: TENANT1_LABELS, storageClassName: "fast" }))).status).toBe(201);
  });

  it("warn mode admits with admission warnings", async () => {
    await useConfig({ mode: "warn" }, async () => (await createDataVolume(dataVolume("pvc-probe-warn"), { dryRun: true })).status === 201);
    const result = await createDataVolume(dataVolume("pvc-warned"));
    expect(result.status).toBe(201);
    expect(result.warnings).toContain("[requiredLabels, mode warn] label csi-driver/cluster is missing");
    expect(c.api.store.get(DV, NS, "pvc-warned")).toBeDefined();
  });

  it("reports pre-existing violating DataVolumes within seconds of the watcher's start", async () => {
    await useConfig({ mode: "enforce" }, async () => (await createDataVolume(dataVolume("pvc-probe-enforce"), { dryRun: true })).status === 422);
    await c.stopModule(["watcher"]);
    // Written straight to storage while no watcher runs: DataVolumes that predate the module.
    for (const name of ["pvc-legacy-1", "pvc-legacy-2"]) {
      const obj = stripUid(dataVolume(name, { labels: name.endsWith("2") ? TENANT2_LABELS : {} }));
      c.api.store.create(DV, obj as never);
    }
    const started = Date.now();
    await c.startModule(["watcher"]);
    await expect
      .poll(() => policyEvents(NS, "pvc-legacy-1").length > 0 && policyEvents(NS, "pvc-legacy-2").length > 0, {
        timeout: 10_000,
        message: "audit Events on the pre-existing DataVolumes",
      })
      .toBe(true);
    const elapsedMs = Date.now() - started;
    expect(elapsedMs).toBeLessThan(10_000);
    const [event] = policyEvents(NS, "pvc-legacy-2");
    expect(event).toMatchObject({ type: "Warning", reason: "MissingTenantLabels" });
    expect(event.message).toContain(`label csi-driver/cluster is "tenant2" (expected "tenant1")`);
    // Admitted in warn mode earlier, reported now too; compliant and root-disk volumes are not.
    expect(policyEvents(NS, "pvc-warned")).toHaveLength(1);
    expect(policyEvents(NS, "pvc-compliant")).toEqual([]);
    expect(policyEvents(NS, "vm-1-rootdisk")).toEqual([]);

    const summary = await vi.waitFor(
      () => {
        const text = (c.api.store.get("configmaps", AUDIT_CONFIGMAP.namespace, AUDIT_CONFIGMAP.name)?.data as Record<string, string> | undefined)?.[
          "summary.txt"
        ];
        return present(text?.includes("pvc-legacy-2") && text, "the audit summary ConfigMap");
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(summary).toContain(`Namespace ${NS}:`);
    expect(summary).toContain("pvc-legacy-1");

    // A restarted watcher re-audits (it rewrites the summary) but does not repeat the Events already recorded.
    const generatedAt = () =>
      JSON.parse((c.api.store.get("configmaps", AUDIT_CONFIGMAP.namespace, AUDIT_CONFIGMAP.name)!.data as Record<string, string>)["summary.json"])
        .generatedAt as string;
    const before = generatedAt();
    await c.stopModule(["watcher"]);
    await c.startModule(["watcher"]);
    await expect.poll(generatedAt, { timeout: 10_000, message: "the restarted watcher's audit summary" }).not.toBe(before);
    expect(policyEvents(NS, "pvc-legacy-1")).toHaveLength(1);
    expect(policyEvents(NS, "pvc-legacy-2")).toHaveLength(1);
  });
});

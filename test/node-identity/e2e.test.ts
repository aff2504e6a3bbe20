// End to end: the BUILT module (admission server + watcher as real processes) against the sandbox API
// server, which calls the generated MutatingWebhookConfiguration over HTTPS exactly as kube-apiserver does.
// Nodes are written with @kubernetes/client-node; what comes back is what the cluster stored.
import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { CoreV1Api, type V1Node } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import { startTestCluster, type TestCluster } from "../helpers/cluster";
import { present } from "../helpers/present";

const VM_NS = "tenant1-vms";
const NAME = "csi.kubevirt.io/infra-vm-name";
const NAMESPACE = "csi.kubevirt.io/infra-vm-namespace";
const LEGACY = "csi.kubevirt.io/infraClusterVMName";
const PEPR_MARK = "kubevirt-infra.pepr.dev/node-identity";
const BACKFILL_COUNT = 200;
const uuid = (i: number) => `0c0ffee0-0000-4000-8000-${String(i).padStart(12, "0")}`;

const baseConfig = {
  role: "nested",
  infra: { namespace: VM_NS },
  nodeMapping: [
    { nodeName: "worker-0", vmName: "vm-1" },
    { nodeName: "worker-1", vmName: "vm-2" },
  ],
  nodeIdentity: { enabled: true },
};

let c: TestCluster;
let core: CoreV1Api;
let infra: ApiServer | undefined;
let tmp: string;

function nodeBody(name: string, opts: { annotations?: Record<string, string>; providerID?: string; systemUUID?: string } = {}): V1Node {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name, labels: { "kubernetes.io/hostname": name }, ...(opts.annotations ? { annotations: opts.annotations } : {}) },
    spec: opts.providerID ? { providerID: opts.providerID } : {},
    status: opts.systemUUID ? { nodeInfo: { systemUUID: opts.systemUUID } as never } : undefined,
  };
}

const identityOf = (n: V1Node) => ({
  name: n.metadata?.annotations?.[NAME],
  namespace: n.metadata?.annotations?.[NAMESPACE],
  legacy: n.metadata?.annotations?.[LEGACY],
});

/** A counter from a module process's Prometheus /metrics endpoint (HTTPS, the sandbox CA). */
function metric(port: number, name: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: "127.0.0.1", port, path: "/metrics", ca: c.caPem, servername: "localhost" }, res => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", chunk => (text += chunk));
        res.on("end", () => {
          const line = text.split("\n").find(l => l.startsWith(`${name} `));
          resolve(line ? Number(line.split(" ")[1]) : Number.NaN);
        });
      })
      .on("error", reject);
  });
}

/** Applies the config and waits until the admission process runs it (it arrives through the Pepr Store). */
async function configure(config: Record<string, unknown> | undefined, probeNode: string, expectVm: string | undefined): Promise<void> {
  await c.applyConfig(config);
  await vi.waitFor(
    async () => {
      const created = await core.createNode({ body: nodeBody(probeNode) });
      await core.deleteNode({ name: probeNode });
      expect(created.metadata?.annotations?.[NAME], `the admission server to run the new config (${probeNode} → ${expectVm ?? "unmapped"})`).toBe(expectVm);
    },
    { timeout: 20_000, interval: 100 },
  );
}

const backfillMapping = Array.from({ length: BACKFILL_COUNT }, (_, i) => ({ nodeName: `pre-${i}`, vmName: `vm-pre-${i}` }));

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "node-identity-e2e-"));
  // The module processes start in the first test, after the pre-existing Nodes are in place.
  c = await startTestCluster({
    config: { ...baseConfig, nodeMapping: [...baseConfig.nodeMapping, { nodeName: "probe-0", vmName: "vm-probe" }, ...backfillMapping] },
    processes: [],
  });
  core = c.kc.makeApiClient(CoreV1Api);
  for (let i = 0; i < BACKFILL_COUNT; i++) {
    // Straight into storage: these Nodes predate the module, no webhook saw them.
    c.api.store.create("nodes", nodeBody(`pre-${i}`) as never);
  }
}, 180_000);

afterAll(async () => {
  await c?.stop();
  await infra?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe("node-identity through the built admission server and watcher", () => {
  it(`back-fills ${BACKFILL_COUNT} pre-existing Nodes after the module starts`, async () => {
    const started = Date.now();
    await c.startModule(["admission", "watcher"]);
    const ready = Date.now();
    const allDone = () =>
      Array.from({ length: BACKFILL_COUNT }, (_, i) => i).every(i => c.api.store.get("nodes", undefined, `pre-${i}`)?.metadata.annotations?.[NAME] === `vm-pre-${i}`);
    await expect.poll(allDone, { timeout: 60_000, interval: 50, message: `${BACKFILL_COUNT} Nodes back-filled` }).toBe(true);
    const done = Date.now();
    console.log(
      `node-identity e2e back-fill: ${BACKFILL_COUNT} pre-existing Nodes annotated ${((done - started) / 1000).toFixed(2)} s after the module processes were started ` +
        `(${((done - ready) / 1000).toFixed(2)} s after both answered /healthz)`,
    );
    // The admission server gets the config through the Pepr Store; wait until it runs it.
    await expect
      .poll(
        async () => {
          const created = await core.createNode({ body: nodeBody("probe-0") });
          await core.deleteNode({ name: "probe-0" });
          return created.metadata?.annotations?.[NAME];
        },
        { timeout: 20_000, interval: 100, message: "the admission server to run the config" },
      )
      .toBe("vm-probe");
  });

  it("annotates a Node created without annotations", async () => {
    const created = await core.createNode({ body: nodeBody("worker-0") });
    expect(identityOf(created)).toEqual({ name: "vm-1", namespace: VM_NS, legacy: "vm-1" });
    const stored = await core.readNode({ name: "worker-0" });
    expect(identityOf(stored)).toEqual({ name: "vm-1", namespace: VM_NS, legacy: "vm-1" });
  });

  it("re-annotates on an UPDATE that strips or changes the annotations", async () => {
    const current = await core.readNode({ name: "worker-0" });
    const stripped = structuredClone(current);
    stripped.metadata!.annotations = { [PEPR_MARK]: "succeeded", [NAME]: "vm-hacked", extra: "kept" };
    const updated = await core.replaceNode({ name: "worker-0", body: stripped });
    expect(identityOf(updated)).toEqual({ name: "vm-1", namespace: VM_NS, legacy: "vm-1" });
    expect(updated.metadata?.annotations?.extra).toBe("kept");
  });

  it("writes nothing for a Node that is already correct (no annotation churn)", async () => {
    const current = await core.readNode({ name: "worker-0" });
    const again = await core.replaceNode({ name: "worker-0", body: current });
    // The sandbox, like kube-apiserver, keeps the resourceVersion of a write that changes nothing: the
    // webhook answered without a patch, Pepr's own annotation included.
    expect(again.metadata?.resourceVersion).toBe(current.metadata?.resourceVersion);
  });

  it("maps a Node whose providerID is kubevirt://vm-x to vm-x", async () => {
    const created = await core.createNode({ body: nodeBody("worker-x", { providerID: "kubevirt://vm-x" }) });
    expect(identityOf(created)).toEqual({ name: "vm-x", namespace: VM_NS, legacy: "vm-x" });
  });

  it("leaves an unmapped Node alone", async () => {
    const created = await core.createNode({ body: nodeBody("stranger", { annotations: { mine: "yes" } }) });
    expect(identityOf(created)).toEqual({ name: undefined, namespace: undefined, legacy: undefined });
    expect(created.metadata?.annotations?.mine).toBe("yes");
  });

  it("never blocks Node writes when the config is invalid or deleted", async () => {
    await c.applyConfig({ ...baseConfig, nodeIdentity: { enabled: "maybe" } });
    await c.watcher!.waitForLog(/config refused/, 10_000);
    const whileInvalid = await core.createNode({ body: nodeBody("while-invalid") });
    expect(whileInvalid.metadata?.name).toBe("while-invalid");
    // The last good config stays in force.
    const worker0 = await core.readNode({ name: "worker-0" });
    worker0.metadata!.labels = { ...worker0.metadata!.labels, touched: "1" };
    expect(identityOf(await core.replaceNode({ name: "worker-0", body: worker0 })).name).toBe("vm-1");

    await configure(undefined, "probe-0", undefined);
    const whileDeleted = await core.createNode({ body: nodeBody("while-deleted") });
    expect(identityOf(whileDeleted).name).toBeUndefined();
    const updated = await core.readNode({ name: "while-deleted" });
    updated.metadata!.labels = { ...updated.metadata!.labels, touched: "1" };
    expect((await core.replaceNode({ name: "while-deleted", body: updated })).metadata?.labels?.touched).toBe("1");
  });

  it("with an infra cluster and no nodeMapping, maps Nodes by systemUUID and refuses a contradicting mapping", async () => {
    infra = await startApiServer();
    const infraKubeconfig = path.join(tmp, "infra.kubeconfig");
    await infra.writeKubeconfig(infraKubeconfig);
    infra.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: VM_NS } });
    for (const [name, i] of [["vm-a", 1], ["vm-b", 2]] as const) {
      infra.store.create("virtualmachines.kubevirt.io", {
        apiVersion: "kubevirt.io/v1",
        kind: "VirtualMachine",
        metadata: { name, namespace: VM_NS },
        spec: { template: { spec: { domain: { firmware: { uuid: uuid(i) }, devices: {} } } } },
      });
    }
    await core.createNamespacedSecret({
      namespace: "pepr-system",
      body: { metadata: { name: "infra-kubeconfig" }, stringData: { kubeconfig: fs.readFileSync(infraKubeconfig, "utf8") } },
    });
    // RBAC is enforced and dist/ was built for the default values: grant what the chart renders for
    // infra.kubeconfigSecret.name (get on that Secret) to the module's ServiceAccounts (the manifest's subjects).
    const moduleSubjects = c.api.store.list("rolebindings.rbac.authorization.k8s.io", "pepr-system").flatMap(b => (b.subjects as object[] | undefined) ?? []);
    c.api.store.create("roles.rbac.authorization.k8s.io", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: "infra-kubeconfig-reader", namespace: "pepr-system" },
      rules: [{ apiGroups: [""], resources: ["secrets"], resourceNames: ["infra-kubeconfig"], verbs: ["get"] }],
    });
    c.api.store.create("rolebindings.rbac.authorization.k8s.io", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "infra-kubeconfig-reader", namespace: "pepr-system" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "infra-kubeconfig-reader" },
      subjects: moduleSubjects,
    });
    const infraConfig = { role: "nested", infra: { namespace: VM_NS, kubeconfigSecret: { name: "infra-kubeconfig" } }, nodeIdentity: { enabled: true } };
    await c.applyConfig(infraConfig);

    // The admission server discovers by UUID as soon as the watcher's infra snapshot reaches it via the Store;
    // until then the watcher back-fills. Either way the stored Node ends up mapped.
    await core.createNode({ body: nodeBody("uuid-node", { systemUUID: uuid(1).toUpperCase() }) });
    await expect
      .poll(async () => identityOf(await core.readNode({ name: "uuid-node" })).name, { timeout: 15_000, interval: 100, message: "uuid-node mapped to vm-a by systemUUID" })
      .toBe("vm-a");
    await expect
      .poll(
        async () => {
          await core.createNode({ body: nodeBody("uuid-probe", { systemUUID: uuid(2) }) });
          const created = await core.readNode({ name: "uuid-probe" });
          await core.deleteNode({ name: "uuid-probe" });
          return identityOf(created).name;
        },
        { timeout: 15_000, interval: 100, message: "the admission server to discover by systemUUID at CREATE" },
      )
      .toBe("vm-b");

    // An explicit mapping that contradicts the UUID: reported with an Event, not applied.
    await c.applyConfig({ ...infraConfig, nodeMapping: [{ nodeName: "uuid-node", vmName: "vm-b" }] });
    const event = await vi.waitFor(
      async () =>
        present(
          (await core.listNamespacedEvent({ namespace: "default" })).items.find(e => e.involvedObject.name === "uuid-node" && e.reason === "InfraVMUUIDMismatch"),
          "an InfraVMUUIDMismatch Event on uuid-node",
        ),
      { timeout: 15_000, interval: 100 },
    );
    expect(event?.type).toBe("Warning");
    expect(event?.message).toMatch(/not applied/);
    // An UPDATE through the admission server (once it runs the new config) keeps the verified identity and
    // counts the refused mapping; the watcher counted it too.
    const failures = "pepr_kubevirt_infra_node_identity_verification_failures_total";
    await vi.waitFor(
      async () => {
        const node = await core.readNode({ name: "uuid-node" });
        node.metadata!.labels = { ...node.metadata!.labels, touched: String(Date.now()) };
        const updated = await core.replaceNode({ name: "uuid-node", body: node });
        if (identityOf(updated).name !== "vm-a") throw new Error(`uuid-node changed to ${identityOf(updated).name}`);
        expect(await metric(c.admission!.port, failures), "the admission server to refuse the contradicting mapping").toBeGreaterThan(0);
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(identityOf(await core.readNode({ name: "uuid-node" })).name).toBe("vm-a");
    expect(await metric(c.watcher!.port, "pepr_kubevirt_infra_node_identity_verification_failures_total")).toBeGreaterThan(0);
    expect(await metric(c.watcher!.port, "pepr_kubevirt_infra_node_identity_backfill_patches_total")).toBeGreaterThanOrEqual(BACKFILL_COUNT);
  });

  it("heals Nodes written while the webhook was down (watcher back-fill + discovery)", async () => {
    await c.stopModule(["admission"]);
    // failurePolicy Ignore: with the admission server gone, the write goes through unmutated.
    const created = await core.createNode({ body: nodeBody("written-while-down", { systemUUID: uuid(2) }) });
    expect(created.metadata?.annotations?.[NAME]).toBeUndefined();
    await expect
      .poll(async () => identityOf(await core.readNode({ name: "written-while-down" })).name, { timeout: 10_000, interval: 100, message: "the watcher to back-fill written-while-down" })
      .toBe("vm-b");
  });
});

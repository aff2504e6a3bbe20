// node-identity's watcher side against two sandbox API servers: a nested cluster (Nodes, the config, the
// infra kubeconfig Secret, the PeprStore) and an infra cluster (VirtualMachines, VMIs). The back-fill follows
// the shared Node informer (real list + watch on the nested API server), exactly as in the watcher pod;
// every write goes through the module's gateway over HTTP, and the infra VMs are read with the kubeconfig
// taken from the Secret.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { K8s, kind } from "pepr";
import YAML from "yaml";
import { startApiServer, type ApiServer, type KubeObject } from "../../sandbox/apiserver";
import { applyConfigSource, currentConfig, onConfigChange } from "../../capabilities/config/runtime";
import { MODULE_PEPR_STORE as PEPR_STORE } from "../../capabilities/common/pepr-store";
import { SharedInformers } from "../../capabilities/common/informers";
import { closeSharedKubeClient, sharedKubeClient } from "../../capabilities/common/kube-client";
import { startNodeIdentityWatch } from "../../capabilities/node-identity";
import { NodeAdmission } from "../../capabilities/node-identity/admission";
import { VM_NAME_ANNOTATION, VM_NAMESPACE_ANNOTATION } from "../../capabilities/node-identity/identity";
import { decodeSnapshot } from "../../capabilities/node-identity/infra-index";
import { present } from "../helpers/present";

const NODE_COUNT = 200;
const VM_NS = "tenant1-vms";
const uuid = (i: number) => `6a1f0000-0000-4000-8000-${String(i).padStart(12, "0")}`;

let nested: ApiServer;
let infra: ApiServer;
let stateDir: string;
let informers: SharedInformers | undefined;

function vm(name: string, opts: { uuid?: string; hostname?: string } = {}): KubeObject {
  return {
    apiVersion: "kubevirt.io/v1",
    kind: "VirtualMachine",
    metadata: { name, namespace: VM_NS },
    spec: {
      runStrategy: "Always",
      template: { spec: { ...(opts.hostname ? { hostname: opts.hostname } : {}), domain: { ...(opts.uuid ? { firmware: { uuid: opts.uuid } } : {}), devices: {} } } },
    },
  };
}

function node(name: string, systemUUID = ""): KubeObject {
  return { apiVersion: "v1", kind: "Node", metadata: { name, labels: { "kubernetes.io/hostname": name } }, spec: {}, status: { nodeInfo: { systemUUID } } };
}

function annotations(name: string): Record<string, string> {
  return (nested.store.get("nodes", undefined, name)?.metadata.annotations ?? {}) as Record<string, string>;
}

/**
 * A marker for "nothing happened": a Node (and its VM) created now and identified by the back-fill. The back-fill
 * queues Nodes in the order the watch delivers them and decides from its in-memory infra index, so once the marker,
 * queued later, has been written through the API server, the decisions about the Nodes before it have been made.
 */
async function identifiedAfter(name: string, id: number): Promise<void> {
  infra.store.create("virtualmachines.kubevirt.io", vm(`vm-${name}`, { uuid: uuid(id) }));
  nested.store.create("nodes", node(name, uuid(id)));
  await expect.poll(() => annotations(name)[VM_NAME_ANNOTATION], { timeout: 10_000, message: `${name} identified` }).toBe(`vm-${name}`);
}

/** vi.waitFor's options for awaited values here (expect.poll's come from vitest.config.ts). */
const WAIT = { timeout: 10_000, interval: 25 };

async function configure(config: Record<string, unknown>): Promise<void> {
  const outcome = await applyConfigSource({
    configMap: { metadata: { resourceVersion: String(Date.now()) }, data: { "config.yaml": YAML.stringify(config) } },
  });
  expect(outcome.status).toBe("applied");
}

const baseConfig = {
  role: "nested",
  infra: { namespace: VM_NS, kubeconfigSecret: { name: "infra-kubeconfig" } },
  nodeIdentity: { enabled: true },
};

beforeAll(async () => {
  [nested, infra] = await Promise.all([startApiServer(), startApiServer()]);
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "node-identity-infra-"));
  const nestedKubeconfig = path.join(stateDir, "nested.kubeconfig");
  const infraKubeconfig = path.join(stateDir, "infra.kubeconfig");
  await nested.writeKubeconfig(nestedKubeconfig);
  await infra.writeKubeconfig(infraKubeconfig);
  // The module's client (gateway, informers) talks to the nested cluster, as in the watcher pod.
  process.env.KUBECONFIG = nestedKubeconfig;
  await closeSharedKubeClient();

  nested.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "pepr-system" } });
  nested.store.create("secrets", {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "infra-kubeconfig", namespace: "pepr-system" },
    data: { kubeconfig: Buffer.from(fs.readFileSync(infraKubeconfig, "utf8")).toString("base64") },
  });
  // The PeprStore Pepr creates at start; the watcher publishes the infra snapshot into it.
  nested.store.create("peprstores.pepr.dev", {
    apiVersion: "pepr.dev/v1",
    kind: "PeprStore",
    metadata: { name: PEPR_STORE.name, namespace: PEPR_STORE.namespace },
    data: { __pepr_do_not_delete__: "k-thx-bye" },
  });

  infra.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: VM_NS } });
  for (let i = 0; i < NODE_COUNT; i++) {
    infra.store.create("virtualmachines.kubevirt.io", vm(`vm-${i}`, { uuid: uuid(i) }));
    // Pre-existing Nodes, named unlike their VMs: only the systemUUID links them.
    nested.store.create("nodes", node(`worker-${i}`, i % 2 ? uuid(i) : uuid(i).toUpperCase()));
  }
  infra.store.create("virtualmachines.kubevirt.io", vm("vm-contradicted", { uuid: uuid(9001) }));
  infra.store.create("virtualmachines.kubevirt.io", vm("vm-plain"));
  infra.store.create("virtualmachines.kubevirt.io", vm("vm-plain-2"));
  infra.store.create("virtualmachineinstances.kubevirt.io", {
    apiVersion: "kubevirt.io/v1",
    kind: "VirtualMachineInstance",
    metadata: { name: "vm-host", namespace: VM_NS },
    spec: { hostname: "edge-node", domain: { devices: {} } },
  });
});

afterAll(async () => {
  await informers?.stop();
  // Deleting the ConfigMap deactivates node-identity, which also stops its watch of the infra cluster.
  await applyConfigSource({ configMap: null });
  await closeSharedKubeClient();
  await Promise.all([nested?.close(), infra?.close()]);
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

/** Starts the shared Node informer and the back-fill on it, as the watcher does for role nested. */
async function startNodeWatch(): Promise<void> {
  const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined };
  informers = new SharedInformers(await sharedKubeClient(), { log: quiet, config: { current: currentConfig, onChange: onConfigChange } });
  startNodeIdentityWatch(informers);
}

describe("node-identity watcher with a simulated infra cluster", () => {
  it(`back-fills ${NODE_COUNT} pre-existing Nodes by systemUUID, with no nodeMapping at all`, async () => {
    await configure(baseConfig);
    const started = Date.now();
    await startNodeWatch();
    await expect
      .poll(() => Array.from({ length: NODE_COUNT }, (_, i) => i).filter(i => annotations(`worker-${i}`)[VM_NAME_ANNOTATION] !== `vm-${i}`).length, {
        timeout: 30_000,
        interval: 25,
        message: `Nodes not annotated yet (of ${NODE_COUNT})`,
      })
      .toBe(0);
    const seconds = (Date.now() - started) / 1000;
    console.log(`node-identity back-fill: ${NODE_COUNT} pre-existing Nodes mapped by systemUUID in ${seconds.toFixed(2)} s`);
    expect(annotations("worker-7")[VM_NAMESPACE_ANNOTATION]).toBe(VM_NS);
    expect(seconds).toBeLessThan(30);
  });

  it("publishes the infra VMs for the admission pods, which then discover by systemUUID at CREATE", async () => {
    const published = await vi.waitFor(() => {
      const store = nested.store.get("peprstores.pepr.dev", PEPR_STORE.namespace, PEPR_STORE.name);
      return present((store?.data as Record<string, string> | undefined)?.["node-identity-v2-infra-snapshot"], "the infra snapshot in the PeprStore");
    }, WAIT);
    const snapshot = decodeSnapshot(published);
    expect(snapshot.namespaces).toEqual([VM_NS]);
    expect(snapshot.vms.find(v => v.name === "vm-3")?.firmwareUUID).toBe(uuid(3));
    expect(snapshot.vms.find(v => v.name === "vm-host")?.hostname).toBe("edge-node");

    const admission = new NodeAdmission({ warn: () => undefined });
    admission.acceptSnapshot(published);
    const decision = admission.evaluate(currentConfig(), node("brand-new", uuid(42)))?.decision;
    expect(decision?.resolution).toEqual({ target: { name: "vm-42", namespace: VM_NS }, source: "systemUUID" });
    expect(decision?.changes.annotations[VM_NAME_ANNOTATION]).toBe("vm-42");
  });

  it("maps new Nodes by VMI hostname and by VM name when they carry no UUID", async () => {
    nested.store.create("nodes", node("edge-node"));
    nested.store.create("nodes", node("vm-plain"));
    await expect.poll(() => annotations("edge-node")[VM_NAME_ANNOTATION], { message: "edge-node mapped by hostname" }).toBe("vm-host");
    await expect.poll(() => annotations("vm-plain")[VM_NAME_ANNOTATION], { message: "vm-plain mapped by name" }).toBe("vm-plain");
  });

  it("reports a contradicting or dangling explicit mapping with an Event and does not apply it (enforce)", async () => {
    nested.store.create("nodes", node("node-x", uuid(9001)));
    nested.store.create("nodes", node("node-y"));
    await expect.poll(() => annotations("node-x")[VM_NAME_ANNOTATION], { message: "node-x discovered first" }).toBe("vm-contradicted");
    await configure({
      ...baseConfig,
      nodeMapping: [
        { nodeName: "node-x", vmName: "vm-5" },
        { nodeName: "node-y", vmName: "vm-missing" },
      ],
    });
    const events = await vi.waitFor(() => {
      const list = nested.store.list("events", "default").filter(e => ["node-x", "node-y"].includes((e.involvedObject as { name: string }).name));
      return present(list.length >= 2 && list, "Warning Events on node-x and node-y");
    }, WAIT);
    const byNode = Object.fromEntries(events.map(e => [(e.involvedObject as { name: string }).name, e]));
    expect(byNode["node-x"]).toMatchObject({ type: "Warning", reason: "InfraVMUUIDMismatch", involvedObject: { kind: "Node", name: "node-x" } });
    expect(byNode["node-x"].message).toMatch(/vm-5.*differs.*tenant1-vms\/vm-contradicted.*not applied/);
    expect(byNode["node-y"]).toMatchObject({ type: "Warning", reason: "InfraVMNotFound" });
    // Not applied: node-x keeps its verified identity, node-y stays unannotated.
    await identifiedAfter("marker-mapping", 8101);
    expect(annotations("node-x")[VM_NAME_ANNOTATION]).toBe("vm-contradicted");
    expect(annotations("node-y")[VM_NAME_ANNOTATION]).toBeUndefined();
  });

  it("corrects Nodes within seconds after a mapping change (hot reload)", async () => {
    await configure({ ...baseConfig, nodeMapping: [{ nodeName: "vm-plain", vmName: "vm-plain-2" }] });
    await expect.poll(() => annotations("vm-plain")[VM_NAME_ANNOTATION], { timeout: 5_000, message: "vm-plain remapped to vm-plain-2" }).toBe("vm-plain-2");
  });

  it("undoes hand edits that remove or change the annotations (through the watch)", async () => {
    await K8s(kind.Node, { name: "worker-3" }).Patch([
      { op: "remove", path: "/metadata/annotations/csi.kubevirt.io~1infra-vm-name" },
      { op: "replace", path: "/metadata/annotations/csi.kubevirt.io~1infra-vm-namespace", value: "elsewhere" },
    ]);
    await expect
      .poll(() => [annotations("worker-3")[VM_NAME_ANNOTATION], annotations("worker-3")[VM_NAMESPACE_ANNOTATION]], { timeout: 5_000, message: "worker-3 healed" })
      .toEqual(["vm-3", VM_NS]);
  });

  it("follows infra changes: a VM that appears later is discovered", async () => {
    nested.store.create("nodes", node("late-node", uuid(777)));
    await identifiedAfter("marker-late", 8102);
    expect(annotations("late-node")[VM_NAME_ANNOTATION]).toBeUndefined();
    infra.store.create("virtualmachines.kubevirt.io", vm("vm-late", { uuid: uuid(777) }));
    await expect.poll(() => annotations("late-node")[VM_NAME_ANNOTATION], { message: "late-node discovered after its VM appeared" }).toBe("vm-late");
  });
});

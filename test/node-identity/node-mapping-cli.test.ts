// The dry-run CLI (scripts/node-mapping.ts) against two sandbox API servers: a nested cluster with Nodes,
// the config ConfigMap and the infra kubeconfig Secret, and an infra cluster with the VMs. It must report
// what node-identity would do and write nothing.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import { nodeMappingReport, formatReport } from "../../scripts/node-mapping";

const VM_NS = "tenant1-vms";
const UUID_A = "a0000000-0000-4000-8000-000000000001";
const UUID_B = "a0000000-0000-4000-8000-000000000002";
const UUID_C = "a0000000-0000-4000-8000-000000000003";

let nested: ApiServer;
let infra: ApiServer;
let dir: string;
let nestedKubeconfig: string;

const config = {
  role: "nested",
  infra: { namespace: VM_NS, kubeconfigSecret: { name: "infra-kubeconfig" } },
  nodeMapping: [
    { nodeName: "mapped", vmName: "vm-b" },
    { nodeName: "wrong", vmName: "vm-c" },
  ],
  nodeIdentity: { enabled: false },
};

beforeAll(async () => {
  [nested, infra] = await Promise.all([startApiServer(), startApiServer()]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "node-mapping-cli-"));
  nestedKubeconfig = path.join(dir, "nested");
  const infraKubeconfig = path.join(dir, "infra");
  await nested.writeKubeconfig(nestedKubeconfig);
  await infra.writeKubeconfig(infraKubeconfig);

  nested.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "pepr-system" } });
  nested.store.create("configmaps", {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: "kubevirt-infra-config", namespace: "pepr-system" },
    data: { "config.yaml": YAML.stringify(config) },
  });
  nested.store.create("secrets", {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "infra-kubeconfig", namespace: "pepr-system" },
    data: { kubeconfig: Buffer.from(fs.readFileSync(infraKubeconfig)).toString("base64") },
  });
  const node = (name: string, systemUUID: string, annotations?: Record<string, string>) =>
    nested.store.create("nodes", { apiVersion: "v1", kind: "Node", metadata: { name, ...(annotations ? { annotations } : {}) }, spec: {}, status: { nodeInfo: { systemUUID } } });
  node("mapped", UUID_B);
  node("wrong", UUID_A);
  node("discovered", UUID_A.toUpperCase());
  node("correct", UUID_B, {
    "csi.kubevirt.io/infraClusterVMName": "vm-b",
    "csi.kubevirt.io/infra-vm-name": "vm-b",
    "csi.kubevirt.io/infra-vm-namespace": VM_NS,
  });
  node("stranger", "");

  infra.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: VM_NS } });
  for (const [name, uuid] of [
    ["vm-a", UUID_A],
    ["vm-b", UUID_B],
    ["vm-c", UUID_C],
  ]) {
    infra.store.create("virtualmachines.kubevirt.io", {
      apiVersion: "kubevirt.io/v1",
      kind: "VirtualMachine",
      metadata: { name, namespace: VM_NS },
      spec: { template: { spec: { domain: { firmware: { uuid }, devices: {} } } } },
    });
  }
});

afterAll(async () => {
  await Promise.all([nested?.close(), infra?.close()]);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("node-mapping dry run", () => {
  it("reports source, verification and pending changes per Node, and writes nothing", async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(nestedKubeconfig);
    const rvBefore = nested.store.list("nodes").map(n => n.metadata.resourceVersion);
    const report = await nodeMappingReport(kc);
    const row = (name: string) => report.rows.find(r => r.node === name);

    expect(report.active).toBe(false);
    expect(report.notes[0]).toMatch(/inactive \(nodeIdentity.enabled is false\)/);
    expect(report.infra).toEqual({ configured: true, namespaces: [VM_NS], vms: 3 });
    expect(row("mapped")).toMatchObject({ action: "set", source: "nodeMapping", vm: `${VM_NS}/vm-b`, check: "verified" });
    expect(Object.keys(row("mapped")!.changes!)).toEqual([
      "csi.kubevirt.io/infraClusterVMName",
      "csi.kubevirt.io/infra-vm-name",
      "csi.kubevirt.io/infra-vm-namespace",
    ]);
    expect(row("wrong")).toMatchObject({ action: "refused", check: "UuidMismatch", problem: expect.stringMatching(/tenant1-vms\/vm-a/) });
    expect(row("discovered")).toMatchObject({ action: "set", source: "systemUUID", vm: `${VM_NS}/vm-a` });
    expect(row("correct")).toMatchObject({ action: "unchanged", source: "systemUUID" });
    expect(row("stranger")).toEqual({ node: "stranger", action: "unmapped" });

    const table = formatReport(report);
    expect(table).toMatch(/^NODE\s+SOURCE\s+VM\s+CHECK\s+ACTION/);
    expect(table).toMatch(/5 nodes: 1 correct, 2 to set, 1 refused, 1 unmapped/);
    expect(nested.store.list("nodes").map(n => n.metadata.resourceVersion)).toEqual(rvBefore);
  });

  it("previews a local config file, and reports an unreachable infra cluster instead of failing", async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(nestedKubeconfig);
    const preview = YAML.stringify({
      ...config,
      infra: { namespace: VM_NS, kubeconfigSecret: { name: "missing-secret" } },
      nodeIdentity: { enabled: true, setProviderID: true },
    });
    const report = await nodeMappingReport(kc, { configYaml: preview });
    expect(report.active).toBe(true);
    expect(report.infra.error).toMatch(/missing-secret not found/);
    expect(report.rows.find(r => r.node === "wrong")).toMatchObject({ action: "set", check: expect.stringMatching(/^unverified/) });
    expect(report.rows.find(r => r.node === "mapped")?.changes?.["spec.providerID"]).toBe("kubevirt://vm-b");
  });

  it("runs as a command with KUBECONFIG and prints JSON", async () => {
    const tsx = path.resolve(__dirname, "../../node_modules/.bin/tsx");
    const script = path.resolve(__dirname, "../../scripts/node-mapping.ts");
    const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const child = spawn(tsx, [script, "--json"], { env: { ...process.env, KUBECONFIG: nestedKubeconfig }, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", chunk => (out += chunk));
      child.on("error", reject);
      child.on("exit", exit => resolve({ code: exit, stdout: out }));
    });
    expect(code).toBe(0);
    const report = JSON.parse(stdout);
    expect(report.rows).toHaveLength(5);
  });
});

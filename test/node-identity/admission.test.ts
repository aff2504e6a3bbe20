// The registered Node mutate callback, reached through the capability's bindings with real AdmissionRequests
// wrapped by Pepr's PeprMutateRequest; configuration goes through the real config runtime.
import { describe, expect, it } from "vitest";
import { PeprMutateRequest, type a } from "pepr";
import YAML from "yaml";
import { applyConfigSource, currentConfig } from "../../capabilities/config/runtime";
import { NodeIdentity } from "../../capabilities/node-identity";
import { NodeAdmission } from "../../capabilities/node-identity/admission";
import {
  CLUSTER_NAMESPACE_ANNOTATION,
  VM_NAMESPACE_ANNOTATION,
  VM_NAME_ANNOTATION,
  VM_NAME_LEGACY_ANNOTATION,
} from "../../capabilities/node-identity/identity";
import { encodeSnapshot } from "../../capabilities/node-identity/infra-index";

const mutate = NodeIdentity.bindings.find(b => b.isMutate && b.kind.kind === "Node")!.mutateCallback!;

type NodeObject = {
  apiVersion: string;
  kind: string;
  metadata: { name?: string; uid?: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  spec?: { providerID?: string; unschedulable?: boolean };
  status?: { nodeInfo?: { systemUUID?: string } };
};

function nodeObject(name: string, opts: { annotations?: Record<string, string>; providerID?: string; systemUUID?: string } = {}): NodeObject {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name, uid: `uid-${name}`, labels: { "kubernetes.io/hostname": name }, ...(opts.annotations ? { annotations: opts.annotations } : {}) },
    spec: opts.providerID ? { providerID: opts.providerID } : {},
    status: { nodeInfo: { systemUUID: opts.systemUUID ?? "" } },
  };
}

/** Runs the registered callback the way Pepr's mutate processor does and returns the resulting object. */
async function admit(operation: "CREATE" | "UPDATE", object: NodeObject, oldObject?: NodeObject): Promise<NodeObject> {
  const request = new PeprMutateRequest({
    uid: "req-1",
    kind: { group: "", version: "v1", kind: "Node" },
    resource: { group: "", version: "v1", resource: "nodes" },
    name: object.metadata.name ?? "",
    operation,
    userInfo: { username: "system:node:worker", groups: ["system:nodes"] },
    object,
    oldObject,
  } as never);
  await mutate(request as unknown as PeprMutateRequest<a.Node>);
  return request.Raw as unknown as NodeObject;
}

async function configure(config: Record<string, unknown>): Promise<void> {
  const outcome = await applyConfigSource({ configMap: { metadata: { resourceVersion: String(Date.now()) }, data: { "config.yaml": YAML.stringify(config) } } });
  expect(["applied", "unchanged"]).toContain(outcome.status);
}

const identity = (vm: string) => ({ [VM_NAME_LEGACY_ANNOTATION]: vm, [VM_NAME_ANNOTATION]: vm, [VM_NAMESPACE_ANNOTATION]: "tenant1-vms" });

describe("Node mutate callback", () => {
  // Must run first: the process starts without any configuration.
  it("approves Nodes unchanged while no configuration is loaded", async () => {
    expect(currentConfig()).toBeUndefined();
    const node = nodeObject("worker-0");
    expect(await admit("CREATE", node)).toEqual(node);
  });

  it("annotates a Node created without annotations", async () => {
    await configure({
      role: "nested",
      infra: { namespace: "tenant1-vms" },
      nodeMapping: [{ nodeName: "worker-0", vmName: "vm-1" }],
      nodeIdentity: { enabled: true },
    });
    const out = await admit("CREATE", nodeObject("worker-0"));
    expect(out.metadata.annotations).toEqual(identity("vm-1"));
    expect(out.spec?.providerID).toBeUndefined();
    expect(out.metadata.labels).toEqual({ "kubernetes.io/hostname": "worker-0" });
  });

  it("re-applies the annotations on an UPDATE that strips or changes them", async () => {
    const old = nodeObject("worker-0", { annotations: { ...identity("vm-1"), other: "kept" } });
    const stripped = nodeObject("worker-0", { annotations: { other: "kept", [VM_NAME_ANNOTATION]: "vm-hacked" } });
    const out = await admit("UPDATE", stripped, old);
    expect(out.metadata.annotations).toEqual({ ...identity("vm-1"), other: "kept" });
  });

  it("leaves a correct Node exactly as it is (no patch)", async () => {
    const correct = nodeObject("worker-0", { annotations: identity("vm-1") });
    expect(await admit("UPDATE", structuredClone(correct), correct)).toEqual(correct);
  });

  it("maps a Node whose providerID is kubevirt://vm-x to vm-x", async () => {
    const out = await admit("CREATE", nodeObject("worker-9", { providerID: "kubevirt://vm-x" }));
    expect(out.metadata.annotations).toEqual(identity("vm-x"));
  });

  it("leaves an unmapped Node alone", async () => {
    const node = nodeObject("stranger");
    expect(await admit("CREATE", node)).toEqual(node);
  });

  it("sets providerID and the cluster-namespace annotation only when configured and empty", async () => {
    await configure({
      role: "nested",
      infra: { namespace: "tenant1-vms" },
      nodeMapping: [
        { nodeName: "worker-0", vmName: "vm-1" },
        { nodeName: "worker-1", vmName: "vm-2" },
      ],
      nodeIdentity: { enabled: true, setProviderID: true },
    });
    const out = await admit("CREATE", nodeObject("worker-0"));
    expect(out.spec?.providerID).toBe("kubevirt://vm-1");
    expect(out.metadata.annotations?.[CLUSTER_NAMESPACE_ANNOTATION]).toBe("tenant1-vms");
    // A providerID naming another VM can never be changed: reported, nothing applied (enforce).
    const conflicting = nodeObject("worker-1", { providerID: "kubevirt://vm-9" });
    expect(await admit("UPDATE", structuredClone(conflicting), conflicting)).toEqual(conflicting);
  });

  it("keeps the last good configuration when an invalid one arrives, and never rejects", async () => {
    const outcome = await applyConfigSource({ configMap: { metadata: { resourceVersion: "bad" }, data: { "config.yaml": "nodeIdentity: {enabled: maybe}" } } });
    expect(outcome.status).toBe("refused");
    const out = await admit("CREATE", nodeObject("worker-0"));
    expect(out.metadata.annotations?.[VM_NAME_ANNOTATION]).toBe("vm-1");
  });

  it("approves malformed Nodes unchanged instead of throwing", async () => {
    const nameless = { apiVersion: "v1", kind: "Node", metadata: { annotations: { a: "b" } } } as NodeObject;
    expect(await admit("CREATE", structuredClone(nameless))).toEqual(nameless);
    const badAnnotations = { ...nodeObject("worker-0"), metadata: { name: "worker-0", annotations: { a: 42 as unknown as string } } };
    expect(await admit("CREATE", structuredClone(badAnnotations))).toEqual(badAnnotations);
  });

  it("becomes inert again when the ConfigMap is deleted", async () => {
    const outcome = await applyConfigSource({ configMap: null });
    expect(outcome.status).toBe("applied");
    const node = nodeObject("worker-0");
    expect(await admit("CREATE", node)).toEqual(node);
  });
});

describe("NodeAdmission with the watcher's infra snapshot", () => {
  const config = (extra: Record<string, unknown>) => ({
    role: "nested",
    infra: { namespace: "tenant1-vms", kubeconfigSecret: { name: "infra-kubeconfig" } },
    nodeIdentity: { enabled: true },
    ...extra,
  });
  const snapshot = encodeSnapshot({
    namespaces: ["tenant1-vms"],
    syncedAt: "2025-01-01T00:00:00Z",
    vms: [
      { namespace: "tenant1-vms", name: "vm-a", firmwareUUID: "aaaaaaaa-0000-0000-0000-000000000001" },
      { namespace: "tenant1-vms", name: "vm-b", firmwareUUID: "aaaaaaaa-0000-0000-0000-000000000002" },
    ],
  });

  it("discovers by systemUUID and refuses a contradicting mapping at CREATE", async () => {
    const { moduleConfigSchema } = await import("../../capabilities/config/schema");
    const warnings: string[] = [];
    const admission = new NodeAdmission({ warn: (_o, msg) => warnings.push(msg) });
    admission.acceptSnapshot(snapshot);
    const discovering = moduleConfigSchema.parse(config({}));
    const found = admission.evaluate(discovering, nodeObject("node-a", { systemUUID: "AAAAAAAA-0000-0000-0000-000000000001" }));
    expect(found?.decision.resolution).toEqual({ target: { name: "vm-a", namespace: "tenant1-vms" }, source: "systemUUID" });

    const contradicting = moduleConfigSchema.parse(config({ nodeMapping: [{ nodeName: "node-a", vmName: "vm-b" }] }));
    const refused = admission.evaluate(contradicting, nodeObject("node-a", { systemUUID: "aaaaaaaa-0000-0000-0000-000000000001" }));
    expect(refused?.decision).toMatchObject({ apply: false, verification: { outcome: "failed", problem: "UuidMismatch" } });

    // A malformed Store value is ignored (with a warning) rather than trusted.
    admission.acceptSnapshot("{garbage");
    expect(warnings).toHaveLength(1);
    expect(admission.evaluate(discovering, nodeObject("node-a", { systemUUID: "aaaaaaaa-0000-0000-0000-000000000001" }))?.decision.resolution).toBeUndefined();
  });
});

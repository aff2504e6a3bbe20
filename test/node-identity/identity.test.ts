// Patch computation: which fields change, idempotence, providerID only from empty, and that the JSON patch
// the watcher sends does exactly that on a real JSON-patch implementation (the sandbox API server's).
import { describe, expect, it } from "vitest";
import {
  CLUSTER_NAMESPACE_ANNOTATION,
  VM_NAMESPACE_ANNOTATION,
  VM_NAME_ANNOTATION,
  VM_NAME_LEGACY_ANNOTATION,
  identityChanges,
  hasChanges,
  toJsonPatch,
  toNodeView,
  vmNameFromProviderID,
} from "../../capabilities/node-identity/identity";
import { applyJsonPatch, type Json } from "../../sandbox/apiserver/patch";

const target = { name: "vm-1", namespace: "tenant1-vms" };
const identityAnnotations = {
  [VM_NAME_LEGACY_ANNOTATION]: "vm-1",
  [VM_NAME_ANNOTATION]: "vm-1",
  [VM_NAMESPACE_ANNOTATION]: "tenant1-vms",
};

function nodeObject(opts: { annotations?: Record<string, string>; providerID?: string; systemUUID?: string; rv?: string; spec?: boolean } = {}) {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: "worker-0", uid: "u-1", resourceVersion: opts.rv ?? "7", ...(opts.annotations ? { annotations: opts.annotations } : {}) },
    ...(opts.spec === false ? {} : { spec: opts.providerID ? { providerID: opts.providerID } : {} }),
    status: { nodeInfo: { systemUUID: opts.systemUUID ?? "" } },
  };
}

describe("toNodeView", () => {
  it("reads name, annotations, providerID and systemUUID, treating empty strings as absent", () => {
    const view = toNodeView(nodeObject({ annotations: { a: "b" }, providerID: "kubevirt://vm-1", systemUUID: "ABC" }));
    expect(view).toEqual({
      name: "worker-0",
      uid: "u-1",
      resourceVersion: "7",
      annotations: { a: "b" },
      providerID: "kubevirt://vm-1",
      systemUUID: "ABC",
      hasSpec: true,
    });
    expect(toNodeView(nodeObject()).systemUUID).toBeUndefined();
    expect(toNodeView({ metadata: { name: "n" } })).toMatchObject({ annotations: {}, hasSpec: false });
  });

  it("rejects objects without a name or with non-string annotations", () => {
    expect(() => toNodeView({ metadata: {} })).toThrow();
    expect(() => toNodeView({ metadata: { name: "n", annotations: { a: 1 } } })).toThrow();
    expect(() => toNodeView("node")).toThrow();
  });
});

describe("vmNameFromProviderID", () => {
  it("takes the name of kubevirt:// providerIDs only", () => {
    expect(vmNameFromProviderID("kubevirt://vm-x")).toBe("vm-x");
    expect(vmNameFromProviderID("kubevirt://")).toBeUndefined();
    expect(vmNameFromProviderID("kubevirt://ns/vm")).toBeUndefined();
    expect(vmNameFromProviderID("aws:///eu-west-1a/i-123")).toBeUndefined();
    expect(vmNameFromProviderID(undefined)).toBeUndefined();
  });
});

describe("identityChanges", () => {
  it("sets the three annotations on a bare Node", () => {
    const changes = identityChanges(toNodeView(nodeObject()), target, { setProviderID: false });
    expect(changes).toEqual({ annotations: identityAnnotations });
  });

  it("is empty for a Node that is already correct (no churn)", () => {
    const node = toNodeView(nodeObject({ annotations: { ...identityAnnotations, unrelated: "x" } }));
    const changes = identityChanges(node, target, { setProviderID: false });
    expect(hasChanges(changes)).toBe(false);
  });

  it("changes only the annotations that differ", () => {
    const node = toNodeView(nodeObject({ annotations: { ...identityAnnotations, [VM_NAME_ANNOTATION]: "vm-9" } }));
    expect(identityChanges(node, target, { setProviderID: false })).toEqual({ annotations: { [VM_NAME_ANNOTATION]: "vm-1" } });
  });

  it("sets providerID and the cluster-namespace annotation only when configured and the providerID is empty", () => {
    const bare = toNodeView(nodeObject());
    expect(identityChanges(bare, target, { setProviderID: true })).toEqual({
      annotations: { ...identityAnnotations, [CLUSTER_NAMESPACE_ANNOTATION]: "tenant1-vms" },
      providerID: "kubevirt://vm-1",
    });
    // Already set to another provider's ID: it can never be changed, and the namespace annotation would lie.
    const foreign = toNodeView(nodeObject({ providerID: "aws:///zone/i-1" }));
    expect(identityChanges(foreign, target, { setProviderID: true })).toEqual({ annotations: identityAnnotations });
    // Already kubevirt://vm-1: only the missing namespace annotation.
    const own = toNodeView(nodeObject({ providerID: "kubevirt://vm-1", annotations: identityAnnotations }));
    expect(identityChanges(own, target, { setProviderID: true })).toEqual({
      annotations: { [CLUSTER_NAMESPACE_ANNOTATION]: "tenant1-vms" },
    });
    // Not configured: providerID untouched.
    expect(identityChanges(bare, target, { setProviderID: false }).providerID).toBeUndefined();
  });

  it("is idempotent: applying the changes yields a Node with no further changes", () => {
    for (const setProviderID of [false, true]) {
      const obj = nodeObject({ annotations: { keep: "me" } }) as unknown as Json;
      const node = toNodeView(obj);
      const patched = applyJsonPatch(structuredClone(obj), toJsonPatch(node, identityChanges(node, target, { setProviderID })));
      expect(hasChanges(identityChanges(toNodeView(patched), target, { setProviderID }))).toBe(false);
    }
  });
});

describe("toJsonPatch", () => {
  it("adds escaped annotation keys next to existing ones and keeps the others", () => {
    const obj = nodeObject({ annotations: { keep: "me" } });
    const node = toNodeView(obj);
    const patch = toJsonPatch(node, identityChanges(node, target, { setProviderID: true }));
    expect(patch).toContainEqual({ op: "add", path: "/metadata/annotations/csi.kubevirt.io~1infra-vm-name", value: "vm-1" });
    const patched = applyJsonPatch(structuredClone(obj) as unknown as Json, patch) as any;
    expect(patched.metadata.annotations).toEqual({
      keep: "me",
      ...identityAnnotations,
      [CLUSTER_NAMESPACE_ANNOTATION]: "tenant1-vms",
    });
    expect(patched.spec.providerID).toBe("kubevirt://vm-1");
  });

  it("creates the annotations map and the spec when the Node has none", () => {
    const obj = nodeObject({ spec: false });
    const node = toNodeView(obj);
    const patched = applyJsonPatch(
      structuredClone(obj) as unknown as Json,
      toJsonPatch(node, identityChanges(node, target, { setProviderID: true })),
    ) as any;
    expect(patched.metadata.annotations[VM_NAME_ANNOTATION]).toBe("vm-1");
    expect(patched.spec).toEqual({ providerID: "kubevirt://vm-1" });
  });

  it("does not apply to a Node that changed since it was read", () => {
    const seen = toNodeView(nodeObject({ rv: "7" }));
    const patch = toJsonPatch(seen, identityChanges(seen, target, { setProviderID: true }));
    const current = nodeObject({ rv: "8", providerID: "kubevirt://other" }) as unknown as Json;
    expect(() => applyJsonPatch(current, patch)).toThrow(expect.objectContaining({ code: 422 }));
  });
});

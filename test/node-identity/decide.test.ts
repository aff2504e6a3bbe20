// Mapping resolution order, discovery, verification outcomes and the enforce/report decision, with
// configurations parsed by the real module config schema.
import { describe, expect, it } from "vitest";
import { moduleConfigSchema } from "../../capabilities/config/schema";
import { decide, resolveMapping, verifyMapping, VmClaims } from "../../capabilities/node-identity/decide";
import { CLUSTER_NAMESPACE_ANNOTATION, toNodeView, VM_NAME_ANNOTATION } from "../../capabilities/node-identity/identity";
import { VmIndex, decodeSnapshot, encodeSnapshot, sameContent, type InfraVm } from "../../capabilities/node-identity/infra-index";
import { nodeIdentitySettings, type NodeIdentitySettings } from "../../capabilities/node-identity/settings";

function settingsFor(config: Record<string, unknown>): NodeIdentitySettings {
  const result = nodeIdentitySettings(moduleConfigSchema.parse(config));
  if (!result.active) throw new Error(result.reason);
  return result.settings;
}

const base = { role: "nested", infra: { namespace: "tenant1-vms" }, nodeIdentity: { enabled: true } };

function node(name: string, opts: { providerID?: string; systemUUID?: string; annotations?: Record<string, string> } = {}) {
  return toNodeView({
    metadata: { name, resourceVersion: "1", annotations: opts.annotations ?? {} },
    spec: opts.providerID ? { providerID: opts.providerID } : {},
    status: { nodeInfo: { systemUUID: opts.systemUUID ?? "" } },
  });
}

function index(vms: InfraVm[], namespaces = ["tenant1-vms"]): VmIndex {
  return new VmIndex({ namespaces, vms, syncedAt: "2025-01-01T00:00:00Z" });
}

const UUID_A = "11111111-1111-1111-1111-111111111111";
const UUID_B = "22222222-2222-2222-2222-222222222222";

describe("nodeIdentitySettings", () => {
  it("is inactive without config, when disabled, and in an infra-only cluster", () => {
    expect(nodeIdentitySettings(undefined)).toMatchObject({ active: false });
    expect(nodeIdentitySettings(moduleConfigSchema.parse({}))).toMatchObject({ active: false, reason: /enabled/ });
    expect(nodeIdentitySettings(moduleConfigSchema.parse({ ...base, role: "infra" }))).toMatchObject({ active: false, reason: /infra/ });
    expect(nodeIdentitySettings(moduleConfigSchema.parse({ ...base, role: "both" }))).toMatchObject({ active: true });
  });

  it("indexes nodeMapping by node name, defaulting the namespace, and lists the namespaces to mirror", () => {
    const settings = settingsFor({
      ...base,
      infra: { namespace: "tenant1-vms", kubeconfigSecret: { name: "infra-kubeconfig" } },
      nodeMapping: [
        { nodeName: "worker-0", vmName: "vm-1" },
        { nodeName: "worker-1", vmName: "vm-7", vmNamespace: "other-vms" },
      ],
    });
    expect(settings.explicit.get("worker-0")).toEqual({ name: "vm-1", namespace: "tenant1-vms" });
    expect(settings.explicit.get("worker-1")).toEqual({ name: "vm-7", namespace: "other-vms" });
    expect(settings.infraNamespaces).toEqual(["tenant1-vms", "other-vms"]);
    expect(settings.infraKubeconfig).toEqual({ name: "infra-kubeconfig", key: "kubeconfig" });
    expect(settings.mode).toBe("enforce");
  });
});

describe("resolveMapping: first match wins", () => {
  const vms = index([
    { namespace: "tenant1-vms", name: "vm-uuid", firmwareUUID: UUID_A },
    { namespace: "tenant1-vms", name: "vm-host", hostname: "worker-h" },
    { namespace: "tenant1-vms", name: "worker-n" },
  ]);
  const settings = settingsFor({ ...base, nodeIdentity: { enabled: true, identityMapping: true }, nodeMapping: [{ nodeName: "worker-0", vmName: "vm-1" }] });

  it("explicit nodeMapping beats everything", () => {
    const n = node("worker-0", { providerID: "kubevirt://vm-p", systemUUID: UUID_A });
    expect(resolveMapping(n, settings, vms)).toEqual({ target: { name: "vm-1", namespace: "tenant1-vms" }, source: "nodeMapping" });
  });

  it("then a kubevirt:// providerID, in infra.namespace (or a configured namespace the cluster-namespace annotation names)", () => {
    expect(resolveMapping(node("w", { providerID: "kubevirt://vm-x", systemUUID: UUID_A }), settings, vms)).toEqual({
      target: { name: "vm-x", namespace: "tenant1-vms" },
      source: "providerID",
    });
    // Issue #12 (12): whoever creates the Node sets the annotation; another tenant's namespace is not followed.
    const steered = node("w", { providerID: "kubevirt://vm-2", annotations: { [CLUSTER_NAMESPACE_ANNOTATION]: "tenant2-vms" } });
    expect(resolveMapping(steered, settings)?.target).toEqual({ name: "vm-2", namespace: "tenant1-vms" });
    // A namespace the configuration names (nodeMapping) is an allowed value.
    const multi = settingsFor({ ...base, nodeMapping: [{ nodeName: "other", vmName: "vm-o", vmNamespace: "capi-ns" }] });
    const annotated = node("w", { providerID: "kubevirt://vm-x", annotations: { [CLUSTER_NAMESPACE_ANNOTATION]: "capi-ns" } });
    expect(resolveMapping(annotated, multi)?.target).toEqual({ name: "vm-x", namespace: "capi-ns" });
    // Without infra.namespace, an unlisted annotation gives no providerID mapping at all.
    const noDefault = settingsFor({ role: "nested", nodeIdentity: { enabled: true }, nodeMapping: [{ nodeName: "x", vmName: "vm-x", vmNamespace: "vms-a" }] });
    expect(resolveMapping(steered, noDefault)).toBeUndefined();
    // Another provider's ID is not an identity source.
    expect(resolveMapping(node("w", { providerID: "aws:///z/i-1" }), settings, vms)?.source).toBe("identity");
  });

  it("then discovery: systemUUID (any case), then hostname, then VM name", () => {
    expect(resolveMapping(node("w", { systemUUID: UUID_A.toUpperCase() }), settings, vms)).toEqual({
      target: { name: "vm-uuid", namespace: "tenant1-vms" },
      source: "systemUUID",
    });
    expect(resolveMapping(node("worker-h"), settings, vms)).toEqual({ target: { name: "vm-host", namespace: "tenant1-vms" }, source: "hostname" });
    expect(resolveMapping(node("worker-n"), settings, vms)).toEqual({ target: { name: "worker-n", namespace: "tenant1-vms" }, source: "vmName" });
  });

  it("never discovers by name a VM whose UUID contradicts the Node", () => {
    const contradicting = index([{ namespace: "tenant1-vms", name: "worker-n", firmwareUUID: UUID_B }]);
    const noIdentity = settingsFor(base);
    expect(resolveMapping(node("worker-n", { systemUUID: UUID_A }), noIdentity, contradicting)).toBeUndefined();
  });

  it("prefers infra.namespace when a name exists in several namespaces, and gives up when still ambiguous", () => {
    const twoNamespaces = index(
      [
        { namespace: "tenant1-vms", name: "worker-n" },
        { namespace: "other", name: "worker-n" },
        { namespace: "a", name: "worker-z" },
        { namespace: "b", name: "worker-z" },
      ],
      ["tenant1-vms", "other", "a", "b"],
    );
    const noIdentity = settingsFor(base);
    expect(resolveMapping(node("worker-n"), noIdentity, twoNamespaces)?.target).toEqual({ name: "worker-n", namespace: "tenant1-vms" });
    expect(resolveMapping(node("worker-z"), noIdentity, twoNamespaces)).toBeUndefined();
  });

  it("then identity, only when enabled; otherwise the Node is unmapped", () => {
    expect(resolveMapping(node("lonely"), settings)).toEqual({ target: { name: "lonely", namespace: "tenant1-vms" }, source: "identity" });
    expect(resolveMapping(node("lonely"), settingsFor(base))).toBeUndefined();
  });
});

describe("verifyMapping", () => {
  const vms = index([
    { namespace: "tenant1-vms", name: "vm-1", firmwareUUID: UUID_A },
    { namespace: "tenant1-vms", name: "vm-2", firmwareUUID: UUID_B },
    { namespace: "tenant1-vms", name: "vm-3" },
  ]);
  const mapped = (name: string) => ({ target: { name, namespace: "tenant1-vms" }, source: "nodeMapping" as const });

  it("verifies an existing VM whose firmware UUID matches (or is unknown on either side)", () => {
    expect(verifyMapping(node("w", { systemUUID: UUID_A }), mapped("vm-1"), vms)).toEqual({ outcome: "verified" });
    expect(verifyMapping(node("w"), mapped("vm-1"), vms)).toEqual({ outcome: "verified" });
    expect(verifyMapping(node("w", { systemUUID: UUID_A }), mapped("vm-3"), vms)).toEqual({ outcome: "verified" });
  });

  it("fails for a VM that does not exist", () => {
    expect(verifyMapping(node("w"), mapped("vm-404"), vms)).toMatchObject({ outcome: "failed", problem: "VmNotFound", message: /vm-404.*does not exist/ });
  });

  it("fails for a UUID contradiction and names the VM that has the Node's UUID", () => {
    expect(verifyMapping(node("w", { systemUUID: UUID_A }), mapped("vm-2"), vms)).toMatchObject({
      outcome: "failed",
      problem: "UuidMismatch",
      message: expect.stringMatching(/vm-2.*differs.*tenant1-vms\/vm-1/),
    });
  });

  it("is unverified without infra data or outside the mirrored namespaces", () => {
    expect(verifyMapping(node("w"), mapped("vm-404"), undefined)).toMatchObject({ outcome: "unverified" });
    const elsewhere = { target: { name: "vm-1", namespace: "other" }, source: "nodeMapping" as const };
    expect(verifyMapping(node("w"), elsewhere, vms)).toMatchObject({ outcome: "unverified", reason: /other/ });
  });

  it("fails when the Node's providerID names another VM, even without infra data", () => {
    expect(verifyMapping(node("w", { providerID: "kubevirt://vm-2" }), mapped("vm-1"), undefined)).toMatchObject({
      outcome: "failed",
      problem: "ProviderIDConflict",
    });
  });
});

describe("decide", () => {
  const vms = index([
    { namespace: "tenant1-vms", name: "vm-1", firmwareUUID: UUID_A },
    { namespace: "tenant1-vms", name: "vm-2", firmwareUUID: UUID_B },
  ]);
  const wrongMapping = { ...base, nodeMapping: [{ nodeName: "worker-0", vmName: "vm-2" }] };

  it("enforce: a contradicted mapping is not applied (and nothing else is applied instead)", () => {
    const decision = decide(node("worker-0", { systemUUID: UUID_A }), settingsFor(wrongMapping), vms);
    expect(decision).toMatchObject({ apply: false, verification: { outcome: "failed", problem: "UuidMismatch" }, changes: { annotations: {} } });
  });

  it("report: a contradicted mapping is applied and still reported", () => {
    const settings = settingsFor({ ...wrongMapping, nodeIdentity: { enabled: true, mode: "report" } });
    const decision = decide(node("worker-0", { systemUUID: UUID_A }), settings, vms);
    expect(decision.apply).toBe(true);
    expect(decision.verification).toMatchObject({ outcome: "failed" });
    expect(decision.changes.annotations[VM_NAME_ANNOTATION]).toBe("vm-2");
  });

  it("applies discovered and unverifiable mappings; leaves unmapped Nodes alone", () => {
    expect(decide(node("worker-9", { systemUUID: UUID_B }), settingsFor(base), vms).changes.annotations[VM_NAME_ANNOTATION]).toBe("vm-2");
    expect(decide(node("worker-0"), settingsFor(wrongMapping), undefined)).toMatchObject({ apply: true, verification: { outcome: "unverified" } });
    expect(decide(node("stranger"), settingsFor(base), vms)).toEqual({ apply: false, changes: { annotations: {} } });
  });
});

describe("two Nodes claiming one VM", () => {
  const settings = settingsFor(base);
  const claimedBy = (name: string) =>
    node(name, { providerID: "kubevirt://vm-2", annotations: { [VM_NAME_ANNOTATION]: "vm-2", "csi.kubevirt.io/infra-vm-namespace": "tenant1-vms" } });

  it("refuses the second claim in enforce mode, naming the Node that holds the VM", () => {
    const claims = new VmClaims();
    claims.observe(claimedBy("worker-a"));
    const decision = decide(node("worker-b", { providerID: "kubevirt://vm-2" }), settings, undefined, claims);
    expect(decision).toMatchObject({ apply: false, changes: { annotations: {} }, verification: { outcome: "failed", problem: "DuplicateClaim" } });
    expect(decision.verification?.outcome === "failed" && decision.verification.message).toContain("which node worker-a already claims");
    // The holder itself is fine, and a claim ends with its Node.
    expect(decide(claimedBy("worker-a"), settings, undefined, claims).verification).toEqual({ outcome: "unverified", reason: expect.any(String) });
    claims.forget("worker-a");
    expect(decide(node("worker-b", { providerID: "kubevirt://vm-2" }), settings, undefined, claims).apply).toBe(true);
  });

  it("reports but applies in report mode, and reports both Nodes when both already carry the VM", () => {
    const claims = new VmClaims();
    claims.observe(claimedBy("worker-a"));
    claims.observe(claimedBy("worker-b"));
    const report = settingsFor({ ...base, nodeIdentity: { enabled: true, mode: "report" } });
    expect(decide(node("worker-c", { providerID: "kubevirt://vm-2" }), report, undefined, claims)).toMatchObject({ apply: true, verification: { problem: "DuplicateClaim" } });
    expect(decide(claimedBy("worker-a"), settings, undefined, claims).verification).toMatchObject({ problem: "DuplicateClaim" });
    expect(decide(claimedBy("worker-b"), settings, undefined, claims).verification).toMatchObject({ problem: "DuplicateClaim" });
  });
});

describe("infra snapshot encoding (the Store payload)", () => {
  const snapshot = {
    namespaces: ["tenant1-vms"],
    syncedAt: "2025-01-01T00:00:00Z",
    vms: [
      { namespace: "tenant1-vms", name: "vm-2", hostname: "h2" },
      { namespace: "tenant1-vms", name: "vm-1", firmwareUUID: UUID_A },
    ],
  };

  it("round-trips and compares by content, not by time", () => {
    const decoded = decodeSnapshot(encodeSnapshot(snapshot));
    expect(new VmIndex(decoded).get("tenant1-vms", "vm-1")).toEqual({ namespace: "tenant1-vms", name: "vm-1", firmwareUUID: UUID_A });
    expect(new VmIndex(decoded).byHostname("h2")).toHaveLength(1);
    expect(sameContent(snapshot, { ...decoded, syncedAt: "2030-01-01T00:00:00Z" })).toBe(true);
    expect(sameContent(snapshot, { ...snapshot, vms: snapshot.vms.slice(1) })).toBe(false);
  });

  it("rejects malformed payloads", () => {
    expect(() => decodeSnapshot("not json")).toThrow();
    expect(() => decodeSnapshot(JSON.stringify({ v: 2, syncedAt: "", namespaces: [], vms: [] }))).toThrow();
    expect(() => decodeSnapshot(JSON.stringify({ v: 1, syncedAt: "", namespaces: [], vms: [["ns"]] }))).toThrow();
  });
});

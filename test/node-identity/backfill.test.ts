// The back-fill queue against an in-memory Node API that applies the JSON patches it receives with the
// sandbox API server's RFC 6902 implementation: bounded concurrency, writes only where something differs,
// retries, no fight with a webhook that disagrees, one report per problem.
import { afterEach, describe, expect, it, vi } from "vitest";
import { moduleConfigSchema } from "../../capabilities/config/schema";
import { NodeBackfill, type BackfillHooks } from "../../capabilities/node-identity/backfill";
import { VM_NAME_ANNOTATION, VM_NAMESPACE_ANNOTATION, VM_NAME_LEGACY_ANNOTATION, type JsonPatchOp } from "../../capabilities/node-identity/identity";
import { VmIndex } from "../../capabilities/node-identity/infra-index";
import { nodeIdentitySettings, type NodeIdentitySettings } from "../../capabilities/node-identity/settings";
import { applyJsonPatch, type Json } from "../../sandbox/apiserver/patch";

type NodeObj = { metadata: { name: string; resourceVersion: string; annotations?: Record<string, string> }; spec: Record<string, unknown>; status?: unknown };

function settingsFor(config: Record<string, unknown>): NodeIdentitySettings {
  const result = nodeIdentitySettings(moduleConfigSchema.parse(config));
  if (!result.active) throw new Error(result.reason);
  return result.settings;
}

/** Nodes in memory with resourceVersions; patches go through a real JSON patch implementation. */
class FakeNodeApi {
  nodes = new Map<string, NodeObj>();
  patchCalls: { name: string; ops: JsonPatchOp[] }[] = [];
  inFlight = 0;
  maxInFlight = 0;
  failNext = 0;
  /** Simulates a mutating webhook that rewrites the VM name annotation on every write. */
  webhookOverride?: string;
  #rv = 0;

  add(name: string, annotations?: Record<string, string>): NodeObj {
    const node: NodeObj = { metadata: { name, resourceVersion: String(++this.#rv), ...(annotations ? { annotations } : {}) }, spec: {} };
    this.nodes.set(name, node);
    return structuredClone(node);
  }

  hooks(log: string[]): BackfillHooks {
    return {
      patchNode: async (name, ops) => {
        this.patchCalls.push({ name, ops });
        this.inFlight++;
        this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
        try {
          await new Promise(r => setTimeout(r, 2));
          if (this.failNext > 0) {
            this.failNext--;
            throw Object.assign(new Error("etcdserver: request timed out"), { status: 500 });
          }
          const current = this.nodes.get(name);
          if (!current) throw Object.assign(new Error("not found"), { status: 404 });
          const patched = applyJsonPatch(structuredClone(current) as unknown as Json, ops) as unknown as NodeObj;
          if (this.webhookOverride) patched.metadata.annotations![VM_NAME_ANNOTATION] = this.webhookOverride;
          patched.metadata.resourceVersion = String(++this.#rv);
          this.nodes.set(name, patched);
          return structuredClone(patched);
        } finally {
          this.inFlight--;
        }
      },
      problem: (node, _resolution, verification, applied) => log.push(`problem ${node.name} ${verification.problem} applied=${applied}`),
      patched: node => log.push(`patched ${node.name}`),
      failed: name => log.push(`failed ${name}`),
    };
  }
}

let backfill: NodeBackfill | undefined;
afterEach(() => backfill?.stop());

const identity = (vm: string, ns = "tenant1-vms") => ({ [VM_NAME_LEGACY_ANNOTATION]: vm, [VM_NAME_ANNOTATION]: vm, [VM_NAMESPACE_ANNOTATION]: ns });

describe("NodeBackfill", () => {
  it("corrects many Nodes with bounded concurrency and writes only the ones that differ", async () => {
    const api = new FakeNodeApi();
    const log: string[] = [];
    backfill = new NodeBackfill(api.hooks(log), { concurrency: 8 });
    const mapping = Array.from({ length: 200 }, (_, i) => ({ nodeName: `worker-${i}`, vmName: `vm-${i}` }));
    backfill.configure(settingsFor({ infra: { namespace: "tenant1-vms" }, nodeIdentity: { enabled: true }, nodeMapping: mapping }));
    for (let i = 0; i < 200; i++) {
      // Every tenth Node is already correct: it must not be written.
      backfill.observe(api.add(`worker-${i}`, i % 10 === 0 ? identity(`vm-${i}`) : { other: "x" }));
    }
    await backfill.whenIdle();
    expect(api.patchCalls).toHaveLength(180);
    expect(api.maxInFlight).toBeLessThanOrEqual(8);
    expect(api.maxInFlight).toBeGreaterThan(1);
    for (let i = 0; i < 200; i++) {
      expect(api.nodes.get(`worker-${i}`)!.metadata.annotations).toMatchObject({ ...identity(`vm-${i}`), ...(i % 10 ? { other: "x" } : {}) });
    }
    // The watch events of those writes change nothing further.
    for (const node of api.nodes.values()) backfill.observe(structuredClone(node));
    await backfill.whenIdle();
    expect(api.patchCalls).toHaveLength(180);
  });

  it("re-reconciles every Node when the mapping changes, and stays inert when deactivated", async () => {
    const api = new FakeNodeApi();
    backfill = new NodeBackfill(api.hooks([]));
    const config = (vm: string, enabled = true) =>
      settingsFor({ infra: { namespace: "tenant1-vms" }, nodeIdentity: { enabled }, nodeMapping: [{ nodeName: "worker-0", vmName: vm }] });
    backfill.configure(config("vm-a"));
    backfill.observe(api.add("worker-0"));
    await backfill.whenIdle();
    expect(api.nodes.get("worker-0")!.metadata.annotations![VM_NAME_ANNOTATION]).toBe("vm-a");

    backfill.configure(config("vm-b"));
    await backfill.whenIdle();
    expect(api.nodes.get("worker-0")!.metadata.annotations![VM_NAME_ANNOTATION]).toBe("vm-b");

    backfill.configure(undefined);
    backfill.observe(api.add("worker-0"));
    await backfill.whenIdle();
    expect(api.nodes.get("worker-0")!.metadata.annotations).toBeUndefined();
    expect(api.patchCalls).toHaveLength(2);
  });

  it("retries a failed write with back-off", async () => {
    vi.useFakeTimers();
    try {
      const api = new FakeNodeApi();
      const log: string[] = [];
      backfill = new NodeBackfill(api.hooks(log));
      api.failNext = 1;
      backfill.configure(settingsFor({ infra: { namespace: "ns" }, nodeIdentity: { enabled: true }, nodeMapping: [{ nodeName: "n", vmName: "vm" }] }));
      backfill.observe(api.add("n"));
      await vi.advanceTimersByTimeAsync(2); // the fake API's write
      await backfill.whenIdle();
      expect(log).toEqual(["failed n"]);
      // The first retry comes after 500 ms, not before.
      await vi.advanceTimersByTimeAsync(490);
      expect(log).toEqual(["failed n"]);
      await vi.advanceTimersByTimeAsync(20);
      await backfill.whenIdle();
      expect(log).toEqual(["failed n", "patched n"]);
      expect(api.nodes.get("n")!.metadata.annotations![VM_NAME_ANNOTATION]).toBe("vm");
    } finally {
      vi.useRealTimers();
    }
  });

  it("does not fight a webhook that rewrites the identity: it backs off", async () => {
    const api = new FakeNodeApi();
    backfill = new NodeBackfill(api.hooks([]));
    api.webhookOverride = "vm-from-webhook";
    backfill.configure(settingsFor({ infra: { namespace: "ns" }, nodeIdentity: { enabled: true }, nodeMapping: [{ nodeName: "n", vmName: "vm" }] }));
    backfill.observe(api.add("n"));
    await backfill.whenIdle();
    // The watch delivers the webhook's version right away; the back-fill must not patch again immediately.
    for (let i = 0; i < 5; i++) {
      backfill.observe(structuredClone(api.nodes.get("n")!));
      await backfill.whenIdle();
    }
    expect(api.patchCalls).toHaveLength(1);
  });

  it("reports a contradicted mapping once, does not apply it in enforce mode, and reports again when it changes", async () => {
    const api = new FakeNodeApi();
    const log: string[] = [];
    backfill = new NodeBackfill(api.hooks(log));
    backfill.configure(settingsFor({ infra: { namespace: "ns" }, nodeIdentity: { enabled: true }, nodeMapping: [{ nodeName: "n", vmName: "vm-missing" }] }));
    backfill.setInfraIndex(new VmIndex({ namespaces: ["ns"], vms: [{ namespace: "ns", name: "vm-1" }], syncedAt: "" }));
    backfill.observe(api.add("n"));
    await backfill.whenIdle();
    backfill.observe(api.add("n"));
    await backfill.whenIdle();
    expect(log).toEqual(["problem n VmNotFound applied=false"]);
    expect(api.patchCalls).toHaveLength(0);

    // Report mode: the same problem is reported as applied, and the mapping is written.
    backfill.configure(
      settingsFor({ infra: { namespace: "ns" }, nodeIdentity: { enabled: true, mode: "report" }, nodeMapping: [{ nodeName: "n", vmName: "vm-missing" }] }),
    );
    await backfill.whenIdle();
    expect(log).toEqual(["problem n VmNotFound applied=false", "problem n VmNotFound applied=true", "patched n"]);
  });
});

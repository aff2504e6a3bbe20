// capabilities/redfish.ts in the watcher: the shared VirtualMachine, VirtualMachineInstance and DataVolume
// informers (real list + watch of the chassis namespaces against the sandbox API server) feed the watch cache,
// each kind is marked listed after its list, and a configuration change rebuilds the chassis index. The module namespace is the one
// kind still watched through Pepr (it makes `pepr build` generate the watcher Deployment).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SharedInformers } from "../../capabilities/common/informers";
import { KubeClient } from "../../capabilities/common/kube-client";
import { applyConfigSource, currentConfig, onConfigChange } from "../../capabilities/config/runtime";
import { feedRedfishCache, Redfish, redfishCache } from "../../capabilities/redfish";
import { startApiServer, type ApiServer, type KubeObject as StoreObject } from "../../sandbox/apiserver";
import { dataVolume, runningVmi, vm } from "./fixtures";
import { DV_KEY, VMI_KEY, VM_KEY } from "./sandbox-cluster";

const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined };
let api: ApiServer;
let client: KubeClient;
let informers: SharedInformers;
let stopFeed: () => void;
let dir: string;

/** As a client sends an object: the server assigns uid and resourceVersion. */
const asCreated = (obj: object) => {
  const o = obj as StoreObject;
  return { ...o, metadata: { ...o.metadata, uid: undefined, resourceVersion: undefined } } as StoreObject;
};

beforeAll(async () => {
  api = await startApiServer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "redfish-binding-"));
  await api.writeKubeconfig(path.join(dir, "kubeconfig"));
  const kc = new KubeConfig();
  kc.loadFromFile(path.join(dir, "kubeconfig"));
  client = await KubeClient.fromKubeConfig(kc);
  api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "binding-ns" } });
  api.store.create(VM_KEY, asCreated(vm("binding-ns", "listed")));
  await useChassis(["chassis:", "  - name: everything", "    namespace: binding-ns"]);
  informers = new SharedInformers(client, { log: quiet, config: { current: currentConfig, onChange: onConfigChange } });
  stopFeed = feedRedfishCache(informers);
});
/** Applies a configuration with these chassis lines (the informers follow it). */
async function useChassis(lines: string[]): Promise<void> {
  const outcome = await applyConfigSource({
    configMap: { metadata: { name: "kubevirt-infra-config", namespace: "pepr-system" }, data: { "config.yaml": lines.join("\n") } },
  });
  expect(outcome.status).toBe("applied");
}

afterAll(async () => {
  stopFeed?.();
  await informers?.stop();
  client?.close();
  await api?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("Redfish capability in the watcher", () => {
  it("has one Pepr Watch binding only: the module namespace (installation id)", () => {
    const watches = Redfish.bindings.filter(b => b.isWatch).map(b => ({ kind: b.kind.kind, name: b.filters.name }));
    expect(watches).toEqual([{ kind: "Namespace", name: "pepr-system" }]);
  });

  it("lists each kind once, marks the cache synced, and follows the watches", async () => {
    await vi.waitFor(() => expect(redfishCache.synced()).toBe(true), { timeout: 10_000 });
    expect(redfishCache.getVm("binding-ns", "listed")).toBeDefined();
    expect([...informers.started().keys()].sort()).toEqual(["DataVolume", "VirtualMachine", "VirtualMachineInstance"]);

    const machine = vm("binding-ns", "m1", { dataVolumeTemplates: ["m1-root"] });
    api.store.create(VM_KEY, asCreated(machine));
    api.store.create(DV_KEY, asCreated(dataVolume("binding-ns", "m1-root")));
    // The VMI's ownerReference must name the VM as stored (the sandbox garbage-collects orphans).
    api.store.create(VMI_KEY, asCreated(runningVmi(api.store.get(VM_KEY, "binding-ns", "m1") as never)));
    await vi.waitFor(
      () => {
        const rec = redfishCache.getVm("binding-ns", "m1");
        expect(rec?.vmi?.metadata.name).toBe("m1");
        expect(rec?.dataVolumes.map(d => d.metadata.name)).toEqual(["m1-root"]);
      },
      { timeout: 10_000 },
    );

    api.store.mutate(VM_KEY, "binding-ns", "m1", o => ({ ...o, metadata: { ...o.metadata, labels: { ...o.metadata.labels, team: "blue" } } }));
    await vi.waitFor(() => expect(redfishCache.getVm("binding-ns", "m1")?.vm.metadata.labels?.team).toBe("blue"), { timeout: 10_000 });
    api.store.delete(VM_KEY, "binding-ns", "m1");
    await vi.waitFor(() => expect(redfishCache.getVm("binding-ns", "m1")).toBeUndefined(), { timeout: 10_000 });
    // One list per kind: no separate initial list racing the watch.
    for (const informer of informers.started().values()) expect(informer.stats().lists).toBe(1);
  });

  it("rebuilds the chassis index when the configuration changes", async () => {
    api.store.create(VM_KEY, asCreated(vm("binding-ns", "in-chassis", { labels: { redfish: "yes" } })));
    api.store.create(VM_KEY, asCreated(vm("binding-ns", "outside")));
    await vi.waitFor(() => expect(redfishCache.getVm("binding-ns", "outside")).toBeDefined(), { timeout: 10_000 });
    expect(redfishCache.listVmsInChassis("binding")).toEqual([]);
    expect(redfishCache.listVmsInChassis("everything").map(r => r.vm.metadata.name)).toEqual(["in-chassis", "listed", "outside"]);
    await useChassis(["chassis:", "  - name: binding", "    namespace: binding-ns", '    vmSelector: { matchLabels: { redfish: "yes" } }']);
    expect(redfishCache.listVmsInChassis("binding").map(r => r.vm.metadata.name)).toEqual(["in-chassis"]);
  });
});

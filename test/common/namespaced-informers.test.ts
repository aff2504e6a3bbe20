// Namespaced informers against the sandbox API server, as a ServiceAccount that holds Roles in some namespaces
// only (the sandbox authorizes token users by RBAC, so a cluster-wide list or watch would be refused):
//   - one informer, one store, one handler stream over one list+watch per namespace;
//   - adding a namespace starts just that stream (its objects arrive as adds), removing one stops it (its
//     objects leave as deletes);
//   - the shared informers take the VM, VMI and DataVolume namespaces from the configuration (chassis and
//     policed namespaces, nothing when none is configured), drop managedFields and kubectl's last-applied copy,
//     and index DataVolumes by owning VM.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { DATAVOLUME_BY_VM_INDEX } from "../../capabilities/common/indexer";
import { Informer, ListGate } from "../../capabilities/common/informer";
import { SharedInformers, type ConfigFeed } from "../../capabilities/common/informers";
import { KubeClient } from "../../capabilities/common/kube-client";
import { moduleConfigSchema, type ModuleConfig } from "../../capabilities/config/schema";
import { startApiServer, type ApiServer, type KubeObject } from "../../sandbox/apiserver";
import { dataVolume, vm } from "../redfish/fixtures";
import { DV_KEY, VMI_KEY, VM_KEY } from "../redfish/sandbox-cluster";

const CM = "configmaps";
const quietLog = { debug: () => undefined, info: () => undefined, warn: () => undefined };
const TOKEN = "namespaced-reader-token";
const USER = "system:serviceaccount:pepr-system:namespaced-reader";
const NAMESPACES = ["a", "b", "c", "d"];
/** The reader holds Roles here only; "d" is never granted. */
const GRANTED = ["a", "b", "c"];

let api: ApiServer;
let client: KubeClient;
let dir: string;

/** As a client sends an object: the server assigns uid and resourceVersion. */
const asCreated = (obj: object): KubeObject => {
  const o = obj as KubeObject;
  return { ...o, metadata: { ...o.metadata, uid: undefined, resourceVersion: undefined } } as KubeObject;
};

function configMap(namespace: string, name: string): KubeObject {
  return { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace }, data: { value: name } };
}

/** A Role + RoleBinding letting the reader list and watch these resources in `namespace`. */
function grantReader(namespace: string): void {
  api.store.create("roles.rbac.authorization.k8s.io", {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name: "reader", namespace },
    rules: [
      { apiGroups: [""], resources: ["configmaps"], verbs: ["list", "watch"] },
      { apiGroups: ["kubevirt.io"], resources: ["virtualmachines", "virtualmachineinstances"], verbs: ["list", "watch"] },
      { apiGroups: ["cdi.kubevirt.io"], resources: ["datavolumes"], verbs: ["list", "watch"] },
    ],
  });
  api.store.create("rolebindings.rbac.authorization.k8s.io", {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "reader", namespace },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "reader" },
    subjects: [{ kind: "ServiceAccount", name: "namespaced-reader", namespace: "pepr-system" }],
  });
}

beforeAll(async () => {
  api = await startApiServer({ tokens: [{ token: TOKEN, user: { username: USER, groups: ["system:serviceaccounts", "system:authenticated"] } }] });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ns-informers-"));
  const file = path.join(dir, "kubeconfig");
  await api.writeKubeconfig(file, { token: TOKEN });
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  client = await KubeClient.fromKubeConfig(kc);
  for (const ns of [...NAMESPACES, "pepr-system"]) api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
  GRANTED.forEach(grantReader);
});
afterAll(async () => {
  client?.close();
  await api?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("Informer over namespaces", () => {
  it("keeps one store and one event stream over a list+watch per namespace, and follows namespace changes", async () => {
    for (const ns of NAMESPACES) api.store.create(CM, configMap(ns, `${ns}-1`));
    const informer = new Informer(
      client,
      { kind: "ConfigMap", path: ns => (ns ? `/api/v1/namespaces/${ns}/configmaps` : "/api/v1/configmaps") },
      { log: quietLog, namespaces: ["a"], backoff: { initialMs: 50, maxMs: 500 } },
    );
    const seen: string[] = [];
    let synced = 0;
    informer.addHandlers({
      onAdd: o => seen.push(`add ${o.metadata.namespace}/${o.metadata.name}`),
      onUpdate: o => seen.push(`update ${o.metadata.namespace}/${o.metadata.name}`),
      onDelete: o => seen.push(`delete ${o.metadata.namespace}/${o.metadata.name}`),
      onSynced: () => synced++,
    });
    const keys = () => informer.list().map(o => `${o.metadata.namespace}/${o.metadata.name}`).sort();
    informer.start();
    try {
      await informer.waitForSync();
      expect(keys()).toEqual(["a/a-1"]);
      expect(seen).toEqual(["add a/a-1"]);
      await vi.waitFor(() => expect(api.openWatches()[CM]).toBe(1), { timeout: 10_000 });

      // Added namespaces: their objects arrive as adds, each stream is listed once; "a" keeps its stream.
      await informer.setNamespaces(["a", "b", "c"]);
      await vi.waitFor(() => expect(keys()).toEqual(["a/a-1", "b/b-1", "c/c-1"]), { timeout: 10_000 });
      expect(seen.filter(s => s.startsWith("add")).sort()).toEqual(["add a/a-1", "add b/b-1", "add c/c-1"]);
      await vi.waitFor(() => expect(informer.stats()).toMatchObject({ streams: 3, watching: true, lists: 3 }), { timeout: 10_000 });
      // The server sees a watch a moment after the client opened it.
      await vi.waitFor(() => expect(api.openWatches()[CM]).toBe(3), { timeout: 10_000 });
      expect(synced).toBe(3);
      expect(informer.byIndex("namespace", "b").map(o => o.metadata.name)).toEqual(["b-1"]);

      // Each stream follows its namespace.
      api.store.create(CM, configMap("c", "c-2"));
      api.store.mutate(CM, "b", "b-1", o => ({ ...o, data: { value: "changed" } }));
      await vi.waitFor(() => expect(seen).toEqual(expect.arrayContaining(["add c/c-2", "update b/b-1"])), { timeout: 10_000 });

      // Removed namespaces: their objects leave as deletes, their streams end; the others are untouched.
      seen.length = 0;
      await informer.setNamespaces(["b"]);
      expect(seen.sort()).toEqual(["delete a/a-1", "delete c/c-1", "delete c/c-2"]);
      expect(keys()).toEqual(["b/b-1"]);
      expect(informer.stats().streams).toBe(1);
      await vi.waitFor(() => expect(api.openWatches()[CM]).toBe(1), { timeout: 10_000 });
      expect(informer.stats().lists).toBe(3);

      // A namespace the account may not read: that stream backs off, the others go on.
      await informer.setNamespaces(["b", "d"]);
      await vi.waitFor(() => expect(informer.stats().failures).toBeGreaterThan(0), { timeout: 10_000 });
      api.store.create(CM, configMap("b", "b-2"));
      await vi.waitFor(() => expect(keys()).toEqual(["b/b-1", "b/b-2"]), { timeout: 10_000 });
      expect(informer.hasSynced()).toBe(true);
    } finally {
      await informer.stop();
    }
    expect(informer.stats()).toMatchObject({ streams: 0, watching: false });
  }, 60_000);

  it("is synced at once, with an empty store and no request, when it watches no namespace", async () => {
    const informer = new Informer(client, { kind: "ConfigMap", path: ns => `/api/v1/namespaces/${ns}/configmaps` }, { log: quietLog, namespaces: [] });
    let synced = 0;
    informer.addHandlers({ onSynced: () => synced++ });
    informer.start();
    try {
      await informer.waitForSync();
      expect(synced).toBe(1);
      expect(informer.list()).toEqual([]);
      expect(informer.stats()).toMatchObject({ lists: 0, watches: 0, streams: 0 });
    } finally {
      await informer.stop();
    }
  });
});

describe("ListGate", () => {
  it("runs at most its concurrency of lists at once, the rest in order as turns free up", async () => {
    const gate = new ListGate(2);
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const releases: (() => void)[] = [];
    const lists = [0, 1, 2, 3, 4].map(i =>
      gate.run(async () => {
        running++;
        most = Math.max(most, running);
        order.push(i);
        await new Promise<void>(resolve => releases.push(resolve));
        running--;
        return i;
      }),
    );
    await vi.waitFor(() => expect(order).toEqual([0, 1]));
    releases.shift()!();
    await vi.waitFor(() => expect(order).toEqual([0, 1, 2]));
    while (order.length < 5 || releases.length > 0) {
      releases.shift()?.();
      await new Promise(resolve => setImmediate(resolve));
    }
    expect(await Promise.all(lists)).toEqual([0, 1, 2, 3, 4]);
    expect(most).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4]);
  });
});

/** A configuration source the test changes by hand (the watcher's is capabilities/config/runtime.ts). */
function configFeed(): ConfigFeed & { set(doc: Record<string, unknown>): void } {
  let config: ModuleConfig | undefined;
  const listeners = new Set<(c: ModuleConfig) => void>();
  return {
    current: () => config,
    onChange: fn => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    set(doc) {
      config = moduleConfigSchema.parse(doc);
      listeners.forEach(fn => fn(config!));
    },
  };
}

describe("SharedInformers' configured namespaces", () => {
  it("watches VMs, VMIs and DataVolumes in the chassis and policed namespaces only, as the configuration changes", async () => {
    const owner = api.store.create(VM_KEY, asCreated(vm("a", "vm-a")));
    const applied = asCreated(vm("b", "vm-b"));
    applied.metadata.annotations = { "kubectl.kubernetes.io/last-applied-configuration": '{"big":"copy"}', kept: "yes" };
    applied.metadata.managedFields = [{ manager: "kubectl", operation: "Apply", apiVersion: "kubevirt.io/v1" }];
    api.store.create(VM_KEY, applied);
    api.store.create(VM_KEY, asCreated(vm("d", "vm-d")));
    api.store.create(DV_KEY, asCreated(dataVolume("a", "vm-a-root", owner as never)));
    api.store.create(DV_KEY, asCreated(dataVolume("c", "policed-dv")));

    const feed = configFeed();
    const informers = new SharedInformers(client, { log: quietLog, config: feed, backoff: { initialMs: 50, maxMs: 500 } });
    try {
      // No configuration: nothing of these kinds is watched (and nothing cluster-wide, which RBAC would refuse).
      const vms = informers.informer("VirtualMachine");
      const vmis = informers.informer("VirtualMachineInstance");
      const dvs = informers.informer("DataVolume");
      await Promise.all([vms.waitForSync(), vmis.waitForSync(), dvs.waitForSync()]);
      expect([vms, vmis, dvs].map(i => i.stats())).toEqual([0, 0, 0].map(() => expect.objectContaining({ streams: 0, objects: 0, failures: 0 })));

      feed.set({
        role: "infra",
        chassis: [{ name: "one", namespace: "a" }],
        datavolumePolicy: { enabled: true, namespaces: ["c"] },
      });
      expect([vms.namespaces(), vmis.namespaces(), dvs.namespaces()]).toEqual([["a"], ["a"], ["a", "c"]]);
      await vi.waitFor(() => expect(dvs.list().map(o => o.metadata.name).sort()).toEqual(["policed-dv", "vm-a-root"]), { timeout: 10_000 });
      await vi.waitFor(() => expect(vms.list().map(o => o.metadata.name)).toEqual(["vm-a"]), { timeout: 10_000 });
      expect(dvs.byIndex(DATAVOLUME_BY_VM_INDEX, "a/vm-a").map(o => o.metadata.name)).toEqual(["vm-a-root"]);

      // A second chassis namespace: one more VM stream; the stored VM lost what nobody reads.
      feed.set({
        role: "infra",
        chassis: [
          { name: "one", namespace: "a" },
          { name: "two", namespace: "b" },
        ],
      });
      await vi.waitFor(() => expect(vms.list().map(o => o.metadata.name).sort()).toEqual(["vm-a", "vm-b"]), { timeout: 10_000 });
      expect(api.store.get(VM_KEY, "b", "vm-b")!.metadata.managedFields).toHaveLength(1);
      const stored = vms.get("b", "vm-b")!;
      expect(stored.metadata.managedFields).toBeUndefined();
      expect(stored.metadata.annotations).toEqual({ kept: "yes" });
      expect(Object.isFrozen(stored.metadata)).toBe(true);
      // The policy is off now: the policed namespace's DataVolumes leave.
      await vi.waitFor(() => expect(dvs.list().map(o => o.metadata.name).sort()).toEqual(["vm-a-root"]), { timeout: 10_000 });
      await vi.waitFor(() => expect(api.openWatches()).toMatchObject({ [VM_KEY]: 2, [VMI_KEY]: 2, [DV_KEY]: 2 }), { timeout: 10_000 });
      expect(vms.stats().failures).toBe(0);

      // Role nested: the infra kinds watch nothing.
      feed.set({ role: "nested", chassis: [{ name: "one", namespace: "a" }] });
      await vi.waitFor(() => expect([vms, vmis, dvs].map(i => i.stats().objects)).toEqual([0, 0, 0]), { timeout: 10_000 });
      expect([vms, vmis, dvs].map(i => i.stats().streams)).toEqual([0, 0, 0]);
    } finally {
      await informers.stop();
    }
  }, 60_000);
});

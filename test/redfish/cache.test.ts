import { describe, expect, it } from "vitest";
import { DATAVOLUME_BY_VM_INDEX, IndexedStore } from "../../capabilities/common/indexer";
import type { KubeObject } from "../../capabilities/common/kube-types";
import { CHASSIS_INDEX, WatchCache } from "../../redfish/cache/store";
import type { CacheChangeEvent } from "../../redfish/cache/types";
import { dataVolume, revise, runningVmi, vm } from "./fixtures";

const chassis = [
  { name: "t1", namespace: "ns1" },
  { name: "t1-gpu", namespace: "ns1", vmSelector: { matchLabels: { gpu: "yes" } } },
  { name: "t2", namespace: "ns2", vmSelector: { matchExpressions: [{ key: "tier", operator: "In" as const, values: ["gold", "silver"] }] } },
];

const names = (records: { vm: { metadata: { name?: string } } }[]) => records.map(r => r.vm.metadata.name);

describe("WatchCache", () => {
  it("is synced only once the initial list of every kind arrived", () => {
    const cache = new WatchCache(chassis);
    expect(cache.synced()).toBe(false);
    cache.applyList("VirtualMachine", [vm("ns1", "a")]);
    cache.applyList("VirtualMachineInstance", []);
    expect(cache.synced()).toBe(false);
    cache.applyList("DataVolume", []);
    expect(cache.synced()).toBe(true);
  });

  it("indexes VMs by namespace and by chassis (namespace + selector), sorted by name", () => {
    const cache = new WatchCache(chassis);
    cache.applyList("VirtualMachine", [
      vm("ns1", "zeta"),
      vm("ns1", "alpha", { labels: { gpu: "yes" } }),
      vm("ns2", "gold-1", { labels: { tier: "gold" } }),
      vm("ns2", "bronze-1", { labels: { tier: "bronze" } }),
      vm("ns2", "none"),
      vm("ns3", "elsewhere"),
    ]);
    expect(names(cache.listVms("ns1"))).toEqual(["alpha", "zeta"]);
    expect(names(cache.listVms("ns2"))).toEqual(["bronze-1", "gold-1", "none"]);
    expect(names(cache.listVmsInChassis("t1"))).toEqual(["alpha", "zeta"]);
    expect(names(cache.listVmsInChassis("t1-gpu"))).toEqual(["alpha"]);
    expect(names(cache.listVmsInChassis("t2"))).toEqual(["gold-1"]);
    expect(cache.listVmsInChassis("unknown")).toEqual([]);
    expect(cache.chassisOf("ns1", "alpha")).toEqual(["t1", "t1-gpu"]);
    expect(cache.chassisOf("ns3", "elsewhere")).toEqual([]);
  });

  it("moves a VM between chassis when its labels change, and drops it when deleted", () => {
    const cache = new WatchCache(chassis);
    const silver = vm("ns2", "s", { labels: { tier: "bronze" } });
    cache.apply("VirtualMachine", "ADDED", silver);
    expect(names(cache.listVmsInChassis("t2"))).toEqual([]);
    const relabelled = revise(silver, v => (v.metadata.labels!.tier = "silver"));
    cache.apply("VirtualMachine", "MODIFIED", relabelled);
    expect(names(cache.listVmsInChassis("t2"))).toEqual(["s"]);
    cache.apply("VirtualMachine", "DELETED", relabelled);
    expect(cache.getVm("ns2", "s")).toBeUndefined();
    expect(cache.listVmsInChassis("t2")).toEqual([]);
    expect(cache.listVms("ns2")).toEqual([]);
  });

  it("rebuilds the chassis index on a config change", () => {
    const cache = new WatchCache(chassis);
    cache.applyList("VirtualMachine", [vm("ns1", "a"), vm("ns3", "c")]);
    cache.setChassis([{ name: "only-ns3", namespace: "ns3" }]);
    expect(cache.listVmsInChassis("t1")).toEqual([]);
    expect(names(cache.listVmsInChassis("only-ns3"))).toEqual(["c"]);
    expect(cache.chassisOf("ns1", "a")).toEqual([]);
  });

  it("joins a VM with its VMI and with the DataVolumes it declares or owns", () => {
    const cache = new WatchCache(chassis);
    const machine = vm("ns1", "m", { dataVolumeTemplates: ["m-root"] });
    cache.apply("VirtualMachine", "ADDED", machine);
    expect(cache.getVm("ns1", "m")!.dataVolumes).toEqual([]);
    cache.apply("DataVolume", "ADDED", dataVolume("ns1", "m-root"));
    cache.apply("DataVolume", "ADDED", dataVolume("ns1", "m-cdrom", machine)); // owned, e.g. virtual media
    cache.apply("DataVolume", "ADDED", dataVolume("ns1", "unrelated"));
    const rec = cache.getVm("ns1", "m")!;
    expect(rec.dataVolumes.map(d => d.metadata.name)).toEqual(["m-cdrom", "m-root"]);
    expect(rec.vmi).toBeUndefined();

    const instance = runningVmi(machine);
    cache.apply("VirtualMachineInstance", "ADDED", instance);
    expect(cache.getVm("ns1", "m")!.vmi?.metadata.uid).toBe(instance.metadata.uid);
    cache.apply("VirtualMachineInstance", "DELETED", instance);
    expect(cache.getVm("ns1", "m")!.vmi).toBeUndefined();
    cache.apply("DataVolume", "DELETED", dataVolume("ns1", "m-cdrom", machine));
    // DELETED of an object with another uid (an older incarnation) changes nothing
    expect(cache.getVm("ns1", "m")!.dataVolumes.map(d => d.metadata.name)).toEqual(["m-cdrom", "m-root"]);
  });

  it("does not attach an owned DataVolume of a deleted namesake to a re-created VM", () => {
    const cache = new WatchCache(chassis);
    const first = vm("ns1", "m");
    cache.apply("VirtualMachine", "ADDED", first);
    cache.apply("DataVolume", "ADDED", dataVolume("ns1", "m-media", first));
    cache.apply("VirtualMachine", "DELETED", first);
    const second = vm("ns1", "m");
    cache.apply("VirtualMachine", "ADDED", second);
    expect(cache.getVm("ns1", "m")!.dataVolumes).toEqual([]);
  });

  it("applies informer events in stream order, with no resourceVersion comparison, and shares frozen informer objects", () => {
    const cache = new WatchCache(chassis);
    const v1 = vm("ns1", "m", { printableStatus: "Stopped" });
    const v2 = revise(v1, v => ((v.status as { printableStatus: string }).printableStatus = "Running"));
    cache.apply("VirtualMachine", "ADDED", v1);
    // resourceVersions are opaque: the later event wins whatever its resourceVersion says.
    cache.apply("VirtualMachine", "MODIFIED", { ...v2, metadata: { ...v2.metadata, resourceVersion: "a-opaque-token" } });
    expect((cache.getVm("ns1", "m")!.vm.status as { printableStatus: string }).printableStatus).toBe("Running");
    cache.apply("VirtualMachine", "DELETED", v2);
    expect(cache.getVm("ns1", "m")).toBeUndefined();
    // A new VM with the same name is a new object.
    cache.apply("VirtualMachine", "ADDED", vm("ns1", "m"));
    expect(cache.getVm("ns1", "m")).toBeDefined();
    // An informer's object is deep-frozen already: stored as it is (one copy in the process), not copied.
    const shared = Object.freeze(vm("ns1", "frozen"));
    cache.apply("VirtualMachine", "ADDED", shared);
    expect(cache.getVm("ns1", "frozen")!.vm).toBe(shared);
  });

  it("hands out frozen copies: handlers cannot change the cache or the caller's objects", () => {
    const cache = new WatchCache(chassis);
    const original = vm("ns1", "m");
    cache.apply("VirtualMachine", "ADDED", original);
    const rec = cache.getVm("ns1", "m")!;
    expect(Object.isFrozen(rec)).toBe(true);
    expect(Object.isFrozen(rec.vm.metadata.labels)).toBe(true);
    expect(() => {
      (rec.vm.metadata as { name: string }).name = "changed";
    }).toThrow(TypeError);
    // the object given to apply() stays the caller's (the sandbox store hands out its own objects)
    original.metadata.labels!.extra = "x";
    expect(cache.getVm("ns1", "m")!.vm.metadata.labels!.extra).toBeUndefined();
  });

  it("notifies listeners after the indexes are updated; a failing listener does not stop the feed", () => {
    const cache = new WatchCache(chassis);
    const seen: CacheChangeEvent[] = [];
    cache.onChange(() => {
      throw new Error("listener bug");
    });
    const stop = cache.onChange(ev => {
      seen.push(ev);
      if (ev.kind === "VirtualMachine") expect(cache.getVm(ev.namespace, ev.name)).toBeDefined();
    });
    cache.apply("VirtualMachine", "ADDED", vm("ns1", "a"));
    cache.apply("DataVolume", "ADDED", dataVolume("ns1", "d"));
    stop();
    cache.apply("VirtualMachine", "ADDED", vm("ns1", "b"));
    expect(seen).toEqual([
      { kind: "VirtualMachine", namespace: "ns1", name: "a" },
      { kind: "DataVolume", namespace: "ns1", name: "d" },
    ]);
    expect(cache.getVm("ns1", "b")).toBeDefined();
  });

  it("ignores objects without namespace or name", () => {
    const cache = new WatchCache(chassis);
    cache.apply("VirtualMachine", "ADDED", { metadata: { name: "no-namespace" } });
    expect(cache.stats().virtualMachines).toBe(0);
  });

  it("lists 10,000 VMs in 100 namespaces through the chassis index", () => {
    const many = Array.from({ length: 100 }, (_, n) => ({ name: `c${n}`, namespace: `ns-${n}` }));
    const cache = new WatchCache(many);
    const vms = [];
    for (let n = 0; n < 100; n++) for (let i = 0; i < 100; i++) vms.push(vm(`ns-${n}`, `vm-${String(i).padStart(3, "0")}`));
    cache.applyList("VirtualMachine", vms);
    expect(cache.stats().virtualMachines).toBe(10_000);
    const all = many.flatMap(c => cache.listVmsInChassis(c.name));
    expect(all).toHaveLength(10_000);
    expect(names(cache.listVmsInChassis("c42")).slice(0, 2)).toEqual(["vm-000", "vm-001"]);
  });

  it("reads attached informer stores: the chassis and DataVolume indexes are theirs, the chassis index follows the config", () => {
    const stores = { VirtualMachine: new IndexedStore(), VirtualMachineInstance: new IndexedStore(), DataVolume: new IndexedStore() };
    const cache = new WatchCache(chassis);
    (Object.keys(stores) as (keyof typeof stores)[]).forEach(kind => cache.attach(kind, stores[kind]));
    // What an informer does: store first, then hand the event to its handlers.
    const informerAdd = (kind: keyof typeof stores, obj: KubeObject) => {
      const old = stores[kind].put(Object.freeze(obj));
      cache.notify(kind, obj, old);
    };
    const owner = vm("ns1", "alpha", { labels: { gpu: "yes" } });
    informerAdd("VirtualMachine", owner);
    informerAdd("VirtualMachine", vm("ns1", "beta", { dataVolumeTemplates: ["beta-root"] }));
    informerAdd("DataVolume", dataVolume("ns1", "alpha-iso", owner));
    informerAdd("DataVolume", dataVolume("ns1", "beta-root"));

    expect(stores.VirtualMachine.byIndex(CHASSIS_INDEX, "t1-gpu").map(o => o.metadata.name)).toEqual(["alpha"]);
    expect(stores.DataVolume.byIndex(DATAVOLUME_BY_VM_INDEX, "ns1/alpha").map(o => o.metadata.name)).toEqual(["alpha-iso"]);
    expect(names(cache.listVmsInChassis("t1"))).toEqual(["alpha", "beta"]);
    expect(cache.getVm("ns1", "alpha")?.dataVolumes.map(d => d.metadata.name)).toEqual(["alpha-iso"]);
    expect(cache.getVm("ns1", "beta")?.dataVolumes.map(d => d.metadata.name)).toEqual(["beta-root"]);

    // A config change replaces the chassis index function on the informer's store.
    cache.setChassis([{ name: "only-beta", namespace: "ns1", vmSelector: { matchLabels: { "kubevirt.io/vm": "beta" } } }]);
    expect(stores.VirtualMachine.byIndex(CHASSIS_INDEX, "only-beta").map(o => o.metadata.name)).toEqual(["beta"]);
    expect(stores.VirtualMachine.indexKeys(CHASSIS_INDEX, "t1")).toEqual([]);
    expect(cache.listVmsInChassis("t1")).toEqual([]);
    expect(cache.chassisOf("ns1", "beta")).toEqual(["only-beta"]);
  });

  it("keeps a chassis' sorted order across updates that do not change its members", () => {
    const cache = new WatchCache([{ name: "big", namespace: "ns1" }]);
    const stores = { VirtualMachine: new IndexedStore() };
    cache.attach("VirtualMachine", stores.VirtualMachine);
    for (let i = 9_999; i >= 0; i--) {
      const obj = Object.freeze(vm("ns1", `vm-${String(i).padStart(5, "0")}`));
      stores.VirtualMachine.put(obj);
      cache.notify("VirtualMachine", obj);
    }
    const first = cache.listVmsInChassis("big");
    expect(first).toHaveLength(10_000);
    expect(names(first.slice(0, 2))).toEqual(["vm-00000", "vm-00001"]);
    const sorted = stores.VirtualMachine.indexKeys(CHASSIS_INDEX, "big");
    // A status change keeps the membership: the sorted key list is reused, not rebuilt.
    const changed = Object.freeze(revise(vm("ns1", "vm-05000"), o => (o.status = { printableStatus: "Running" })));
    cache.notify("VirtualMachine", changed, stores.VirtualMachine.put(changed));
    expect(stores.VirtualMachine.indexKeys(CHASSIS_INDEX, "big")).toBe(sorted);
    expect(cache.getVm("ns1", "vm-05000")?.vm.status).toEqual({ printableStatus: "Running" });
    // A new member: sorted again, in place.
    const added = Object.freeze(vm("ns1", "vm-04999a"));
    cache.notify("VirtualMachine", added, stores.VirtualMachine.put(added));
    expect(names(cache.listVmsInChassis("big").slice(4999, 5002))).toEqual(["vm-04999", "vm-04999a", "vm-05000"]);
  });
});

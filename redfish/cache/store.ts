// The Redfish view of the shared informers: VM records joining a VM with its VMI and DataVolumes, indexes by
// namespace and by chassis. Fed in stream order by the VirtualMachine, VirtualMachineInstance and DataVolume
// informers (capabilities/redfish.ts), which list once and then resume their watches, so events never race
// an initial list; request handlers only read it, through the ClusterCache interface.
import { Log } from "../platform";
import { labelSelectorMatches, type LabelSelector } from "../../capabilities/common/kube-values";
import type { CacheChangeEvent, CachedKind, ClusterCache, KubeObject, VmRecord } from "./types";

export type WatchPhase = "ADDED" | "MODIFIED" | "DELETED";

/** One configured chassis: the VMs of a namespace, optionally narrowed by a label selector. */
export interface ChassisDefinition {
  name: string;
  namespace: string;
  vmSelector?: LabelSelector;
}

const KINDS: readonly CachedKind[] = ["VirtualMachine", "VirtualMachineInstance", "DataVolume"];

function keyOf(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as Record<string, unknown>)) deepFreeze(child);
  }
  return value;
}

/** Names of the DataVolumes a VM declares (dataVolumeTemplates and dataVolume volumes). */
function referencedDataVolumes(vm: KubeObject): Set<string> {
  const names = new Set<string>();
  const spec = vm.spec as
    | {
        dataVolumeTemplates?: { metadata?: { name?: unknown } }[];
        template?: { spec?: { volumes?: { dataVolume?: { name?: unknown } }[] } };
      }
    | undefined;
  for (const t of Array.isArray(spec?.dataVolumeTemplates) ? spec.dataVolumeTemplates : []) {
    if (typeof t?.metadata?.name === "string") names.add(t.metadata.name);
  }
  const volumes = spec?.template?.spec?.volumes;
  for (const v of Array.isArray(volumes) ? volumes : []) {
    if (typeof v?.dataVolume?.name === "string") names.add(v.dataVolume.name);
  }
  return names;
}

/** Names of the VirtualMachines that own a DataVolume (ownerReferences). */
function owningVms(dv: KubeObject): string[] {
  const refs = dv.metadata.ownerReferences;
  if (!Array.isArray(refs)) return [];
  return refs.filter(r => r?.kind === "VirtualMachine" && typeof r.name === "string").map(r => r.name);
}

function ownedBy(dv: KubeObject, vm: KubeObject): boolean {
  return (dv.metadata.ownerReferences ?? []).some(
    r => r?.kind === "VirtualMachine" && r.name === vm.metadata.name && (!r.uid || !vm.metadata.uid || r.uid === vm.metadata.uid),
  );
}

/** A map with a lazily sorted key list (sorting is redone only after membership changes). */
class SortedIndex<V> {
  private readonly entries = new Map<string, V>();
  private sorted: string[] | undefined = [];

  set(key: string, value: V): void {
    if (!this.entries.has(key)) this.sorted = undefined;
    this.entries.set(key, value);
  }
  delete(key: string): void {
    if (this.entries.delete(key)) this.sorted = undefined;
  }
  get size(): number {
    return this.entries.size;
  }
  values(): V[] {
    if (!this.sorted) this.sorted = [...this.entries.keys()].sort();
    return this.sorted.map(k => this.entries.get(k)!);
  }
}

export interface CacheStats {
  virtualMachines: number;
  virtualMachineInstances: number;
  dataVolumes: number;
  chassis: number;
}

export class WatchCache implements ClusterCache {
  private readonly objects: Record<CachedKind, Map<string, KubeObject>> = {
    VirtualMachine: new Map(),
    VirtualMachineInstance: new Map(),
    DataVolume: new Map(),
  };
  private readonly listed = new Set<CachedKind>();

  private readonly records = new Map<string, VmRecord>(); // "ns/vm"
  private readonly byNamespace = new Map<string, SortedIndex<VmRecord>>(); // ns -> name -> record
  /** "ns/dv" -> names of VMs in ns that declare it. */
  private readonly dvReferencedBy = new Map<string, Set<string>>();
  /** "ns/vm" -> names of DVs that the VM declares (to update dvReferencedBy on change). */
  private readonly vmReferences = new Map<string, Set<string>>();
  /** "ns/vm" -> names of DVs owned by that VM (ownerReferences). */
  private readonly ownedDataVolumes = new Map<string, Set<string>>();

  private chassisByNamespace = new Map<string, ChassisDefinition[]>();
  private chassisMembers = new Map<string, SortedIndex<string>>(); // chassis -> "ns/vm" -> "ns/vm"
  private readonly chassisOfVm = new Map<string, string[]>(); // "ns/vm" -> chassis names

  private readonly listeners = new Set<(ev: CacheChangeEvent) => void>();

  constructor(chassis: readonly ChassisDefinition[] = []) {
    this.setChassis(chassis);
  }

  // ---- feed (watch side) ----

  /** Applies one informer event (in stream order). */
  apply(kind: CachedKind, phase: WatchPhase, obj: KubeObject): void {
    const namespace = obj?.metadata?.namespace;
    const name = obj?.metadata?.name;
    if (typeof namespace !== "string" || typeof name !== "string") return;
    const store = this.objects[kind];
    const key = keyOf(namespace, name);
    const stored = store.get(key);

    if (phase === "DELETED") {
      // A DELETED for an older incarnation (other uid) must not remove a re-created object.
      const uid = obj.metadata.uid;
      if (!stored || (uid && stored.metadata.uid && stored.metadata.uid !== uid)) return;
      store.delete(key);
      this.afterChange(kind, namespace, name, stored, undefined);
      return;
    }

    // Informer objects are deep-frozen and shared as they are; anything else gets a private frozen copy
    // (plain JSON: faster than structuredClone).
    const frozen = Object.isFrozen(obj) ? obj : deepFreeze(JSON.parse(JSON.stringify(obj)) as KubeObject);
    store.set(key, frozen);
    this.afterChange(kind, namespace, name, stored, frozen);
  }

  /** Applies a complete list of one kind, then counts that kind as listed (tests; the informers call apply + markListed). */
  applyList(kind: CachedKind, items: readonly KubeObject[]): void {
    for (const item of items) this.apply(kind, "ADDED", item);
    this.markListed(kind);
  }

  /** The kind's informer has completed a list: the cache holds all of that kind. */
  markListed(kind: CachedKind): void {
    this.listed.add(kind);
  }

  /** Replaces the chassis definitions (config change) and rebuilds the chassis index. */
  setChassis(definitions: readonly ChassisDefinition[]): void {
    this.chassisByNamespace = new Map();
    this.chassisMembers = new Map();
    this.chassisOfVm.clear();
    for (const def of definitions) {
      const list = this.chassisByNamespace.get(def.namespace) ?? [];
      list.push(def);
      this.chassisByNamespace.set(def.namespace, list);
      this.chassisMembers.set(def.name, new SortedIndex());
    }
    for (const [key, record] of this.records) this.indexChassis(key, record);
  }

  // ---- read side (ClusterCache) ----

  getVm(namespace: string, name: string): VmRecord | undefined {
    return this.records.get(keyOf(namespace, name));
  }

  listVms(namespace: string): VmRecord[] {
    return this.byNamespace.get(namespace)?.values() ?? [];
  }

  listVmsInChassis(chassis: string): VmRecord[] {
    const members = this.chassisMembers.get(chassis);
    if (!members) return [];
    return members.values().map(key => this.records.get(key)!);
  }

  /** Names of the configured chassis that contain this VM (empty when none or unknown). */
  chassisOf(namespace: string, name: string): readonly string[] {
    return this.chassisOfVm.get(keyOf(namespace, name)) ?? [];
  }

  onChange(fn: (ev: CacheChangeEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  synced(): boolean {
    return KINDS.every(kind => this.listed.has(kind));
  }

  stats(): CacheStats {
    return {
      virtualMachines: this.objects.VirtualMachine.size,
      virtualMachineInstances: this.objects.VirtualMachineInstance.size,
      dataVolumes: this.objects.DataVolume.size,
      chassis: this.chassisMembers.size,
    };
  }

  // ---- internals ----

  private afterChange(
    kind: CachedKind,
    namespace: string,
    name: string,
    before: KubeObject | undefined,
    after: KubeObject | undefined,
  ): void {
    const affectedVms = new Set<string>();
    if (kind === "VirtualMachine") {
      this.updateVmReferences(namespace, name, after);
      affectedVms.add(name);
    } else if (kind === "VirtualMachineInstance") {
      affectedVms.add(name);
    } else {
      const dvKey = keyOf(namespace, name);
      for (const vm of this.dvReferencedBy.get(dvKey) ?? []) affectedVms.add(vm);
      for (const vm of before ? owningVms(before) : []) {
        affectedVms.add(vm);
        this.ownedDataVolumes.get(keyOf(namespace, vm))?.delete(name);
      }
      for (const vm of after ? owningVms(after) : []) {
        affectedVms.add(vm);
        const owned = this.ownedDataVolumes.get(keyOf(namespace, vm)) ?? new Set<string>();
        owned.add(name);
        this.ownedDataVolumes.set(keyOf(namespace, vm), owned);
      }
    }
    for (const vm of affectedVms) this.rebuildRecord(namespace, vm);
    this.emit({ kind, namespace, name });
  }

  private updateVmReferences(namespace: string, name: string, vm: KubeObject | undefined): void {
    const vmKey = keyOf(namespace, name);
    for (const dv of this.vmReferences.get(vmKey) ?? []) {
      const users = this.dvReferencedBy.get(keyOf(namespace, dv));
      users?.delete(name);
      if (users?.size === 0) this.dvReferencedBy.delete(keyOf(namespace, dv));
    }
    if (!vm) {
      this.vmReferences.delete(vmKey);
      return;
    }
    const refs = referencedDataVolumes(vm);
    this.vmReferences.set(vmKey, refs);
    for (const dv of refs) {
      const users = this.dvReferencedBy.get(keyOf(namespace, dv)) ?? new Set<string>();
      users.add(name);
      this.dvReferencedBy.set(keyOf(namespace, dv), users);
    }
  }

  private rebuildRecord(namespace: string, name: string): void {
    const key = keyOf(namespace, name);
    const vm = this.objects.VirtualMachine.get(key);
    if (!vm) {
      if (this.records.delete(key)) {
        this.byNamespace.get(namespace)?.delete(name);
        if (this.byNamespace.get(namespace)?.size === 0) this.byNamespace.delete(namespace);
        this.unindexChassis(key);
      }
      if (!this.ownedDataVolumes.get(key)?.size) this.ownedDataVolumes.delete(key);
      return;
    }
    const dvNames = new Set([...(this.vmReferences.get(key) ?? []), ...(this.ownedDataVolumes.get(key) ?? [])]);
    const declared = this.vmReferences.get(key);
    const dataVolumes: KubeObject[] = [];
    for (const dv of [...dvNames].sort()) {
      const obj = this.objects.DataVolume.get(keyOf(namespace, dv));
      // An owned-only DataVolume must belong to this incarnation of the VM (same uid), not to a deleted namesake.
      if (obj && (declared?.has(dv) || ownedBy(obj, vm))) dataVolumes.push(obj);
    }
    const vmi = this.objects.VirtualMachineInstance.get(key);
    const record: VmRecord = Object.freeze({
      vm,
      ...(vmi ? { vmi } : {}),
      dataVolumes: Object.freeze(dataVolumes),
    });
    const labelsChanged = this.records.get(key)?.vm.metadata.labels !== vm.metadata.labels;
    this.records.set(key, record);
    let nsIndex = this.byNamespace.get(namespace);
    if (!nsIndex) {
      nsIndex = new SortedIndex();
      this.byNamespace.set(namespace, nsIndex);
    }
    nsIndex.set(name, record);
    if (labelsChanged || !this.chassisOfVm.has(key)) this.indexChassis(key, record);
  }

  private indexChassis(key: string, record: VmRecord): void {
    this.unindexChassis(key);
    const namespace = record.vm.metadata.namespace!;
    const member: string[] = [];
    for (const def of this.chassisByNamespace.get(namespace) ?? []) {
      if (labelSelectorMatches(def.vmSelector, record.vm.metadata.labels)) {
        this.chassisMembers.get(def.name)!.set(key, key);
        member.push(def.name);
      }
    }
    this.chassisOfVm.set(key, member);
  }

  private unindexChassis(key: string): void {
    for (const chassis of this.chassisOfVm.get(key) ?? []) this.chassisMembers.get(chassis)?.delete(key);
    this.chassisOfVm.delete(key);
  }

  private emit(ev: CacheChangeEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(ev);
      } catch (err) {
        Log.error({ err: String(err), kind: ev.kind, namespace: ev.namespace, name: ev.name }, "cache change listener failed");
      }
    }
  }
}

// The Redfish view of the shared informers: VM records joining a VM with its VMI and DataVolumes, read by
// namespace and by chassis. The objects and their indexes are the informers' stores (client-go's Indexers):
// VMs by namespace, by chassis (the index function is replaced when the chassis definitions change) and by the
// DataVolumes they declare; DataVolumes by owning VM. Fed in stream order by the informers
// (capabilities/redfish.ts: `attach` + `notify`), or, standalone (tests, the fake driver), by `apply` into
// stores of its own. Request handlers only read it, through the ClusterCache interface.
import { Log } from "../platform";
import { DATAVOLUME_BY_VM_INDEX, IndexedStore, NAMESPACE_INDEX, objectKey, owningVmKeys } from "../../capabilities/common/indexer";
import { labelSelectorMatches, type LabelSelector } from "../../capabilities/common/kube-values";
import type { CacheChangeEvent, CachedKind, ClusterCache, KubeObject, VmRecord } from "./types";

export type WatchPhase = "ADDED" | "MODIFIED" | "DELETED";

/** One configured chassis: the VMs of a namespace, optionally narrowed by a label selector. */
export interface ChassisDefinition {
  name: string;
  namespace: string;
  vmSelector?: LabelSelector;
}

/** VM store index: the chassis a VM belongs to. */
export const CHASSIS_INDEX = "chassis";
/** VM store index: the DataVolumes ("namespace/name") a VM declares. */
export const DECLARED_DATAVOLUME_INDEX = "dataVolume";

const KINDS: readonly CachedKind[] = ["VirtualMachine", "VirtualMachineInstance", "DataVolume"];
/** The DataVolumes of a VM that has none (most of a fleet): one shared empty list instead of one per record. */
const NO_DATAVOLUMES: readonly KubeObject[] = Object.freeze([]);

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as Record<string, unknown>)) deepFreeze(child);
  }
  return value;
}

/** Names of the DataVolumes a VM declares (dataVolumeTemplates and dataVolume volumes). */
function declaredDataVolumes(vm: KubeObject): Set<string> {
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

function ownedBy(dv: KubeObject, vm: KubeObject): boolean {
  return (dv.metadata.ownerReferences ?? []).some(
    r => r?.kind === "VirtualMachine" && r.name === vm.metadata.name && (!r.uid || !vm.metadata.uid || r.uid === vm.metadata.uid),
  );
}

const nameOfKey = (key: string) => key.slice(key.indexOf("/") + 1);

export interface CacheStats {
  virtualMachines: number;
  virtualMachineInstances: number;
  dataVolumes: number;
  chassis: number;
}

export class WatchCache implements ClusterCache {
  private readonly stores: Record<CachedKind, IndexedStore<KubeObject>> = {
    VirtualMachine: new IndexedStore(),
    VirtualMachineInstance: new IndexedStore(),
    DataVolume: new IndexedStore(),
  };
  private readonly listed = new Set<CachedKind>();
  /** "ns/vm" → the VM joined with its VMI and DataVolumes (rebuilt when one of them changes). */
  private readonly records = new Map<string, VmRecord>();
  private chassisByNamespace = new Map<string, ChassisDefinition[]>();
  private chassisNames = new Set<string>();
  private readonly listeners = new Set<(ev: CacheChangeEvent) => void>();

  constructor(chassis: readonly ChassisDefinition[] = []) {
    this.setChassis(chassis);
    this.installIndexers("VirtualMachine");
    this.installIndexers("DataVolume");
  }

  // ---- feed (watch side) ----

  /**
   * Reads `store` (a kind's informer store) instead of the cache's own from now on, with the cache's indexes
   * added to it. The informer's events must then reach `notify`.
   */
  attach(kind: CachedKind, store: IndexedStore<KubeObject>): void {
    this.stores[kind] = store;
    this.installIndexers(kind);
    const vms = this.stores.VirtualMachine;
    for (const key of [...this.records.keys()]) if (!vms.getByKey(key)) this.records.delete(key);
    for (const [key, vm] of vms.entries()) this.rebuildRecord(vm.metadata.namespace ?? "", nameOfKey(key));
  }

  /** An informer event of an attached kind (its store already holds `after`, or no longer holds `before`). */
  notify(kind: CachedKind, after: KubeObject | undefined, before?: KubeObject): void {
    const meta = (after ?? before)?.metadata;
    if (typeof meta?.namespace !== "string" || typeof meta.name !== "string") return;
    this.changed(kind, meta.namespace, meta.name, before, after);
  }

  /** Applies one watch event to the cache's own store of the kind (in stream order). */
  apply(kind: CachedKind, phase: WatchPhase, obj: KubeObject): void {
    const namespace = obj?.metadata?.namespace;
    const name = obj?.metadata?.name;
    if (typeof namespace !== "string" || typeof name !== "string") return;
    const store = this.stores[kind];
    const key = objectKey(namespace, name);
    const stored = store.getByKey(key);

    if (phase === "DELETED") {
      // A DELETED for an older incarnation (other uid) must not remove a re-created object.
      const uid = obj.metadata.uid;
      if (!stored || (uid && stored.metadata.uid && stored.metadata.uid !== uid)) return;
      store.remove(key);
      this.changed(kind, namespace, name, stored, undefined);
      return;
    }

    // Informer objects are deep-frozen and shared as they are; anything else gets a private frozen copy
    // (plain JSON: faster than structuredClone).
    const frozen = Object.isFrozen(obj) ? obj : deepFreeze(JSON.parse(JSON.stringify(obj)) as KubeObject);
    store.put(frozen);
    this.changed(kind, namespace, name, stored, frozen);
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

  /** Replaces the chassis definitions (config change): the VM store's chassis index is recomputed. */
  setChassis(definitions: readonly ChassisDefinition[]): void {
    const byNamespace = new Map<string, ChassisDefinition[]>();
    for (const def of definitions) byNamespace.set(def.namespace, [...(byNamespace.get(def.namespace) ?? []), def]);
    this.chassisByNamespace = byNamespace;
    this.chassisNames = new Set(definitions.map(d => d.name));
    this.stores.VirtualMachine.addIndexer(CHASSIS_INDEX, vm => this.chassisOfObject(vm));
  }

  // ---- read side (ClusterCache) ----

  getVm(namespace: string, name: string): VmRecord | undefined {
    return this.records.get(objectKey(namespace, name));
  }

  listVms(namespace: string): VmRecord[] {
    return this.recordsOf(this.stores.VirtualMachine.indexKeys(NAMESPACE_INDEX, namespace));
  }

  listVmsInChassis(chassis: string): VmRecord[] {
    if (!this.chassisNames.has(chassis)) return [];
    return this.recordsOf(this.stores.VirtualMachine.indexKeys(CHASSIS_INDEX, chassis));
  }

  /** Names of the configured chassis that contain this VM (empty when none or unknown). */
  chassisOf(namespace: string, name: string): readonly string[] {
    const vm = this.records.get(objectKey(namespace, name))?.vm;
    return vm ? this.chassisOfObject(vm) : [];
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
      virtualMachines: this.stores.VirtualMachine.size,
      virtualMachineInstances: this.stores.VirtualMachineInstance.size,
      dataVolumes: this.stores.DataVolume.size,
      chassis: this.chassisNames.size,
    };
  }

  // ---- internals ----

  private installIndexers(kind: CachedKind): void {
    const store = this.stores[kind];
    if (kind === "VirtualMachine") {
      store.addIndexer(CHASSIS_INDEX, vm => this.chassisOfObject(vm));
      store.addIndexer(DECLARED_DATAVOLUME_INDEX, vm => [...declaredDataVolumes(vm)].map(dv => objectKey(vm.metadata.namespace, dv)));
    } else if (kind === "DataVolume") {
      store.addIndexer(DATAVOLUME_BY_VM_INDEX, owningVmKeys);
    }
  }

  private chassisOfObject(vm: KubeObject): string[] {
    const member: string[] = [];
    for (const def of this.chassisByNamespace.get(vm.metadata.namespace ?? "") ?? []) {
      if (labelSelectorMatches(def.vmSelector, vm.metadata.labels)) member.push(def.name);
    }
    return member;
  }

  private recordsOf(keys: readonly string[]): VmRecord[] {
    const out: VmRecord[] = [];
    for (const key of keys) {
      const record = this.records.get(key);
      if (record) out.push(record);
    }
    return out;
  }

  private changed(kind: CachedKind, namespace: string, name: string, before: KubeObject | undefined, after: KubeObject | undefined): void {
    if (kind === "DataVolume") {
      const dvKey = objectKey(namespace, name);
      const affected = new Set(this.stores.VirtualMachine.indexKeys(DECLARED_DATAVOLUME_INDEX, dvKey));
      for (const obj of [before, after]) if (obj) owningVmKeys(obj).forEach(key => affected.add(key));
      for (const key of affected) this.rebuildRecord(namespace, nameOfKey(key));
    } else {
      this.rebuildRecord(namespace, name);
    }
    this.emit({ kind, namespace, name });
  }

  private rebuildRecord(namespace: string, name: string): void {
    const key = objectKey(namespace, name);
    const vm = this.stores.VirtualMachine.getByKey(key);
    if (!vm) {
      this.records.delete(key);
      return;
    }
    const declared = declaredDataVolumes(vm);
    const owned = this.stores.DataVolume.indexKeys(DATAVOLUME_BY_VM_INDEX, key).map(nameOfKey);
    const dataVolumes: KubeObject[] = [];
    for (const dv of [...new Set([...declared, ...owned])].sort()) {
      const obj = this.stores.DataVolume.get(namespace, dv);
      // An owned-only DataVolume must belong to this incarnation of the VM (same uid), not to a deleted namesake.
      if (obj && (declared.has(dv) || ownedBy(obj, vm))) dataVolumes.push(obj);
    }
    const vmi = this.stores.VirtualMachineInstance.getByKey(key);
    this.records.set(
      key,
      Object.freeze({
        vm,
        ...(vmi ? { vmi } : {}),
        dataVolumes: dataVolumes.length > 0 ? Object.freeze(dataVolumes) : NO_DATAVOLUMES,
      }),
    );
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

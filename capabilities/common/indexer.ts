// client-go's cache.Indexer: a store of objects by "namespace/name" key with named indexes (index name →
// indexed value → keys). An index function can be replaced while the store is in use (the chassis index
// changes with the configuration): the index is then rebuilt from the stored objects. Keys of one index value
// are handed out sorted, and the sorted list is kept until that value's membership changes, so a Redfish
// collection of 10,000 VMs is not re-sorted on every GET.
import type { KubeObject } from "./kube-types";

export type IndexFunc<T> = (obj: T) => readonly string[];

/** The index every store has: objects by namespace ("" for cluster-scoped objects). */
export const NAMESPACE_INDEX = "namespace";

export function objectKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ""}/${name}`;
}

export function keyOf(obj: KubeObject): string {
  return objectKey(obj.metadata.namespace, obj.metadata.name ?? "");
}

/** Index of DataVolumes by owning VirtualMachine ("namespace/name" of each VirtualMachine ownerReference). */
export const DATAVOLUME_BY_VM_INDEX = "vm";

export function owningVmKeys(dv: KubeObject): string[] {
  const refs = dv.metadata.ownerReferences;
  if (!Array.isArray(refs)) return [];
  return refs.filter(r => r?.kind === "VirtualMachine" && typeof r.name === "string").map(r => objectKey(dv.metadata.namespace, r.name));
}

/** The keys of one index value; `sorted` is dropped whenever a key joins or leaves. */
interface IndexEntry {
  keys: Set<string>;
  sorted?: readonly string[];
}

export class IndexedStore<T extends KubeObject = KubeObject> {
  readonly #objects = new Map<string, T>();
  readonly #indexers = new Map<string, IndexFunc<T>>();
  readonly #indexes = new Map<string, Map<string, IndexEntry>>();

  constructor() {
    this.addIndexer(NAMESPACE_INDEX, obj => [obj.metadata.namespace ?? ""]);
  }

  /** Adds the named index, or replaces its function and rebuilds it from the stored objects. */
  addIndexer(name: string, fn: IndexFunc<T>): void {
    this.#indexers.set(name, fn);
    this.#indexes.set(name, new Map());
    for (const [key, obj] of this.#objects) this.#index(name, fn, key, obj);
  }

  get size(): number {
    return this.#objects.size;
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.#objects.get(objectKey(namespace, name));
  }

  getByKey(key: string): T | undefined {
    return this.#objects.get(key);
  }

  list(): T[] {
    return [...this.#objects.values()];
  }

  entries(): IterableIterator<[string, T]> {
    return this.#objects.entries();
  }

  /** Keys of the objects whose index function gives `value`, sorted. */
  indexKeys(index: string, value: string): readonly string[] {
    const entry = this.#indexes.get(index)?.get(value);
    if (!entry) return [];
    entry.sorted ??= [...entry.keys].sort();
    return entry.sorted;
  }

  /** Objects whose index function gives `value`, in key order. */
  byIndex(index: string, value: string): T[] {
    return this.indexKeys(index, value).map(key => this.#objects.get(key)!);
  }

  /** Stores `obj` under its key; returns what it replaced. Index values an update keeps are left untouched. */
  put(obj: T): T | undefined {
    const key = keyOf(obj);
    const old = this.#objects.get(key);
    this.#objects.set(key, obj);
    for (const [name, fn] of this.#indexers) {
      const values = fn(obj);
      if (old) {
        const kept = new Set(values);
        this.#leave(name, key, fn(old).filter(v => !kept.has(v)));
      }
      this.#join(name, key, values);
    }
    return old;
  }

  /** Removes the object stored under `key`; returns it. */
  remove(key: string): T | undefined {
    const old = this.#objects.get(key);
    if (!old) return undefined;
    this.#unindex(key, old);
    this.#objects.delete(key);
    return old;
  }

  #index(name: string, fn: IndexFunc<T>, key: string, obj: T): void {
    this.#join(name, key, fn(obj));
  }

  #unindex(key: string, obj: T): void {
    for (const [name, fn] of this.#indexers) this.#leave(name, key, fn(obj));
  }

  #join(name: string, key: string, values: readonly string[]): void {
    const index = this.#indexes.get(name)!;
    for (const value of values) {
      let entry = index.get(value);
      if (!entry) index.set(value, (entry = { keys: new Set() }));
      if (!entry.keys.has(key)) {
        entry.keys.add(key);
        entry.sorted = undefined;
      }
    }
  }

  #leave(name: string, key: string, values: readonly string[]): void {
    const index = this.#indexes.get(name)!;
    for (const value of values) {
      const entry = index.get(value);
      if (!entry?.keys.delete(key)) continue;
      entry.sorted = undefined;
      if (entry.keys.size === 0) index.delete(value);
    }
  }
}

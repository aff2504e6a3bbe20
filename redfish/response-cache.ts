// Rendered responses of the hot GETs (ComputerSystem, its SecureBoot, its Manager), serialized once with their ETag
// and header records and served until the cache record they were rendered from changes.
//
// An entry belongs to one VM (its uid) and remembers the record it was rendered from: the watch cache never changes
// a record, it replaces it (frozen) on every change of the VM, its VMI or its DataVolumes, so a lookup with another
// record drops the VM's entries and renders again. Under a VM, the key names the resource and the principal's view
// of it (the chassis of the principal that contain the VM, which the body links): principals who see the system
// through different chassis get different entries. Lookups happen only after authentication and the chassis check
// that resolved the record, never by URL or credentials.
//
// Memory is bounded: at most MAX_CACHED_SYSTEMS VMs (least recently used first out) with at most
// MAX_VIEWS_PER_SYSTEM entries each. An entry is the body's bytes (about 2 KiB for a System), its ETag and its
// header record; System, SecureBoot and Manager of one VM take about 10 KiB of heap
// (scripts/bench/response-cache-memory.ts), so the bound is about 10 MiB. A fleet polled in a cycle larger than
// the bound misses every time, which costs what rendering without the cache costs.
import { represent, type Representation } from "./odata";

/** VMs whose responses are kept. */
export const MAX_CACHED_SYSTEMS = 1_024;
/** Distinct (resource, view) entries kept per VM; the oldest goes first beyond it. */
export const MAX_VIEWS_PER_SYSTEM = 16;

interface SystemEntry {
  record: object;
  views: Map<string, Representation>;
}

export class ResponseCache {
  /** By VM uid, least recently used first. */
  private readonly systems = new Map<string, SystemEntry>();

  constructor(private readonly maxSystems = MAX_CACHED_SYSTEMS) {}

  /** The representation of `render()` for (the VM `uid` as `record` has it, key), rendered on the first request only. */
  representation(uid: string, record: object, key: string, render: () => unknown): Representation {
    let entry = this.systems.get(uid);
    if (entry) {
      this.systems.delete(uid); // re-inserted below as the most recently used
      if (entry.record !== record) entry = undefined;
    }
    if (!entry) {
      entry = { record, views: new Map() };
      if (this.systems.size >= this.maxSystems) this.systems.delete(this.systems.keys().next().value!);
    }
    this.systems.set(uid, entry);
    let rep = entry.views.get(key);
    if (!rep) {
      rep = represent(render());
      if (entry.views.size >= MAX_VIEWS_PER_SYSTEM) entry.views.delete(entry.views.keys().next().value!);
      entry.views.set(key, rep);
    }
    return rep;
  }

  /** VMs with cached responses (tests). */
  get size(): number {
    return this.systems.size;
  }
}

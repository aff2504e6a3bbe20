// Rendered responses of the hot GETs (ComputerSystem, its SecureBoot, its Manager), serialized once with their ETag
// and header records and served until the cache record they were rendered from changes.
//
// Keyed by the record object itself: the watch cache never changes a record, it replaces it (frozen) on every
// change of the VM, its VMI or its DataVolumes, so a new record misses and the old one's entries go with it when
// the cache drops it (WeakMap). Under a record, the key names the resource and the principal's view of it (the
// chassis of the principal that contain the VM, which the body links): principals who see the system through
// different chassis get different entries. Lookups happen only after authentication and the chassis check that
// resolved the record, never by URL or credentials.
//
// Memory: at most MAX_VIEWS_PER_RECORD entries per live record, each the body's bytes (about 2 KiB for a System)
// plus its ETag and one header record per Allow value.
import { represent, type Representation } from "./odata";

/** Distinct (resource, view) entries kept per record; the oldest goes first beyond it. */
export const MAX_VIEWS_PER_RECORD = 16;

export class ResponseCache {
  private readonly byRecord = new WeakMap<object, Map<string, Representation>>();

  /** The representation of `render()` for (record, key), rendered on the first request only. */
  representation(record: object, key: string, render: () => unknown): Representation {
    let views = this.byRecord.get(record);
    if (!views) {
      views = new Map();
      this.byRecord.set(record, views);
    }
    let rep = views.get(key);
    if (!rep) {
      rep = represent(render());
      if (views.size >= MAX_VIEWS_PER_RECORD) views.delete(views.keys().next().value!);
      views.set(key, rep);
    }
    return rep;
  }
}

// Read-your-writes for Redfish writes: a write is done when the API server accepted it, but its watch event
// reaches the cache a moment later (kube-apiserver sends the answer first). A handler whose client may read the
// change next (a PATCH, then a GET of the same resource) waits for the cache to show it before replying.
import type { ClusterCache, VmRecord } from "./types";

/** How long a write's reply waits at most for the cache to show it; after that it answers regardless. */
export const CACHE_WAIT_MS = 2000;

/** Resolves once the cache satisfies `done` for the VM (true), or the time is up (false: the caller goes on regardless). */
export function waitForCache(cache: ClusterCache, namespace: string, name: string, done: (rec: VmRecord | undefined) => boolean, timeoutMs = CACHE_WAIT_MS): Promise<boolean> {
  if (done(cache.getVm(namespace, name))) return Promise.resolve(true);
  return new Promise(resolve => {
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      unsubscribe();
      resolve(ok);
    };
    const unsubscribe = cache.onChange(ev => {
      if (ev.namespace === namespace && done(cache.getVm(namespace, name))) finish(true);
    });
    const timer = setTimeout(() => finish(false), timeoutMs);
  });
}

/**
 * The resourceVersions the cache shows for one VM from its creation on, so that a write made after it can be
 * waited for by the version the write answered with. resourceVersions are opaque (only equality means anything),
 * and the write's event may arrive before its answer and be followed by others: the versions seen are kept.
 */
export class VmVersions {
  readonly #seen = new Set<string>();
  readonly #unsubscribe: () => void;

  constructor(
    private readonly cache: ClusterCache,
    private readonly namespace: string,
    private readonly name: string,
  ) {
    this.#unsubscribe = cache.onChange(ev => {
      if (ev.kind !== "VirtualMachine" || ev.namespace !== namespace || ev.name !== name) return;
      const version = cache.getVm(namespace, name)?.vm.metadata.resourceVersion;
      if (version !== undefined) this.#seen.add(version);
    });
  }

  /** Resolves once the cache has shown the VM at `resourceVersion` or deleted it (true), or the time is up (false). */
  shown(resourceVersion: string, timeoutMs = CACHE_WAIT_MS): Promise<boolean> {
    return waitForCache(this.cache, this.namespace, this.name, rec => !rec || this.#seen.has(resourceVersion) || rec.vm.metadata.resourceVersion === resourceVersion, timeoutMs);
  }

  stop(): void {
    this.#unsubscribe();
  }
}

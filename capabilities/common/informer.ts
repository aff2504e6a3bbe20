// A shared informer (client-go's reflector + indexer idea) on the module's one KubeClient: list (paged), then
// watch from the list's resourceVersion with `timeoutSeconds`; a watch the server ends is resumed from the last
// resourceVersion seen (events and bookmarks), a 410 Gone re-lists, other failures back off (bounded, with
// jitter). One store of frozen objects with named indexes; handlers see add / update / delete in stream order.
// resourceVersions are compared for equality only (Kubernetes says they are opaque).
// client-node's ListWatch was not used: it stops on the first non-410 error (no back-off, no restart), sets
// no timeoutSeconds, and its Watch builds a new agent (new connections) per watch.
import type { KubeObject } from "./kube-types";
import { KubeApiError, isResourceVersionGone, type KubeClient, type WatchEvent } from "./kube-client";

export interface InformerLog {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** What to list and watch. */
export interface InformerResource {
  /** For logs and metrics: "VirtualMachine", "users Secret", ... */
  kind: string;
  /** Collection path: /apis/kubevirt.io/v1/virtualmachines, /api/v1/namespaces/pepr-system/secrets, ... */
  path: string;
  fieldSelector?: string;
  labelSelector?: string;
}

export interface InformerOptions {
  log: InformerLog;
  /** Watches ask the server to end them after a random time in [t, 2t) seconds (client-go: 5 min). */
  watchTimeoutSeconds?: number;
  /** Items per list page. */
  pageSize?: number;
  backoff?: { initialMs: number; maxMs: number };
  /** Objects are never logged; set for kinds whose content is secret, to keep even names out of debug logs. */
  quiet?: boolean;
}

export interface InformerHandlers<T> {
  onAdd?(obj: T): void;
  onUpdate?(obj: T, old: T): void;
  onDelete?(obj: T): void;
  /** After each complete list (first sync and every re-list): the store holds exactly what was listed. */
  onSynced?(): void;
}

/** Counters for tests, the bench and logs. */
export interface InformerStats {
  lists: number;
  watches: number;
  /** Re-lists forced by 410 Gone. */
  expired: number;
  failures: number;
  watching: boolean;
  objects: number;
}

type Indexer<T> = (obj: T) => readonly string[];

const DEFAULT_WATCH_TIMEOUT_SECONDS = 300;
const DEFAULT_PAGE_SIZE = 500;
const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 10_000 };
const LIST_TIMEOUT_MS = 60_000;
/** A watch that ends sooner than this after it opened counts as a failure for the back-off. */
const SHORT_WATCH_MS = 1_000;

function keyOf(obj: KubeObject): string {
  return `${obj.metadata.namespace ?? ""}/${obj.metadata.name ?? ""}`;
}

function deepFreeze<V>(value: V): V {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as Record<string, unknown>)) deepFreeze(child);
  }
  return value;
}

function isKubeObject(value: unknown): value is KubeObject {
  const meta = (value as { metadata?: { name?: unknown } } | null)?.metadata;
  return typeof meta === "object" && meta !== null && typeof meta.name === "string";
}

interface ListPage {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: unknown[];
}

export class Informer<T extends KubeObject = KubeObject> {
  readonly #client: KubeClient;
  readonly #resource: InformerResource;
  readonly #log: InformerLog;
  readonly #watchTimeoutSeconds: number;
  readonly #pageSize: number;
  readonly #backoff: { initialMs: number; maxMs: number };
  readonly #quiet: boolean;
  readonly #store = new Map<string, T>();
  readonly #indexers = new Map<string, Indexer<T>>();
  /** index name → value → keys */
  readonly #indexes = new Map<string, Map<string, Set<string>>>();
  readonly #handlers = new Set<InformerHandlers<T>>();
  readonly #stats: InformerStats = { lists: 0, watches: 0, expired: 0, failures: 0, watching: false, objects: 0 };
  #resourceVersion: string | undefined;
  #synced = false;
  #syncWaiters: (() => void)[] = [];
  #running = false;
  #abort = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(client: KubeClient, resource: InformerResource, opts: InformerOptions) {
    this.#client = client;
    this.#resource = resource;
    this.#log = opts.log;
    this.#watchTimeoutSeconds = opts.watchTimeoutSeconds ?? DEFAULT_WATCH_TIMEOUT_SECONDS;
    this.#pageSize = opts.pageSize ?? DEFAULT_PAGE_SIZE;
    this.#backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.#quiet = opts.quiet ?? false;
    this.addIndexer("namespace", obj => [obj.metadata.namespace ?? ""]);
  }

  get kind(): string {
    return this.#resource.kind;
  }

  /** A named index: `fn` gives the index values of an object. Add before `start`. */
  addIndexer(name: string, fn: Indexer<T>): void {
    this.#indexers.set(name, fn);
    this.#indexes.set(name, new Map());
    for (const [key, obj] of this.#store) this.#index(name, fn, key, obj);
  }

  /** Subscribes; when already synced, the objects in the store are delivered as adds first. Returns unsubscribe. */
  addHandlers(handlers: InformerHandlers<T>): () => void {
    this.#handlers.add(handlers);
    if (this.#synced) {
      for (const obj of this.#store.values()) this.#call(handlers, "onAdd", obj);
      this.#call(handlers, "onSynced");
    }
    return () => this.#handlers.delete(handlers);
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#abort = new AbortController();
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#abort.abort();
    await this.#loop;
  }

  hasSynced(): boolean {
    return this.#synced;
  }

  /** Resolves after the first complete list. */
  waitForSync(): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise(resolve => this.#syncWaiters.push(resolve));
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.#store.get(`${namespace ?? ""}/${name}`);
  }

  list(): T[] {
    return [...this.#store.values()];
  }

  /** Objects whose indexer `name` gives `value`. */
  byIndex(name: string, value: string): T[] {
    const keys = this.#indexes.get(name)?.get(value);
    return keys ? [...keys].map(k => this.#store.get(k)!).filter(Boolean) : [];
  }

  stats(): InformerStats {
    return { ...this.#stats, objects: this.#store.size };
  }

  // ---- the reflector loop ----

  async #run(): Promise<void> {
    let failures = 0;
    while (this.#running) {
      const opened = Date.now();
      try {
        if (this.#resourceVersion === undefined) await this.#relist();
        await this.#watch();
        if (Date.now() - opened >= SHORT_WATCH_MS) {
          failures = 0;
          continue;
        }
        // The server ended the watch at once (e.g. while it shuts down): not a tight loop.
        await this.#sleep(this.#delay(failures++));
      } catch (error) {
        if (!this.#running) break;
        if (isResourceVersionGone(error) && this.#resourceVersion !== undefined) {
          this.#stats.expired++;
          this.#log.info({ kind: this.#resource.kind }, `${this.#resource.kind} informer: resourceVersion expired (410), re-listing`);
          this.#resourceVersion = undefined;
          continue;
        }
        this.#stats.failures++;
        const delay = this.#delay(failures++);
        this.#log.warn(
          { kind: this.#resource.kind, status: error instanceof KubeApiError ? error.status : undefined, error: describe(error), retryInMs: delay },
          `${this.#resource.kind} informer: list/watch failed; retrying`,
        );
        await this.#sleep(delay);
      }
    }
    this.#stats.watching = false;
  }

  #delay(failures: number): number {
    const base = Math.min(this.#backoff.maxMs, this.#backoff.initialMs * 2 ** failures);
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise(resolve => {
      const timer = setTimeout(resolve, ms);
      this.#abort.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }

  async #relist(): Promise<void> {
    const items: T[] = [];
    let resourceVersion: string | undefined;
    let continueToken: string | undefined;
    do {
      const page = await this.#client.request<ListPage>({
        method: "GET",
        path: this.#resource.path,
        query: {
          limit: this.#pageSize,
          continue: continueToken,
          fieldSelector: this.#resource.fieldSelector,
          labelSelector: this.#resource.labelSelector,
        },
        timeoutMs: LIST_TIMEOUT_MS,
      });
      for (const item of page?.items ?? []) if (isKubeObject(item)) items.push(deepFreeze(item as T));
      resourceVersion = page?.metadata?.resourceVersion;
      continueToken = page?.metadata?.continue || undefined;
    } while (continueToken && this.#running);
    if (!this.#running) return;
    this.#stats.lists++;
    this.#replace(items);
    this.#resourceVersion = resourceVersion ?? "";
    if (!this.#quiet) this.#log.debug({ kind: this.#resource.kind, count: items.length }, `${this.#resource.kind} informer: listed`);
  }

  async #watch(): Promise<void> {
    const abort = new AbortController();
    const onStop = () => abort.abort();
    this.#abort.signal.addEventListener("abort", onStop, { once: true });
    const timeoutSeconds = this.#watchTimeoutSeconds + Math.floor(Math.random() * this.#watchTimeoutSeconds);
    let gone: KubeApiError | undefined;
    this.#stats.watches++;
    this.#stats.watching = true;
    this.#log.debug({ kind: this.#resource.kind, timeoutSeconds }, `${this.#resource.kind} informer: watching`);
    try {
      await this.#client.watch(
        this.#resource.path,
        {
          resourceVersion: this.#resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds,
          fieldSelector: this.#resource.fieldSelector,
          labelSelector: this.#resource.labelSelector,
        },
        ev => {
          const failure = this.#onEvent(ev);
          if (failure) {
            gone = failure;
            abort.abort();
          }
        },
        { signal: abort.signal, idleMs: (timeoutSeconds + 30) * 1000 },
      );
    } finally {
      this.#stats.watching = false;
      this.#abort.signal.removeEventListener("abort", onStop);
    }
    if (gone) throw gone;
  }

  /** Applies one event; an ERROR event is returned as the error that ends the stream. */
  #onEvent(ev: WatchEvent): KubeApiError | undefined {
    if (ev.type === "ERROR") {
      const status = ev.object as { code?: unknown; reason?: unknown; message?: unknown };
      return new KubeApiError(typeof status.code === "number" ? status.code : 500, String(status.reason ?? "Error"), String(status.message ?? "watch error"));
    }
    const obj = ev.object;
    if (!isKubeObject(obj)) return undefined;
    const rv = obj.metadata.resourceVersion;
    if (ev.type === "BOOKMARK") {
      if (rv) this.#resourceVersion = rv;
      return undefined;
    }
    const frozen = deepFreeze(obj as T);
    const key = keyOf(frozen);
    const old = this.#store.get(key);
    if (ev.type === "DELETED") {
      if (old) this.#remove(key, old);
      this.#emit("onDelete", old ?? frozen);
    } else {
      this.#put(key, frozen, old);
      if (old) this.#emit("onUpdate", frozen, old);
      else this.#emit("onAdd", frozen);
    }
    if (rv) this.#resourceVersion = rv;
    return undefined;
  }

  /** The store becomes exactly `items`: adds, updates (a changed resourceVersion) and deletes as events. */
  #replace(items: readonly T[]): void {
    const listed = new Set<string>();
    for (const obj of items) {
      const key = keyOf(obj);
      listed.add(key);
      const old = this.#store.get(key);
      if (old && old.metadata.resourceVersion === obj.metadata.resourceVersion) continue;
      this.#put(key, obj, old);
      if (old) this.#emit("onUpdate", obj, old);
      else this.#emit("onAdd", obj);
    }
    for (const [key, old] of [...this.#store]) {
      if (listed.has(key)) continue;
      this.#remove(key, old);
      this.#emit("onDelete", old);
    }
    const first = !this.#synced;
    this.#synced = true;
    this.#emit("onSynced");
    if (first) {
      const waiters = this.#syncWaiters;
      this.#syncWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  #put(key: string, obj: T, old: T | undefined): void {
    if (old) this.#unindex(key, old);
    this.#store.set(key, obj);
    for (const [name, fn] of this.#indexers) this.#index(name, fn, key, obj);
  }

  #remove(key: string, old: T): void {
    this.#unindex(key, old);
    this.#store.delete(key);
  }

  #index(name: string, fn: Indexer<T>, key: string, obj: T): void {
    const index = this.#indexes.get(name)!;
    for (const value of fn(obj)) {
      let keys = index.get(value);
      if (!keys) index.set(value, (keys = new Set()));
      keys.add(key);
    }
  }

  #unindex(key: string, obj: T): void {
    for (const [name, fn] of this.#indexers) {
      const index = this.#indexes.get(name)!;
      for (const value of fn(obj)) {
        const keys = index.get(value);
        keys?.delete(key);
        if (keys?.size === 0) index.delete(value);
      }
    }
  }

  #emit(event: "onAdd" | "onUpdate" | "onDelete" | "onSynced", obj?: T, old?: T): void {
    for (const handlers of this.#handlers) this.#call(handlers, event, obj, old);
  }

  #call(handlers: InformerHandlers<T>, event: "onAdd" | "onUpdate" | "onDelete" | "onSynced", obj?: T, old?: T): void {
    try {
      if (event === "onSynced") handlers.onSynced?.();
      else if (event === "onUpdate") handlers.onUpdate?.(obj!, old!);
      else handlers[event]?.(obj!);
    } catch (error) {
      // One consumer's bug must not stop the stream for the others.
      this.#log.warn({ kind: this.#resource.kind, event, error: describe(error) }, `${this.#resource.kind} informer: a handler failed`);
    }
  }
}

/** Error text without bodies (no object content, which could be secret). */
function describe(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0].slice(0, 300);
}

// A shared informer (client-go's reflector + indexer idea) on the module's one KubeClient. One informer per
// kind holds ONE store with named indexes and ONE handler stream, fed by one reflector per watched namespace
// (or one for the whole cluster): each lists (paged), then watches from its list's resourceVersion with
// `timeoutSeconds`; a watch the server ends is resumed from the last resourceVersion seen (events and
// bookmarks), a 410 Gone re-lists that namespace, other failures back off (bounded, with jitter). The watched
// namespaces can change at run time: a new one is listed (adds), a dropped one's objects leave the store as
// deletes. resourceVersions are compared for equality only (Kubernetes says they are opaque, and each
// namespace's stream has its own).
// client-node's ListWatch was not used: it stops on the first non-410 error (no back-off, no restart), sets
// no timeoutSeconds, and its Watch builds a new agent (new connections) per watch.
import { IndexedStore, keyOf, NAMESPACE_INDEX, type IndexFunc } from "./indexer";
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
  /** Collection path of one namespace, or of the whole cluster when `namespace` is undefined. */
  path(namespace?: string): string;
  fieldSelector?: string;
  labelSelector?: string;
}

/**
 * Bounds the lists in flight across streams (and informers): a hundred namespaces listing at once would hold every
 * page of every namespace in memory together, and the process keeps that high-water mark. A stream lists all its
 * pages inside one turn.
 */
export class ListGate {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(concurrency: number) {
    this.#free = concurrency;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>(resolve => this.#waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

const DEFAULT_LIST_CONCURRENCY = 4;

/** The namespaces an informer lists and watches: all of them (one cluster-wide stream) or these (one stream each). */
export type NamespaceScope = "all" | readonly string[];

export interface InformerOptions<T extends KubeObject = KubeObject> {
  log: InformerLog;
  /** Default "all". */
  namespaces?: NamespaceScope;
  /** Watches ask the server to end them after a random time in [t, 2t) seconds (client-go: 5 min). */
  watchTimeoutSeconds?: number;
  /** Items per list page. */
  pageSize?: number;
  backoff?: { initialMs: number; maxMs: number };
  /** Objects are never logged; set for kinds whose content is secret, to keep even names out of debug logs. */
  quiet?: boolean;
  /** Shared by the informers of a process; default: one gate per informer. */
  listGate?: ListGate;
  /** client-go's SetTransform: applied to every listed or watched object before it is stored (drop what nobody reads). */
  transform?: (obj: T) => T;
}

export interface InformerHandlers<T> {
  onAdd?(obj: T): void;
  onUpdate?(obj: T, old: T): void;
  onDelete?(obj: T): void;
  /** After each complete list of a namespace (or the cluster): the store holds exactly what was listed there. */
  onSynced?(): void;
}

/** Counters for tests, the bench and logs (summed over the namespaces' streams). */
export interface InformerStats {
  lists: number;
  watches: number;
  /** Re-lists forced by 410 Gone. */
  expired: number;
  failures: number;
  /** Every stream of the informer is watching (false while one lists, backs off, or there is none). */
  watching: boolean;
  /** Streams: one per watched namespace, or one cluster-wide. */
  streams: number;
  objects: number;
}

const DEFAULT_WATCH_TIMEOUT_SECONDS = 300;
const DEFAULT_PAGE_SIZE = 500;
const DEFAULT_BACKOFF = { initialMs: 500, maxMs: 10_000 };
const LIST_TIMEOUT_MS = 60_000;
/** A watch that ends sooner than this after it opened counts as a failure for the back-off. */
const SHORT_WATCH_MS = 1_000;
/** The stream key of a cluster-wide reflector (namespaces are DNS labels, never empty). */
const ALL = "";

/** Longer strings (certificates, embedded documents) are rarely equal across objects: not worth a lookup. */
const MAX_SHARED_STRING_LENGTH = 256;

/**
 * Equal strings of stored objects share one copy: JSON.parse gives every object its own "kubevirt.io/v1", image
 * reference, label value, condition reason and message (about 300 bytes per VM of 10,000 alike VMs). Bounded: it
 * forgets everything once it holds `capacity` strings, so values seen once (uids, resourceVersions, timestamps)
 * cannot make it grow; a value that repeats is back in it within a few hundred objects.
 */
export class StringPool {
  readonly #strings = new Map<string, string>();
  readonly #capacity: number;

  constructor(capacity = 4096) {
    this.#capacity = capacity;
  }

  get size(): number {
    return this.#strings.size;
  }

  /** The pool's copy of `value` (`value` itself the first time). */
  share(value: string): string {
    if (value.length > MAX_SHARED_STRING_LENGTH) return value;
    const shared = this.#strings.get(value);
    if (shared !== undefined) return shared;
    if (this.#strings.size >= this.#capacity) this.#strings.clear();
    this.#strings.set(value, value);
    return value;
  }
}

/** Freezes `value` deeply; on the way its string values become the pool's copies. */
export function freezeSharingStrings<V>(value: V, pool: StringPool): V {
  if (value === null || typeof value !== "object" || Object.isFrozen(value)) return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const child: unknown = value[i];
      if (typeof child === "string") value[i] = pool.share(child);
      else freezeSharingStrings(child, pool);
    }
  } else {
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      const child = record[key];
      if (typeof child === "string") record[key] = pool.share(child);
      else freezeSharingStrings(child, pool);
    }
  }
  return Object.freeze(value);
}

function isKubeObject(value: unknown): value is KubeObject {
  const meta = (value as { metadata?: { name?: unknown } } | null)?.metadata;
  return typeof meta === "object" && meta !== null && typeof meta.name === "string";
}

interface ListPage {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: unknown[];
}

/** What a reflector needs from its informer. */
interface ReflectorSink<T> {
  /** A complete list of the reflector's namespace (or of the cluster). */
  replace(namespace: string | undefined, items: readonly T[]): void;
  /** One watch event, in stream order. */
  apply(type: "ADDED" | "MODIFIED" | "DELETED", obj: T): void;
  /** Raw object → stored object (transformed, frozen), or undefined when it is not an object. */
  accept(raw: unknown): T | undefined;
}

type ReflectorOptions = {
  log: InformerLog;
  watchTimeoutSeconds: number;
  pageSize: number;
  backoff: { initialMs: number; maxMs: number };
  quiet: boolean;
  listGate: ListGate;
};

/** client-go's Reflector: the list + watch loop of one namespace (or of the whole cluster). */
class Reflector<T extends KubeObject> {
  readonly #namespace: string | undefined;
  readonly #client: KubeClient;
  readonly #resource: InformerResource;
  readonly #opts: ReflectorOptions;
  readonly #stats: InformerStats;
  readonly #sink: ReflectorSink<T>;
  readonly #abort = new AbortController();
  readonly #loop: Promise<void>;
  #resourceVersion: string | undefined;
  #running = true;
  watching = false;
  listed = false;

  constructor(
    namespace: string | undefined,
    client: KubeClient,
    resource: InformerResource,
    opts: ReflectorOptions,
    stats: InformerStats,
    sink: ReflectorSink<T>,
  ) {
    this.#namespace = namespace;
    this.#client = client;
    this.#resource = resource;
    this.#opts = opts;
    this.#stats = stats;
    this.#sink = sink;
    this.#loop = this.#run();
  }

  /** Ends the stream; nothing reaches the store afterwards. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#abort.abort();
    await this.#loop;
  }

  get #logFields(): object {
    return { kind: this.#resource.kind, ...(this.#namespace ? { namespace: this.#namespace } : {}) };
  }

  get #what(): string {
    return `${this.#resource.kind} informer${this.#namespace ? ` (${this.#namespace})` : ""}`;
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (this.#running) {
      const opened = Date.now();
      try {
        if (this.#resourceVersion === undefined) await this.#opts.listGate.run(() => this.#relist());
        if (!this.#running) break;
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
          this.#opts.log.info(this.#logFields, `${this.#what}: resourceVersion expired (410), re-listing`);
          this.#resourceVersion = undefined;
          continue;
        }
        this.#stats.failures++;
        const delay = this.#delay(failures++);
        this.#opts.log.warn(
          { ...this.#logFields, status: error instanceof KubeApiError ? error.status : undefined, error: describe(error), retryInMs: delay },
          `${this.#what}: list/watch failed; retrying`,
        );
        await this.#sleep(delay);
      }
    }
    this.watching = false;
  }

  #delay(failures: number): number {
    const { initialMs, maxMs } = this.#opts.backoff;
    const base = Math.min(maxMs, initialMs * 2 ** failures);
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise(resolve => {
      const timer = setTimeout(resolve, ms);
      this.#abort.signal.addEventListener(
        "abort",
        () => {
          clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });
  }

  async #relist(): Promise<void> {
    if (!this.#running) return;
    const items: T[] = [];
    let resourceVersion: string | undefined;
    let continueToken: string | undefined;
    do {
      const page = await this.#client.request<ListPage>({
        method: "GET",
        path: this.#resource.path(this.#namespace),
        query: {
          limit: this.#opts.pageSize,
          continue: continueToken,
          fieldSelector: this.#resource.fieldSelector,
          labelSelector: this.#resource.labelSelector,
        },
        timeoutMs: LIST_TIMEOUT_MS,
      });
      for (const item of page?.items ?? []) {
        const obj = this.#sink.accept(item);
        if (obj) items.push(obj);
      }
      resourceVersion = page?.metadata?.resourceVersion;
      continueToken = page?.metadata?.continue || undefined;
    } while (continueToken && this.#running);
    if (!this.#running) return;
    this.#stats.lists++;
    this.listed = true;
    this.#sink.replace(this.#namespace, items);
    this.#resourceVersion = resourceVersion ?? "";
    if (!this.#opts.quiet) this.#opts.log.debug({ ...this.#logFields, count: items.length }, `${this.#what}: listed`);
  }

  async #watch(): Promise<void> {
    const abort = new AbortController();
    const onStop = () => abort.abort();
    this.#abort.signal.addEventListener("abort", onStop, { once: true });
    const timeoutSeconds = this.#opts.watchTimeoutSeconds + Math.floor(Math.random() * this.#opts.watchTimeoutSeconds);
    let gone: KubeApiError | undefined;
    this.#stats.watches++;
    this.watching = true;
    this.#opts.log.debug({ ...this.#logFields, timeoutSeconds }, `${this.#what}: watching`);
    try {
      await this.#client.watch(
        this.#resource.path(this.#namespace),
        {
          resourceVersion: this.#resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds,
          fieldSelector: this.#resource.fieldSelector,
          labelSelector: this.#resource.labelSelector,
        },
        ev => {
          if (!this.#running) return;
          const failure = this.#onEvent(ev);
          if (failure) {
            gone = failure;
            abort.abort();
          }
        },
        { signal: abort.signal, idleMs: (timeoutSeconds + 30) * 1000 },
      );
    } finally {
      this.watching = false;
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
    const rv = isKubeObject(ev.object) ? ev.object.metadata.resourceVersion : undefined;
    if (ev.type !== "BOOKMARK") {
      const obj = this.#sink.accept(ev.object);
      if (!obj) return undefined;
      this.#sink.apply(ev.type, obj);
    }
    if (rv) this.#resourceVersion = rv;
    return undefined;
  }
}

export class Informer<T extends KubeObject = KubeObject> {
  readonly #client: KubeClient;
  readonly #resource: InformerResource;
  readonly #log: InformerLog;
  readonly #reflectorOpts: ReflectorOptions;
  readonly #transform: ((obj: T) => T) | undefined;
  readonly #store = new IndexedStore<T>();
  /** One per informer: the objects of one kind repeat each other's values. */
  readonly #strings = new StringPool();
  readonly #handlers = new Set<InformerHandlers<T>>();
  readonly #stats: InformerStats = { lists: 0, watches: 0, expired: 0, failures: 0, watching: false, streams: 0, objects: 0 };
  /** Stream key (a namespace, or ALL) → its reflector, while running. */
  readonly #reflectors = new Map<string, Reflector<T>>();
  #scope: NamespaceScope;
  #synced = false;
  #syncWaiters: (() => void)[] = [];
  #running = false;
  /** Serialises scope changes and stop (a dropped stream is stopped before its objects leave the store). */
  #changes: Promise<void> = Promise.resolve();

  constructor(client: KubeClient, resource: InformerResource, opts: InformerOptions<T>) {
    this.#client = client;
    this.#resource = resource;
    this.#log = opts.log;
    this.#scope = opts.namespaces ?? "all";
    this.#transform = opts.transform;
    this.#reflectorOpts = {
      log: opts.log,
      watchTimeoutSeconds: opts.watchTimeoutSeconds ?? DEFAULT_WATCH_TIMEOUT_SECONDS,
      pageSize: opts.pageSize ?? DEFAULT_PAGE_SIZE,
      backoff: opts.backoff ?? DEFAULT_BACKOFF,
      quiet: opts.quiet ?? false,
      listGate: opts.listGate ?? new ListGate(DEFAULT_LIST_CONCURRENCY),
    };
  }

  get kind(): string {
    return this.#resource.kind;
  }

  /** The informer's store (client-go's GetIndexer): read it, add indexes; only the informer writes it. */
  get store(): IndexedStore<T> {
    return this.#store;
  }

  /** A named index: `fn` gives the index values of an object; replacing a function rebuilds its index. */
  addIndexer(name: string, fn: IndexFunc<T>): void {
    this.#store.addIndexer(name, fn);
  }

  /** Subscribes; when already synced, the objects in the store are delivered as adds first. Returns unsubscribe. */
  addHandlers(handlers: InformerHandlers<T>): () => void {
    this.#handlers.add(handlers);
    if (this.#synced) {
      for (const obj of this.#store.list()) this.#call(handlers, "onAdd", obj);
      this.#call(handlers, "onSynced");
    }
    return () => this.#handlers.delete(handlers);
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#reconcileStreams();
  }

  async stop(): Promise<void> {
    this.#running = false;
    const stopping = [...this.#reflectors.values()].map(r => r.stop());
    this.#reflectors.clear();
    await Promise.all([this.#changes, ...stopping]);
  }

  /**
   * Changes the watched namespaces: streams of new namespaces start (their objects arrive as adds), streams of
   * dropped ones stop and their objects leave the store as deletes. Resolves when the change is done.
   */
  setNamespaces(scope: NamespaceScope): Promise<void> {
    this.#scope = scope === "all" ? "all" : [...new Set(scope)].sort();
    if (this.#running) this.#reconcileStreams();
    return this.#changes;
  }

  /** The namespaces listed and watched ("all" = one cluster-wide stream). */
  namespaces(): NamespaceScope {
    return this.#scope;
  }

  /** True once every stream has completed its first list (client-go: stays true afterwards). */
  hasSynced(): boolean {
    return this.#synced;
  }

  /** Resolves after the first complete list of every stream. */
  waitForSync(): Promise<void> {
    if (this.#synced) return Promise.resolve();
    return new Promise(resolve => this.#syncWaiters.push(resolve));
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.#store.get(namespace, name);
  }

  list(): T[] {
    return this.#store.list();
  }

  /** Objects whose indexer `name` gives `value`, in key order. */
  byIndex(name: string, value: string): T[] {
    return this.#store.byIndex(name, value);
  }

  stats(): InformerStats {
    const streams = [...this.#reflectors.values()];
    return { ...this.#stats, watching: streams.length > 0 && streams.every(r => r.watching), streams: streams.length, objects: this.#store.size };
  }

  // ---- streams ----

  #reconcileStreams(): void {
    const wanted = new Set(this.#scope === "all" ? [ALL] : this.#scope);
    const dropped = [...this.#reflectors.keys()].filter(key => !wanted.has(key));
    const stopping = dropped.map(key => {
      const reflector = this.#reflectors.get(key)!;
      this.#reflectors.delete(key);
      return { key, stopped: reflector.stop() };
    });
    for (const key of wanted) {
      if (this.#reflectors.has(key)) continue;
      const namespace = key === ALL ? undefined : key;
      this.#log.debug({ kind: this.#resource.kind, ...(namespace ? { namespace } : {}) }, `${this.#resource.kind} informer: stream started`);
      this.#reflectors.set(key, new Reflector(namespace, this.#client, this.#resource, this.#reflectorOpts, this.#stats, this.#sink));
    }
    if (stopping.length > 0) {
      this.#changes = this.#changes.then(async () => {
        for (const { key, stopped } of stopping) {
          await stopped;
          // The namespace's objects leave; a cluster-wide stream replaced by namespaced ones hands over what they list.
          if (key !== ALL) this.#forget(key);
          else this.#forgetOutside(wanted);
        }
      });
    }
    this.#checkSynced();
  }

  /** Deletes (with events) the objects of a namespace that is no longer watched. */
  #forget(namespace: string): void {
    // Watched again meanwhile (or cluster-wide now): that stream's lists replace what it holds.
    if (this.#reflectors.has(namespace) || this.#reflectors.has(ALL)) return;
    for (const obj of this.#store.byIndex(NAMESPACE_INDEX, namespace)) this.#delete(obj);
  }

  #forgetOutside(wanted: ReadonlySet<string>): void {
    if (this.#reflectors.has(ALL)) return;
    for (const obj of this.#store.list()) if (!wanted.has(obj.metadata.namespace ?? "")) this.#delete(obj);
  }

  readonly #sink: ReflectorSink<T> = {
    accept: raw => {
      if (!isKubeObject(raw)) return undefined;
      const obj = this.#transform ? this.#transform(raw as T) : (raw as T);
      return freezeSharingStrings(obj, this.#strings);
    },
    replace: (namespace, items) => this.#replace(namespace, items),
    apply: (type, obj) => {
      if (type === "DELETED") {
        const old = this.#store.remove(keyOf(obj));
        this.#emit("onDelete", old ?? obj);
        return;
      }
      const old = this.#store.put(obj);
      if (old) this.#emit("onUpdate", obj, old);
      else this.#emit("onAdd", obj);
    },
  };

  #delete(obj: T): void {
    this.#store.remove(keyOf(obj));
    this.#emit("onDelete", obj);
  }

  /** One stream's part of the store becomes exactly `items`: adds, updates (a changed resourceVersion) and deletes as events. */
  #replace(namespace: string | undefined, items: readonly T[]): void {
    const listed = new Set<string>();
    for (const obj of items) {
      const key = keyOf(obj);
      listed.add(key);
      const old = this.#store.getByKey(key);
      if (old && old.metadata.resourceVersion === obj.metadata.resourceVersion) continue;
      this.#store.put(obj);
      if (old) this.#emit("onUpdate", obj, old);
      else this.#emit("onAdd", obj);
    }
    const before = namespace === undefined ? this.#store.list() : this.#store.byIndex(NAMESPACE_INDEX, namespace);
    for (const old of before) if (!listed.has(keyOf(old))) this.#delete(old);
    this.#emit("onSynced");
    this.#checkSynced();
  }

  #checkSynced(): void {
    if (this.#synced || !this.#running) return;
    for (const reflector of this.#reflectors.values()) if (!reflector.listed) return;
    this.#synced = true;
    // No namespace to watch: the (empty) store is complete.
    if (this.#reflectors.size === 0) this.#emit("onSynced");
    const waiters = this.#syncWaiters;
    this.#syncWaiters = [];
    for (const resolve of waiters) resolve();
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

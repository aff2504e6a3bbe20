// In-memory object storage with kube-apiserver's registry semantics: one global resourceVersion,
// optimistic concurrency, status subresource isolation, generation, finalizers, namespace termination,
// owner-reference garbage collection, CRD registration, and an event history for watch resume.
//
// Stored objects are never mutated after commit (every write builds a new object), so history entries
// and REST responses can share them; everything handed to ObjectStore callers is a deep copy.
import { randomUUID } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import { alreadyExists, badRequest, conflict, forbidden, gone, invalid, notFound, type FieldError } from "./errors";
import { isStringRecord, prepareConfigMap, prepareEvent, prepareNode, prepareSecret } from "./core-validation";
import { applyStructuralSchema } from "./schema";
import { builtinTypes, crdSpecSchema, preregisteredCrds, storeKey, typeFromCrd, type TypeInfo } from "./resources";
import { ApiError, type KubeObject, type ObjectStore, type StoreEvent, type WatchEventType } from "./types";

export interface InternalEvent {
  type: WatchEventType;
  key: string;
  rv: number;
  object: KubeObject;
  /** The previous state for MODIFIED (lets selector-filtered watches turn "stops matching" into DELETED). */
  oldObject?: KubeObject;
}

interface Listener {
  key: string;
  namespace?: string;
  /** Events with rv <= seenRv were already delivered (replay) and are skipped. */
  seenRv: number;
  cb: (ev: InternalEvent) => void;
}

export interface DeleteOptions {
  propagationPolicy?: "Orphan" | "Background" | "Foreground";
  preconditions?: { uid?: string; resourceVersion?: string };
  dryRun?: boolean;
}

/** Per-type hooks the REST layer adds (defaults and validation that need more than metadata). */
export interface TypeHooks {
  /** Called on the prepared object of a create (old undefined) or update; may modify obj; throws ApiError. */
  prepare?: (obj: KubeObject, old: KubeObject | undefined) => void;
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";

export function nowTimestamp(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

function qualifiedNameErrors(field: string, value: string): FieldError[] {
  const slash = value.indexOf("/");
  const prefix = slash >= 0 ? value.slice(0, slash) : undefined;
  const name = slash >= 0 ? value.slice(slash + 1) : value;
  const errors: FieldError[] = [];
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    errors.push({ field, type: "FieldValueInvalid", message: `"${value}": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character` });
  }
  if (name.length === 0 || name.length > 63 || !LABEL_NAME.test(name)) {
    errors.push({ field, type: "FieldValueInvalid", message: `"${value}": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') and must be no more than 63 characters` });
  }
  return errors;
}


/** Object metadata checks every kind gets (kube's ValidateObjectMeta). */
function validateMeta(t: TypeInfo, obj: KubeObject): void {
  const m = obj.metadata;
  const name = m.name ?? "";
  const errors: FieldError[] = [];
  if (t.key === "namespaces") {
    if (!DNS1123_LABEL.test(name) || name.length > 63) {
      errors.push({ field: "metadata.name", type: "FieldValueInvalid", message: `"${name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')` });
    }
  } else if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    errors.push({ field: "metadata.name", type: "FieldValueInvalid", message: `"${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')` });
  }
  if (m.labels !== undefined) {
    if (!isStringRecord(m.labels)) errors.push({ field: "metadata.labels", type: "FieldValueInvalid", message: "label values must be strings" });
    else
      for (const [k, v] of Object.entries(m.labels)) {
        errors.push(...qualifiedNameErrors("metadata.labels", k));
        if (v.length > 63 || !LABEL_VALUE.test(v)) {
          errors.push({ field: "metadata.labels", type: "FieldValueInvalid", message: `"${v}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')` });
        }
      }
  }
  if (m.annotations !== undefined) {
    if (!isStringRecord(m.annotations)) errors.push({ field: "metadata.annotations", type: "FieldValueInvalid", message: "annotation values must be strings" });
    else for (const k of Object.keys(m.annotations)) errors.push(...qualifiedNameErrors("metadata.annotations", k.toLowerCase()));
  }
  if (m.finalizers !== undefined) {
    if (!Array.isArray(m.finalizers) || !m.finalizers.every(f => typeof f === "string")) {
      errors.push({ field: "metadata.finalizers", type: "FieldValueInvalid", message: "finalizers must be strings" });
    } else for (const f of m.finalizers) errors.push(...qualifiedNameErrors("metadata.finalizers", f));
  }
  if (m.ownerReferences !== undefined) {
    if (!Array.isArray(m.ownerReferences)) {
      errors.push({ field: "metadata.ownerReferences", type: "FieldValueInvalid", message: "must be a list" });
    } else {
      m.ownerReferences.forEach((ref, i) => {
        for (const f of ["apiVersion", "kind", "name", "uid"] as const) {
          if (typeof ref?.[f] !== "string" || ref[f] === "") {
            errors.push({ field: `metadata.ownerReferences[${i}].${f}`, type: "FieldValueInvalid", message: `"": ${f} must not be empty` });
          }
        }
      });
      if (m.ownerReferences.filter(r => r?.controller === true).length > 1) {
        errors.push({ field: "metadata.ownerReferences", type: "FieldValueInvalid", message: "Only one reference can have Controller set to true" });
      }
    }
  }
  if (errors.length > 0) throw invalid(t, name, errors);
}

/** Everything except metadata and status: a change here bumps metadata.generation. */
function specPart(obj: KubeObject): Record<string, unknown> {
  const { metadata: _m, status: _s, apiVersion: _a, kind: _k, ...rest } = obj;
  return rest;
}

function objectName(ns: string | undefined, name: string): string {
  return `${ns ?? ""}/${name}`;
}

export class MemoryStore implements ObjectStore {
  readonly #types = new Map<string, TypeInfo>();
  readonly #objects = new Map<string, Map<string, KubeObject>>();
  /** uid -> where the object lives (owner lookup for garbage collection). */
  readonly #uids = new Map<string, { key: string; namespace?: string; name: string }>();
  /** owner uid -> dependent uids. */
  readonly #dependents = new Map<string, Set<string>>();
  readonly #hooks = new Map<string, TypeHooks>();
  readonly #listeners = new Set<Listener>();
  readonly #history: InternalEvent[] = [];
  readonly #historySize: number;
  #compactedRv = 0;
  #rv = 0;
  readonly #queue: InternalEvent[] = [];
  #draining = false;
  /** Callbacks run when the set of served types changes (discovery caches, etc.). */
  readonly #typeListeners = new Set<() => void>();

  readonly #log: (line: string) => void;
  readonly #gcDelayMs: number;
  /** Pending garbage-collector work (kube's GC runs asynchronously, after the DELETE has answered). */
  readonly #gcTimers = new Set<NodeJS.Timeout>();

  constructor(opts: { watchHistory?: number; gcDelayMs?: number; log?: (line: string) => void } = {}) {
    this.#historySize = Math.max(1, opts.watchHistory ?? 1000);
    this.#gcDelayMs = opts.gcDelayMs ?? 100;
    this.#log = opts.log ?? (() => undefined);
    for (const t of builtinTypes) this.#registerType(t);
    this.#hooks.set("namespaces", { prepare: (obj, old) => this.#prepareNamespace(obj, old) });
    const core = (key: string) => this.typeInfo(key);
    this.#hooks.set("secrets", { prepare: (obj, old) => prepareSecret(core("secrets"), obj, old) });
    this.#hooks.set("configmaps", { prepare: obj => prepareConfigMap(core("configmaps"), obj) });
    this.#hooks.set("events", { prepare: obj => prepareEvent(core("events"), obj) });
    this.#hooks.set("nodes", { prepare: prepareNode });
    this.#hooks.set("customresourcedefinitions.apiextensions.k8s.io", { prepare: prepareCrd });
    for (const name of ["default", "kube-system", "kube-public", "kube-node-lease"]) {
      this.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
    }
    for (const crd of preregisteredCrds()) this.create("customresourcedefinitions.apiextensions.k8s.io", crd);
    // kube's bootstrap superuser role, for bindings that grant a token user everything.
    this.create("clusterroles.rbac.authorization.k8s.io", {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "ClusterRole",
      metadata: { name: "cluster-admin", labels: { "kubernetes.io/bootstrapping": "rbac-defaults" } },
      rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }, { nonResourceURLs: ["*"], verbs: ["*"] }],
    });
  }

  // ---- types -------------------------------------------------------------------------------------

  #registerType(t: TypeInfo): void {
    this.#types.set(t.key, t);
    if (!this.#objects.has(t.key)) this.#objects.set(t.key, new Map());
    this.#typeListeners.forEach(fn => fn());
  }

  onTypesChanged(fn: () => void): () => void {
    this.#typeListeners.add(fn);
    return () => this.#typeListeners.delete(fn);
  }

  /** Adds validation/defaulting for a type (the REST layer uses it for webhook configurations). */
  setHooks(key: string, hooks: TypeHooks): void {
    this.#hooks.set(key, hooks);
  }

  types(): TypeInfo[] {
    return [...this.#types.values()];
  }

  typeInfo(key: string): TypeInfo {
    const t = this.#types.get(key);
    if (!t) throw new ApiError(404, "NotFound", `the server doesn't have a resource type "${key}"`);
    return t;
  }

  /** The type serving group/version/resource, if any. */
  lookup(group: string, version: string, resource: string): TypeInfo | undefined {
    const t = this.#types.get(storeKey(group, resource));
    return t && t.versions.includes(version) ? t : undefined;
  }

  resourceType(key: string): TypeInfo {
    return this.typeInfo(key);
  }

  get currentResourceVersion(): number {
    return this.#rv;
  }

  // ---- reads -------------------------------------------------------------------------------------

  /** The stored (shared, never mutated) object. */
  getRaw(key: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const t = this.typeInfo(key);
    return this.#objects.get(key)!.get(objectName(t.namespaced ? namespace : undefined, name));
  }

  /** Stored objects, sorted by namespace/name like kube's list. */
  listRaw(key: string, namespace?: string): KubeObject[] {
    const t = this.typeInfo(key);
    const all = [...this.#objects.get(key)!.entries()];
    const filtered = t.namespaced && namespace ? all.filter(([, o]) => o.metadata.namespace === namespace) : all;
    return filtered.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, o]) => o);
  }

  get(key: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const o = this.getRaw(key, namespace, name);
    return o ? structuredClone(o) : undefined;
  }

  list(key: string, namespace?: string): KubeObject[] {
    return this.listRaw(key, namespace).map(o => structuredClone(o));
  }

  // ---- create ------------------------------------------------------------------------------------

  /**
   * Validates and completes an object for creation (name from generateName, uid, timestamps, defaults)
   * without storing it: the REST layer runs validating admission between prepare and commit.
   */
  prepareCreate(key: string, input: KubeObject): KubeObject {
    const t = this.typeInfo(key);
    const obj = structuredClone(input);
    if (typeof obj.metadata !== "object" || obj.metadata === null || Array.isArray(obj.metadata)) obj.metadata = {};
    const m = obj.metadata;
    obj.apiVersion = t.group ? `${t.group}/${t.version}` : t.version;
    obj.kind = t.kind;
    if (t.namespaced) {
      if (!m.namespace) throw invalid(t, m.name ?? "", [{ field: "metadata.namespace", type: "FieldValueRequired", message: "" }]);
    } else {
      delete m.namespace;
    }
    if (!m.name) {
      if (!m.generateName) throw invalid(t, "", [{ field: "metadata.name", type: "FieldValueRequired", message: "name or generateName is required" }]);
      m.name = this.#generateName(key, m.namespace, m.generateName);
    }
    m.uid = randomUUID();
    m.creationTimestamp = nowTimestamp();
    delete m.resourceVersion;
    delete m.deletionTimestamp;
    delete m.deletionGracePeriodSeconds;
    if (t.tracksGeneration) m.generation = 1;
    else delete m.generation;
    this.#hooks.get(key)?.prepare?.(obj, undefined);
    validateMeta(t, obj);
    applySchema(t, obj);
    this.#checkNamespaceWritable(t, obj);
    if (this.getRaw(key, m.namespace, m.name)) throw alreadyExists(t, m.name);
    return obj;
  }

  #generateName(key: string, namespace: string | undefined, prefix: string): string {
    const base = prefix.length > 58 ? prefix.slice(0, 58) : prefix;
    for (;;) {
      let suffix = "";
      for (let i = 0; i < 5; i++) suffix += GENERATE_NAME_ALPHABET[Math.floor(Math.random() * GENERATE_NAME_ALPHABET.length)];
      if (!this.getRaw(key, namespace, base + suffix)) return base + suffix;
    }
  }

  #checkNamespaceWritable(t: TypeInfo, obj: KubeObject): void {
    if (!t.namespaced) return;
    const ns = this.getRaw("namespaces", undefined, obj.metadata.namespace!);
    if (!ns) throw notFound({ resource: "namespaces", group: "" }, obj.metadata.namespace!);
    if (ns.metadata.deletionTimestamp) {
      throw forbidden(t, obj.metadata.name ?? "", `unable to create new content in namespace ${obj.metadata.namespace} because it is being terminated`);
    }
  }

  /** Stores a prepared object (re-checking existence: another write may have happened during admission). */
  commitCreate(key: string, prepared: KubeObject, opts: { dryRun?: boolean } = {}): KubeObject {
    const t = this.typeInfo(key);
    this.#checkNamespaceWritable(t, prepared);
    if (this.getRaw(key, prepared.metadata.namespace, prepared.metadata.name!)) throw alreadyExists(t, prepared.metadata.name!);
    if (opts.dryRun) return prepared;
    const obj = structuredClone(prepared);
    obj.metadata.resourceVersion = String(++this.#rv);
    this.#put(t, obj, undefined);
    this.#emit({ type: "ADDED", key, rv: this.#rv, object: obj });
    this.#afterWrite(t, obj, undefined);
    return obj;
  }

  create(key: string, obj: KubeObject): KubeObject {
    return structuredClone(this.commitCreate(key, this.prepareCreate(key, obj)));
  }

  // ---- update ------------------------------------------------------------------------------------

  /**
   * Builds the object an update would store: optimistic-concurrency check, immutable metadata kept,
   * status isolation (main resource keeps status; the status subresource changes only status),
   * generation bump, finalizer rules. `unchanged` means the write is a no-op (no new resourceVersion).
   */
  prepareUpdate(
    key: string,
    input: KubeObject,
    opts: { subresource?: "status"; /** The caller hands `input` over (it made a copy): no second copy. */ owned?: boolean } = {},
  ): { old: KubeObject; next: KubeObject; unchanged: boolean } {
    const t = this.typeInfo(key);
    if (typeof input.metadata !== "object" || input.metadata === null) throw badRequest("metadata is required");
    const name = input.metadata.name;
    if (!name) throw invalid(t, "", [{ field: "metadata.name", type: "FieldValueRequired", message: "name is required" }]);
    const old = this.getRaw(key, input.metadata.namespace, name);
    if (!old) throw notFound(t, name);
    if (input.metadata.resourceVersion && input.metadata.resourceVersion !== old.metadata.resourceVersion) throw conflict(t, name);
    if (input.metadata.uid && input.metadata.uid !== old.metadata.uid) {
      throw conflict(t, name, `Precondition failed: UID in precondition: ${input.metadata.uid}, UID in object meta: ${old.metadata.uid}`);
    }
    let next: KubeObject;
    if (opts.subresource === "status") {
      next = structuredClone(old);
      if (input.status === undefined) delete next.status;
      else next.status = structuredClone(input.status);
    } else {
      next = opts.owned ? input : structuredClone(input);
      if (typeof next.metadata !== "object" || next.metadata === null) next.metadata = {};
      if (t.hasStatus) {
        if (old.status === undefined) delete next.status;
        else next.status = structuredClone(old.status);
      }
    }
    next.apiVersion = old.apiVersion;
    next.kind = old.kind;
    const m = next.metadata;
    const om = old.metadata;
    m.name = om.name;
    if (t.namespaced) m.namespace = om.namespace;
    else delete m.namespace;
    m.uid = om.uid;
    m.creationTimestamp = om.creationTimestamp;
    m.resourceVersion = om.resourceVersion;
    for (const f of ["deletionTimestamp", "deletionGracePeriodSeconds", "generation", "generateName"] as const) {
      if (om[f] === undefined) delete m[f];
      else (m as Record<string, unknown>)[f] = om[f];
    }
    if (om.deletionTimestamp) {
      const added = (m.finalizers ?? []).filter(f => !(om.finalizers ?? []).includes(f));
      if (added.length > 0) {
        throw invalid(t, name, [
          { field: "metadata.finalizers", type: "FieldValueForbidden", message: `no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map(f => JSON.stringify(f)).join(", ")}}` },
        ]);
      }
    }
    if (m.finalizers !== undefined && Array.isArray(m.finalizers) && m.finalizers.length === 0) delete m.finalizers;
    this.#hooks.get(key)?.prepare?.(next, old);
    validateMeta(t, next);
    applySchema(t, next);
    if (t.tracksGeneration && !isDeepStrictEqual(specPart(old), specPart(next))) m.generation = (om.generation ?? 0) + 1;
    return { old, next, unchanged: isDeepStrictEqual(old, next) };
  }

  /** Stores a prepared update if the object is still the one it was prepared from (else 409 Conflict). */
  commitUpdate(key: string, old: KubeObject, next: KubeObject, opts: { dryRun?: boolean } = {}): KubeObject {
    const t = this.typeInfo(key);
    const current = this.getRaw(key, old.metadata.namespace, old.metadata.name!);
    if (!current) throw notFound(t, old.metadata.name!);
    if (current.metadata.resourceVersion !== old.metadata.resourceVersion) throw conflict(t, old.metadata.name!);
    if (isDeepStrictEqual(current, next)) return current;
    if (opts.dryRun) return next;
    if (next.metadata.deletionTimestamp && !next.metadata.finalizers?.length && !this.#namespaceHoldsFinalizer(t, next)) {
      return this.#remove(t, next);
    }
    // `next` is the store's from here on (prepareUpdate made it; callers only read what commit returns).
    const obj = next;
    obj.metadata.resourceVersion = String(++this.#rv);
    this.#put(t, obj, current);
    this.#emit({ type: "MODIFIED", key, rv: this.#rv, object: obj, oldObject: current });
    this.#afterWrite(t, obj, current);
    return obj;
  }

  update(key: string, obj: KubeObject, opts: { subresource?: "status" } = {}): KubeObject {
    return this.#update(key, obj, opts, false);
  }

  #update(key: string, obj: KubeObject, opts: { subresource?: "status" }, owned: boolean): KubeObject {
    const { old, next } = this.prepareUpdate(key, obj, { ...opts, owned });
    return structuredClone(this.commitUpdate(key, old, next));
  }

  mutate(
    key: string,
    namespace: string | undefined,
    name: string,
    fn: (obj: KubeObject) => KubeObject | undefined,
    opts: { subresource?: "status" } = {},
  ): KubeObject | undefined {
    for (let attempt = 0; ; attempt++) {
      const current = this.get(key, namespace, name);
      if (!current) return undefined;
      const rv = current.metadata.resourceVersion;
      const next = fn(current);
      if (!next) return this.get(key, namespace, name);
      next.metadata = { ...next.metadata, resourceVersion: rv };
      try {
        // fn was given a copy: what it returns is ours to store.
        return this.#update(key, next, opts, true);
      } catch (err) {
        // Only a concurrent write from fn itself can make this conflict (the store is synchronous); retry a few times.
        if (err instanceof ApiError && err.reason === "Conflict" && attempt < 5) continue;
        throw err;
      }
    }
  }

  // ---- delete ------------------------------------------------------------------------------------

  /** Returns the object as it is now (deletionTimestamp set while finalizers remain), or undefined if it did not exist. */
  delete(key: string, namespace: string | undefined, name: string): KubeObject | undefined {
    if (!this.getRaw(key, namespace, name)) return undefined;
    const result = this.deleteWithOptions(key, namespace, name, {});
    return structuredClone(result.object);
  }

  /**
   * kube's DELETE: with finalizers (or Foreground/Orphan propagation, which add one) the object gets a
   * deletionTimestamp and stays until they are removed; otherwise it is removed and its dependents are
   * garbage-collected. `removed` tells the REST layer which response kube would give.
   */
  deleteWithOptions(
    key: string,
    namespace: string | undefined,
    name: string,
    opts: DeleteOptions,
  ): { object: KubeObject; removed: boolean } {
    const t = this.typeInfo(key);
    const current = this.getRaw(key, namespace, name);
    if (!current) throw notFound(t, name);
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== current.metadata.uid) {
      throw conflict(t, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${current.metadata.uid}`);
    }
    if (pre?.resourceVersion && pre.resourceVersion !== current.metadata.resourceVersion) {
      throw conflict(t, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${current.metadata.resourceVersion}`);
    }
    if (opts.dryRun) return { object: current, removed: !current.metadata.finalizers?.length };
    if (key === "namespaces") return this.#terminateNamespace(current);
    const policy = opts.propagationPolicy ?? "Background";
    const finalizers = [...(current.metadata.finalizers ?? [])];
    if (policy === "Foreground" && !finalizers.includes("foregroundDeletion") && this.#dependentsOf(current).length > 0) {
      finalizers.push("foregroundDeletion");
    }
    if (policy === "Orphan" && !finalizers.includes("orphan") && this.#dependentsOf(current).length > 0) finalizers.push("orphan");
    if (finalizers.length === 0) return { object: this.#remove(t, current), removed: true };
    let obj = current;
    if (!current.metadata.deletionTimestamp || finalizers.length !== (current.metadata.finalizers ?? []).length) {
      const next = structuredClone(current);
      next.metadata.finalizers = finalizers;
      next.metadata.deletionTimestamp ??= nowTimestamp();
      next.metadata.deletionGracePeriodSeconds ??= 0;
      next.metadata.resourceVersion = String(++this.#rv);
      this.#put(t, next, current);
      this.#emit({ type: "MODIFIED", key, rv: this.#rv, object: next, oldObject: current });
      obj = next;
    }
    this.#gc(() => this.#runGarbageCollectorFinalizers(t, obj));
    return { object: obj, removed: false };
  }

  /** Runs garbage-collector work after `gcDelayMs`, outside the write that caused it. */
  #gc(work: () => void): void {
    const timer = setTimeout(() => {
      this.#gcTimers.delete(timer);
      try {
        work();
      } catch (err) {
        // The object changed or vanished meanwhile: kube's GC would retry from its next event; nothing to do here.
        this.#log(`garbage collector: ${err instanceof Error ? err.message : String(err)}`);
      }
    }, this.#gcDelayMs);
    this.#gcTimers.add(timer);
  }

  /** Cancels pending garbage-collector work (the server is shutting down). */
  close(): void {
    for (const timer of this.#gcTimers) clearTimeout(timer);
    this.#gcTimers.clear();
  }

  /** Forgets the watch history, as a restarted API server's fresh watch cache does: older resourceVersions get 410. */
  compactHistory(): void {
    this.#history.length = 0;
    this.#compactedRv = this.#rv;
  }

  /** What kube's garbage collector does for the orphan/foregroundDeletion finalizers. */
  #runGarbageCollectorFinalizers(t: TypeInfo, obj: KubeObject): void {
    const finalizers = obj.metadata.finalizers ?? [];
    if (finalizers.includes("orphan")) {
      for (const dep of this.#dependentsOf(obj)) this.#dropOwnerReference(dep, obj.metadata.uid!);
      this.#removeFinalizer(t, obj, "orphan");
      return;
    }
    if (finalizers.includes("foregroundDeletion")) {
      for (const dep of this.#dependentsOf(obj)) this.#collectDependent(dep, obj.metadata.uid!);
      this.#completeForegroundDeletion(obj.metadata.uid!);
    }
  }

  #removeFinalizer(t: TypeInfo, obj: KubeObject, finalizer: string): void {
    const current = this.getRaw(t.key, obj.metadata.namespace, obj.metadata.name!);
    if (!current || !current.metadata.finalizers?.includes(finalizer)) return;
    const next = structuredClone(current);
    next.metadata.finalizers = current.metadata.finalizers.filter(f => f !== finalizer);
    this.commitUpdate(t.key, current, next);
  }

  /** Removes the object for good: DELETED event, then garbage collection and termination bookkeeping. */
  #remove(t: TypeInfo, obj: KubeObject): KubeObject {
    const current = this.getRaw(t.key, obj.metadata.namespace, obj.metadata.name!);
    const removed = structuredClone(obj);
    removed.metadata.resourceVersion = String(++this.#rv);
    this.#objects.get(t.key)!.delete(objectName(removed.metadata.namespace, removed.metadata.name!));
    this.#unindex(current ?? obj);
    this.#emit({ type: "DELETED", key: t.key, rv: this.#rv, object: removed });
    // Garbage collection (background propagation): dependents whose owners are all gone are deleted.
    const uid = removed.metadata.uid!;
    this.#gc(() => {
      for (const dep of this.#dependentsOf(removed)) this.#collectDependent(dep, uid);
      this.#dependents.delete(uid);
      for (const ref of removed.metadata.ownerReferences ?? []) this.#completeForegroundDeletion(ref.uid);
    });
    if (t.key === "customresourcedefinitions.apiextensions.k8s.io") this.#unregisterCrd(removed);
    if (t.namespaced) this.#tryFinalizeNamespace(removed.metadata.namespace!);
    return removed;
  }

  #dependentsOf(owner: KubeObject): KubeObject[] {
    const out: KubeObject[] = [];
    for (const uid of this.#dependents.get(owner.metadata.uid!) ?? []) {
      const loc = this.#uids.get(uid);
      const dep = loc && this.getRaw(loc.key, loc.namespace, loc.name);
      if (dep) out.push(dep);
    }
    return out;
  }

  #objectByUid(uid: string): { t: TypeInfo; obj: KubeObject } | undefined {
    const loc = this.#uids.get(uid);
    if (!loc) return undefined;
    const obj = this.getRaw(loc.key, loc.namespace, loc.name);
    return obj ? { t: this.typeInfo(loc.key), obj } : undefined;
  }

  /** A dependent of a deleted owner: deleted if no other owner remains, else just loses the reference. */
  #collectDependent(dep: KubeObject, ownerUid: string): void {
    const others = (dep.metadata.ownerReferences ?? []).filter(r => r.uid !== ownerUid && this.#objectByUid(r.uid));
    if (others.length > 0) {
      this.#dropOwnerReference(dep, ownerUid);
      return;
    }
    const loc = this.#uids.get(dep.metadata.uid!);
    if (!loc) return;
    const current = this.getRaw(loc.key, loc.namespace, loc.name);
    if (current && !current.metadata.deletionTimestamp) this.deleteWithOptions(loc.key, loc.namespace, loc.name, { propagationPolicy: "Background" });
  }

  #dropOwnerReference(dep: KubeObject, ownerUid: string): void {
    const loc = this.#uids.get(dep.metadata.uid!);
    if (!loc) return;
    const t = this.typeInfo(loc.key);
    const current = this.getRaw(loc.key, loc.namespace, loc.name);
    if (!current) return;
    const next = structuredClone(current);
    next.metadata.ownerReferences = (current.metadata.ownerReferences ?? []).filter(r => r.uid !== ownerUid);
    if (next.metadata.ownerReferences.length === 0) delete next.metadata.ownerReferences;
    this.commitUpdate(t.key, current, next);
  }

  /** A foreground-deleted owner is removed once its last dependent is gone. */
  #completeForegroundDeletion(ownerUid: string): void {
    const found = this.#objectByUid(ownerUid);
    if (!found) return;
    const { t, obj } = found;
    if (!obj.metadata.deletionTimestamp || !obj.metadata.finalizers?.includes("foregroundDeletion")) return;
    if (this.#dependentsOf(obj).length > 0) return;
    this.#removeFinalizer(t, obj, "foregroundDeletion");
  }

  // ---- namespaces --------------------------------------------------------------------------------

  #prepareNamespace(obj: KubeObject, old: KubeObject | undefined): void {
    obj.metadata.labels = { ...(obj.metadata.labels ?? {}), "kubernetes.io/metadata.name": obj.metadata.name! };
    const spec = (typeof obj.spec === "object" && obj.spec !== null ? obj.spec : {}) as { finalizers?: string[] };
    if (!old) {
      obj.spec = { ...spec, finalizers: spec.finalizers ?? ["kubernetes"] };
      obj.status = { phase: "Active" };
    } else {
      // spec.finalizers changes only through the finalize subresource in kube.
      obj.spec = { ...spec, finalizers: (old.spec as { finalizers?: string[] } | undefined)?.finalizers };
      if (obj.spec && (obj.spec as { finalizers?: string[] }).finalizers === undefined) delete (obj.spec as Record<string, unknown>).finalizers;
    }
  }

  #namespaceHoldsFinalizer(t: TypeInfo, obj: KubeObject): boolean {
    return t.key === "namespaces" && Boolean((obj.spec as { finalizers?: string[] } | undefined)?.finalizers?.length);
  }

  #terminateNamespace(ns: KubeObject): { object: KubeObject; removed: boolean } {
    const t = this.typeInfo("namespaces");
    let current = ns;
    if (!ns.metadata.deletionTimestamp) {
      const next = structuredClone(ns);
      next.metadata.deletionTimestamp = nowTimestamp();
      next.metadata.deletionGracePeriodSeconds = 0;
      next.status = { ...((next.status as object) ?? {}), phase: "Terminating" };
      next.metadata.resourceVersion = String(++this.#rv);
      this.#put(t, next, ns);
      this.#emit({ type: "MODIFIED", key: t.key, rv: this.#rv, object: next, oldObject: ns });
      current = next;
    }
    const name = ns.metadata.name!;
    for (const type of this.types()) {
      if (!type.namespaced) continue;
      for (const obj of this.listRaw(type.key, name)) {
        if (!obj.metadata.deletionTimestamp && this.getRaw(type.key, name, obj.metadata.name!)) {
          this.deleteWithOptions(type.key, name, obj.metadata.name!, { propagationPolicy: "Background" });
        }
      }
    }
    this.#tryFinalizeNamespace(name);
    const after = this.getRaw("namespaces", undefined, name);
    return { object: after ?? current, removed: !after };
  }

  /** The namespace controller's last step: once a terminating namespace is empty, drop spec.finalizers. */
  #tryFinalizeNamespace(name: string): void {
    const ns = this.getRaw("namespaces", undefined, name);
    if (!ns || !ns.metadata.deletionTimestamp) return;
    for (const type of this.types()) {
      if (type.namespaced && this.listRaw(type.key, name).length > 0) return;
    }
    const next = structuredClone(ns);
    next.spec = { ...((next.spec as object) ?? {}), finalizers: [] };
    if (next.metadata.finalizers?.length) {
      this.commitUpdate("namespaces", ns, next);
      return;
    }
    this.#remove(this.typeInfo("namespaces"), next);
  }

  // ---- CRDs --------------------------------------------------------------------------------------

  #registerCrd(crd: KubeObject): void {
    const parsed = crdSpecSchema.safeParse(crd.spec);
    if (!parsed.success) return;
    const t = typeFromCrd(crd.metadata.name!, parsed.data);
    if (!t) return;
    const existing = this.#types.get(t.key);
    if (existing?.builtin) return;
    this.#registerType(t);
  }

  #unregisterCrd(crd: KubeObject): void {
    const parsed = crdSpecSchema.safeParse(crd.spec);
    if (!parsed.success) return;
    const key = storeKey(parsed.data.group, parsed.data.names.plural);
    const t = this.#types.get(key);
    if (!t || t.builtin) return;
    for (const obj of this.listRaw(key)) this.#remove(t, { ...obj, metadata: { ...obj.metadata, finalizers: undefined } });
    this.#types.delete(key);
    this.#objects.delete(key);
    this.#typeListeners.forEach(fn => fn());
  }

  // ---- commit plumbing ---------------------------------------------------------------------------

  #put(t: TypeInfo, obj: KubeObject, old: KubeObject | undefined): void {
    this.#objects.get(t.key)!.set(objectName(obj.metadata.namespace, obj.metadata.name!), obj);
    if (old) this.#unindex(old);
    const uid = obj.metadata.uid!;
    this.#uids.set(uid, { key: t.key, namespace: obj.metadata.namespace, name: obj.metadata.name! });
    for (const ref of obj.metadata.ownerReferences ?? []) {
      let set = this.#dependents.get(ref.uid);
      if (!set) this.#dependents.set(ref.uid, (set = new Set()));
      set.add(uid);
    }
  }

  #unindex(obj: KubeObject): void {
    const uid = obj.metadata.uid!;
    this.#uids.delete(uid);
    for (const ref of obj.metadata.ownerReferences ?? []) this.#dependents.get(ref.uid)?.delete(uid);
  }

  #afterWrite(t: TypeInfo, obj: KubeObject, old: KubeObject | undefined): void {
    if (t.key === "customresourcedefinitions.apiextensions.k8s.io" && !isDeepStrictEqual(obj.spec, old?.spec)) this.#registerCrd(obj);
    // Owners that vanished before this dependent was written: the garbage collector deletes it.
    const refs = obj.metadata.ownerReferences ?? [];
    if (refs.length > 0 && !obj.metadata.deletionTimestamp && refs.every(r => !this.#uids.has(r.uid))) {
      this.#gc(() => {
        const current = this.getRaw(t.key, obj.metadata.namespace, obj.metadata.name!);
        if (!current || current.metadata.uid !== obj.metadata.uid || current.metadata.deletionTimestamp) return;
        if ((current.metadata.ownerReferences ?? []).every(r => !this.#uids.has(r.uid))) {
          this.deleteWithOptions(t.key, obj.metadata.namespace, obj.metadata.name!, { propagationPolicy: "Background" });
        }
      });
    }
  }

  #emit(ev: InternalEvent): void {
    this.#history.push(ev);
    if (this.#history.length > this.#historySize) {
      const dropped = this.#history.splice(0, this.#history.length - this.#historySize);
      this.#compactedRv = dropped[dropped.length - 1].rv;
    }
    this.#queue.push(ev);
    if (this.#draining) return;
    // Deliver in commit order even when a listener writes to the store from its callback.
    this.#draining = true;
    try {
      while (this.#queue.length > 0) {
        const next = this.#queue.shift()!;
        for (const l of [...this.#listeners]) {
          if (l.key !== next.key || next.rv <= l.seenRv) continue;
          if (l.namespace && next.object.metadata.namespace !== l.namespace) continue;
          l.seenRv = next.rv;
          try {
            l.cb(next);
          } catch (err) {
            // A failing listener must not break the write that triggered it or other listeners.
            this.#log(`watch listener for ${next.key} failed on ${next.type} ${next.object.metadata.name}: ${err instanceof Error ? err.message : String(err)}`);
          }
        }
      }
    } finally {
      this.#draining = false;
    }
  }

  /**
   * Subscribes to events of a type. With `sinceRv`, events after it are replayed first (410 Gone when
   * they were compacted away); without, delivery starts after the current state.
   */
  subscribe(key: string, namespace: string | undefined, sinceRv: number | undefined, cb: (ev: InternalEvent) => void): () => void {
    this.typeInfo(key);
    const listener: Listener = { key, namespace, seenRv: this.#rv, cb };
    if (sinceRv !== undefined) {
      if (sinceRv < this.#compactedRv) throw gone(String(sinceRv), this.#compactedRv + 1);
      for (const ev of this.#history) {
        if (ev.rv <= sinceRv || ev.key !== key) continue;
        if (namespace && ev.object.metadata.namespace !== namespace) continue;
        cb(ev);
      }
      listener.seenRv = Math.max(this.#rv, sinceRv);
    }
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  watch(key: string, namespace: string | undefined, cb: (ev: StoreEvent) => void): () => void {
    return this.subscribe(key, namespace, undefined, ev => cb({ type: ev.type, object: structuredClone(ev.object) }));
  }

  watchStored(key: string, namespace: string | undefined, cb: (ev: StoreEvent) => void): () => void {
    return this.subscribe(key, namespace, undefined, ev => cb({ type: ev.type, object: ev.object }));
  }
}

/** A custom resource is pruned, defaulted and validated against its CRD's structural schema (422 Invalid). */
function applySchema(t: TypeInfo, obj: KubeObject): void {
  if (!t.schema) return;
  const errors = applyStructuralSchema(obj as unknown as Record<string, unknown>, t.schema);
  if (errors.length > 0) throw invalid(t, obj.metadata.name ?? "", errors);
}

const crdType = builtinTypes.find(t => t.key === "customresourcedefinitions.apiextensions.k8s.io")!;

function prepareCrd(obj: KubeObject, old: KubeObject | undefined): void {
  const name = obj.metadata.name ?? "";
  const parsed = crdSpecSchema.safeParse(obj.spec);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(crdType, name, [{ field: `spec.${issue.path.join(".")}`, type: "FieldValueInvalid", message: issue.message }]);
  }
  const spec = parsed.data;
  const errors: FieldError[] = [];
  if (name !== `${spec.names.plural}.${spec.group}`) {
    errors.push({ field: "metadata.name", type: "FieldValueInvalid", message: `"${name}": must be spec.names.plural+"."+spec.group` });
  }
  if (spec.versions.filter(v => v.storage).length !== 1) {
    errors.push({ field: "spec.versions", type: "FieldValueInvalid", message: "must have exactly one version marked as storage version" });
  }
  if (old) {
    const oldSpec = crdSpecSchema.safeParse(old.spec);
    if (oldSpec.success && (oldSpec.data.group !== spec.group || oldSpec.data.names.plural !== spec.names.plural)) {
      errors.push({ field: "spec.group", type: "FieldValueInvalid", message: "field is immutable" });
    }
  }
  if (errors.length > 0) throw invalid(crdType, name, errors);
  // What the apiextensions controllers would report once the names are accepted and the API is served.
  const now = nowTimestamp();
  const storage = spec.versions.find(v => v.storage)!.name;
  const oldStatus = (old?.status ?? {}) as { storedVersions?: string[]; conditions?: { type: string; lastTransitionTime?: string }[] };
  const since = (type: string) => oldStatus.conditions?.find(c => c.type === type)?.lastTransitionTime ?? now;
  obj.status = {
    acceptedNames: { ...spec.names, singular: spec.names.singular ?? spec.names.kind.toLowerCase(), listKind: spec.names.listKind ?? `${spec.names.kind}List` },
    conditions: [
      { type: "NamesAccepted", status: "True", reason: "NoConflicts", message: "no conflicts found", lastTransitionTime: since("NamesAccepted") },
      { type: "Established", status: "True", reason: "InitialNamesAccepted", message: "the initial names have been accepted", lastTransitionTime: since("Established") },
    ],
    storedVersions: [...new Set([...(oldStatus.storedVersions ?? []), storage])],
  };
}

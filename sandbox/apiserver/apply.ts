// Server-side apply and field ownership (metadata.managedFields, FieldsV1), simplified:
// - field sets are leaf paths; maps are granular, lists are atomic except the list-map/set paths of
//   built-in kinds (TypeInfo.mergeKeys, e.g. status.conditions by "type"); CRD lists are atomic (no schema);
// - apply merges the configuration into the live object, removes fields this manager applied before and
//   no longer applies (unless another manager owns them), and reports a 409 Conflict when another
//   manager owns a field the configuration sets to a different value (force=true takes it over);
// - REST writes that are not apply record an "Update" entry for their manager (fieldManager, else the
//   User-Agent product) holding the leaves they changed; ObjectStore (controller) writes are not tracked.
import { isDeepStrictEqual } from "node:util";
import { nowTimestamp } from "./store";
import { conflict } from "./errors";
import { isObject, type Json } from "./patch";
import type { TypeInfo } from "./resources";
import { ApiError, type KubeObject } from "./types";

type Segment = string; // "f:name" | "k:{...}" | "v:..."
type Path = Segment[];

interface ManagedEntry {
  manager: string;
  operation: "Apply" | "Update";
  apiVersion?: string;
  time?: string;
  fieldsType: "FieldsV1";
  fieldsV1: Record<string, unknown>;
  subresource?: string;
}

/** Fields that identify the object or are owned by the server: never part of a field set. */
const IGNORED_METADATA = new Set(["name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink", "generateName"]);

function dotted(prefix: string, key: string): string {
  return prefix ? `${prefix}.${key}` : key;
}

/** How leaves() walks an object: the kind's list strategies, which part (spec side or status), and what it collects. */
interface LeafWalk {
  type: TypeInfo;
  scope: "main" | "status";
  out: Map<string, Path>;
  /** The value at each leaf, the first one found as valueAt() would (when asked for). */
  values?: Map<string, Json>;
}

/**
 * Leaf paths of an object, keyed by their JSON encoding (JSON.stringify(path), built up segment by segment: the
 * walk visits every field of the object on every write, so it neither copies a path nor encodes it again per leaf).
 */
function leaves(value: Json, type: TypeInfo, scope: "main" | "status", values?: Map<string, Json>): Map<string, Path> {
  const walk: LeafWalk = { type, scope, out: new Map(), ...(values ? { values } : {}) };
  walkLeaves(walk, value, [], "[", "");
  return walk.out;
}

/** `keyPrefix` is JSON.stringify(path) without its closing bracket. */
function walkLeaves(w: LeafWalk, v: Json, path: Path, keyPrefix: string, dottedPath: string): void {
  const sep = path.length === 0 ? "" : ",";
  if (isObject(v) && Object.keys(v).length > 0) {
    for (const [k, child] of Object.entries(v)) {
      if (path.length === 0 && (k === "apiVersion" || k === "kind")) continue;
      if (path.length === 0 && w.type.hasStatus && ((w.scope === "main" && k === "status") || (w.scope === "status" && k !== "status"))) continue;
      if (path.length === 1 && path[0] === "f:metadata" && IGNORED_METADATA.has(k)) continue;
      const seg = `f:${k}`;
      walkLeaves(w, child, [...path, seg], `${keyPrefix}${sep}${JSON.stringify(seg)}`, dotted(dottedPath, k));
    }
    return;
  }
  const strategy = w.type.mergeKeys[dottedPath];
  if (Array.isArray(v) && strategy === "set") {
    for (const item of v) {
      const seg = `v:${JSON.stringify(item)}`;
      addLeaf(w, `${keyPrefix}${sep}${JSON.stringify(seg)}]`, [...path, seg], item);
    }
    return;
  }
  if (Array.isArray(v) && strategy && v.every(i => isObject(i) && i[strategy] !== undefined)) {
    for (const item of v as Record<string, Json>[]) {
      const seg = `k:${JSON.stringify({ [strategy]: item[strategy] })}`;
      const itemPrefix = `${keyPrefix}${sep}${JSON.stringify(seg)}`;
      addLeaf(w, `${itemPrefix},"."]`, [...path, seg, "."], item);
      walkLeaves(w, item, [...path, seg], itemPrefix, dottedPath);
    }
    return;
  }
  addLeaf(w, `${keyPrefix}]`, path, v);
}

function addLeaf(w: LeafWalk, key: string, path: Path, value: Json): void {
  w.out.set(key, path);
  if (w.values && !w.values.has(key)) w.values.set(key, value);
}

function valueAt(obj: Json | undefined, path: Path): Json | undefined {
  let cur: Json | undefined = obj;
  for (const seg of path) {
    if (seg === ".") return cur;
    if (seg.startsWith("f:")) {
      if (!isObject(cur)) return undefined;
      cur = cur[seg.slice(2)];
    } else if (seg.startsWith("k:")) {
      if (!Array.isArray(cur)) return undefined;
      const key = JSON.parse(seg.slice(2)) as Record<string, Json>;
      const [k, v] = Object.entries(key)[0];
      cur = cur.find(i => isObject(i) && isDeepStrictEqual(i[k], v));
    } else if (seg.startsWith("v:")) {
      if (!Array.isArray(cur)) return undefined;
      const wanted = JSON.parse(seg.slice(2)) as Json;
      return cur.some(i => isDeepStrictEqual(i, wanted)) ? wanted : undefined;
    }
  }
  return cur;
}

function removeAt(obj: Json, path: Path): void {
  const parentPath = path[path.length - 1] === "." ? path.slice(0, -2) : path.slice(0, -1);
  const last = path[path.length - 1] === "." ? path[path.length - 2] : path[path.length - 1];
  const parent = valueAt(obj, parentPath);
  if (last.startsWith("f:") && isObject(parent)) delete parent[last.slice(2)];
  else if ((last.startsWith("k:") || last.startsWith("v:")) && Array.isArray(parent)) {
    const idx = last.startsWith("v:")
      ? parent.findIndex(i => isDeepStrictEqual(i, JSON.parse(last.slice(2))))
      : parent.findIndex(i => {
          const [k, v] = Object.entries(JSON.parse(last.slice(2)) as Record<string, Json>)[0];
          return isObject(i) && isDeepStrictEqual(i[k], v);
        });
    if (idx >= 0) parent.splice(idx, 1);
  }
}

/** Drops maps left empty by removals (an applied field set never contains empty maps it did not ask for). */
function pruneEmpty(obj: Json, path: Path): void {
  for (let n = path.length - 1; n > 0; n--) {
    const p = path.slice(0, n);
    if (p[p.length - 1] === ".") continue;
    const v = valueAt(obj, p);
    if (isObject(v) && Object.keys(v).length === 0 && p[p.length - 1].startsWith("f:")) removeAt(obj, p);
    else break;
  }
}

function encodeFields(paths: Iterable<Path>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const path of paths) {
    let node = root;
    for (const seg of path) {
      node[seg] ??= {};
      node = node[seg] as Record<string, unknown>;
    }
  }
  return root;
}

function decodeFields(fields: unknown): Map<string, Path> {
  const out = new Map<string, Path>();
  const walk = (node: unknown, path: Path) => {
    if (!isObject(node as Json)) return;
    const entries = Object.entries(node as Record<string, unknown>);
    if (entries.length === 0 && path.length > 0) {
      out.set(JSON.stringify(path), path);
      return;
    }
    for (const [seg, child] of entries) walk(child, [...path, seg]);
  };
  walk(fields, []);
  return out;
}

function managedEntries(obj: KubeObject | undefined): ManagedEntry[] {
  const raw = obj?.metadata.managedFields;
  if (!Array.isArray(raw)) return [];
  return raw.filter((e): e is ManagedEntry => isObject(e as Json) && typeof (e as ManagedEntry).manager === "string");
}

/** `.spec.x`, `.status.conditions[type="Ready"].status`: how kube prints a field in conflict messages. */
function printPath(path: Path): string {
  let out = "";
  for (const seg of path) {
    if (seg === ".") continue;
    if (seg.startsWith("f:")) out += `.${seg.slice(2)}`;
    else if (seg.startsWith("k:")) {
      const [k, v] = Object.entries(JSON.parse(seg.slice(2)) as Record<string, Json>)[0];
      out += `[${k}=${JSON.stringify(v)}]`;
    } else out += `[=${seg.slice(2)}]`;
  }
  return out;
}

/** Structural merge of an apply configuration: maps merge, list-maps merge by key, sets union, other lists replace. */
function mergeApplied(live: Json, config: Json, type: TypeInfo, dottedPath: string): Json {
  if (!isObject(config)) return structuredClone(config);
  const out: Record<string, Json> = isObject(live) ? { ...live } : {};
  for (const [k, v] of Object.entries(config)) {
    const p = dotted(dottedPath, k);
    const strategy = type.mergeKeys[p];
    if (Array.isArray(v) && strategy === "set") {
      const base = Array.isArray(out[k]) ? [...(out[k] as Json[])] : [];
      for (const item of v) if (!base.some(b => isDeepStrictEqual(b, item))) base.push(structuredClone(item));
      out[k] = base;
    } else if (Array.isArray(v) && strategy && v.every(i => isObject(i) && i[strategy] !== undefined)) {
      const base = Array.isArray(out[k]) ? [...(out[k] as Json[])] : [];
      for (const item of v as Record<string, Json>[]) {
        const idx = base.findIndex(b => isObject(b) && isDeepStrictEqual(b[strategy], item[strategy]));
        if (idx >= 0) base[idx] = mergeApplied(base[idx], item, type, p);
        else base.push(structuredClone(item));
      }
      out[k] = base;
    } else if (isObject(v)) {
      out[k] = mergeApplied(out[k] ?? null, v, type, p);
    } else {
      out[k] = structuredClone(v);
    }
  }
  return out;
}

/**
 * Server-side apply of `config` by `manager` onto `live` (undefined: the object is created from the
 * configuration). Returns the candidate object with metadata.managedFields updated.
 */
export function applyServerSide(
  live: KubeObject | undefined,
  config: KubeObject,
  opts: { manager: string; force: boolean; type: TypeInfo; subresource?: string },
): KubeObject {
  const scope = opts.subresource === "status" ? "status" : "main";
  const applied = leaves(config as unknown as Json, opts.type, scope);
  const entries = managedEntries(live).map(e => ({ ...e, fields: decodeFields(e.fieldsV1) }));
  const isMine = (e: { manager: string; operation: string; subresource?: string }) =>
    e.manager === opts.manager && e.operation === "Apply" && (e.subresource ?? "") === (opts.subresource ?? "");
  const conflicts: { manager: string; apiVersion?: string; path: Path }[] = [];
  if (live) {
    for (const [key, path] of applied) {
      const wanted = valueAt(config as unknown as Json, path);
      const current = valueAt(live as unknown as Json, path);
      if (isDeepStrictEqual(wanted, current)) continue;
      for (const e of entries) if (!isMine(e) && e.fields.has(key)) conflicts.push({ manager: e.manager, apiVersion: e.apiVersion, path });
    }
  }
  if (conflicts.length > 0 && !opts.force) {
    const lines = conflicts.map(c => `conflict with "${c.manager}"${c.apiVersion ? ` using ${c.apiVersion}` : ""}: ${printPath(c.path)}`);
    const message =
      conflicts.length === 1 ? `Apply failed with 1 conflict: ${lines[0]}` : `Apply failed with ${conflicts.length} conflicts: ${lines.join("\n")}`;
    const name = config.metadata.name ?? live?.metadata.name ?? "";
    const err = conflict(opts.type, name);
    throw new ApiError(409, "Conflict", message, { ...err.details, causes: conflicts.map(c => ({ reason: "FieldManagerConflict", message: `conflict with "${c.manager}"`, field: printPath(c.path) })) });
  }
  // Forced (or value-identical) fields: other managers keep shared ownership only where values agree.
  for (const e of entries) {
    if (isMine(e)) continue;
    for (const [key, path] of applied) {
      if (!e.fields.has(key)) continue;
      const same = live && isDeepStrictEqual(valueAt(config as unknown as Json, path), valueAt(live as unknown as Json, path));
      if (!same) e.fields.delete(key);
    }
  }
  const previous = entries.find(isMine)?.fields ?? new Map<string, Path>();
  const base: Json = live ? (structuredClone(live) as unknown as Json) : { apiVersion: config.apiVersion, kind: config.kind, metadata: {} };
  const merged = mergeApplied(base, config as unknown as Json, opts.type, "") as unknown as KubeObject;
  for (const [key, path] of previous) {
    if (applied.has(key)) continue;
    if (entries.some(e => !isMine(e) && e.fields.has(key))) continue;
    removeAt(merged as unknown as Json, path);
    pruneEmpty(merged as unknown as Json, path);
  }
  const others = entries.filter(e => !isMine(e) && e.fields.size > 0).map(({ fields, ...e }) => ({ ...e, fieldsV1: encodeFields(fields.values()) }));
  const mine: ManagedEntry = {
    manager: opts.manager,
    operation: "Apply",
    apiVersion: config.apiVersion,
    time: nowTimestamp(),
    fieldsType: "FieldsV1",
    fieldsV1: encodeFields(applied.values()),
    ...(opts.subresource ? { subresource: opts.subresource } : {}),
  };
  merged.metadata.managedFields = [...others, mine];
  return merged;
}

/**
 * Field ownership for a non-apply write (create, update, patch): the manager takes the leaves whose
 * value it changed; removed leaves leave every set. The entry's time only moves when its set changes,
 * so a no-op write stays a no-op.
 */
export function recordUpdate(old: KubeObject | undefined, next: KubeObject, manager: string, type: TypeInfo, subresource?: string): void {
  const scope = subresource === "status" ? "status" : "main";
  const beforeValues = new Map<string, Json>();
  const afterValues = new Map<string, Json>();
  const before = old ? leaves(old as unknown as Json, type, scope, beforeValues) : new Map<string, Path>();
  const after = leaves(next as unknown as Json, type, scope, afterValues);
  const changed = new Map<string, Path>();
  for (const [key, path] of after) {
    if (!before.has(key) || !isDeepStrictEqual(beforeValues.get(key), afterValues.get(key))) changed.set(key, path);
  }
  const removed = [...before.keys()].filter(k => !after.has(k));
  const entries = managedEntries(old).map(e => ({ ...e, fields: decodeFields(e.fieldsV1) }));
  const isMine = (e: ManagedEntry) => e.manager === manager && e.operation === "Update" && (e.subresource ?? "") === (subresource ?? "");
  let mine = entries.find(isMine);
  if (!mine && changed.size > 0) {
    mine = { manager, operation: "Update", apiVersion: next.apiVersion, fieldsType: "FieldsV1", fieldsV1: {}, fields: new Map(), ...(subresource ? { subresource } : {}) };
    entries.push(mine);
  }
  const fingerprint = (fields: Map<string, Path>) => JSON.stringify([...fields.keys()].sort());
  const fingerprintsBefore = new Map(entries.map(e => [e, fingerprint(e.fields)]));
  for (const e of entries) {
    for (const k of removed) e.fields.delete(k);
    if (e !== mine) for (const k of changed.keys()) e.fields.delete(k);
  }
  if (mine) for (const [k, p] of changed) mine.fields.set(k, p);
  const result = entries
    .filter(e => e.fields.size > 0)
    .map(e => {
      const { fields, ...rest } = e;
      const moved = fingerprintsBefore.get(e) !== fingerprint(fields) || (e === mine && changed.size > 0);
      return { ...rest, fieldsV1: encodeFields(fields.values()), time: moved || !rest.time ? nowTimestamp() : rest.time };
    });
  if (result.length > 0) next.metadata.managedFields = result;
  else delete next.metadata.managedFields;
}

// The patch formats kube-apiserver accepts: RFC 6902 JSON patch, RFC 7386 merge patch and a strategic
// merge patch for built-in kinds (merge keys from a small per-path table, see listMergeKeys).
import { isDeepStrictEqual } from "node:util";
import { ApiError } from "./types";
import { badRequest } from "./errors";

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * kube answers a JSON patch that does not apply (a failed `test` included) with errors.NewGenericServerResponse(422):
 * a generic message, `details: {}` and no causes; the library's reason (`detail`) is not sent.
 */
function patchDoesNotApply(_detail: string): ApiError {
  return new ApiError(422, "Invalid", "the server rejected our request due to an error in our request", {});
}

interface JsonPatchOp {
  op: "add" | "remove" | "replace" | "move" | "copy" | "test";
  path: string;
  from?: string;
  value?: Json;
}

function parsePointer(pointer: string): string[] {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw badRequest(`invalid JSON pointer: ${JSON.stringify(pointer)}`);
  return pointer
    .slice(1)
    .split("/")
    .map(s => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function decodeJsonPatch(patch: unknown): JsonPatchOp[] {
  if (!Array.isArray(patch)) throw badRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch");
  return patch.map((raw, i) => {
    if (!isObject(raw)) throw badRequest(`invalid JSON patch operation at index ${i}`);
    const op = raw.op;
    if (typeof op !== "string" || !["add", "remove", "replace", "move", "copy", "test"].includes(op)) {
      throw badRequest(`Unexpected kind: ${String(op)}`);
    }
    if (typeof raw.path !== "string") throw badRequest(`operation ${i} (${op}) is missing path`);
    if ((op === "move" || op === "copy") && typeof raw.from !== "string") throw badRequest(`operation ${i} (${op}) is missing from`);
    if ((op === "add" || op === "replace" || op === "test") && !("value" in raw)) {
      throw badRequest(`operation ${i} (${op}) is missing value`);
    }
    parsePointer(raw.path);
    return { op: op as JsonPatchOp["op"], path: raw.path, from: raw.from as string | undefined, value: raw.value };
  });
}

function arrayIndex(seg: string, length: number, allowEnd: boolean, path: string): number {
  if (allowEnd && seg === "-") return length;
  if (!/^(0|[1-9][0-9]*)$/.test(seg)) throw patchDoesNotApply(`invalid array index ${JSON.stringify(seg)} in ${path}`);
  const i = Number(seg);
  if (i > length || (!allowEnd && i >= length)) throw patchDoesNotApply(`array index ${i} out of bounds in ${path}`);
  return i;
}

function resolveParent(doc: Json, segs: string[], op: string, path: string): Json {
  let cur: Json = doc;
  for (const seg of segs.slice(0, -1)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(seg, cur.length, false, path)];
    else if (isObject(cur) && seg in cur) cur = cur[seg];
    else throw patchDoesNotApply(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
    if (cur === undefined) throw patchDoesNotApply(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
  }
  return cur;
}

function getAt(doc: Json, path: string, op: string): Json {
  const segs = parsePointer(path);
  if (segs.length === 0) return doc;
  const parent = resolveParent(doc, segs, op, path);
  const last = segs[segs.length - 1];
  if (Array.isArray(parent)) return parent[arrayIndex(last, parent.length, false, path)];
  if (isObject(parent) && last in parent) return parent[last];
  throw patchDoesNotApply(`${op} operation does not apply: doc is missing key: ${path}: missing value`);
}

function addAt(doc: Json, path: string, value: Json, op: string): Json {
  const segs = parsePointer(path);
  if (segs.length === 0) return value;
  const parent = resolveParent(doc, segs, op, path);
  const last = segs[segs.length - 1];
  if (Array.isArray(parent)) parent.splice(arrayIndex(last, parent.length, true, path), 0, value);
  else if (isObject(parent)) parent[last] = value;
  else throw patchDoesNotApply(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
  return doc;
}

function removeAt(doc: Json, path: string, op: string): Json {
  const segs = parsePointer(path);
  if (segs.length === 0) throw patchDoesNotApply(`${op} operation does not apply: cannot remove the root`);
  const parent = resolveParent(doc, segs, op, path);
  const last = segs[segs.length - 1];
  if (Array.isArray(parent)) parent.splice(arrayIndex(last, parent.length, false, path), 1);
  else if (isObject(parent) && last in parent) delete parent[last];
  else throw patchDoesNotApply(`${op} operation does not apply: doc is missing path: "${path}": missing value`);
  return doc;
}

/** RFC 6902. The document is modified in place (pass a copy) and returned. */
export function applyJsonPatch(doc: Json, patch: unknown): Json {
  let out = doc;
  for (const op of decodeJsonPatch(patch)) {
    switch (op.op) {
      case "add":
        out = addAt(out, op.path, structuredClone(op.value as Json), "add");
        break;
      case "remove":
        out = removeAt(out, op.path, "remove");
        break;
      case "replace":
        getAt(out, op.path, "replace");
        if (parsePointer(op.path).length === 0) out = structuredClone(op.value as Json);
        else {
          out = removeAt(out, op.path, "replace");
          out = addAt(out, op.path, structuredClone(op.value as Json), "replace");
        }
        break;
      case "move": {
        const from = op.from as string;
        if (op.path.startsWith(from + "/")) throw patchDoesNotApply(`move operation does not apply: "${from}" is a prefix of "${op.path}"`);
        const value = getAt(out, from, "move");
        out = removeAt(out, from, "move");
        out = addAt(out, op.path, value, "move");
        break;
      }
      case "copy":
        out = addAt(out, op.path, structuredClone(getAt(out, op.from as string, "copy")), "copy");
        break;
      case "test": {
        let actual: Json | undefined;
        try {
          actual = getAt(out, op.path, "test");
        } catch {
          actual = undefined;
        }
        if (!isDeepStrictEqual(actual, op.value)) throw patchDoesNotApply(`testing value ${op.path} failed: test failed`);
        break;
      }
    }
  }
  return out;
}

/** RFC 7386 JSON merge patch. Returns a new document. */
export function applyMergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: JsonObject = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = applyMergePatch(out[key] ?? null, value);
  }
  return out;
}

/**
 * Strategic merge patch, simplified: maps merge like a merge patch; lists whose path has a merge key
 * (listMergeKeys) merge element-wise by that key, lists of primitives marked "set" merge as a union,
 * every other list is replaced. Directives: `$patch: replace|delete` in maps and list elements,
 * `$deleteFromPrimitiveList/<field>`, `$retainKeys`; `$setElementOrder/<field>` is accepted and ignored.
 */
export function applyStrategicMergePatch(target: Json, patch: Json, listMergeKeys: Record<string, string>, path = ""): Json {
  if (!isObject(patch)) return structuredClone(patch);
  if (patch.$patch === "replace") {
    const { $patch: _ignored, ...rest } = patch;
    return structuredClone(rest);
  }
  if (patch.$patch === "delete") return null;
  const out: JsonObject = isObject(target) ? { ...target } : {};
  const retainKeys = Array.isArray(patch.$retainKeys) ? (patch.$retainKeys as Json[]).map(String) : undefined;
  for (const [key, value] of Object.entries(patch)) {
    if (key === "$retainKeys" || key === "$patch" || key.startsWith("$setElementOrder/")) continue;
    if (key.startsWith("$deleteFromPrimitiveList/")) {
      const field = key.slice("$deleteFromPrimitiveList/".length);
      const current = out[field];
      if (Array.isArray(current) && Array.isArray(value)) out[field] = current.filter(v => !value.some(d => isDeepStrictEqual(d, v)));
      continue;
    }
    const childPath = path ? `${path}.${key}` : key;
    if (value === null) {
      delete out[key];
    } else if (Array.isArray(value)) {
      out[key] = mergeList(out[key], value, listMergeKeys, childPath);
    } else if (isObject(value)) {
      const merged = applyStrategicMergePatch(out[key] ?? null, value, listMergeKeys, childPath);
      if (merged === null) delete out[key];
      else out[key] = merged;
    } else {
      out[key] = value;
    }
  }
  if (retainKeys) for (const key of Object.keys(out)) if (!retainKeys.includes(key)) delete out[key];
  return out;
}

function mergeList(current: Json | undefined, patch: Json[], listMergeKeys: Record<string, string>, path: string): Json[] {
  const strategy = listMergeKeys[path];
  if (!strategy) {
    return patch.filter(v => !(isObject(v) && v.$patch === "delete")).map(v => structuredClone(v));
  }
  const base = Array.isArray(current) ? [...current] : [];
  if (patch.some(v => isObject(v) && v.$patch === "replace" && Object.keys(v).length === 1)) {
    return patch.filter(v => !(isObject(v) && v.$patch)).map(v => structuredClone(v));
  }
  if (strategy === "set") {
    for (const v of patch) if (!base.some(b => isDeepStrictEqual(b, v))) base.push(structuredClone(v));
    return base;
  }
  for (const item of patch) {
    if (!isObject(item)) continue;
    const keyValue = item[strategy];
    const index = base.findIndex(b => isObject(b) && isDeepStrictEqual(b[strategy], keyValue));
    if (item.$patch === "delete") {
      if (index >= 0) base.splice(index, 1);
      continue;
    }
    if (index >= 0) base[index] = applyStrategicMergePatch(base[index], item, listMergeKeys, path);
    else base.push(applyStrategicMergePatch(null, item, listMergeKeys, path));
  }
  return base;
}

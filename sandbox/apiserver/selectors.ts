// Label and field selectors with kube's syntax and semantics.
import { badRequest } from "./errors";
import type { KubeObject } from "./types";

export type Requirement =
  | { key: string; op: "=" | "!="; value: string }
  | { key: string; op: "in" | "notin"; values: string[] }
  | { key: string; op: "exists" | "!" };

export type Selector = Requirement[];

const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function checkKey(key: string, input: string): void {
  if (!LABEL_KEY.test(key)) throw badRequest(`unable to parse requirement: invalid label key "${key}" in selector "${input}"`);
}
function checkValue(value: string, input: string): void {
  if (value.length > 63 || !LABEL_VALUE.test(value)) {
    throw badRequest(`unable to parse requirement: invalid label value: "${value}" in selector "${input}"`);
  }
}

/** Splits on commas that are not inside parentheses ("a in (x,y),b" -> ["a in (x,y)", "b"]). */
function splitTopLevel(input: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = "";
  for (const ch of input) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(current);
      current = "";
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts;
}

/** Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h` (also `==`). Empty -> matches everything. */
export function parseLabelSelector(input: string | undefined): Selector {
  if (!input || input.trim() === "") return [];
  const requirements: Selector = [];
  for (const rawPart of splitTopLevel(input)) {
    const part = rawPart.trim();
    if (part === "") throw badRequest(`unable to parse requirement: found '', expected: identifier in selector "${input}"`);
    const setMatch = /^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/.exec(part);
    if (setMatch) {
      const [, key, op, list] = setMatch;
      checkKey(key, input);
      const values = list.split(",").map(v => v.trim());
      values.forEach(v => checkValue(v, input));
      requirements.push({ key, op: op as "in" | "notin", values });
      continue;
    }
    const cmp = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (cmp) {
      const [, key, op, value] = cmp;
      checkKey(key, input);
      checkValue(value.trim(), input);
      requirements.push({ key, op: op === "!=" ? "!=" : "=", value: value.trim() });
      continue;
    }
    if (part.startsWith("!")) {
      const key = part.slice(1).trim();
      checkKey(key, input);
      requirements.push({ key, op: "!" });
      continue;
    }
    checkKey(part, input);
    requirements.push({ key: part, op: "exists" });
  }
  return requirements;
}

export function matchesLabels(selector: Selector, labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return selector.every(r => {
    const has = Object.prototype.hasOwnProperty.call(l, r.key);
    switch (r.op) {
      case "=":
        return has && l[r.key] === r.value;
      case "!=":
        return !has || l[r.key] !== r.value;
      case "in":
        return has && r.values.includes(l[r.key]);
      case "notin":
        return !has || !r.values.includes(l[r.key]);
      case "exists":
        return has;
      case "!":
        return !has;
    }
  });
}

/** metav1.LabelSelector (matchLabels + matchExpressions), as used by webhook namespace/object selectors. */
export interface LabelSelectorObject {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: "In" | "NotIn" | "Exists" | "DoesNotExist"; values?: string[] }[];
}

export function labelSelectorObjectToSelector(sel: LabelSelectorObject | undefined): Selector {
  const out: Selector = [];
  for (const [key, value] of Object.entries(sel?.matchLabels ?? {})) out.push({ key, op: "=", value });
  for (const e of sel?.matchExpressions ?? []) {
    switch (e.operator) {
      case "In":
        out.push({ key: e.key, op: "in", values: e.values ?? [] });
        break;
      case "NotIn":
        out.push({ key: e.key, op: "notin", values: e.values ?? [] });
        break;
      case "Exists":
        out.push({ key: e.key, op: "exists" });
        break;
      case "DoesNotExist":
        out.push({ key: e.key, op: "!" });
        break;
    }
  }
  return out;
}

export interface FieldRequirement {
  field: string;
  op: "=" | "!=";
  value: string;
}

/**
 * Field selectors: every kind supports metadata.name and metadata.namespace; `extraFields` lists the
 * per-kind fields kube adds (e.g. Events: involvedObject.name). Unknown fields are a 400 like kube.
 */
export function parseFieldSelector(input: string | undefined, extraFields: string[] = []): FieldRequirement[] {
  if (!input || input.trim() === "") return [];
  const allowed = ["metadata.name", "metadata.namespace", ...extraFields];
  return input.split(",").map(part => {
    const m = /^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(part);
    if (!m) throw badRequest(`invalid selector: '${input}'; can't understand '${part}'`);
    const [, field, op, value] = m;
    if (!allowed.includes(field)) {
      throw badRequest(`field label not supported: ${field}`);
    }
    return { field, op: op === "!=" ? "!=" : "=", value };
  });
}

function fieldValue(obj: KubeObject, path: string): string {
  let cur: unknown = obj;
  for (const seg of path.split(".")) {
    if (cur === null || typeof cur !== "object") return "";
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur === undefined || cur === null ? "" : String(cur);
}

export function matchesFields(reqs: FieldRequirement[], obj: KubeObject): boolean {
  return reqs.every(r => (fieldValue(obj, r.field) === r.value) === (r.op === "="));
}

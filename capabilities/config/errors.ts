// Renders zod issues of the module config in a platform engineer's words: `path: message` lines that name the
// field, say what is allowed, suggest the key a typo meant, and never echo a value that could be a secret.
import { z } from "zod";
import { showValue } from "../common/kube-values";

/** `["chassis", 1, "namespace"]` → `chassis[1].namespace`; label keys with dots/slashes are quoted. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (typeof segment === "string" && /^[A-Za-z_$][\w$]*$/.test(segment)) out += out === "" ? segment : `.${segment}`;
    else out += `[${JSON.stringify(String(segment))}]`;
  }
  return out;
}

/** What kind of value the user gave, in words (never the value of a non-string). */
export function describeKind(value: unknown): string {
  if (value === null) return "nothing (null)";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") return `text ${showValue(value)}`;
  if (typeof value === "number") return `the number ${value}`;
  if (typeof value === "boolean") return `${value}`;
  return typeof value;
}

const EXPECTED_WORDS: Record<string, string> = {
  string: "text",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  array: "a list",
  object: "a mapping",
  record: "a mapping",
};

function isIntegerSchema(inst: unknown): boolean {
  const format = (inst as { _zod?: { def?: { format?: string } } } | undefined)?._zod?.def?.format;
  return format === "safeint" || format === "int32" || format === "uint32";
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

function unknownKeysMessage(keys: string[], allowed: string[]): string {
  const parts = keys.map(key => {
    const best = allowed
      .map(candidate => ({ candidate, distance: editDistance(key, candidate) }))
      .sort((x, y) => x.distance - y.distance)[0];
    const hint = best && best.distance <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean ${showValue(best.candidate)}?)` : "";
    return `${showValue(key)}${hint}`;
  });
  const list = allowed.length > 0 ? `; allowed keys here: ${allowed.join(", ")}` : "";
  return `unknown key${keys.length > 1 ? "s" : ""} ${parts.join(", ")}${list}`;
}

/**
 * Per-parse error map: plain words for zod's built-in checks. Messages set on a schema win over this.
 * Never echoes the input of a type error (it could be a password).
 */
export const configErrorMap: z.core.$ZodErrorMap = iss => {
  switch (iss.code) {
    case "invalid_type":
      if (iss.input === undefined) return "is required";
      return `must be ${EXPECTED_WORDS[isIntegerSchema(iss.inst) ? "int" : iss.expected] ?? iss.expected} (got ${describeKind(iss.input)})`;
    case "invalid_value":
      return `must be one of ${iss.values.map(v => showValue(v)).join(", ")} (got ${describeKind(iss.input)})`;
    case "unrecognized_keys": {
      const shape = (iss.inst as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined)?._zod?.def?.shape;
      return unknownKeysMessage(iss.keys, shape ? Object.keys(shape) : []);
    }
    case "too_small":
      if (iss.origin === "string") return Number(iss.minimum) <= 1 ? "must not be empty" : `must be at least ${iss.minimum} characters`;
      if (iss.origin === "array") return `must list at least ${iss.minimum} item${Number(iss.minimum) === 1 ? "" : "s"}`;
      return iss.inclusive ? `must be at least ${iss.minimum}` : `must be greater than ${iss.minimum}`;
    case "too_big":
      if (iss.origin === "string") return `must be at most ${iss.maximum} characters`;
      if (iss.origin === "array") return `must list at most ${iss.maximum} items`;
      return iss.inclusive ? `must be at most ${iss.maximum}` : `must be less than ${iss.maximum}`;
    default:
      return undefined;
  }
};

/** Turns zod issues into `path: message` lines; `rename` lets the loader name the source of a path. */
export function formatIssues(issues: readonly z.core.$ZodIssue[], rename: (path: readonly PropertyKey[]) => string = formatPath): string[] {
  return issues.map(issue => {
    const where = rename(issue.path);
    return `${where === "" ? "top level" : where}: ${issue.message}`;
  });
}

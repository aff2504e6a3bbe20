// Structural OpenAPI v3 schemas of CustomResourceDefinitions, applied the way kube-apiserver's
// apiextensions server applies them to a custom resource: prune unknown fields (unless
// x-kubernetes-preserve-unknown-fields), drop nulls of non-nullable fields, apply `default`s, then
// validate. Errors use kube's field paths and go-openapi's messages ("spec.x in body must be of type
// integer: \"string\""). CEL rules (x-kubernetes-validations) and list-type uniqueness are not evaluated.
import { z } from "zod";
import type { FieldError } from "./errors";

/** The subset of JSONSchemaProps a structural schema uses (kube rejects CRDs that go beyond it). */
export interface StructuralSchema {
  type?: "object" | "array" | "string" | "integer" | "number" | "boolean";
  properties?: Record<string, StructuralSchema>;
  additionalProperties?: StructuralSchema | boolean;
  items?: StructuralSchema;
  required?: string[];
  nullable?: boolean;
  enum?: unknown[];
  pattern?: string;
  maxLength?: number;
  minLength?: number;
  minimum?: number;
  maximum?: number;
  maxItems?: number;
  minItems?: number;
  maxProperties?: number;
  default?: unknown;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  "x-kubernetes-int-or-string"?: boolean;
  "x-kubernetes-embedded-resource"?: boolean;
}

const schemaNode: z.ZodType<StructuralSchema> = z.lazy(() =>
  z
    .object({
      type: z.enum(["object", "array", "string", "integer", "number", "boolean"]).optional(),
      properties: z.record(z.string(), schemaNode).optional(),
      additionalProperties: z.union([schemaNode, z.boolean()]).optional(),
      items: schemaNode.optional(),
      required: z.array(z.string()).optional(),
      nullable: z.boolean().optional(),
      enum: z.array(z.unknown()).optional(),
      pattern: z.string().optional(),
      maxLength: z.number().optional(),
      minLength: z.number().optional(),
      minimum: z.number().optional(),
      maximum: z.number().optional(),
      maxItems: z.number().optional(),
      minItems: z.number().optional(),
      maxProperties: z.number().optional(),
      default: z.unknown().optional(),
      "x-kubernetes-preserve-unknown-fields": z.boolean().optional(),
      "x-kubernetes-int-or-string": z.boolean().optional(),
      "x-kubernetes-embedded-resource": z.boolean().optional(),
    })
    // description, format, anyOf (of int-or-string), x-kubernetes-list-type... are accepted and not acted on.
    .passthrough(),
) as z.ZodType<StructuralSchema>;

/** Parses a CRD version's openAPIV3Schema; undefined when it is missing or not a schema. */
export function parseStructuralSchema(raw: unknown): StructuralSchema | undefined {
  const parsed = schemaNode.safeParse(raw);
  return parsed.success ? parsed.data : undefined;
}

/** The JSON type name go-openapi reports for a value ("integer" for whole numbers). */
function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const ROOT_META_FIELDS = new Set(["apiVersion", "kind", "metadata"]);

/**
 * Prunes and defaults `value` in place, following `schema`. At the root and in embedded resources,
 * apiVersion/kind/metadata are kept (kube handles them separately).
 */
function pruneAndDefault(value: unknown, schema: StructuralSchema, isResource: boolean): void {
  if (Array.isArray(value)) {
    if (schema.items) for (const item of value) pruneAndDefault(item, schema.items, Boolean(schema.items["x-kubernetes-embedded-resource"]));
    return;
  }
  if (!isPlainObject(value)) return;
  const props = schema.properties;
  const additional = schema.additionalProperties;
  for (const key of Object.keys(value)) {
    // In-process writers may leave `undefined`: on the wire such a field is simply absent.
    if (value[key] === undefined) {
      delete value[key];
      continue;
    }
    if (isResource && ROOT_META_FIELDS.has(key)) continue;
    const child = props?.[key] ?? (typeof additional === "object" ? additional : undefined);
    if (!child) {
      if (!schema["x-kubernetes-preserve-unknown-fields"] && additional !== true) delete value[key];
      continue;
    }
    if (value[key] === null && !child.nullable && child.default === undefined) {
      delete value[key];
      continue;
    }
    pruneAndDefault(value[key], child, Boolean(child["x-kubernetes-embedded-resource"]));
  }
  for (const [key, child] of Object.entries(props ?? {})) {
    if (child.default !== undefined && value[key] === undefined) value[key] = structuredClone(child.default);
  }
}

function pathOf(base: string, key: string): string {
  return base ? `${base}.${key}` : key;
}

function quoted(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
}

function validate(value: unknown, schema: StructuralSchema, path: string, errors: FieldError[], isResource: boolean): void {
  if (value === null) {
    if (!schema.nullable && schema.type !== undefined) {
      errors.push({ field: path, type: "FieldValueInvalid", message: `"null": ${path} in body must be of type ${schema.type}: "null"` });
    }
    return;
  }
  const actual = jsonType(value);
  if (schema["x-kubernetes-int-or-string"]) {
    if (actual !== "integer" && actual !== "string") {
      errors.push({ field: path, type: "FieldValueInvalid", message: `"${actual}": ${path} in body must be of type integer,string: "${actual}"` });
      return;
    }
  } else if (schema.type !== undefined) {
    const ok = schema.type === actual || (schema.type === "number" && actual === "integer");
    if (!ok) {
      errors.push({ field: path, type: "FieldValueInvalid", message: `"${actual}": ${path} in body must be of type ${schema.type}: "${actual}"` });
      return;
    }
  }
  if (schema.enum && !schema.enum.some(e => JSON.stringify(e) === JSON.stringify(value))) {
    errors.push({ field: path, type: "FieldValueNotSupported", message: `${quoted(value)}: supported values: ${schema.enum.map(quoted).join(", ")}` });
  }
  if (typeof value === "string") {
    if (schema.maxLength !== undefined && [...value].length > schema.maxLength) {
      errors.push({ field: path, type: "FieldValueTooLong", message: `may not be longer than ${schema.maxLength}` });
    }
    if (schema.minLength !== undefined && [...value].length < schema.minLength) {
      errors.push({ field: path, type: "FieldValueInvalid", message: `${quoted(value)}: ${path} in body should be at least ${schema.minLength} chars long` });
    }
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, "u").test(value)) {
      errors.push({ field: path, type: "FieldValueInvalid", message: `${quoted(value)}: ${path} in body should match '${schema.pattern}'` });
    }
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) {
      errors.push({ field: path, type: "FieldValueInvalid", message: `${value}: ${path} in body should be greater than or equal to ${schema.minimum}` });
    }
    if (schema.maximum !== undefined && value > schema.maximum) {
      errors.push({ field: path, type: "FieldValueInvalid", message: `${value}: ${path} in body should be less than or equal to ${schema.maximum}` });
    }
  }
  if (Array.isArray(value)) {
    if (schema.maxItems !== undefined && value.length > schema.maxItems) {
      errors.push({ field: path, type: "FieldValueTooMany", message: `${value.length}: must have at most ${schema.maxItems} items` });
    }
    if (schema.minItems !== undefined && value.length < schema.minItems) {
      errors.push({ field: path, type: "FieldValueInvalid", message: `${value.length}: ${path} in body should have at least ${schema.minItems} items` });
    }
    if (schema.items) value.forEach((item, i) => validate(item, schema.items!, `${path}[${i}]`, errors, Boolean(schema.items!["x-kubernetes-embedded-resource"])));
    return;
  }
  if (!isPlainObject(value)) return;
  for (const key of schema.required ?? []) {
    if (value[key] === undefined) errors.push({ field: pathOf(path, key), type: "FieldValueRequired", message: "" });
  }
  if (schema.maxProperties !== undefined && Object.keys(value).length > schema.maxProperties) {
    errors.push({ field: path, type: "FieldValueTooMany", message: `${Object.keys(value).length}: must have at most ${schema.maxProperties} items` });
  }
  const additional = schema.additionalProperties;
  for (const [key, child] of Object.entries(value)) {
    if (isResource && ROOT_META_FIELDS.has(key)) continue;
    const prop = schema.properties?.[key];
    if (prop) validate(child, prop, pathOf(path, key), errors, Boolean(prop["x-kubernetes-embedded-resource"]));
    else if (typeof additional === "object") validate(child, additional, pathOf(path, key), errors, false);
  }
}

/**
 * What the apiextensions server does to a custom resource before storing it: prune, default (in place on
 * `obj`), then validate. Returns the field errors (empty when the object is valid).
 */
export function applyStructuralSchema(obj: Record<string, unknown>, schema: StructuralSchema): FieldError[] {
  pruneAndDefault(obj, schema, true);
  const errors: FieldError[] = [];
  validate(obj, schema, "", errors, true);
  return errors;
}

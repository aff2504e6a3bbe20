// OData/Redfish protocol helpers: schema versions, resource envelopes, ETags, JSON responses and bodies.
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Context } from "hono";
import type { z } from "zod";
import { baseError, errorBody, RedfishError } from "./errors";

export const REDFISH_VERSION = "1.15.0";
export const SERVICE_ROOT = "/redfish/v1";

/** The DMTF schema version of every resource type this service serves (one place; $metadata lists them). */
export const RESOURCE_SCHEMAS = {
  ServiceRoot: "v1_15_0",
  ComputerSystem: "v1_20_0",
  EthernetInterface: "v1_6_0",
  Chassis: "v1_14_0",
  Manager: "v1_10_0",
  SessionService: "v1_1_8",
  Session: "v1_7_0",
  AccountService: "v1_10_0",
  ManagerAccount: "v1_7_0",
  TaskService: "v1_2_0",
  Task: "v1_7_0",
  VirtualMedia: "v1_6_0",
  Processor: "v1_10_0",
  Memory: "v1_10_0",
  Storage: "v1_9_0",
  Drive: "v1_11_0",
  SimpleStorage: "v1_3_0",
  Bios: "v1_1_0",
  SecureBoot: "v1_1_0",
  Role: "v1_3_0",
  EventService: "v1_10_0",
  EventDestination: "v1_13_0",
  Event: "v1_7_0",
} as const;

export type ResourceType = keyof typeof RESOURCE_SCHEMAS;

/** Collections by their member type. */
export const COLLECTION_TYPES = {
  ComputerSystem: "ComputerSystemCollection",
  EthernetInterface: "EthernetInterfaceCollection",
  Chassis: "ChassisCollection",
  Manager: "ManagerCollection",
  Session: "SessionCollection",
  ManagerAccount: "ManagerAccountCollection",
  Task: "TaskCollection",
  VirtualMedia: "VirtualMediaCollection",
  Processor: "ProcessorCollection",
  Memory: "MemoryCollection",
  Storage: "StorageCollection",
  SimpleStorage: "SimpleStorageCollection",
  Role: "RoleCollection",
  EventDestination: "EventDestinationCollection",
} as const;

export type CollectionType = (typeof COLLECTION_TYPES)[keyof typeof COLLECTION_TYPES];

/** `@odata.id`, `@odata.type` and `@odata.context` of a resource, to spread first into its body. */
export function envelope(type: ResourceType, odataId: string): Record<string, string> {
  return {
    "@odata.id": odataId,
    "@odata.type": `#${type}.${RESOURCE_SCHEMAS[type]}.${type}`,
    "@odata.context": `${SERVICE_ROOT}/$metadata#${type}.${type}`,
  };
}

export function link(odataId: string): { "@odata.id": string } {
  return { "@odata.id": odataId };
}

export function collection(type: CollectionType, odataId: string, name: string, memberIds: readonly string[]): object {
  return {
    "@odata.id": odataId,
    "@odata.type": `#${type}.${type}`,
    "@odata.context": `${SERVICE_ROOT}/$metadata#${type}.${type}`,
    Name: name,
    "Members@odata.count": memberIds.length,
    Members: memberIds.map(link),
  };
}

// ---- ETags ----

export function etagOf(serialized: string): string {
  return `"${createHash("sha256").update(serialized).digest("base64url").slice(0, 27)}"`;
}

function etagList(header: string): string[] {
  return header
    .split(",")
    .map(t => t.trim())
    .filter(t => t !== "");
}

/** If-None-Match: weak comparison (a `W/` prefix is ignored), `*` matches any current representation. */
export function noneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const strip = (t: string) => (t.startsWith("W/") ? t.slice(2) : t);
  return etagList(header).some(t => t === "*" || strip(t) === etag);
}

/** If-Match: strong comparison (RFC 9110); a weak tag never matches. */
export function ifMatchHolds(header: string | undefined, etag: string): boolean {
  if (header === undefined) return true;
  return etagList(header).some(t => t === "*" || t === etag);
}

/** Throws 412 PreconditionFailed when If-Match does not hold for the current representation of `currentBody`. */
export function checkIfMatch(header: string | undefined, currentBody: object): void {
  checkIfMatchEtag(header, etagOf(JSON.stringify(currentBody)));
}

// ---- responses ----

/** `Link: <schema>; rel=describedby` from a body's @odata.type (DSP0266 recommends it on GET). */
function describedBy(body: unknown): string | undefined {
  const type = (body as { "@odata.type"?: unknown } | undefined)?.["@odata.type"];
  if (typeof type !== "string") return undefined;
  const match = /^#([A-Za-z]+)(?:\.(v\d+_\d+_\d+))?\.[A-Za-z]+$/.exec(type);
  if (!match) return undefined;
  const file = match[2] ? `${match[1]}.${match[2]}.json` : `${match[1]}.json`;
  return `<http://redfish.dmtf.org/schemas/v1/${file}>; rel=describedby`;
}

export interface JsonOptions {
  status?: number;
  headers?: Record<string, string>;
  /** GET/HEAD responses carry a strong ETag and honour If-None-Match. */
  conditional?: boolean;
}

/** Headers every Redfish response carries (DSP0266), set by the app's protocol middleware unless already there. */
export const PROTOCOL_HEADERS = {
  "OData-Version": "4.0",
  // Responses depend on who asked: no shared cache may store them.
  "Cache-Control": "private, no-cache",
} as const;

/**
 * Marks a response whose header record already has PROTOCOL_HEADERS (and Allow, when the resource set one), so the
 * middleware leaves its headers alone: reading `Response.headers` makes the Node adaptor build a Headers object
 * and convert it back for the socket, the most expensive part of a cached GET otherwise.
 */
const COMPLETE = Symbol("redfish protocol headers present");

type MarkedResponse = Response & { [COMPLETE]?: true };

export function hasProtocolHeaders(res: Response): boolean {
  return (res as MarkedResponse)[COMPLETE] === true;
}

/** A response built without the headers every Redfish response carries (e.g. a bare 204), given them. */
export function withProtocolHeaders(res: Response): Response {
  if (hasProtocolHeaders(res)) return res;
  res.headers.set("OData-Version", PROTOCOL_HEADERS["OData-Version"]);
  if (!res.headers.has("Cache-Control")) res.headers.set("Cache-Control", PROTOCOL_HEADERS["Cache-Control"]);
  return res;
}

/** A serialized JSON body with its strong ETag, served any number of times. */
export interface Representation {
  /** The UTF-8 bytes of the body, written to the socket as they are. */
  readonly body: Buffer;
  readonly etag: string;
  /** The `Link: <schema>; rel=describedby` value, when the body has an @odata.type. */
  readonly schemaLink?: string;
  /** The complete 200 header record for one Allow value, made on first use (a resource has one Allow). */
  headers?: { allow: string; record: Readonly<Record<string, string>> };
}

export function represent(body: unknown): Representation {
  const text = JSON.stringify(body);
  const schemaLink = describedBy(body);
  return { body: Buffer.from(text), etag: etagOf(text), ...(schemaLink ? { schemaLink } : {}) };
}

/** Node's IncomingMessage of a request served by @hono/node-server (undefined in app.request() tests). */
export function incomingMessage(c: Context): IncomingMessage | undefined {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
}

/**
 * A request header by its lower-case name, as the Fetch API joins it (repeated fields joined with ", "). Under
 * @hono/node-server it is read from Node's parsed headers, which the adaptor has built already: `c.req.header()`
 * would build a WHATWG Headers object from the raw headers on every request, a measurable share of a cached GET.
 * Node keeps only the first of some repeated fields (Authorization among them); those are joined here from the
 * raw headers as Fetch does, so two credentials never pass as the first one.
 */
export function requestHeader(c: Context, lowerCaseName: string): string | undefined {
  const incoming = incomingMessage(c);
  // Tests that give the app a socket address only (app.request with env.incoming) have no parsed headers.
  if (!incoming?.headers) return c.req.header(lowerCaseName);
  const parsed = incoming.headers[lowerCaseName];
  const value = Array.isArray(parsed) ? parsed.join(", ") : parsed; // set-cookie only: never a request field here
  if (value === undefined || !FIRST_KEPT_BY_NODE.has(lowerCaseName)) return value;
  const raw = incoming.rawHeaders;
  let joined: string | undefined;
  let count = 0;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === lowerCaseName.length && raw[i].toLowerCase() === lowerCaseName) {
      joined = count++ === 0 ? raw[i + 1] : `${joined}, ${raw[i + 1]}`;
    }
  }
  return count > 1 ? joined : value;
}

/** Request fields this service reads of which Node keeps the first when repeated (http.IncomingMessage.headers). */
const FIRST_KEPT_BY_NODE = new Set(["authorization", "content-type", "content-length"]);

/** Throws 412 PreconditionFailed when If-Match does not hold for the current representation. */
export function checkIfMatchEtag(header: string | undefined, etag: string): void {
  if (!ifMatchHolds(header, etag)) throw baseError(412, "PreconditionFailed");
}

function completeHeaders(rep: Representation, allow: string, conditional: boolean): Record<string, string> {
  // One literal with the fixed headers first: a compact object, kept per cached representation.
  const headers: Record<string, string> = {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": String(rep.body.byteLength),
    "OData-Version": PROTOCOL_HEADERS["OData-Version"],
    "Cache-Control": PROTOCOL_HEADERS["Cache-Control"],
  };
  if (rep.schemaLink) headers.Link = rep.schemaLink;
  if (conditional) headers.ETag = rep.etag;
  if (allow) headers.Allow = allow;
  return headers;
}

/**
 * The response for a representation. A plain 200 (the hot path) reuses the representation's header record for
 * the resource's Allow value (set by `resource()` in the context): nothing is built per request but the Response.
 */
export function sendRepresentation(c: Context, rep: Representation, options: JsonOptions = {}): Response {
  const conditional = options.conditional === true;
  if (conditional && noneMatchHits(requestHeader(c, "if-none-match"), rep.etag)) {
    return new Response(null, { status: 304, headers: { ETag: rep.etag } });
  }
  const allow = (c.get("allow") as string | undefined) ?? "";
  let headers: Readonly<Record<string, string>>;
  if (conditional && options.headers === undefined) {
    if (rep.headers?.allow !== allow) rep.headers = { allow, record: completeHeaders(rep, allow, true) };
    headers = rep.headers.record;
  } else {
    headers = { ...completeHeaders(rep, allow, conditional), ...options.headers };
  }
  const res = new Response(rep.body, { status: options.status ?? 200, headers }) as MarkedResponse;
  res[COMPLETE] = true;
  return res;
}

export function sendJson(c: Context, body: unknown, options: JsonOptions = {}): Response {
  return sendRepresentation(c, represent(body), options);
}

export function sendError(err: RedfishError): Response {
  const res = new Response(JSON.stringify(errorBody(err)), {
    status: err.status,
    headers: { "Content-Type": "application/json; charset=utf-8", ...PROTOCOL_HEADERS, ...err.headers },
  }) as MarkedResponse;
  res[COMPLETE] = true;
  return res;
}

// ---- request bodies ----

/**
 * The request body as text. Every route with a body is registered through the app's admission, which reads the
 * body first, within the size limit (./request-body.ts), and keeps it on the context.
 */
export function readRequestText(c: Context): string {
  const text: unknown = c.get("requestBody");
  if (typeof text !== "string") throw new Error(`${c.req.method} ${c.req.path}: the request body was not read before the resource`);
  return text;
}

/** The request body as a JSON object; 400 MalformedJSON for anything else (the size limit is enforced before). */
export function readJsonObject(c: Context): Record<string, unknown> {
  const text = readRequestText(c);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw baseError(400, "MalformedJSON");
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw baseError(400, "MalformedJSON", [], { resolution: "The request body must be a JSON object." });
  }
  return parsed as Record<string, unknown>;
}

function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let value = body;
  for (const key of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<PropertyKey, unknown>)[key];
  }
  return value;
}

function shown(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return value.length > 100 ? `${value.slice(0, 100)}...` : value;
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 100 ? `${text.slice(0, 100)}...` : text;
}

/**
 * Parses a body with a zod schema (strict objects) and maps the first issue to a Base message:
 * unknown property → PropertyUnknown / ActionParameterUnknown, missing → PropertyMissing /
 * ActionParameterMissing, wrong type → PropertyValueTypeError / ActionParameterValueTypeError,
 * value outside an enum → PropertyValueNotInList / ActionParameterValueNotInList. `action` names the
 * action when the body is an action's parameters.
 */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown, action?: string): z.output<S> {
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = issue.path.map(String);
  const name = path.join("/");
  if (issue.code === "unrecognized_keys") {
    const property = [...path, issue.keys[0]].join("/");
    throw action
      ? baseError(400, "ActionParameterUnknown", [action, property])
      : baseError(400, "PropertyUnknown", [property], { relatedProperties: [`#/${property}`] });
  }
  const raw = valueAt(body, issue.path);
  // A password given with the wrong type is not echoed back.
  const value = raw !== undefined && /password/i.test(name) ? "(hidden)" : raw;
  if (value === undefined) {
    throw action
      ? baseError(400, "ActionParameterMissing", [action, name])
      : baseError(400, "PropertyMissing", [name], { relatedProperties: [`#/${name}`] });
  }
  if (issue.code === "invalid_value") {
    throw action
      ? baseError(400, "ActionParameterValueNotInList", [shown(value), name, action])
      : baseError(400, "PropertyValueNotInList", [shown(value), name], { relatedProperties: [`#/${name}`] });
  }
  throw action
    ? baseError(400, "ActionParameterValueTypeError", [shown(value), name, action])
    : baseError(400, "PropertyValueTypeError", [shown(value), name], { relatedProperties: [`#/${name}`] });
}


// Event subscriptions (EventDestination): the POST body, the stored model, and the matching of an event against
// a subscription's filters. HttpHeaders can carry credentials: they are stored, sent with deliveries, and never
// rendered or logged.
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { baseError } from "../errors";
import type { KubernetesIdentity } from "../auth/kubernetes";
import { EVENT_TYPES, registryPrefixOf, RESOURCE_TYPES, REGISTRY_PREFIXES, type DerivedEvent } from "./derive";

export const MAX_CONTEXT_LENGTH = 256;
export const MAX_HEADERS = 16;
export const MAX_HEADER_BYTES = 4096;

export interface Subscription {
  id: string;
  /** The user that created it: only that user sees, deletes and receives through it. */
  owner: string;
  destination: string;
  context: string;
  eventTypes: string[];
  registryPrefixes: string[];
  resourceTypes: string[];
  httpHeaders: Record<string, string>;
  /** The Kubernetes identity that created it (redfish/auth/kubernetes.ts): it receives what that identity may see. */
  identity?: KubernetesIdentity;
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
/** Headers a subscriber may not set: the transport's own. */
const RESERVED_HEADERS = new Set(["host", "content-length", "content-type", "transfer-encoding", "connection", "expect", "upgrade", "te", "trailer"]);

/** POST /EventService/Subscriptions (DSP0266 "Event subscription"); HttpHeaders is checked apart so it is never echoed. */
export const subscriptionRequestSchema = z.strictObject({
  Destination: z.string().min(1).max(4096),
  Protocol: z.enum(["Redfish"]),
  Context: z.string().max(MAX_CONTEXT_LENGTH).optional(),
  EventTypes: z.array(z.enum(EVENT_TYPES)).max(EVENT_TYPES.length).optional(),
  RegistryPrefixes: z.array(z.enum(REGISTRY_PREFIXES)).max(REGISTRY_PREFIXES.length).optional(),
  ResourceTypes: z.array(z.enum(RESOURCE_TYPES)).max(RESOURCE_TYPES.length).optional(),
  SubscriptionType: z.enum(["RedfishEvent"]).optional(),
  EventFormatType: z.enum(["Event"]).optional(),
  HttpHeaders: z.unknown().optional(),
});

/**
 * DSP0266 HttpHeaders: an array of objects of header name → value (one header per object by convention).
 * Errors never show the values.
 */
export function parseHttpHeaders(value: unknown): Record<string, string> {
  const refuse = (resolution: string) =>
    baseError(400, "PropertyValueFormatError", ["(hidden)", "HttpHeaders"], { resolution, relatedProperties: ["#/HttpHeaders"] });
  if (value === undefined || value === null) return {};
  if (!Array.isArray(value)) throw refuse("Send HttpHeaders as an array of objects, like [{\"Authorization\": \"Bearer ...\"}].");
  const headers: Record<string, string> = {};
  let bytes = 0;
  for (const entry of value) {
    if (!entry || typeof entry !== "object" || Array.isArray(entry)) throw refuse("Each HttpHeaders entry is an object of header name to string value.");
    for (const [name, headerValue] of Object.entries(entry as Record<string, unknown>)) {
      if (!HEADER_NAME.test(name)) throw refuse("Header names are HTTP tokens of at most 128 characters.");
      if (RESERVED_HEADERS.has(name.toLowerCase())) throw refuse(`The header ${name} is set by the service and cannot be given.`);
      if (typeof headerValue !== "string" || /[\r\n\0]/.test(headerValue)) throw refuse("Header values are strings without line breaks.");
      headers[name] = headerValue;
      bytes += name.length + Buffer.byteLength(headerValue);
    }
  }
  if (Object.keys(headers).length > MAX_HEADERS || bytes > MAX_HEADER_BYTES) {
    throw refuse(`Send at most ${MAX_HEADERS} headers of at most ${MAX_HEADER_BYTES} bytes in all.`);
  }
  return headers;
}

export function newSubscription(
  owner: string,
  destination: string,
  request: z.output<typeof subscriptionRequestSchema>,
  httpHeaders: Record<string, string>,
  identity?: KubernetesIdentity,
): Subscription {
  return {
    ...(identity ? { identity } : {}),
    id: randomUUID(),
    owner,
    destination,
    context: request.Context ?? "",
    eventTypes: request.EventTypes ?? [],
    registryPrefixes: request.RegistryPrefixes ?? [],
    resourceTypes: request.ResourceTypes ?? [],
    httpHeaders,
  };
}

/** DSP0266: an empty filter list means every value; a subscription receives an event only if every list admits it. */
export function subscriptionWants(sub: Pick<Subscription, "eventTypes" | "registryPrefixes" | "resourceTypes">, event: DerivedEvent): boolean {
  return (
    (sub.eventTypes.length === 0 || sub.eventTypes.includes(event.eventType)) &&
    (sub.registryPrefixes.length === 0 || sub.registryPrefixes.includes(registryPrefixOf(event.messageKey))) &&
    (sub.resourceTypes.length === 0 || sub.resourceTypes.includes(event.resourceType))
  );
}

/** The stored form (a Secret's data): zod-checked when read back, so a hand-edited Secret cannot break the service. */
export const storedSubscriptionSchema = z.object({
  id: z.string().regex(/^[0-9a-f-]{36}$/),
  owner: z.string().min(1).max(256),
  destination: z.string().min(1).max(4096),
  context: z.string().max(MAX_CONTEXT_LENGTH),
  eventTypes: z.array(z.enum(EVENT_TYPES)),
  registryPrefixes: z.array(z.enum(REGISTRY_PREFIXES)),
  resourceTypes: z.array(z.enum(RESOURCE_TYPES)),
  httpHeaders: z.record(z.string(), z.string()),
  identity: z
    .object({
      username: z.string().min(1).max(1024),
      uid: z.string().max(256).optional(),
      groups: z.array(z.string().max(1024)).max(256),
      extra: z.record(z.string(), z.array(z.string())).optional(),
    })
    .optional(),
});

/** Where subscriptions are kept across restarts (the cluster in the watcher; nothing in tests that do not care). */
export interface SubscriptionPersistence {
  save(sub: Subscription): Promise<void>;
  remove(id: string): Promise<void>;
}

// What every resource module works with: the request's principal and settings, the cache, the
// method table of a resource (405 + Allow for the rest), and tenant-scoped lookups of systems.
import type { Context, Hono } from "hono";
import type { Principal } from "../auth";
import type { Authenticator } from "../auth";
import type { ClusterCache, VmRecord } from "../cache/types";
import type { KubeVirtDriver } from "../kubevirt/driver";
import { baseError, notFound } from "../errors";
import { clientAddress } from "../auth/client-address";
import { hasProtocolHeaders, incomingMessage, requestHeader, sendRepresentation, SERVICE_ROOT, type Representation } from "../odata";
import type { Replays } from "../replays";
import type { ResponseCache } from "../response-cache";
import type { ServiceSettings } from "../settings";

export interface RedfishVariables {
  principal: Principal;
  settings: ServiceSettings;
  /** The Allow value of the addressed resource, for responses that build their headers in one go. */
  allow: string;
  /** The body of a POST/PATCH/PUT, read by the app's admission before the resource (readRequestText). */
  requestBody: string;
}

export type RedfishEnv = { Variables: RedfishVariables };
export type RedfishContext = Context<RedfishEnv>;
export type Handler = (c: RedfishContext) => Response | Promise<Response>;

/** A task as the TaskService shows it; tasks belong to a system and are visible with it. */
export interface TaskView {
  id: string;
  namespace: string;
  vmName: string;
  /** The Task resource body without @odata.id/@odata.type/@odata.context. */
  body: Record<string, unknown>;
}

/** Where the TaskService reads tasks from (filled by the virtual-media work). */
export interface TaskSource {
  list(): readonly TaskView[];
  get(id: string): TaskView | undefined;
  /** The tasks of one system (the EventService diffs them on every change of the system's record). */
  ofSystem?(rec: VmRecord): readonly TaskView[];
}

export interface ServiceDeps {
  cache: ClusterCache;
  /** Where Redfish actions write (power, boot, media). */
  driver: KubeVirtDriver;
  auth: Authenticator;
  tasks?: TaskSource;
  /** Stable identity of this installation (e.g. the pepr-system namespace uid); the ServiceRoot UUID derives from it. */
  installationId: () => string | undefined;
  now: () => number;
  /** Serialized responses per (cache record, resource, principal's view). */
  responses: ResponseCache;
  /** Answers of hot GETs the server may replay without the app. */
  replays: Replays;
}

export interface ResourceMethods {
  GET?: Handler;
  POST?: Handler;
  PATCH?: Handler;
  PUT?: Handler;
  DELETE?: Handler;
}

/**
 * Where resource modules register their routes: the Hono app, and the admission (protocol checks and
 * authentication, app.ts) that every route runs first. Admission wraps each route's handler instead of being one
 * `app.use` middleware: a route with one handler is called directly by Hono, and a request whose credentials are
 * known is answered without a promise (a composed middleware chain costs a promise and a microtask per level).
 */
export interface ResourceRoutes {
  readonly app: Hono<RedfishEnv>;
  readonly admit: (handler: Handler) => Handler;
}

/**
 * The handler of a resource: its methods, HEAD for GET, and 405 with `Allow` for every other method.
 * `lookup` resolves the addressed resource first (throwing its 404), so a resource the principal may not
 * see is the same 404 on every verb, never a 405 that would tell it apart from a missing one.
 */
export function resourceHandler(methods: ResourceMethods, lookup?: (c: RedfishContext) => unknown): Handler {
  const allow = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]
    .filter(m => (m === "HEAD" ? methods.GET : methods[m as keyof ResourceMethods]))
    .join(", ");
  const withAllow = (res: Response): Response => {
    if (!hasProtocolHeaders(res)) res.headers.set("Allow", allow);
    return res;
  };
  return c => {
    const method = c.req.method.toUpperCase();
    if (method === "HEAD" && methods.GET) {
      return Promise.resolve(methods.GET(c)).then(res => {
        res.headers.set("Allow", allow);
        return new Response(null, { status: res.status, headers: res.headers });
      });
    }
    const handler = methods[method as keyof ResourceMethods];
    if (!handler) {
      lookup?.(c);
      throw baseError(405, "OperationNotAllowed", [], { headers: { Allow: allow } });
    }
    if (method !== "GET") return handler(c);
    c.set("allow", allow);
    const res = handler(c);
    return res instanceof Promise ? res.then(withAllow) : withAllow(res);
  };
}

/** Registers a resource (see resourceHandler) behind the app's admission. */
export function resource(routes: ResourceRoutes, path: string, methods: ResourceMethods, lookup?: (c: RedfishContext) => unknown): void {
  routes.app.all(path, routes.admit(resourceHandler(methods, lookup)));
}

/** The client address (back-off, sessions, logs) of an admitted request; asked for only by the checks that need it. */
export function clientAddressOf(c: RedfishContext): string {
  return clientAddress(incomingMessage(c)?.socket?.remoteAddress, requestHeader(c, "x-forwarded-for"), c.get("settings").isTrustedProxy);
}

// ---- tenant-scoped access ----

/** A system the principal may see: its record, its id and the principal's chassis that contain it. */
export interface VisibleSystem {
  id: string;
  rec: VmRecord;
  chassis: string[];
}

/**
 * A resource of a system as this principal sees it, serialized once per cache record and view (the principal's
 * chassis that contain the system: the bodies link them).
 */
export function cachedSystemResource(deps: Pick<ServiceDeps, "responses">, resourceName: string, system: VisibleSystem, render: () => unknown): Representation {
  const key = `${resourceName}\n${system.chassis.join("\n")}`;
  return deps.responses.representation(system.rec.vm.metadata.uid ?? system.id, system.rec, key, render);
}

/**
 * The GET answer of a cached system resource. A plain 200 for a path that names the system by its full id is
 * remembered for the server to replay while its inputs hold (replays.ts); a bare VM name is not (it resolves
 * against the other VMs the principal sees).
 */
export function sendSystemResource(c: RedfishContext, deps: Pick<ServiceDeps, "cache" | "replays">, system: VisibleSystem, rep: Representation): Response {
  const res = sendRepresentation(c, rep, { conditional: true });
  const request = incomingMessage(c);
  if (request && res.status === 200 && rep.headers && c.req.param("id") === system.id) {
    const namespace = system.rec.vm.metadata.namespace ?? "";
    const name = system.rec.vm.metadata.name ?? "";
    const inputs = { principal: c.get("principal"), settings: c.get("settings"), record: system.rec, namespace, name, chassis: deps.cache.chassisOf(namespace, name) };
    deps.replays.remember(request, inputs, rep.headers.record, rep.body);
  }
  return res;
}

export function systemIdOf(rec: VmRecord): string {
  return `${rec.vm.metadata.namespace}.${rec.vm.metadata.name}`;
}

export const systemUri = (id: string) => `${SERVICE_ROOT}/Systems/${encodeURIComponent(id)}`;
export const managerUri = (id: string) => `${SERVICE_ROOT}/Managers/${encodeURIComponent(id)}`;
export const chassisUri = (name: string) => `${SERVICE_ROOT}/Chassis/${encodeURIComponent(name)}`;

/** The principal's chassis that exist in the configuration, in the user's order. */
export function userChassis(c: RedfishContext): string[] {
  const settings = c.get("settings");
  return c.get("principal").account.chassis.filter(name => settings.chassis.has(name));
}

function visible(c: RedfishContext, cache: ClusterCache, namespace: string, name: string): VisibleSystem | undefined {
  const rec = cache.getVm(namespace, name);
  if (!rec) return undefined;
  const mine = userChassis(c);
  const chassis = cache.chassisOf(namespace, name).filter(ch => mine.includes(ch));
  return chassis.length > 0 ? { id: systemIdOf(rec), rec, chassis } : undefined;
}

/**
 * Resolves a system id for the principal: `<namespace>.<vm>` (namespaces have no dots, VM names may),
 * or a bare `<vm>` when exactly one VM of that name is visible. Anything else, including systems of
 * other chassis, is the same 404.
 */
export function resolveSystem(c: RedfishContext, cache: ClusterCache, id: string, resourceType = "ComputerSystem"): VisibleSystem {
  const dot = id.indexOf(".");
  if (dot > 0) {
    const found = visible(c, cache, id.slice(0, dot), id.slice(dot + 1));
    if (found) return found;
  }
  const settings = c.get("settings");
  const namespaces = new Set(userChassis(c).map(name => settings.chassis.get(name)!.namespace));
  const matches: VisibleSystem[] = [];
  for (const namespace of namespaces) {
    const found = visible(c, cache, namespace, id);
    if (found) matches.push(found);
  }
  if (matches.length === 1) return matches[0];
  throw notFound(resourceType, id);
}

/** Ids of every system the principal may see (chassis in the user's order, VMs by name, no duplicates). */
export function visibleSystemIds(c: RedfishContext, cache: ClusterCache): string[] {
  const chassis = userChassis(c);
  if (chassis.length === 1) return cache.listVmsInChassis(chassis[0]).map(systemIdOf);
  const ids = new Set<string>();
  for (const name of chassis) for (const rec of cache.listVmsInChassis(name)) ids.add(systemIdOf(rec));
  return [...ids];
}

// The Redfish service as a Hono app: protocol rules, authentication, and the resource tree.
// Served by redfish/server.ts in the watcher; tests drive it in-process with app.request().
//
// Responses are rendered from the watch cache for the authenticated principal, after authentication and chassis
// authorization. The hot GETs (System, SecureBoot, Manager) are serialized once per cache record and view
// (response-cache.ts), behind both. Middleware that has nothing to do for a request costs nothing: no per-request
// objects, no body handling for GET/HEAD, no headers rewritten on a response that already has them.
import type { IncomingMessage, ServerResponse } from "node:http";
import { Hono, type Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { Log } from "./platform";
import type { ModuleConfig } from "../capabilities/config/schema";
import { Authenticator, type Credentials } from "./auth";
import type { ClusterCache } from "./cache/types";
import { baseError, RedfishError } from "./errors";
import { createEventService, type EventSetup } from "./events";
import { readRequestText, requestHeader, sendError, SERVICE_ROOT, withProtocolHeaders } from "./odata";
import { readBody, type BodyLimits } from "./request-body";
import { Replays } from "./replays";
import { ResponseCache } from "./response-cache";
import { registerAccountService } from "./resources/account-service";
import { registerChassis } from "./resources/chassis";
import { clientAddressOf, type Handler, type RedfishEnv, type ResourceRoutes, type ServiceDeps, type TaskSource } from "./resources/context";
import { registerEventService, SSE_URI } from "./resources/event-service";
import { registerManagers } from "./resources/managers";
import { registerServiceRoot } from "./resources/service-root";
import { registerSessionService, SESSION_MEMBERS_URI, SESSIONS_URI } from "./resources/session-service";
import { registerSystems } from "./resources/systems";
import { registerTaskService } from "./resources/task-service";
import { createVirtualMedia, registerVirtualMedia } from "./resources/virtual-media";
import { clusterDriver, type IdentityReviews, type KubeVirtDriver } from "./kubevirt/driver";
import { serviceSettings } from "./settings";

export type { TaskSource, TaskView } from "./resources/context";

/** Oversized bodies up to this size are read before the 413 is sent; larger ones are refused unread. */
const DRAIN_OVERSIZED_BODY_BYTES = 4 * 1024 * 1024;

/** Request bodies above this are refused with 413 (Redfish bodies here are a few hundred bytes). */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;

export interface RedfishAppOptions {
  /** The watch cache (read-only here). */
  cache: ClusterCache;
  /** The configuration in force (read on every request; a new object means a new configuration). */
  config: () => ModuleConfig | undefined;
  /** Stable id of this installation (e.g. the pepr-system namespace uid) for the ServiceRoot UUID when redfish.serviceUUID is empty. */
  installationId?: () => string | undefined;
  /** Tasks of long operations; default: the virtual-media imports, derived from their DataVolumes. */
  tasks?: TaskSource;
  /** Where Redfish actions write; default the cluster through the gateway (tests: an in-memory KubeVirt). */
  driver?: KubeVirtDriver;
  /** Clock for session timeouts and back-off (tests). */
  now?: () => number;
  /** How a login held back by the back-off waits (tests advance their clock instead). */
  sleep?: (ms: number) => Promise<void>;
  maxBodyBytes?: number;
  /** VMs whose hot GET responses are kept (default MAX_CACHED_SYSTEMS; the memory measurement compares sizes). */
  responseCacheSystems?: number;
  /** How long InsertMedia waits at most for the import's first result (tests of a CDI that never moves: 0). */
  mediaFirstResultWaitMs?: number;
  /** Where Kubernetes tokens and access are reviewed (default: the cluster's API server; tests answer themselves). */
  reviews?: IdentityReviews;
  /** EventService: where subscriptions are kept, delivery retry settings (default: in memory, 3 retries from 5 s). */
  events?: EventSetup;
}

/** Paths served without credentials (DSP0266): the version document, ServiceRoot, OData documents. */
const PUBLIC_PATHS = new Set(["/redfish", SERVICE_ROOT, `${SERVICE_ROOT}/odata`, `${SERVICE_ROOT}/$metadata`]);

function normalizedPath(path: string): string {
  let end = path.length;
  while (end > 0 && path.charCodeAt(end - 1) === 0x2f) end--; // trailing "/"
  return end === path.length ? path : end === 0 ? "/" : path.slice(0, end);
}

/**
 * Query options this service does not implement (DSP0266: 501 QueryNotSupported); other parameters are ignored.
 * `supported`: the options the addressed resource handles itself (the SSE stream's $filter).
 */
function unsupportedQuery(url: string, supported: readonly string[]): boolean {
  const query = url.indexOf("?");
  if (query < 0) return false;
  return [...new URLSearchParams(url.slice(query + 1)).keys()].some(key => !supported.includes(key) && (key.startsWith("$") || key === "only" || key === "excerpt"));
}

/** Deepest JSON nesting a request body may have; Redfish bodies here are two or three levels deep. */
export const MAX_JSON_DEPTH = 32;

/**
 * Whether a JSON text nests arrays/objects deeper than `max`, by one pass over its characters. It runs before
 * JSON.parse, so a hostile body never reaches a recursive step (a parser, a validator, an error formatter).
 */
export function jsonNestingExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c) i++; // backslash: skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) inString = true;
    else if (ch === 0x5b || ch === 0x7b) {
      if (++depth > max) return true;
    } else if (ch === 0x5d || ch === 0x7d) depth--;
  }
  return false;
}

/** application/json, with or without parameters (charset). */
function isJsonMediaType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const semicolon = contentType.indexOf(";");
  return (semicolon < 0 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase() === "application/json";
}

const BODY_METHODS = new Set(["POST", "PATCH", "PUT"]);
/** Requests whose body the adaptor never reads (it gives them none): the body checks have nothing to do. */
const BODYLESS_METHODS = new Set(["GET", "HEAD"]);

export type RedfishApp = Hono<RedfishEnv>;

/** The app, and what the server answers before it: replays of hot GETs (replays.ts). */
export interface RedfishService {
  app: RedfishApp;
  replay: (request: IncomingMessage, response: ServerResponse) => boolean;
}

/** A request's credentials; its client address is worked out only when a check asks for it. */
class RequestCredentials implements Credentials {
  readonly authorization: string | undefined;
  readonly token: string | undefined;

  constructor(private readonly c: Context<RedfishEnv>) {
    this.authorization = requestHeader(c, "authorization");
    this.token = requestHeader(c, "x-auth-token");
  }

  clientAddress(): string {
    return clientAddressOf(this.c);
  }
}

export function createRedfishApp(options: RedfishAppOptions): RedfishApp {
  return createRedfishService(options).app;
}

export function createRedfishService(options: RedfishAppOptions): RedfishService {
  const now = options.now ?? Date.now;
  const auth = new Authenticator(() => serviceSettings(options.config()), {
    now,
    ...(options.sleep ? { sleep: options.sleep } : {}),
    ...(options.reviews ? { reviews: options.reviews } : {}),
  });
  const driver = options.driver ?? clusterDriver;
  const media = createVirtualMedia({
    cache: options.cache,
    config: options.config,
    now,
    driver,
    ...(options.mediaFirstResultWaitMs !== undefined ? { firstResultWaitMs: options.mediaFirstResultWaitMs } : {}),
  });
  const deps: ServiceDeps = {
    cache: options.cache,
    driver,
    auth,
    tasks: options.tasks ?? media.tasks,
    installationId: options.installationId ?? (() => undefined),
    now,
    responses: new ResponseCache(options.responseCacheSystems),
    replays: new Replays(auth, options.cache, () => serviceSettings(options.config())),
  };
  const app = new Hono<RedfishEnv>({ strict: false });

  app.onError((err, c) => {
    if (err instanceof RedfishError) return sendError(err);
    if (err instanceof HTTPException && err.status < 500) {
      return sendError(baseError(err.status, "GeneralError", [], { resolution: err.message || "Correct the request." }));
    }
    // Never log the request headers: they carry credentials.
    Log.error({ err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err), method: c.req.method, path: c.req.path }, "Redfish request failed");
    return sendError(baseError(500, "InternalError"));
  });

  app.get("/healthz", c =>
    options.cache.synced()
      ? c.json({ status: "ok" })
      : c.json({ status: "waiting for the initial lists of VirtualMachines, VirtualMachineInstances and DataVolumes" }, 503),
  );

  const bodyLimits: BodyLimits = { maxBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, drainBytes: DRAIN_OVERSIZED_BODY_BYTES };

  /** Content-Type and nesting depth of a request body, before anything parses it. */
  const checkBody = (c: Context<RedfishEnv>): void => {
    // A body that is not declared JSON is refused: a browser can send text/plain cross-site without a CORS
    // preflight, with the BMC's Basic credentials attached.
    const text = readRequestText(c);
    if (text.length === 0) return;
    if (!isJsonMediaType(requestHeader(c, "content-type"))) {
      throw baseError(415, "GeneralError", [], { resolution: "Send the request body as JSON with Content-Type: application/json." });
    }
    if (jsonNestingExceeds(text, MAX_JSON_DEPTH)) {
      throw baseError(400, "MalformedJSON", [], { resolution: `Send a JSON body nested at most ${MAX_JSON_DEPTH} levels deep.` });
    }
  };

  /** The resource's response, with the protocol headers (DSP0266) unless it has them already. */
  const respond = (c: Context<RedfishEnv>, handler: Handler): Response | Promise<Response> => {
    const res = handler(c);
    return res instanceof Promise ? res.then(withProtocolHeaders) : withProtocolHeaders(res);
  };

  /** After authentication: the body checks of a request with a body, then the resource. */
  const proceed = (c: Context<RedfishEnv>, handler: Handler, hasBody: boolean): Response | Promise<Response> => {
    if (hasBody) checkBody(c);
    return respond(c, handler);
  };

  /**
   * Protocol checks and authentication, then the resource: synchronous for a GET with credentials verified before
   * (the hot path, which creates no function per request: the bundle names every closure it creates). What is thrown
   * here becomes sendError's response through app.onError.
   */
  const admitted = (c: Context<RedfishEnv>, handler: Handler): Response | Promise<Response> => {
    const settings = serviceSettings(options.config());
    c.set("settings", settings);
    const odataVersion = requestHeader(c, "odata-version");
    if (odataVersion !== undefined && odataVersion.trim() !== "4.0") {
      throw baseError(412, "PreconditionFailed", [], { resolution: "This service supports OData-Version 4.0." });
    }
    const method = c.req.method.toUpperCase();
    const path = normalizedPath(c.req.path);
    if ((method === "GET" || method === "HEAD") && unsupportedQuery(c.req.url, path === SSE_URI ? ["$filter"] : [])) throw baseError(501, "QueryNotSupported");
    const hasBody = BODY_METHODS.has(method);

    const isLogin = method === "POST" && (path === SESSIONS_URI || path === SESSION_MEMBERS_URI);
    if (PUBLIC_PATHS.has(path) || isLogin) return proceed(c, handler, hasBody);
    const credentials = new RequestCredentials(c);
    const known = auth.knownPrincipal(credentials);
    if (known) {
      c.set("principal", known);
      return proceed(c, handler, hasBody);
    }
    return auth.authenticate(credentials).then(principal => {
      c.set("principal", principal);
      return proceed(c, handler, hasBody);
    });
  };

  /** Every route's admission (ResourceRoutes); a request with a body is read first, within the size limit. */
  const admit =
    (handler: Handler): Handler =>
    c => {
      if (BODYLESS_METHODS.has(c.req.method)) return admitted(c, handler);
      return readBody(c, bodyLimits).then(text => {
        c.set("requestBody", text);
        return admitted(c, handler);
      });
    };
  const routes: ResourceRoutes = { app, admit };

  registerServiceRoot(routes, deps);
  registerSystems(routes, deps);
  registerChassis(routes, deps);
  registerManagers(routes, deps);
  registerSessionService(routes, deps);
  registerAccountService(routes);
  registerTaskService(routes, deps);
  registerVirtualMedia(routes, deps, media);
  registerEventService(
    routes,
    createEventService({
      cache: options.cache,
      config: options.config,
      tasks: deps.tasks,
      now,
      identitySees: (identity, namespace) => auth.identitySees(identity, namespace),
      ...options.events,
    }),
  );

  // Under /redfish/ a missing resource is answered after admission, like any other: 401 before 404.
  const missing = admit(c => {
    throw baseError(404, "ResourceMissingAtURI", [c.req.path.slice(0, 256)]);
  });
  app.notFound(c => {
    const path = c.req.path;
    if (path === "/redfish" || path.startsWith("/redfish/")) return missing(c);
    if (path.startsWith("/redfish")) return sendError(baseError(404, "ResourceMissingAtURI", [path.slice(0, 256)]));
    return c.text("Not Found", 404);
  });

  return { app, replay: (request, response) => deps.replays.serve(request, response) };
}

// The REST layer: kube-apiserver's URL scheme, verbs, content types, discovery, watch streams,
// authentication and the admission chain, on top of MemoryStore.
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import type { Admission, AdmissionAttributes } from "./admission";
import { applyServerSide, recordUpdate } from "./apply";
import {
  badRequest,
  internalError,
  methodNotAllowed,
  notFound,
  requestEntityTooLarge,
  resourceNotFound,
  servicePathsNotInstalled,
  statusBody,
  successStatus,
  unauthorized,
  unsupportedMediaType,
} from "./errors";
import { ProtocolListener, type ApiRequest, type ApiResponse, type ConnectionCounts } from "./listener";
import { applyJsonPatch, applyMergePatch, applyStrategicMergePatch, isObject, type Json } from "./patch";
import { pathForbidden, rbacForbidden, RbacAuthorizer } from "./rbac";
import { review, REVIEW_PATHS } from "./reviews";
import { apiVersionOf, type TypeInfo } from "./resources";
import { requestAttributes, type RequestAttributes } from "../../scripts/deploy/request-attributes";
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector, type FieldRequirement, type Selector } from "./selectors";
import type { InternalEvent, MemoryStore } from "./store";
import { ApiError, type KubeObject, type SubresourceHandler, type UserInfo } from "./types";

export const BODY_LIMIT_BYTES = 3 * 1024 * 1024;
/** version.Info as kube-apiserver 1.26 reports it (build fields are placeholders of the real shape). */
const KUBE_VERSION = {
  major: "1",
  minor: "26",
  gitVersion: "v1.26.15",
  gitCommit: "0000000000000000000000000000000000000000",
  gitTreeState: "clean",
  buildDate: "2024-03-14T00:00:00Z",
  goVersion: "go1.21.8",
  compiler: "gc",
  platform: `linux/${process.arch === "x64" ? "amd64" : process.arch}`,
};
const KUBEVIRT_SUBRESOURCES = "subresources.kubevirt.io";
const ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const STATUS_VERBS = ["get", "patch", "update"];
/** Write retries when the object changed while admission webhooks were running (kube's GuaranteedUpdate). */
const MAX_WRITE_ATTEMPTS = 10;

export const ADMIN_USER: UserInfo = { username: "system:admin", groups: ["system:masters", "system:authenticated"] };

export interface RestOptions {
  store: MemoryStore;
  admission: Admission;
  tokens: Map<string, UserInfo>;
  bookmarkIntervalMs: number;
  /** kube's --min-request-timeout: a watch without timeoutSeconds ends after a random min..2*min seconds. */
  minRequestTimeoutSeconds: number;
  /** Serve KubeVirt's aggregated subresources.kubevirt.io API (false: a cluster without KubeVirt's virt-api). */
  kubevirtApi: boolean;
  /** SETTINGS_MAX_CONCURRENT_STREAMS for HTTP/2 clients (kube's --http2-max-streams-per-connection). */
  http2MaxStreamsPerConnection?: number;
  log: (line: string) => void;
}

/** Request-scoped state shared by the handlers. */
interface Ctx {
  req: ApiRequest;
  res: ApiResponse;
  url: URL;
  user: UserInfo;
  warnings: string[];
}

/** A resolved resource request: /api/v1/namespaces/ns/configmaps/name/status and friends. */
interface ResourceRequest {
  group: string;
  version: string;
  type: TypeInfo;
  namespace?: string;
  name?: string;
  subresource?: string;
}

const deleteOptionsSchema = z
  .object({
    kind: z.literal("DeleteOptions").optional(),
    apiVersion: z.string().optional(),
    gracePeriodSeconds: z.number().int().nonnegative().nullish(),
    propagationPolicy: z.enum(["Orphan", "Background", "Foreground"]).nullish(),
    orphanDependents: z.boolean().nullish(),
    preconditions: z.object({ uid: z.string().nullish(), resourceVersion: z.string().nullish() }).nullish(),
    dryRun: z.array(z.string()).nullish(),
  })
  .passthrough();

/** A body that claims to be a Kubernetes object: kind/apiVersion strings (if present) and a metadata object. */
const objectBodySchema = z
  .object({
    apiVersion: z.string().optional(),
    kind: z.string().optional(),
    metadata: z.object({}).passthrough().optional(),
  })
  .passthrough();

function sanitizeHeaderText(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "?");
}

export class RestServer {
  readonly #listener: ProtocolListener;
  readonly #store: MemoryStore;
  readonly #admission: Admission;
  readonly #tokens: Map<string, UserInfo>;
  readonly #bookmarkIntervalMs: number;
  readonly #minRequestTimeoutSeconds: number;
  readonly #kubevirtApi: boolean;
  readonly #rbac: RbacAuthorizer;
  /** Until this time (after a restart), token requests are denied (RBAC cache not synced) and CRD paths answer 503. */
  #startingUntil = 0;
  readonly #log: (line: string) => void;
  readonly #subresources = new Map<string, SubresourceHandler>();
  /** Ends an open watch stream, optionally after a last event (the 410 of dropWatches({ expired: true })). */
  readonly #watches = new Map<(lastEvent?: { type: string; object: unknown }) => void, string>(); // → resource key

  constructor(opts: RestOptions) {
    this.#store = opts.store;
    this.#admission = opts.admission;
    this.#tokens = opts.tokens;
    this.#bookmarkIntervalMs = opts.bookmarkIntervalMs;
    this.#minRequestTimeoutSeconds = opts.minRequestTimeoutSeconds;
    this.#kubevirtApi = opts.kubevirtApi;
    this.#rbac = new RbacAuthorizer(opts.store);
    this.#log = opts.log;
    // HTTP/1.1 and HTTP/2 (h2c prior knowledge) on one port.
    this.#listener = new ProtocolListener(
      (req, res) => {
        this.#handle(req, res).catch(err => this.#fail(res, err));
      },
      { http2MaxStreamsPerConnection: opts.http2MaxStreamsPerConnection },
    );
  }

  registerSubresource(group: string, version: string, resource: string, subresource: string, h: SubresourceHandler): void {
    this.#subresources.set(`${group}/${version}/${resource}/${subresource}`, h);
  }

  listen(port: number): Promise<number> {
    return this.#listener.listen(port, "127.0.0.1");
  }

  async close(): Promise<void> {
    for (const end of [...this.#watches.keys()]) end();
    await this.#listener.close();
  }

  /** Open TCP connections by protocol, counted by the server. For transport tests and the bench. */
  connections(): ConnectionCounts {
    return this.#listener.connections();
  }

  /** Open watch streams per resource key (e.g. "virtualmachines.kubevirt.io"). For reliability tests. */
  openWatches(): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const key of this.#watches.values()) counts[key] = (counts[key] ?? 0) + 1;
    return counts;
  }

  /**
   * Ends every open watch stream, as kube-apiserver does when it shuts down or times a watch out; with
   * `expired`, each stream first gets kube's in-stream ERROR event with a 410 Gone Status (the watch can
   * no longer be resumed; clients must list again). Returns how many watches ended. For reliability tests.
   */
  dropWatches(opts: { expired?: boolean } = {}): number {
    const open = [...this.#watches.keys()];
    const lastEvent = opts.expired
      ? { type: "ERROR", object: statusBody(new ApiError(410, "Expired", "The resourceVersion for the provided watch is too old.")) }
      : undefined;
    for (const end of open) end(lastEvent);
    return open.length;
  }

  /**
   * Stops serving (watches end, connections close) and listens again on the same port after `downtimeMs`; the
   * store is kept, the watch history is not (a watch resumed from an older resourceVersion gets 410 Expired,
   * like a fresh watch cache). For `startingMs` after it listens again, the server is still starting: CRD-backed
   * paths answer 503 and requests with a token 403, as kube-apiserver does until its handlers and RBAC cache sync.
   */
  async restart(downtimeMs = 0, startingMs = 200): Promise<void> {
    const port = this.#listener.port;
    await this.close();
    this.#store.compactHistory();
    if (downtimeMs > 0) await new Promise(resolve => setTimeout(resolve, downtimeMs));
    this.#startingUntil = Date.now() + startingMs;
    await this.listen(port);
  }

  #starting(): boolean {
    return Date.now() < this.#startingUntil;
  }

  // ---- plumbing ----------------------------------------------------------------------------------

  #fail(res: ApiResponse, err: unknown): void {
    const apiErr = err instanceof ApiError ? err : internalError(err instanceof Error ? err.message : String(err));
    if (!(err instanceof ApiError)) this.#log(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    this.#send(res, apiErr.code, statusBody(apiErr));
  }

  #send(res: ApiResponse, code: number, body: unknown, warnings: string[] = []): void {
    const payload = JSON.stringify(body);
    if (warnings.length > 0) res.setHeader("Warning", warnings.map(w => `299 - ${JSON.stringify(sanitizeHeaderText(w))}`));
    res.writeHead(code, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(payload), "Cache-Control": "no-cache, private" });
    res.end(payload);
  }

  /** Go's http.NotFound, which kube-apiserver serves for paths no handler is installed for (an API group it does not serve). */
  #pageNotFound(res: ApiResponse): void {
    res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff" });
    res.end("404 page not found\n");
  }

  /** RBAC for requests with credentials (anonymous loopback requests are system:admin, in system:masters). */
  #authorize(ctx: Ctx, path: string): void {
    const { user } = ctx;
    if (user.groups.includes("system:masters")) return;
    const method = ctx.req.method ?? "GET";
    const contentType = ctx.req.headers["content-type"] ?? "";
    const attributes = requestAttributes(method, ctx.req.url ?? "/", contentType);
    if (!attributes) {
      if (this.#starting() || !this.#rbac.allowsPath(user, path)) throw pathForbidden(user, method.toLowerCase(), path);
      return;
    }
    for (const a of attributes) {
      // Server-side apply also needs `create`, but only when the object does not exist yet.
      if (a.verb === "create" && method === "PATCH" && this.#exists(a)) continue;
      if (this.#starting() || !this.#rbac.allows(user, a)) {
        const denied = rbacForbidden(user, a);
        this.#log(`RBAC: ${method} ${ctx.url.pathname}: ${denied.message}`);
        throw denied;
      }
    }
  }

  #exists(a: RequestAttributes): boolean {
    const t = this.#store.types().find(x => x.group === a.group && x.resource === a.resource);
    return Boolean(t && this.#store.getRaw(t.key, a.namespace || undefined, a.name));
  }

  #authenticate(req: ApiRequest): UserInfo {
    const header = req.headers.authorization;
    // No credentials on the loopback listener: cluster admin, like a local development cluster.
    // There is no RBAC: every authenticated user may do everything (the sandbox is single-tenant).
    if (header === undefined) return ADMIN_USER;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const user = m ? this.#tokens.get(m[1]) : undefined;
    if (!user) throw unauthorized();
    return user;
  }

  async #readBody(req: ApiRequest): Promise<Buffer> {
    const declared = Number(req.headers["content-length"] ?? "0");
    if (declared > BODY_LIMIT_BYTES) {
      req.resume();
      throw requestEntityTooLarge(BODY_LIMIT_BYTES);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > BODY_LIMIT_BYTES) {
        req.resume();
        throw requestEntityTooLarge(BODY_LIMIT_BYTES);
      }
      chunks.push(chunk as Buffer);
    }
    return Buffer.concat(chunks);
  }

  /** Parses a body as JSON (or YAML for apply/yaml content types); malformed input is a 400. */
  async #readJson(req: ApiRequest, allowYaml: boolean): Promise<unknown> {
    const raw = (await this.#readBody(req)).toString("utf8");
    const contentType = (req.headers["content-type"] ?? "application/json").split(";")[0].trim().toLowerCase();
    if (raw.trim() === "") return undefined;
    if (allowYaml || contentType === "application/yaml") {
      try {
        return parseYaml(raw) as unknown;
      } catch (err) {
        throw badRequest(`error converting YAML to JSON: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    try {
      return JSON.parse(raw) as unknown;
    } catch (err) {
      throw badRequest(`json parse error: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  #present(obj: KubeObject, t: TypeInfo, version: string): KubeObject {
    const apiVersion = apiVersionOf(t.group, version);
    return obj.apiVersion === apiVersion ? obj : { ...obj, apiVersion };
  }

  // ---- routing -----------------------------------------------------------------------------------

  async #handle(req: ApiRequest, res: ApiResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://localhost");
    } catch {
      throw badRequest("malformed request URL");
    }
    const path = url.pathname.replace(/\/+$/, "") || "/";
    if (["/healthz", "/readyz", "/livez"].includes(path) || path.startsWith("/healthz/") || path.startsWith("/readyz/") || path.startsWith("/livez/")) {
      res.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
      res.end("ok");
      return;
    }
    const ctx: Ctx = { req, res, url, user: this.#authenticate(req), warnings: [] };
    this.#authorize(ctx, path);
    if (req.method === "POST" && REVIEW_PATHS.has(path)) return this.#send(res, 201, review(path, await this.#readJson(req, false), this.#tokens, this.#rbac));
    let segments: string[];
    try {
      segments = path.split("/").filter(Boolean).map(decodeURIComponent);
    } catch {
      throw badRequest("malformed request path");
    }
    if (path === "/version") return this.#send(res, 200, KUBE_VERSION);
    if (segments[0] === "api") {
      if (segments.length === 1) return this.#send(res, 200, { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: req.headers.host ?? "" }] });
      if (segments[1] !== "v1") throw resourceNotFound();
      if (segments.length === 2) return this.#send(res, 200, this.#resourceList("", "v1"));
      return this.#resource(ctx, "", "v1", segments.slice(2));
    }
    if (segments[0] === "apis") {
      if (segments.length === 1) return this.#send(res, 200, { kind: "APIGroupList", apiVersion: "v1", groups: this.#groups() });
      const group = segments[1];
      const groupDoc = this.#groups().find(g => g.name === group);
      if (!groupDoc) return this.#pageNotFound(res);
      if (segments.length === 2) return this.#send(res, 200, { kind: "APIGroup", apiVersion: "v1", ...groupDoc });
      const version = segments[2];
      if (!groupDoc.versions.some(v => v.version === version)) return this.#pageNotFound(res);
      if (segments.length === 3) return this.#send(res, 200, this.#resourceList(group, version));
      if (group === KUBEVIRT_SUBRESOURCES) {
        // An aggregated API: unavailable until the server has started.
        if (this.#starting()) throw servicePathsNotInstalled();
        return this.#kubevirtSubresource(ctx, group, version, segments.slice(3));
      }
      return this.#resource(ctx, group, version, segments.slice(3));
    }
    throw resourceNotFound();
  }

  // ---- discovery ---------------------------------------------------------------------------------

  #groups(): { name: string; versions: { groupVersion: string; version: string }[]; preferredVersion: { groupVersion: string; version: string } }[] {
    const byGroup = new Map<string, string[]>();
    for (const t of this.#store.types()) {
      if (!t.group) continue;
      const versions = byGroup.get(t.group) ?? [];
      for (const v of t.versions) if (!versions.includes(v)) versions.push(v);
      byGroup.set(t.group, versions);
    }
    // KubeVirt's aggregated API (virt-api), unless the sandbox models a cluster without it; handlers register at start.
    if (this.#kubevirtApi) byGroup.set(KUBEVIRT_SUBRESOURCES, ["v1"]);
    return [...byGroup.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, versions]) => ({
        name,
        versions: versions.map(version => ({ groupVersion: `${name}/${version}`, version })),
        preferredVersion: { groupVersion: `${name}/${versions[0]}`, version: versions[0] },
      }));
  }

  #resourceList(group: string, version: string): object {
    const resources: object[] = [];
    if (group.startsWith("subresources.")) {
      for (const key of [...this.#subresources.keys()].sort()) {
        const [g, v, resource, sub] = key.split("/");
        if (g === group && v === version) resources.push({ name: `${resource}/${sub}`, singularName: "", namespaced: true, kind: "", verbs: ["update"] });
      }
    }
    for (const t of this.#store.types()) {
      if (t.group !== group || !t.versions.includes(version)) continue;
      resources.push({
        name: t.resource,
        singularName: t.singular,
        namespaced: t.namespaced,
        kind: t.kind,
        verbs: ALL_VERBS,
        ...(t.shortNames.length ? { shortNames: t.shortNames } : {}),
        storageVersionHash: "",
      });
      if (t.hasStatus) resources.push({ name: `${t.resource}/status`, singularName: "", namespaced: t.namespaced, kind: t.kind, verbs: STATUS_VERBS });
    }
    return { kind: "APIResourceList", apiVersion: "v1", groupVersion: apiVersionOf(group, version), resources };
  }

  // ---- KubeVirt subresources (an aggregated API in a real cluster: no admission) ----------------

  async #kubevirtSubresource(ctx: Ctx, group: string, version: string, parts: string[]): Promise<void> {
    if (parts.length !== 5 || parts[0] !== "namespaces") throw resourceNotFound();
    const [, namespace, resource, name, sub] = parts;
    const handler = this.#subresources.get(`${group}/${version}/${resource}/${sub}`);
    if (!handler) throw resourceNotFound();
    if (ctx.req.method !== "PUT") throw methodNotAllowed();
    const objectGroup = group.slice("subresources.".length);
    const t = this.#store.lookup(objectGroup, this.#store.types().find(x => x.group === objectGroup && x.resource === resource)?.version ?? "", resource);
    if (!t) throw resourceNotFound();
    const body = await this.#readJson(ctx.req, false);
    if (!this.#store.getRaw(t.key, namespace, name)) throw notFound(t, name);
    const result = await handler({ namespace, name, body, user: ctx.user });
    if (result.body === undefined) {
      ctx.res.writeHead(result.status);
      ctx.res.end();
      return;
    }
    this.#send(ctx.res, result.status, result.body);
  }

  // ---- resources ---------------------------------------------------------------------------------

  #resolve(group: string, version: string, parts: string[]): ResourceRequest {
    let namespace: string | undefined;
    let rest = parts;
    // kube's RequestInfo: namespaces/{ns}/{resource}... unless the third part is a namespace subresource.
    if (rest[0] === "namespaces" && rest.length > 2 && !(group === "" && ["status", "finalize"].includes(rest[2]))) {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    if (rest.length === 0 || rest.length > 3) throw resourceNotFound();
    const [resource, name, subresource] = rest;
    const type = this.#store.lookup(group, version, resource);
    if (!type) throw resourceNotFound();
    if (namespace !== undefined && !type.namespaced) throw resourceNotFound();
    return { group, version, type, namespace, name, subresource };
  }

  async #resource(ctx: Ctx, group: string, version: string, parts: string[]): Promise<void> {
    let watchPrefix = false;
    if (parts[0] === "watch") {
      watchPrefix = true;
      parts = parts.slice(1);
    }
    const r = this.#resolve(group, version, parts);
    if (r.type.crd && this.#starting()) throw servicePathsNotInstalled();
    const method = ctx.req.method ?? "GET";
    const q = ctx.url.searchParams;
    const watch = watchPrefix || q.get("watch") === "true" || q.get("watch") === "1";
    if (r.subresource !== undefined) {
      if (r.subresource !== "status" || !r.type.hasStatus) throw resourceNotFound();
      if (method === "GET") return this.#get(ctx, r);
      if (method === "PUT") return this.#update(ctx, r);
      if (method === "PATCH") return this.#patch(ctx, r);
      throw methodNotAllowed();
    }
    if (r.name === undefined) {
      if (method === "GET") return watch ? this.#watch(ctx, r) : this.#list(ctx, r);
      if (method === "POST") return this.#create(ctx, r);
      if (method === "DELETE") return this.#deleteCollection(ctx, r);
      throw methodNotAllowed();
    }
    if (r.type.namespaced && r.namespace === undefined) throw resourceNotFound();
    if (method === "GET") return watch ? this.#watch(ctx, r) : this.#get(ctx, r);
    if (method === "PUT") return this.#update(ctx, r);
    if (method === "PATCH") return this.#patch(ctx, r);
    if (method === "DELETE") return this.#delete(ctx, r);
    throw methodNotAllowed();
  }

  #selectors(ctx: Ctx, r: ResourceRequest): { labels: Selector; fields: FieldRequirement[] } {
    const labels = parseLabelSelector(ctx.url.searchParams.get("labelSelector") ?? undefined);
    const fields = parseFieldSelector(ctx.url.searchParams.get("fieldSelector") ?? undefined, r.type.fieldSelectors);
    if (r.name !== undefined) fields.push({ field: "metadata.name", op: "=", value: r.name });
    return { labels, fields };
  }

  #get(ctx: Ctx, r: ResourceRequest): void {
    const obj = this.#store.getRaw(r.type.key, r.namespace, r.name!);
    if (!obj) throw notFound(r.type, r.name!);
    this.#send(ctx.res, 200, this.#present(obj, r.type, r.version));
  }

  #list(ctx: Ctx, r: ResourceRequest): void {
    const { labels, fields } = this.#selectors(ctx, r);
    const rv = this.#store.currentResourceVersion;
    let items = this.#store.listRaw(r.type.key, r.namespace).filter(o => matchesLabels(labels, o.metadata.labels) && matchesFields(fields, o));
    const limit = Number(ctx.url.searchParams.get("limit") ?? "0");
    const cont = ctx.url.searchParams.get("continue");
    let listRv = String(rv);
    if (cont) {
      let token: { rv: string; after: string };
      try {
        token = z.object({ rv: z.string(), after: z.string() }).parse(JSON.parse(Buffer.from(cont, "base64url").toString("utf8")));
      } catch {
        throw badRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
      }
      listRv = token.rv;
      items = items.filter(o => `${o.metadata.namespace ?? ""}/${o.metadata.name}` > token.after);
    }
    const metadata: Record<string, unknown> = { resourceVersion: listRv };
    if (Number.isInteger(limit) && limit > 0 && items.length > limit) {
      const last = items[limit - 1];
      metadata.continue = Buffer.from(JSON.stringify({ rv: listRv, after: `${last.metadata.namespace ?? ""}/${last.metadata.name}` })).toString("base64url");
      metadata.remainingItemCount = items.length - limit;
      items = items.slice(0, limit);
    }
    this.#send(ctx.res, 200, {
      kind: r.type.listKind,
      apiVersion: apiVersionOf(r.type.group, r.version),
      metadata,
      items: items.map(o => this.#present(o, r.type, r.version)),
    });
  }

  #watch(ctx: Ctx, r: ResourceRequest): void {
    const { labels, fields } = this.#selectors(ctx, r);
    const q = ctx.url.searchParams;
    const rvParam = q.get("resourceVersion") ?? "";
    let since: number | undefined;
    if (rvParam !== "" && rvParam !== "0") {
      if (!/^[0-9]+$/.test(rvParam)) throw badRequest(`invalid resource version: ${JSON.stringify(rvParam)}`);
      since = Number(rvParam);
    }
    const sendInitial = q.get("sendInitialEvents") === "true" || since === undefined;
    const bookmarks = q.get("allowWatchBookmarks") === "true";
    const timeoutSeconds = q.get("timeoutSeconds") !== null ? Number(q.get("timeoutSeconds")) : undefined;
    if (timeoutSeconds !== undefined && (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0)) throw badRequest("invalid timeoutSeconds");
    const res = ctx.res;
    const matches = (o: KubeObject) => matchesLabels(labels, o.metadata.labels) && matchesFields(fields, o);
    // Like kube's watch cache, events reach a watch a moment after the write that caused them: a write's reply
    // leaves first (its handler writes it before this process's next turn) and the events follow, in order, in
    // one write per turn. Sent synchronously, they went out ahead of the reply, which no real server does.
    let queued = "";
    let flushing: NodeJS.Immediate | undefined;
    const flush = () => {
      if (flushing) clearImmediate(flushing);
      flushing = undefined;
      const lines = queued;
      queued = "";
      if (lines !== "" && !res.writableEnded) res.write(lines);
    };
    const send = (type: string, object: unknown) => {
      queued += JSON.stringify({ type, object }) + "\n";
      flushing ??= setImmediate(flush);
    };
    const present = (o: KubeObject) => this.#present(o, r.type, r.version);
    const onEvent = (ev: InternalEvent) => {
      const now = matches(ev.object);
      if (ev.type === "MODIFIED") {
        const before = ev.oldObject ? matches(ev.oldObject) : now;
        if (now && before) send("MODIFIED", present(ev.object));
        else if (now) send("ADDED", present(ev.object));
        else if (before) {
          // Like kube's watch cache: the last matching state, at the new resourceVersion.
          const last = { ...ev.oldObject!, metadata: { ...ev.oldObject!.metadata, resourceVersion: ev.object.metadata.resourceVersion } };
          send("DELETED", present(last));
        }
      } else if (now) {
        send(ev.type, present(ev.object));
      }
    };
    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-cache, private" });
    res.flushHeaders?.();
    const bookmark = (annotations?: Record<string, string>) =>
      send("BOOKMARK", {
        kind: r.type.kind,
        apiVersion: apiVersionOf(r.type.group, r.version),
        metadata: { resourceVersion: String(this.#store.currentResourceVersion), ...(annotations ? { annotations } : {}) },
      });
    let unsubscribe: () => void;
    try {
      if (sendInitial) {
        // Current state as synthetic ADDED events, then live events: both in one synchronous step, so no gap.
        for (const o of this.#store.listRaw(r.type.key, r.namespace)) if (matches(o)) send("ADDED", present(o));
        unsubscribe = this.#store.subscribe(r.type.key, r.namespace, undefined, onEvent);
      } else {
        unsubscribe = this.#store.subscribe(r.type.key, r.namespace, since, onEvent);
      }
    } catch (err) {
      // kube answers an expired resourceVersion with 200 and an ERROR event carrying the 410 Status.
      const apiErr = err instanceof ApiError ? err : internalError(String(err));
      send("ERROR", statusBody(apiErr));
      flush();
      res.end();
      return;
    }
    if (bookmarks && q.get("sendInitialEvents") === "true") bookmark({ "k8s.io/initial-events-end": "true" });
    const timers: NodeJS.Timeout[] = [];
    if (bookmarks) timers.push(setInterval(() => bookmark(), this.#bookmarkIntervalMs));
    const end = (lastEvent?: { type: string; object: unknown }) => {
      if (lastEvent) send(lastEvent.type, lastEvent.object);
      flush();
      unsubscribe();
      timers.forEach(t => clearInterval(t));
      this.#watches.delete(end);
      if (!res.writableEnded) res.end();
    };
    // Like kube: the client's timeoutSeconds, else a random duration between --min-request-timeout and twice it.
    const lifetimeSeconds = timeoutSeconds !== undefined && timeoutSeconds > 0 ? timeoutSeconds : this.#minRequestTimeoutSeconds * (1 + Math.random());
    timers.push(setTimeout(() => end(), lifetimeSeconds * 1000));
    this.#watches.set(end, r.type.key);
    res.on("close", () => {
      queued = ""; // the client is gone: nothing more to send
      end();
    });
  }

  // ---- writes ------------------------------------------------------------------------------------

  #dryRun(ctx: Ctx, fromBody?: string[] | null): boolean {
    const values = [...ctx.url.searchParams.getAll("dryRun"), ...(fromBody ?? [])];
    for (const v of values) if (v !== "All") throw badRequest(`Invalid value: ${JSON.stringify(v)}: supported values: "All"`);
    return values.length > 0;
  }

  #attributes(ctx: Ctx, r: ResourceRequest, operation: AdmissionAttributes["operation"], name: string, dryRun: boolean, options: object): AdmissionAttributes {
    return {
      operation,
      type: r.type,
      version: r.version,
      subResource: r.subresource,
      namespace: r.type.namespaced ? r.namespace : undefined,
      name,
      user: ctx.user,
      dryRun,
      options,
      warnings: ctx.warnings,
    };
  }

  /** The body of a create/update: an object of the request's kind, in the request's namespace. */
  #decodeObject(body: unknown, r: ResourceRequest): KubeObject {
    if (body === undefined) throw badRequest("the request body is empty");
    const parsed = objectBodySchema.safeParse(body);
    if (!parsed.success) throw badRequest(`the body of the request is not a Kubernetes object: ${parsed.error.issues[0]?.message ?? "invalid"}`);
    const obj = parsed.data as unknown as KubeObject;
    const expectedApiVersion = apiVersionOf(r.type.group, r.version);
    if (obj.kind !== undefined && obj.kind !== r.type.kind) {
      throw badRequest(`the object provided is unrecognized (must be of type ${r.type.kind}): kind ${obj.kind} does not match`);
    }
    if (obj.apiVersion !== undefined && obj.apiVersion !== expectedApiVersion) {
      throw badRequest(`the API version in the data (${obj.apiVersion}) does not match the expected API version (${expectedApiVersion})`);
    }
    obj.kind = r.type.kind;
    obj.apiVersion = apiVersionOf(r.type.group, r.type.version);
    obj.metadata ??= {};
    if (r.type.namespaced) {
      if (obj.metadata.namespace !== undefined && obj.metadata.namespace !== "" && obj.metadata.namespace !== r.namespace) {
        throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
      }
      obj.metadata.namespace = r.namespace;
    } else {
      delete obj.metadata.namespace;
    }
    return obj;
  }

  async #create(ctx: Ctx, r: ResourceRequest): Promise<void> {
    if (r.type.namespaced && r.namespace === undefined) throw resourceNotFound();
    const ct = (ctx.req.headers["content-type"] ?? "application/json").split(";")[0].trim().toLowerCase();
    if (!["application/json", "application/yaml", "*/*"].includes(ct)) throw unsupportedMediaType(ct, ["application/json", "application/yaml"]);
    const obj = this.#decodeObject(await this.#readJson(ctx.req, false), r);
    const dryRun = this.#dryRun(ctx);
    const stored = await this.#createFlow(ctx, r, obj, dryRun, { kind: "CreateOptions", apiVersion: "meta.k8s.io/v1", ...this.#fieldManagerOption(ctx) });
    this.#send(ctx.res, 201, this.#present(stored, r.type, r.version), ctx.warnings);
  }

  #fieldManagerOption(ctx: Ctx): { fieldManager?: string } {
    const fm = ctx.url.searchParams.get("fieldManager");
    return fm ? { fieldManager: fm } : {};
  }

  /** The field manager of a non-apply write: ?fieldManager, else the User-Agent's product like kube. */
  #manager(ctx: Ctx): string {
    const fm = ctx.url.searchParams.get("fieldManager");
    if (fm) return fm;
    const ua = ctx.req.headers["user-agent"] ?? "";
    return ua.split("/")[0].trim() || "unknown";
  }

  async #createFlow(ctx: Ctx, r: ResourceRequest, obj: KubeObject, dryRun: boolean, options: object, applied = false): Promise<KubeObject> {
    const attrs = this.#attributes(ctx, r, "CREATE", obj.metadata.name ?? "", dryRun, options);
    const mutated = (await this.#admission.mutate(attrs, obj, undefined)) ?? obj;
    const prepared = this.#store.prepareCreate(r.type.key, mutated);
    // Like kube's strategies for CRDs with a status subresource (and PVCs): create cannot set status.
    if (r.type.hasStatus && (!r.type.builtin || r.type.key === "persistentvolumeclaims")) delete prepared.status;
    if (!applied) recordUpdate(undefined, prepared, this.#manager(ctx), r.type);
    await this.#admission.validate({ ...attrs, name: prepared.metadata.name! }, prepared, undefined);
    return this.#store.commitCreate(r.type.key, prepared, { dryRun });
  }

  /**
   * Update-like writes (PUT, PATCH, apply): `build` makes the candidate from the current object; mutating
   * admission, strategy (prepareUpdate), validating admission, then commit. When the object changed
   * underneath (only possible while webhooks run), the whole sequence is retried like kube's GuaranteedUpdate.
   */
  async #updateFlow(
    ctx: Ctx,
    r: ResourceRequest,
    build: (current: KubeObject) => KubeObject,
    dryRun: boolean,
    options: object,
    applied = false,
  ): Promise<KubeObject> {
    for (let attempt = 1; ; attempt++) {
      const current = this.#store.getRaw(r.type.key, r.namespace, r.name!);
      if (!current) throw notFound(r.type, r.name!);
      const candidate = build(structuredClone(current));
      if (candidate.metadata?.name !== undefined && candidate.metadata.name !== r.name) {
        throw badRequest(`the name of the object (${String(candidate.metadata.name)}) does not match the name on the URL (${r.name})`);
      }
      candidate.metadata = { ...(candidate.metadata ?? {}), name: r.name };
      if (r.type.namespaced) candidate.metadata.namespace = r.namespace;
      const attrs = this.#attributes(ctx, r, "UPDATE", r.name!, dryRun, options);
      const mutated = (await this.#admission.mutate(attrs, candidate, current)) ?? candidate;
      const { old, next } = this.#store.prepareUpdate(r.type.key, mutated, { subresource: r.subresource === "status" ? "status" : undefined });
      if (old.metadata.resourceVersion !== current.metadata.resourceVersion) {
        if (attempt < MAX_WRITE_ATTEMPTS) continue;
      }
      if (!applied) recordUpdate(old, next, this.#manager(ctx), r.type, r.subresource);
      await this.#admission.validate(attrs, next, old);
      try {
        return this.#store.commitUpdate(r.type.key, old, next, { dryRun });
      } catch (err) {
        const explicitRv = candidate.metadata.resourceVersion !== undefined && candidate.metadata.resourceVersion !== current.metadata.resourceVersion;
        if (err instanceof ApiError && err.reason === "Conflict" && !explicitRv && attempt < MAX_WRITE_ATTEMPTS) continue;
        throw err;
      }
    }
  }

  async #update(ctx: Ctx, r: ResourceRequest): Promise<void> {
    const ct = (ctx.req.headers["content-type"] ?? "application/json").split(";")[0].trim().toLowerCase();
    if (!["application/json", "application/yaml", "*/*"].includes(ct)) throw unsupportedMediaType(ct, ["application/json", "application/yaml"]);
    const body = this.#decodeObject(await this.#readJson(ctx.req, false), r);
    const dryRun = this.#dryRun(ctx);
    const stored = await this.#updateFlow(ctx, r, () => structuredClone(body), dryRun, {
      kind: "UpdateOptions",
      apiVersion: "meta.k8s.io/v1",
      ...this.#fieldManagerOption(ctx),
    });
    this.#send(ctx.res, 200, this.#present(stored, r.type, r.version), ctx.warnings);
  }

  async #patch(ctx: Ctx, r: ResourceRequest): Promise<void> {
    const ct = (ctx.req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    const supported = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"];
    if (r.type.builtin) supported.push("application/strategic-merge-patch+json");
    if (!supported.includes(ct)) throw unsupportedMediaType(ct, supported);
    const patch = await this.#readJson(ctx.req, ct === "application/apply-patch+yaml");
    if (patch === undefined) throw badRequest("the request body is empty");
    const dryRun = this.#dryRun(ctx);
    const options = { kind: "PatchOptions", apiVersion: "meta.k8s.io/v1", ...this.#fieldManagerOption(ctx) };
    const q = ctx.url.searchParams;
    if (ct === "application/apply-patch+yaml") {
      const fieldManager = q.get("fieldManager");
      if (!fieldManager) throw badRequest("PATCH /apply requires fieldManager");
      const force = q.get("force") === "true";
      if (!isObject(patch)) throw badRequest("the apply configuration must be an object");
      const config = this.#decodeObject(patch, r);
      if (config.metadata.name !== undefined && config.metadata.name !== r.name) {
        throw badRequest(`the name of the object (${String(config.metadata.name)}) does not match the name on the URL (${r.name})`);
      }
      if (!this.#store.getRaw(r.type.key, r.namespace, r.name!)) {
        if (r.subresource) throw notFound(r.type, r.name!);
        const initial = applyServerSide(undefined, config, { manager: fieldManager, force, type: r.type });
        initial.metadata.name = r.name;
        try {
          const created = await this.#createFlow(ctx, r, initial, dryRun, { ...options, force }, true);
          this.#send(ctx.res, 201, this.#present(created, r.type, r.version), ctx.warnings);
          return;
        } catch (err) {
          // Lost a create race: apply to the object that now exists.
          if (!(err instanceof ApiError && err.reason === "AlreadyExists")) throw err;
        }
      }
      const stored = await this.#updateFlow(
        ctx,
        r,
        cur => applyServerSide(cur, config, { manager: fieldManager, force, type: r.type, subresource: r.subresource }),
        dryRun,
        { ...options, force },
        true,
      );
      this.#send(ctx.res, 200, this.#present(stored, r.type, r.version), ctx.warnings);
      return;
    }
    const build = (current: KubeObject): KubeObject => {
      let out: Json;
      if (ct === "application/json-patch+json") out = applyJsonPatch(current as unknown as Json, patch);
      else if (ct === "application/merge-patch+json") out = applyMergePatch(current as unknown as Json, patch as Json);
      else out = applyStrategicMergePatch(current as unknown as Json, patch as Json, r.type.mergeKeys);
      if (!isObject(out) || !isObject(out.metadata)) throw badRequest("the patched object is not a Kubernetes object");
      const obj = out as unknown as KubeObject;
      if (obj.kind !== r.type.kind || obj.apiVersion !== current.apiVersion) throw badRequest("the patch must not change kind or apiVersion");
      return obj;
    };
    const stored = await this.#updateFlow(ctx, r, build, dryRun, options);
    this.#send(ctx.res, 200, this.#present(stored, r.type, r.version), ctx.warnings);
  }

  async #deleteOptions(ctx: Ctx): Promise<z.infer<typeof deleteOptionsSchema>> {
    const body = await this.#readJson(ctx.req, false);
    const parsed = deleteOptionsSchema.safeParse(body ?? {});
    if (!parsed.success) throw badRequest(`invalid DeleteOptions: ${parsed.error.issues[0]?.message ?? "invalid"}`);
    const opts = parsed.data;
    const q = ctx.url.searchParams;
    const policy = q.get("propagationPolicy");
    if (policy !== null) {
      if (!["Orphan", "Background", "Foreground"].includes(policy)) throw badRequest(`propagationPolicy: Unsupported value: ${JSON.stringify(policy)}`);
      opts.propagationPolicy = policy as "Orphan" | "Background" | "Foreground";
    }
    const grace = q.get("gracePeriodSeconds");
    if (grace !== null) {
      if (!/^[0-9]+$/.test(grace)) throw badRequest(`invalid gracePeriodSeconds: ${JSON.stringify(grace)}`);
      opts.gracePeriodSeconds = Number(grace);
    }
    if (q.get("orphanDependents") === "true") opts.orphanDependents = true;
    if (opts.orphanDependents && !opts.propagationPolicy) opts.propagationPolicy = "Orphan";
    return opts;
  }

  async #deleteOne(ctx: Ctx, r: ResourceRequest, name: string, opts: z.infer<typeof deleteOptionsSchema>, dryRun: boolean): Promise<{ object: KubeObject; removed: boolean }> {
    const current = this.#store.getRaw(r.type.key, r.namespace, name);
    if (!current) throw notFound(r.type, name);
    const attrs = this.#attributes(ctx, { ...r, name }, "DELETE", name, dryRun, { kind: "DeleteOptions", apiVersion: "meta.k8s.io/v1", ...opts });
    await this.#admission.mutate(attrs, undefined, current);
    await this.#admission.validate(attrs, undefined, current);
    // Grace periods matter for pods only; every kind served here is deleted (or finalized) at once.
    return this.#store.deleteWithOptions(r.type.key, r.namespace, name, {
      propagationPolicy: opts.propagationPolicy ?? undefined,
      preconditions: opts.preconditions ? { uid: opts.preconditions.uid ?? undefined, resourceVersion: opts.preconditions.resourceVersion ?? undefined } : undefined,
      dryRun,
    });
  }

  async #delete(ctx: Ctx, r: ResourceRequest): Promise<void> {
    const opts = await this.#deleteOptions(ctx);
    const dryRun = this.#dryRun(ctx, opts.dryRun);
    const { object, removed } = await this.#deleteOne(ctx, r, r.name!, opts, dryRun);
    if (removed && r.type.key !== "namespaces") {
      this.#send(ctx.res, 200, successStatus({ name: r.name, group: r.type.group || undefined, kind: r.type.resource, uid: object.metadata.uid }), ctx.warnings);
    } else {
      this.#send(ctx.res, 200, this.#present(object, r.type, r.version), ctx.warnings);
    }
  }

  async #deleteCollection(ctx: Ctx, r: ResourceRequest): Promise<void> {
    const { labels, fields } = this.#selectors(ctx, r);
    const opts = await this.#deleteOptions(ctx);
    const dryRun = this.#dryRun(ctx, opts.dryRun);
    const targets = this.#store.listRaw(r.type.key, r.namespace).filter(o => matchesLabels(labels, o.metadata.labels) && matchesFields(fields, o));
    const items: KubeObject[] = [];
    for (const o of targets) {
      try {
        items.push((await this.#deleteOne(ctx, { ...r, namespace: o.metadata.namespace }, o.metadata.name!, opts, dryRun)).object);
      } catch (err) {
        if (!(err instanceof ApiError && err.code === 404)) throw err;
      }
    }
    this.#send(
      ctx.res,
      200,
      {
        kind: r.type.listKind,
        apiVersion: apiVersionOf(r.type.group, r.version),
        metadata: { resourceVersion: String(this.#store.currentResourceVersion) },
        items: items.map(o => this.#present(o, r.type, r.version)),
      },
      ctx.warnings,
    );
  }
}

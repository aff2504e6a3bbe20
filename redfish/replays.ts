// Replayed answers of the hot GETs (ComputerSystem, its SecureBoot, Bios and Manager): the server writes the bytes the
// app answered before for the same URL and credentials, without running the app, while every input of that answer is
// unchanged. Ironic polls each node's System and SecureBoot every power-sync interval with the same credentials, so
// most of its GETs are repeats; the app's per-request work (Hono's context, routing, admission) is most of the cost
// of such a GET (issue #13's profile), and the answer is already serialized (response-cache.ts).
//
// A replay is a memo of the whole pipeline, not a second implementation of it. The app remembers a plain 200 it gave
// for (URL, Authorization, X-Auth-Token) with what it was computed from: the principal object authentication gave,
// the service settings object, the VM's cache record and the chassis that contain the VM. The replay authenticates
// the request with the same Authenticator.knownPrincipal (a session's idle timer is refreshed as by the app) and
// answers only when that gives the same principal object, the settings object is the same (a configuration change
// makes a new one: users, passwords, chassis), the cache still holds the same record (records are replaced, never
// changed, on any change of the VM, its VMI or DataVolumes) and the VM is in the same chassis. A principal's access
// changes only with a new principal object (a user's password, a Kubernetes identity's reviews expiring, a session
// ending), so nothing the app would decide differently is replayed. Requests whose answer could differ for another
// reason are left to the app: any method but GET, a query, a conditional header, a repeated field (Fetch would join
// it, Node keeps the first), any header outside REPLAYABLE_HEADERS, an OData-Version other than 4.0.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Authenticator, Credentials, Principal } from "./auth";
import type { ClusterCache, VmRecord } from "./cache/types";
import type { ServiceSettings } from "./settings";

/**
 * Answers kept; least recently used first out. An entry holds its body (about 2 KiB for a System; the response cache
 * may hold the same bytes) and the cache record it was computed from, which outlives a change of the VM until the
 * entry is asked for again or evicted: a few KiB each, at most about 25 MiB.
 */
export const MAX_REPLAYS = 4_096;

/** Request fields that do not change a GET's answer here (the app reads none of them for an authenticated GET). */
const REPLAYABLE_HEADERS = new Set([
  "host",
  "user-agent",
  "accept",
  "accept-encoding",
  "accept-language",
  "connection",
  "keep-alive",
  "authorization",
  "x-auth-token",
  "odata-version",
  "odata-maxversion",
]);

/** What an answer was computed from, and the answer. */
export interface ReplayInputs {
  principal: Principal;
  settings: ServiceSettings;
  record: VmRecord;
  /** The VM's namespace and name, where the cache keeps its record. */
  namespace: string;
  name: string;
  /** Chassis of the configuration that contain the VM (ClusterCache.chassisOf), when it was answered. */
  chassis: readonly string[];
}

interface Replay extends ReplayInputs {
  headers: Readonly<Record<string, string>>;
  body: Buffer;
}

/** The request's credentials as the app reads them; the client address is never needed for known credentials. */
class ReplayCredentials implements Credentials {
  constructor(
    readonly authorization: string | undefined,
    readonly token: string | undefined,
  ) {}

  clientAddress(): string {
    return "";
  }
}

function replayKey(url: string, authorization: string | undefined, token: string | undefined): string {
  return `${url}\n${authorization ?? ""}\n${token ?? ""}`;
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class Replays {
  /** By replayKey, least recently used first. */
  private readonly entries = new Map<string, Replay>();

  constructor(
    private readonly auth: Authenticator,
    private readonly cache: ClusterCache,
    private readonly settings: () => ServiceSettings,
    private readonly maxEntries = MAX_REPLAYS,
  ) {}

  /**
   * Remembers the app's 200 for a request served by the Node server. The request must be a GET whose path names the
   * system by its full id (a bare VM name resolves against the other VMs the principal sees, which the inputs do not
   * cover); the caller checks that.
   */
  remember(request: IncomingMessage, inputs: ReplayInputs, headers: Readonly<Record<string, string>>, body: Buffer): void {
    const target = replayTarget(request);
    if (!target) return;
    const key = replayKey(target.url, target.authorization, target.token);
    this.entries.delete(key);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { ...inputs, headers, body });
  }

  /** Writes the remembered answer to the request when every input is unchanged; false leaves the request to the app. */
  serve(request: IncomingMessage, response: ServerResponse): boolean {
    if (this.entries.size === 0) return false;
    const target = replayTarget(request);
    if (!target) return false;
    const key = replayKey(target.url, target.authorization, target.token);
    const replay = this.entries.get(key);
    if (!replay) return false;
    if (!this.holds(replay, target)) {
      this.entries.delete(key);
      return false;
    }
    this.entries.delete(key); // re-inserted as the most recently used
    this.entries.set(key, replay);
    response.writeHead(200, replay.headers);
    response.end(replay.body);
    return true;
  }

  /** Answers kept (tests). */
  get size(): number {
    return this.entries.size;
  }

  private holds(replay: Replay, target: ReplayTarget): boolean {
    if (this.settings() !== replay.settings) return false;
    if (this.cache.getVm(replay.namespace, replay.name) !== replay.record) return false;
    if (!sameNames(this.cache.chassisOf(replay.namespace, replay.name), replay.chassis)) return false;
    return this.auth.knownPrincipal(new ReplayCredentials(target.authorization, target.token)) === replay.principal;
  }
}

interface ReplayTarget {
  url: string;
  authorization: string | undefined;
  token: string | undefined;
}

/** The URL and credentials of a request a replay may answer, or undefined when the app must answer it. */
function replayTarget(request: IncomingMessage): ReplayTarget | undefined {
  const url = request.url;
  if (request.method !== "GET" || url === undefined || url.includes("?")) return undefined;
  const headers = request.headers;
  let fields = 0;
  for (const name in headers) {
    if (!REPLAYABLE_HEADERS.has(name)) return undefined;
    fields++;
  }
  // Fewer parsed fields than raw ones: a field was repeated, which Node and Fetch read differently.
  if (fields * 2 !== request.rawHeaders.length) return undefined;
  const odataVersion = headers["odata-version"];
  if (odataVersion !== undefined && (typeof odataVersion !== "string" || odataVersion.trim() !== "4.0")) return undefined;
  const authorization = headers.authorization;
  const token = headers["x-auth-token"];
  if (authorization === undefined && token === undefined) return undefined;
  return { url, authorization, token: typeof token === "string" ? token : undefined };
}

// The module's one Kubernetes client (client-go's rest.Interface idea): the kubeconfig is read once, every
// request and watch goes through ONE transport (kube-transport.ts: HTTP/2 streams over one connection, or a
// bounded HTTP/1.1 keep-alive agent where the server does not speak h2), so the TCP connections to an API
// server stay few and stable across watch expiries and API server restarts, whatever the number of watches.
// kubernetes-fluent-client (a new undici Agent and a kubeconfig read per call) and client-node's Watch (a new
// agent per watch) are not used for the module's own traffic for that reason.
import { KubeConfig } from "@kubernetes/client-node";
import type https from "node:https";
import type { Readable } from "node:stream";
import { KubeTransport, type Protocol, type TransportOptions, type TransportRequest, type TransportResponse } from "./kube-transport";

/** A failed Kubernetes API call: HTTP status (0 = no answer), the Status reason and message. */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

/** A metav1.Status body's reason and message; the causes' messages are appended (a failed JSON patch `test`
 * is only named there on some servers). A body that is not JSON (404 "page not found") is the message. */
export function statusFields(body: unknown, fallback: string): { reason: string; message: string } {
  const data = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  const details = typeof data.details === "object" && data.details !== null ? (data.details as { causes?: unknown }) : {};
  const causes = Array.isArray(details.causes)
    ? details.causes.map(c => (c as { message?: unknown } | null)?.message).filter((m): m is string => typeof m === "string")
    : [];
  const message = typeof data.message === "string" ? data.message : fallback;
  return {
    reason: typeof data.reason === "string" ? data.reason : fallback,
    message: causes.length > 0 ? `${message}: ${causes.join("; ")}` : message,
  };
}

export type Query = Record<string, string | number | boolean | undefined>;

export interface KubeRequest {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** Absolute API path, e.g. /api/v1/namespaces/ns/configmaps/name. */
  path: string;
  query?: Query;
  body?: unknown;
  /** Content-Type of the body (default application/json; patches name theirs). */
  contentType?: string;
  timeoutMs?: number;
}

/** One event of a watch stream (ERROR carries a metav1.Status as object). */
export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: Record<string, unknown>;
}

export interface KubeClientOptions {
  /** HTTP/1.1 only: sockets for requests at most (each open watch holds one more). */
  maxSockets?: number;
  requestTimeoutMs?: number;
  /** Speak HTTP/1.1 even to a server that speaks HTTP/2 (independent of the kubeconfig; tests). */
  forceHttp1?: boolean;
  /** Where the protocol in use is reported, once, at info level. */
  log?: TransportOptions["log"];
}

/** HTTP/1.1 sockets for requests per API server (watches have theirs). */
export const DEFAULT_MAX_SOCKETS = 8;
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** How long credential headers read from the kubeconfig are used before they are read again. */
const CREDENTIALS_REREAD_MS = 10_000;
const MAX_ERROR_TEXT = 500;

function withQuery(path: string, query: Query | undefined): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) if (value !== undefined) params.set(key, String(value));
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export class KubeClient {
  readonly #kc: KubeConfig;
  readonly #server: URL;
  readonly #transport: KubeTransport;
  readonly #requestTimeoutMs: number;
  #cachedCredentials: { headers: Promise<Record<string, string>>; readAt: number } | undefined;

  private constructor(kc: KubeConfig, server: URL, transport: KubeTransport, requestTimeoutMs: number) {
    this.#kc = kc;
    this.#server = server;
    this.#transport = transport;
    this.#requestTimeoutMs = requestTimeoutMs;
  }

  /** KUBECONFIG, ~/.kube/config or the in-cluster service account, read once. */
  static async fromDefault(opts: KubeClientOptions = {}): Promise<KubeClient> {
    const kc = new KubeConfig();
    kc.loadFromDefault();
    return KubeClient.fromKubeConfig(kc, opts);
  }

  static async fromKubeConfig(kc: KubeConfig, opts: KubeClientOptions = {}): Promise<KubeClient> {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new KubeApiError(0, "NoCluster", "no current cluster in the kubeconfig");
    const server = new URL(cluster.server.replace(/\/+$/, ""));
    // The TLS material (CA, client certificate, skip-verify) as client-node reads it; the agent it builds is dropped.
    const tls: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(tls);
    const transport = new KubeTransport({
      server,
      tls: {
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        pfx: tls.pfx,
        passphrase: tls.passphrase,
        rejectUnauthorized: tls.rejectUnauthorized,
        servername: cluster.tlsServerName,
      },
      maxSockets: opts.maxSockets ?? DEFAULT_MAX_SOCKETS,
      forceHttp1: opts.forceHttp1,
      log: opts.log,
    });
    return new KubeClient(kc, server, transport, opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
  }

  /** The API server this client talks to (for logs: no credentials in it). */
  get server(): string {
    return this.#server.origin;
  }

  /** TCP connections to the API server now (HTTP/2 sessions, HTTP/1.1 sockets in use + idle), for the bench and tests. */
  openSockets(): number {
    return this.#transport.connections();
  }

  /** "h2" or "http/1.1"; undefined until the first connection to an https server negotiated it. */
  get protocol(): Protocol | undefined {
    return this.#transport.protocol;
  }

  /** Ends every connection (tests, shutdown). */
  close(): void {
    this.#transport.close();
  }

  /** One request; the parsed JSON answer (undefined for an empty body). Throws KubeApiError for non-2xx and transport errors. */
  async request<T = unknown>(req: KubeRequest): Promise<T> {
    const res = await this.#open(req);
    const text = await readText(res.body);
    const { status } = res;
    if (!succeeded(status)) throw errorOf(status, text, res.statusMessage);
    if (text === "") return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new KubeApiError(0, "InvalidResponse", "the API server answered with a body that is not JSON");
    }
  }

  /**
   * A write whose answer the caller does not use (a patch, a virt-api action): done as soon as the status says
   * the API server accepted it. A 2xx is sent once the write is committed, so the object in the body adds
   * nothing, and a busy server may send the body a while after the status. The body is discarded; a failure's
   * body is read for its Status. Throws KubeApiError like `request`.
   */
  async write(req: KubeRequest): Promise<void> {
    const res = await this.#open(req);
    if (!succeeded(res.status)) throw errorOf(res.status, await readText(res.body), res.statusMessage);
    res.body.on("error", () => undefined); // a body cut off after the status changes nothing
    res.body.resume();
  }

  #open(req: KubeRequest): Promise<TransportResponse> {
    const payload = req.body === undefined ? undefined : typeof req.body === "string" ? req.body : JSON.stringify(req.body);
    const headers: Record<string, string | number> = { Accept: "application/json" };
    if (payload !== undefined) {
      headers["Content-Type"] = req.contentType ?? "application/json";
      headers["Content-Length"] = Buffer.byteLength(payload);
    }
    return this.#send({ method: req.method, path: withQuery(req.path, req.query), headers, timeoutMs: req.timeoutMs ?? this.#requestTimeoutMs, body: payload });
  }

  /**
   * A watch stream: calls `onEvent` per event until the server ends the stream (resolves) or `signal` aborts
   * (resolves). A refused watch (410 for a too old resourceVersion, 403, ...) rejects with KubeApiError.
   * `idleMs`: with no byte for that long (no event, no bookmark) the stream counts as dead and rejects.
   */
  async watch(path: string, query: Query, onEvent: (ev: WatchEvent) => void, opts: { signal: AbortSignal; idleMs: number }): Promise<void> {
    if (opts.signal.aborted) return;
    const { status, statusMessage, body: res } = await this.#send({
      method: "GET",
      path: withQuery(path, { ...query, watch: true }),
      headers: { Accept: "application/json" },
      timeoutMs: opts.idleMs,
      watch: true,
    });
    if (status !== 200) throw errorOf(status, await readText(res), statusMessage);
    // Aborting destroys the response without an error (an AbortError on the request would have no listener
    // once this function returned); the stream then closes and the watch resolves.
    const onAbort = () => res.destroy();
    if (opts.signal.aborted) onAbort();
    opts.signal.addEventListener("abort", onAbort, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        let buffered = "";
        let failed: Error | undefined;
        let ended = false;
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buffered += chunk;
          let newline: number;
          while ((newline = buffered.indexOf("\n")) >= 0) {
            const line = buffered.slice(0, newline).trim();
            buffered = buffered.slice(newline + 1);
            if (line === "" || failed) continue;
            try {
              onEvent(JSON.parse(line) as WatchEvent);
            } catch (e) {
              // A handler error or a garbled line ends the stream: the informer re-lists rather than miss an event.
              failed = e instanceof Error ? e : new Error(String(e));
              res.destroy();
            }
          }
        });
        res.on("end", () => {
          ended = true;
          resolve();
        });
        res.on("error", e => (opts.signal.aborted ? resolve() : reject(failed ?? new KubeApiError(0, "StreamError", e.message))));
        // Closed without its end (a reset stream, a lost connection): retriable, like a transport error.
        const lost = () => new KubeApiError(0, "StreamError", "the watch stream was cut off by the connection");
        res.on("close", () => (opts.signal.aborted || ended ? resolve() : reject(failed ?? lost())));
      });
    } finally {
      opts.signal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * The credential headers as client-node applies them (token files, exec plugins, Basic), re-read once they are
   * CREDENTIALS_REREAD_MS old or after a 401: asking client-node per request re-read the kubeconfig's files and built
   * an https.Agent each time. A rotated ServiceAccount token is picked up within that time (kubelet rotates it long
   * before the old one expires).
   */
  #credentials(): Promise<Record<string, string>> {
    const cached = this.#cachedCredentials;
    if (cached && Date.now() - cached.readAt < CREDENTIALS_REREAD_MS) return cached.headers;
    // Kept from the start of the read, so concurrent requests share it; a failed read is not kept.
    const entry = { headers: this.#readCredentials(), readAt: Date.now() };
    this.#cachedCredentials = entry;
    entry.headers.catch(() => {
      if (this.#cachedCredentials === entry) this.#cachedCredentials = undefined;
    });
    return entry.headers;
  }

  async #readCredentials(): Promise<Record<string, string>> {
    const auth: https.RequestOptions = { headers: {} };
    try {
      await this.#kc.applyToHTTPSOptions(auth);
    } catch (e) {
      throw new KubeApiError(0, "ClientConfig", e instanceof Error ? e.message : String(e));
    }
    const headers: Record<string, string> = { ...(auth.headers as Record<string, string>) };
    if (auth.auth) headers.Authorization = `Basic ${Buffer.from(auth.auth).toString("base64")}`;
    return headers;
  }

  /** `req.path` is below the server's URL (which may carry a path prefix); credentials are added here. */
  async #send(req: TransportRequest): Promise<TransportResponse> {
    const credentials = await this.#credentials();
    let res: TransportResponse;
    try {
      res = await this.#transport.send({ ...req, path: this.#server.pathname.replace(/\/$/, "") + req.path, headers: { ...credentials, ...req.headers } });
    } catch (e) {
      throw new KubeApiError(0, "NoResponse", e instanceof Error ? e.message : String(e));
    }
    // Credentials the server no longer takes (a rotated token) are read again for the next request.
    if (res.status === 401) this.#cachedCredentials = undefined;
    return res;
  }
}

/** The whole body; a body cut off before its end (reset stream, lost connection) is a transport error. */
function readText(body: Readable): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    let ended = false;
    body.setEncoding("utf8");
    body.on("data", chunk => (text += chunk));
    body.on("end", () => {
      ended = true;
      resolve(text);
    });
    body.on("error", e => reject(new KubeApiError(0, "NoResponse", e.message)));
    body.on("close", () => {
      if (!ended) reject(new KubeApiError(0, "NoResponse", "the answer was cut off by the connection"));
    });
  });
}

const succeeded = (status: number) => status >= 200 && status < 300;

function errorOf(status: number, text: string, statusMessage: string | undefined): KubeApiError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined; // not a metav1.Status body: the raw text is the message
  }
  const { reason, message } = statusFields(body, text.slice(0, MAX_ERROR_TEXT).trim() || (statusMessage ?? "request failed"));
  return new KubeApiError(status, reason, message);
}

let shared: Promise<KubeClient> | undefined;

/**
 * The process's client for its own cluster (KUBECONFIG or in-cluster), created on first use and then the same
 * for every caller: the one place that holds it, so there is one transport per process. `opts` count only for
 * the call that creates it (the watcher's start passes its logger).
 */
export function sharedKubeClient(opts: KubeClientOptions = {}): Promise<KubeClient> {
  shared ??= KubeClient.fromDefault(opts).catch(e => {
    shared = undefined; // a kubeconfig that could not be read is read again by the next caller
    throw e;
  });
  return shared;
}

/** Ends the shared client's connections; the next use reads the kubeconfig again (shutdown, tests that switch clusters). */
export async function closeSharedKubeClient(): Promise<void> {
  const closing = shared;
  shared = undefined;
  (await closing?.catch(() => undefined))?.close();
}

/** Whether an error says the resourceVersion asked for is gone (410 Expired/Gone): re-list. */
export function isResourceVersionGone(error: unknown): boolean {
  return error instanceof KubeApiError && error.status === 410;
}

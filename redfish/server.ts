// The Redfish listener: HTTPS by default (certificate from a Secret, else a self-signed pair with a
// warning), plain HTTP only when redfish.tls.enabled is false. Runs in the watcher pod next to Pepr's
// own server, so a listen error (EADDRINUSE) is logged and retried, never thrown: an unhandled 'error'
// event would kill the watcher.
import { createAdaptorServer } from "@hono/node-server";
import { randomBytes } from "node:crypto";
import { createServer as createHttpServer, STATUS_CODES, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { createSecureContext } from "node:tls";
import os from "node:os";
import { Log } from "./platform";
import { createSelfSignedServerCertificate } from "../capabilities/common/tls";
import { baseError, errorBody } from "./errors";
import { redfishActive, redfishPortSchema, type ModuleConfig } from "../capabilities/config/schema";

export interface TlsMaterial {
  certPem: string;
  keyPem: string;
}

type FetchHandler = (request: Request, env: unknown) => Response | Promise<Response>;

/**
 * Limits against slow or idle clients (slowloris) and connection floods. A client has handshakeMs to finish
 * the TLS handshake, headersMs to send the request head and requestMs for the whole request; an idle
 * keep-alive connection is closed after keepAliveMs. Connections beyond maxConnections are dropped at accept.
 */
export interface ServerLimits {
  handshakeMs: number;
  headersMs: number;
  requestMs: number;
  keepAliveMs: number;
  maxConnections: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  handshakeMs: 10_000,
  headersMs: 10_000,
  requestMs: 30_000,
  keepAliveMs: 5_000,
  maxConnections: 1_024,
};

/**
 * TLS 1.2 suites with forward secrecy (ECDHE) and authenticated encryption (GCM, ChaCha20-Poly1305) only;
 * the TLS 1.3 suites are all of that kind. No static-RSA key exchange, no CBC.
 */
export const TLS_CIPHERS = [
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** Browsers that once reached the BMC over HTTPS never try plain HTTP for it again. */
const HSTS = "max-age=31536000";

/** Lifetime of TLS session tickets: sushy opens a new connection per request and resumes instead of a full handshake. */
const TLS_SESSION_TIMEOUT_SECONDS = 300;

/** How often Node checks the header and request timeouts (its default, 30 s, would let a slow client overstay). */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000;

/** Answers a request before the app when it can (RedfishService.replay); false leaves it to the app. */
type ReplayHandler = (request: IncomingMessage, response: ServerResponse) => boolean;

export interface RedfishServerOptions {
  /** The Hono app's fetch (`app.fetch`). */
  fetch: FetchHandler;
  /** Replays of hot GETs, tried before the app (redfish/replays.ts). */
  replay?: ReplayHandler;
  /** 0 picks a free port (tests). */
  port: number;
  /** Listen address; default: all interfaces. */
  host?: string;
  /** The certificate to serve, or false for plain HTTP. */
  tls: TlsMaterial | false;
  /** First retry delay after EADDRINUSE (doubles up to 30 s). */
  retryDelayMs?: number;
  /** Overrides of DEFAULT_SERVER_LIMITS (tests). */
  limits?: Partial<ServerLimits>;
}

export interface RedfishServer {
  /** The bound port once listening (retries until it is, or until close()). */
  readonly ready: Promise<number>;
  readonly protocol: "https" | "http";
  close(): Promise<void>;
}

const MAX_RETRY_DELAY_MS = 30_000;

/** A Redfish error response written straight to the socket, before any request object exists. */
function rawErrorResponse(status: number, resolution: string): string {
  const body = JSON.stringify(errorBody(baseError(status, "GeneralError", [], { resolution })));
  return [
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
    "Content-Type: application/json; charset=utf-8",
    `Content-Length: ${Buffer.byteLength(body)}`,
    "Connection: close",
    "",
    body,
  ].join("\r\n");
}

/**
 * Requests Node's HTTP parser rejects before the app sees them. An unknown method is 501 (RFC 9110 15.6.2;
 * DSP0266 allows 405 or 501), not the parser's generic 400; the other parse errors keep Node's default
 * statuses. Anything else (a reset, a TLS handshake failure or timeout: https forwards those here too) gets
 * no HTTP answer: the connection is dropped.
 */
function clientErrorStatus(err: NodeJS.ErrnoException): number | undefined {
  if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") return 408;
  if (!err.code?.startsWith("HPE_")) return undefined;
  switch (err.code) {
    case "HPE_INVALID_METHOD":
      return 501;
    case "HPE_HEADER_OVERFLOW":
      return 431;
    case "HPE_CHUNK_EXTENSIONS_OVERFLOW":
      return 413;
    default:
      return 400;
  }
}

function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  const status = clientErrorStatus(err);
  // As Node's default handler: no answer once a response has started (or when the socket is gone).
  const response = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (status === undefined || !socket.writable || response?.headersSent) {
    socket.destroy();
    return;
  }
  const resolution =
    status === 501
      ? "Use one of the HTTP methods Redfish defines (GET, HEAD, POST, PATCH, PUT, DELETE)."
      : status === 408
        ? "Send the request head within 10 s and the whole request within 30 s."
        : "Send a well-formed HTTP/1.1 request.";
  socket.end(rawErrorResponse(status, resolution));
}

export function startRedfishServer(options: RedfishServerOptions): RedfishServer {
  const protocol = options.tls ? "https" : "http";
  const limits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
  const httpOptions = {
    headersTimeout: limits.headersMs,
    requestTimeout: limits.requestMs,
    keepAliveTimeout: limits.keepAliveMs,
    connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
  };
  const tls = options.tls;
  const replay = options.replay ?? (() => false);
  const server = (
    tls
      ? createAdaptorServer({
          fetch: options.fetch,
          // HSTS is set on the Node response before anything writes its head: no per-request Response copy.
          createServer: ((serverOptions: object, listener: RequestListener) =>
            createHttpsServer(serverOptions, (req: IncomingMessage, res: ServerResponse) => {
              res.setHeader("Strict-Transport-Security", HSTS);
              if (!replay(req, res)) listener(req, res);
            })) as typeof createHttpsServer,
          serverOptions: {
            ...httpOptions,
            cert: tls.certPem,
            key: tls.keyPem,
            minVersion: "TLSv1.2",
            ciphers: TLS_CIPHERS,
            honorCipherOrder: true,
            handshakeTimeout: limits.handshakeMs,
            // Tickets keyed per listener: a restart invalidates them, which only costs clients one full handshake.
            ticketKeys: randomBytes(48),
            sessionTimeout: TLS_SESSION_TIMEOUT_SECONDS,
          },
        })
      : createAdaptorServer({
          fetch: options.fetch,
          createServer: ((serverOptions: object, listener: RequestListener) =>
            createHttpServer(serverOptions, (req: IncomingMessage, res: ServerResponse) => {
              if (!replay(req, res)) listener(req, res);
            })) as typeof createHttpServer,
          serverOptions: httpOptions,
        })
  ) as Server;
  server.maxConnections = limits.maxConnections;
  server.on("clientError", answerClientError);
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let delay = options.retryDelayMs ?? 1000;

  const ready = new Promise<number>((resolve, reject) => {
    const listen = () => {
      if (closed) return;
      if (options.host) server.listen(options.port, options.host);
      else server.listen(options.port);
    };
    server.on("listening", () => {
      const port = (server.address() as AddressInfo).port;
      Log.info({ port, protocol }, "Redfish server listening");
      resolve(port);
    });
    server.on("error", (err: NodeJS.ErrnoException) => {
      if (closed) return;
      if (err.code === "EADDRINUSE" || err.code === "EACCES" || err.code === "EADDRNOTAVAIL") {
        Log.error({ port: options.port, code: err.code, retryInSeconds: delay / 1000 }, "Redfish server cannot listen yet; retrying");
        retryTimer = setTimeout(listen, delay);
        retryTimer.unref();
        delay = Math.min(delay * 2, MAX_RETRY_DELAY_MS);
        return;
      }
      Log.error({ code: err.code, err: err.message }, "Redfish server error");
    });
    server.on("close", () => {
      if (closed) reject(new Error("Redfish server closed before it was listening"));
    });
    listen();
  });
  // A caller that never awaits `ready` must not see an unhandled rejection after close().
  ready.catch(() => undefined);

  return {
    ready,
    protocol,
    close: () =>
      new Promise<void>(resolve => {
        closed = true;
        if (retryTimer) clearTimeout(retryTimer);
        if (!server.listening) {
          server.emit("close");
          resolve();
          return;
        }
        server.close(() => resolve());
        // Keep-alive connections would hold close() open; Redfish clients reconnect.
        server.closeAllConnections();
      }),
  };
}

// ---- listener settings from the configuration ----

export interface ListenerSettings {
  port: number;
  tls: { enabled: boolean; secretName: string };
}

/** Port (REDFISH_PORT overrides redfish.port when valid) and TLS settings; undefined when Redfish is inactive. */
export function listenerSettings(config: ModuleConfig | undefined, env: NodeJS.ProcessEnv = process.env): ListenerSettings | undefined {
  if (!config || !redfishActive(config)) return undefined;
  let port = config.redfish.port;
  if (env.REDFISH_PORT !== undefined && env.REDFISH_PORT !== "") {
    const parsed = redfishPortSchema.safeParse(Number(env.REDFISH_PORT));
    if (parsed.success) port = parsed.data;
    else Log.error({ REDFISH_PORT: env.REDFISH_PORT, port }, "REDFISH_PORT must be a port >= 1024 other than 3000; using redfish.port");
  }
  return { port, tls: { enabled: config.redfish.tls.enabled, secretName: config.redfish.tls.secretName } };
}

let selfSigned: TlsMaterial | undefined;

/** One self-signed pair per process (regenerating on every restart of the listener would gain nothing). */
export function selfSignedCertificate(): TlsMaterial {
  selfSigned ??= createSelfSignedServerCertificate({
    commonName: "kubevirt-infra-redfish",
    dnsNames: [...new Set([os.hostname(), "localhost"])],
    ipAddresses: ["127.0.0.1", "::1"],
  });
  return selfSigned;
}

/**
 * Keeps the listener in line with the configuration: started when Redfish becomes active, restarted
 * when the port or TLS settings change, stopped when Redfish is disabled. Reconciles run one at a time.
 */
export class RedfishListener {
  private current: { settings: ListenerSettings; server: RedfishServer } | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly options: {
      fetch: FetchHandler;
      replay?: ReplayHandler;
      /** Reads `tls.crt`/`tls.key` of the named Secret in the module's namespace; undefined when absent. */
      loadTlsSecret: (secretName: string) => Promise<TlsMaterial | undefined>;
      host?: string;
      env?: NodeJS.ProcessEnv;
    },
  ) {}

  reconcile(config: ModuleConfig | undefined): Promise<void> {
    this.queue = this.queue.then(() => this.apply(listenerSettings(config, this.options.env))).catch(err => {
      Log.error({ err: err instanceof Error ? err.message : String(err) }, "Redfish listener reconcile failed");
    });
    return this.queue;
  }

  /** The running server (tests). */
  get server(): RedfishServer | undefined {
    return this.current?.server;
  }

  close(): Promise<void> {
    return this.reconcile(undefined);
  }

  private async apply(settings: ListenerSettings | undefined): Promise<void> {
    if (JSON.stringify(settings) === JSON.stringify(this.current?.settings)) return;
    if (this.current) {
      await this.current.server.close();
      Log.info({ port: this.current.settings.port }, "Redfish server stopped");
      this.current = undefined;
    }
    if (!settings) return;
    const tls = settings.tls.enabled ? await this.certificate(settings.tls.secretName) : false;
    if (!tls) Log.warn({ port: settings.port }, "Redfish is served over plain HTTP (redfish.tls.enabled: false)");
    const server = startRedfishServer({ fetch: this.options.fetch, replay: this.options.replay, port: settings.port, host: this.options.host, tls });
    this.current = { settings, server };
  }

  private async certificate(secretName: string): Promise<TlsMaterial> {
    try {
      const fromSecret = await this.options.loadTlsSecret(secretName);
      if (fromSecret) {
        createSecureContext({ cert: fromSecret.certPem, key: fromSecret.keyPem }); // throws on a bad pair
        return fromSecret;
      }
      Log.warn({ secretName }, "Redfish TLS Secret not found; serving a self-signed certificate (clients must skip verification)");
    } catch (err) {
      Log.warn({ secretName, err: err instanceof Error ? err.message : String(err) }, "Redfish TLS Secret unreadable or invalid; serving a self-signed certificate");
    }
    return selfSignedCertificate();
  }
}

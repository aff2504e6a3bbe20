// How KubeClient's requests reach the API server, like client-go's transport: HTTP/2, so that every request
// and every watch is a stream multiplexed over ONE TCP connection (a second one only while the first carries
// the server's SETTINGS_MAX_CONCURRENT_STREAMS: kube-apiserver's default is 100). With HTTP/1.1 every open
// watch holds a connection of its own, which a watcher with one watch per kind and namespace cannot afford.
// https: ALPN offers h2 and http/1.1; a server (or proxy) that picks http/1.1 gets the keep-alive agent.
// http: (the sandbox, kubectl proxy) HTTP/2 with prior knowledge (h2c) unless HTTP/1.1 is forced; a server that
// refuses the h2c preface on the first connection gets HTTP/1.1.
// A connection that ends (GOAWAY, close, error) is dropped; the next request opens a new one, and the requests
// that were on it fail (KubeClient makes that a KubeApiError(0, ...), which informers and work queues retry with
// their back-off). Failures here are plain Errors: KubeClient owns the mapping to KubeApiError.
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import type { Readable } from "node:stream";
import net from "node:net";
import tls from "node:tls";

export type Protocol = "h2" | "http/1.1";

export interface TransportRequest {
  method: string;
  /** Path and query string. */
  path: string;
  headers: Record<string, string | number>;
  /** Without a byte from the server for this long (before or during the answer), the request fails. */
  timeoutMs: number;
  body?: string;
  /** A watch: held open for minutes (over HTTP/1.1 it needs a connection of its own). */
  watch?: boolean;
}

/** An answer whose head arrived: its body is a byte stream (destroy() ends it, also for a watch). */
export interface TransportResponse {
  status: number;
  statusMessage?: string;
  body: Readable;
}

/** The TLS material and identity of the API server, as the kubeconfig gives them. */
export type TlsMaterial = Pick<tls.ConnectionOptions, "ca" | "cert" | "key" | "pfx" | "passphrase" | "rejectUnauthorized" | "servername">;

export interface TransportOptions {
  server: URL;
  tls: TlsMaterial;
  /** HTTP/1.1 only: sockets for requests at most (each open watch has one more of its own). */
  maxSockets: number;
  /** Speak HTTP/1.1 even where HTTP/2 is possible (tests, servers whose h2 is broken). */
  forceHttp1?: boolean;
  log?: { info(obj: object, msg: string): void };
}

const CONNECT_TIMEOUT_MS = 10_000;
/** client-go's HTTP/2 health check: a PING after 30 s without a frame, the connection is dead 15 s later. */
const READ_IDLE_MS = 30_000;
const PING_TIMEOUT_MS = 15_000;
/** Flow-control windows: a 500-object list page in a few round trips, yet what the server may push ahead of the
 * informers stays small (4 MiB stream / 32 MiB session windows cost ~36 MiB of watcher RSS with 300 watches). */
const STREAM_WINDOW_BYTES = 1024 * 1024;
const SESSION_WINDOW_BYTES = 4 * 1024 * 1024;
const MAX_SESSION_MEMORY_MB = 64;

/** One HTTP/2 connection and the streams it carries now. */
interface Session {
  session: http2.ClientHttp2Session;
  streams: number;
  maxStreams: number;
  /** GOAWAY received or closing: no new stream goes on it. */
  draining: boolean;
}

export class KubeTransport {
  readonly #server: URL;
  readonly #tls: TlsMaterial;
  readonly #agent: http.Agent;
  /** HTTP/1.1 only: watches, unbounded, since a watch the bounded agent queued would never start. */
  readonly #watchAgent: http.Agent;
  readonly #log: TransportOptions["log"];
  #protocol: Protocol | undefined;
  readonly #sessions: Session[] = [];
  #connecting: Promise<Session | "http/1.1"> | undefined;
  #closed = false;

  constructor(opts: TransportOptions) {
    this.#server = opts.server;
    this.#tls = opts.tls;
    this.#log = opts.log;
    const agent = (limits: http.AgentOptions) =>
      opts.server.protocol === "http:" ? new http.Agent({ keepAlive: true, ...limits }) : new https.Agent({ keepAlive: true, ...limits, ...opts.tls });
    this.#agent = agent({ maxSockets: opts.maxSockets, maxFreeSockets: 4 });
    this.#watchAgent = agent({ maxFreeSockets: 4 });
    if (opts.forceHttp1) this.#choose("http/1.1", "forced by the client's options");
  }

  /** The protocol in use; undefined until the first connection to an https server negotiated it. */
  get protocol(): Protocol | undefined {
    return this.#protocol;
  }

  /** TCP connections held now: HTTP/2 sessions and HTTP/1.1 sockets (in use and idle). */
  connections(): number {
    const count = (sockets: NodeJS.ReadOnlyDict<unknown[]>) => Object.values(sockets).reduce((n, list) => n + (list?.length ?? 0), 0);
    return this.#sessions.length + [this.#agent, this.#watchAgent].reduce((n, a) => n + count(a.sockets) + count(a.freeSockets), 0);
  }

  close(): void {
    this.#closed = true;
    for (const { session } of this.#sessions.splice(0)) session.destroy();
    this.#agent.destroy();
    this.#watchAgent.destroy();
  }

  async send(req: TransportRequest): Promise<TransportResponse> {
    if (this.#protocol !== "http/1.1") {
      const session = await this.#acquire();
      if (session !== "http/1.1") return this.#sendHttp2(session, req);
    }
    return this.#sendHttp1(req);
  }

  #choose(protocol: Protocol, why: string, details: object = {}): void {
    this.#protocol = protocol;
    this.#log?.info(
      { server: this.#server.origin, protocol, ...details },
      protocol === "h2"
        ? `Kubernetes API over HTTP/2: requests and watches share one connection (${why})`
        : `Kubernetes API over HTTP/1.1: one connection per open watch (${why})`,
    );
  }

  /** A session with a free stream, reserved for the caller (its count is taken before any await). */
  async #acquire(): Promise<Session | "http/1.1"> {
    for (;;) {
      if (this.#closed) throw new Error("the Kubernetes client was closed");
      const free = this.#sessions.find(s => !s.draining && s.streams < s.maxStreams);
      if (free) {
        if (free.streams++ === 0) free.session.ref();
        return free;
      }
      // One connection attempt at a time: a burst of watches fills a session before the next is opened.
      this.#connecting ??= this.#connect().finally(() => (this.#connecting = undefined));
      const connected = await this.#connecting;
      if (connected === "http/1.1") return connected;
      if (connected.draining) throw new Error("the API server closed the new HTTP/2 connection");
    }
  }

  async #connect(): Promise<Session | "http/1.1"> {
    const origin = this.#server.origin;
    const settings: http2.Settings = { initialWindowSize: STREAM_WINDOW_BYTES, enablePush: false };
    let session: http2.ClientHttp2Session;
    if (this.#server.protocol === "http:") {
      session = http2.connect(origin, { settings, maxSessionMemory: MAX_SESSION_MEMORY_MB });
    } else {
      const socket = await this.#tlsConnect();
      if (socket.alpnProtocol !== "h2") {
        socket.destroy();
        this.#choose("http/1.1", `the server offered ${socket.alpnProtocol || "no protocol"} over ALPN`);
        return "http/1.1";
      }
      session = http2.connect(origin, { settings, maxSessionMemory: MAX_SESSION_MEMORY_MB, createConnection: () => socket });
    }
    const entry: Session = { session, streams: 0, maxStreams: 1, draining: false };
    let reached = false;
    session.once("connect", () => (reached = true));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => fail(new Error(`no HTTP/2 SETTINGS from the API server within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
        const onClose = () => fail(new Error("the API server closed the connection"));
        const fail = (e: Error) => {
          clearTimeout(timer);
          session.off("close", onClose);
          session.destroy();
          reject(e);
        };
        session.once("error", fail);
        session.once("close", onClose);
        session.once("remoteSettings", () => {
          clearTimeout(timer);
          session.off("error", fail);
          session.off("close", onClose);
          resolve();
        });
      });
    } catch (e) {
      // A cleartext server that answered the h2c preface with bytes that are not HTTP/2 (kubectl proxy and other
      // HTTP/1.1-only servers answer 400: nghttp2's protocol error) speaks HTTP/1.1 only. A timeout or a closed
      // connection says nothing about the protocol (a busy or restarting server): those fail and are retried.
      // Decided on the first connection only: a server that spoke HTTP/2 once does not change protocols.
      const notHttp2 = (e as NodeJS.ErrnoException).code === "ERR_HTTP2_ERROR";
      if (this.#server.protocol === "http:" && reached && notHttp2 && this.#protocol === undefined) {
        this.#choose("http/1.1", `the server did not take the HTTP/2 connection preface: ${e instanceof Error ? e.message : String(e)}`);
        return "http/1.1";
      }
      throw e;
    }
    session.setLocalWindowSize(SESSION_WINDOW_BYTES);
    this.#track(entry);
    this.#sessions.push(entry);
    if (this.#protocol !== "h2") this.#choose("h2", this.#server.protocol === "http:" ? "h2c, prior knowledge" : "negotiated over ALPN", { maxConcurrentStreams: entry.maxStreams });
    return entry;
  }

  #tlsConnect(): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const host = this.#server.hostname.replace(/^\[|\]$/g, "");
      const socket = tls.connect({
        host,
        port: Number(this.#server.port || 443),
        ...this.#tls,
        servername: this.#tls.servername ?? (net.isIP(host) ? undefined : host),
        ALPNProtocols: ["h2", "http/1.1"],
        timeout: CONNECT_TIMEOUT_MS,
      });
      socket.once("secureConnect", () => {
        socket.setTimeout(0);
        socket.off("error", onError);
        resolve(socket);
      });
      const onError = (e: Error) => {
        socket.destroy();
        reject(e);
      };
      socket.once("error", onError);
      socket.once("timeout", () => onError(new Error(`no TLS handshake with the API server within ${CONNECT_TIMEOUT_MS} ms`)));
    });
  }

  #track(entry: Session): void {
    const { session } = entry;
    const refresh = () => (entry.maxStreams = Math.max(1, session.remoteSettings.maxConcurrentStreams ?? 100));
    refresh();
    session.on("remoteSettings", refresh);
    session.on("goaway", () => (entry.draining = true));
    session.on("error", () => (entry.draining = true));
    session.on("close", () => {
      entry.draining = true;
      const at = this.#sessions.indexOf(entry);
      if (at >= 0) this.#sessions.splice(at, 1);
    });
    // Dead-connection detection (a half-open TCP connection would otherwise hang every watch on it).
    session.setTimeout(READ_IDLE_MS, () => {
      const deadline = setTimeout(() => session.destroy(new Error("no PING answer from the API server")), PING_TIMEOUT_MS);
      deadline.unref();
      session.ping(() => clearTimeout(deadline));
    });
    session.unref();
  }

  #release(entry: Session): void {
    if (--entry.streams === 0 && !entry.session.destroyed) entry.session.unref();
  }

  #sendHttp2(entry: Session, req: TransportRequest): Promise<TransportResponse> {
    return new Promise((resolve, reject) => {
      let stream: http2.ClientHttp2Stream;
      try {
        stream = entry.session.request({ ":method": req.method, ":path": req.path, ...lowerCased(req.headers) }, { endStream: req.body === undefined });
      } catch (e) {
        this.#release(entry);
        entry.draining = true;
        reject(e);
        return;
      }
      let answered = false;
      stream.setTimeout(req.timeoutMs, () => stream.destroy(new Error(`no answer from the API server within ${req.timeoutMs} ms`)));
      stream.once("response", headers => {
        answered = true;
        resolve({ status: Number(headers[":status"] ?? 0), body: stream });
      });
      stream.on("error", e => {
        if (!answered) reject(e);
      });
      stream.once("close", () => {
        this.#release(entry);
        if (!answered) reject(new Error(`the API server reset the request (HTTP/2 error code ${stream.rstCode})`));
      });
      if (req.body !== undefined) stream.end(req.body);
    });
  }

  #sendHttp1(req: TransportRequest): Promise<TransportResponse> {
    const url = new URL(req.path, this.#server);
    const send = url.protocol === "http:" ? http.request : https.request;
    return new Promise((resolve, reject) => {
      const agent = req.watch ? this.#watchAgent : this.#agent;
      const request = send(url, { method: req.method, agent, headers: req.headers, timeout: req.timeoutMs });
      request.on("response", res => resolve({ status: res.statusCode ?? 0, statusMessage: res.statusMessage, body: res }));
      request.on("timeout", () => request.destroy(new Error(`no answer from the API server within ${req.timeoutMs} ms`)));
      request.on("error", reject);
      request.end(req.body);
    });
  }
}

/** HTTP/2 header names are lower case. */
function lowerCased(headers: Record<string, string | number>): Record<string, string | number> {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
}

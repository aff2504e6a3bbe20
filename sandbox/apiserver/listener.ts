// The API server's one port, serving HTTP/1.1 (kubectl-style clients: client-node, Pepr's
// kubernetes-fluent-client, curl) and HTTP/2 cleartext with prior knowledge (the module's KubeClient) side by
// side: each connection's first bytes are compared with the HTTP/2 connection preface and the socket is handed
// to Node's http or http2 server. What kube-apiserver does with HTTP/2 is modelled: SETTINGS_MAX_CONCURRENT_STREAMS
// (`--http2-max-streams-per-connection`; its default 0 means 100 since the CVE-2023-44487 fix, 1.26.10 on), idle
// connections closed after 90 s (kube's http2.Server IdleTimeout) and a GOAWAY to every HTTP/2 client on shutdown.
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

export type ApiRequest = http.IncomingMessage | http2.Http2ServerRequest;
/** What the REST layer uses of a response: an http.ServerResponse, or an HTTP/2 stream (Http2StreamResponse). */
export interface ApiResponse {
  readonly headersSent: boolean;
  readonly writableEnded: boolean;
  setHeader(name: string, value: number | string | readonly string[]): unknown;
  writeHead(statusCode: number, headers?: http.OutgoingHttpHeaders): unknown;
  write(chunk: string): boolean;
  end(): unknown;
  end(chunk: string): unknown;
  /** HTTP/1.1 only: HTTP/2's writeHead sends the HEADERS frame at once. */
  flushHeaders?(): void;
  destroy(error?: Error): unknown;
  on(event: "close", listener: () => void): unknown;
}
export type ApiHandler = (req: ApiRequest, res: ApiResponse) => void;

/**
 * An HTTP/2 response written on the stream itself. Node's compatibility response asks for trailers, so its
 * END_STREAM goes out as a separate frame one event-loop turn after the body, behind whatever the process does
 * next (here: the simulated controllers reacting to the write). Go's server, like kube-apiserver, ends the stream
 * with the last DATA frame; so does `stream.end(body)` on a stream that was not told to wait for trailers.
 */
class Http2StreamResponse implements ApiResponse {
  readonly #stream: http2.ServerHttp2Stream;
  readonly #headers: http2.OutgoingHttpHeaders = {};

  constructor(stream: http2.ServerHttp2Stream) {
    this.#stream = stream;
    // A stream the client reset is closed at once, as Go's server closes it on RST_STREAM. Node keeps it, and
    // counts it against SETTINGS_MAX_CONCURRENT_STREAMS, until its writable side ends too: a stream the client
    // opens in its place in the same read would be refused with ENHANCE_YOUR_CALM.
    stream.on("aborted", () => stream.destroy());
  }

  get headersSent(): boolean {
    return this.#stream.headersSent;
  }

  get writableEnded(): boolean {
    return this.#stream.writableEnded;
  }

  setHeader(name: string, value: number | string | readonly string[]): void {
    this.#headers[name.toLowerCase()] = value as http2.OutgoingHttpHeaders[string];
  }

  writeHead(statusCode: number, headers: http.OutgoingHttpHeaders = {}): void {
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) this.setHeader(name, value);
    if (this.#stream.destroyed) return;
    this.#stream.respond({ ...this.#headers, ":status": statusCode });
  }

  write(chunk: string): boolean {
    if (!this.headersSent) this.writeHead(200);
    return this.#stream.destroyed || this.#stream.writableEnded ? false : this.#stream.write(chunk);
  }

  end(chunk?: string): void {
    if (!this.headersSent) this.writeHead(200);
    // respond() already ended a stream that has no body (HEAD, 204, 304).
    if (this.#stream.destroyed || this.#stream.writableEnded) return;
    if (chunk === undefined) this.#stream.end();
    else this.#stream.end(chunk);
  }

  destroy(error?: Error): void {
    this.#stream.destroy(error);
  }

  on(event: "close", listener: () => void): void {
    this.#stream.on(event, listener);
  }
}

/** kube-apiserver 1.26.15 with the default `--http2-max-streams-per-connection=0`. */
export const DEFAULT_HTTP2_MAX_STREAMS = 100;
/** kube's http2.Server IdleTimeout: a connection without open streams this long is closed with GOAWAY. */
const HTTP2_IDLE_TIMEOUT_MS = 90_000;
/** How long shutdown waits for HTTP/2 clients to see the GOAWAY before the sockets are destroyed. */
const GOAWAY_GRACE_MS = 200;
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export interface ListenerOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS advertised to HTTP/2 clients (default 100, like kube-apiserver). */
  http2MaxStreamsPerConnection?: number;
}

/** Open TCP connections by the protocol they speak ("pending": the first bytes have not arrived yet). */
export interface ConnectionCounts {
  http1: number;
  http2: number;
  pending: number;
}

export class ProtocolListener {
  readonly #tcp: net.Server;
  readonly #http1: http.Server;
  readonly #http2: http2.Http2Server;
  readonly #sockets = new Map<net.Socket, keyof ConnectionCounts>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();

  constructor(handler: ApiHandler, opts: ListenerOptions = {}) {
    this.#http1 = http.createServer(handler);
    // Watches are long-lived: no per-socket inactivity timeout.
    this.#http1.timeout = 0;
    this.#http2 = http2.createServer(
      {
        settings: { maxConcurrentStreams: opts.http2MaxStreamsPerConnection || DEFAULT_HTTP2_MAX_STREAMS },
        // Hundreds of watch streams buffer events for a slow reader; Node's 10 MB default would reset the session.
        maxSessionMemory: 256,
      },
      (req, res) => handler(req, new Http2StreamResponse(res.stream)),
    );
    this.#http2.on("session", session => this.#track(session));
    this.#tcp = net.createServer(socket => this.#dispatch(socket));
  }

  async listen(port: number, host: string): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#tcp.once("error", reject);
      this.#tcp.listen(port, host, () => {
        this.#tcp.off("error", reject);
        resolve();
      });
    });
    return (this.#tcp.address() as net.AddressInfo).port;
  }

  get port(): number {
    return (this.#tcp.address() as net.AddressInfo).port;
  }

  connections(): ConnectionCounts {
    const counts: ConnectionCounts = { http1: 0, http2: 0, pending: 0 };
    for (const kind of this.#sockets.values()) counts[kind]++;
    return counts;
  }

  /**
   * Stops listening, sends GOAWAY on every HTTP/2 connection (as Go's Server.Shutdown does), then destroys
   * every connection that is still open, HTTP/1.1 keep-alive ones included.
   */
  async close(): Promise<void> {
    const closed = new Promise<void>(resolve => this.#tcp.close(() => resolve()));
    const sessions = [...this.#sessions];
    for (const session of sessions) session.goaway(http2.constants.NGHTTP2_NO_ERROR);
    // close() alone may tear a session without streams down before its GOAWAY frame is written.
    await new Promise(resolve => setImmediate(resolve));
    for (const session of sessions) session.close();
    if (sessions.length > 0) {
      await Promise.race([
        Promise.all(sessions.map(s => (s.closed ? undefined : new Promise(resolve => s.once("close", resolve))))),
        new Promise(resolve => setTimeout(resolve, GOAWAY_GRACE_MS)),
      ]);
    }
    for (const socket of this.#sockets.keys()) socket.destroy();
    await closed;
  }

  /** Reads until the bytes either are or cannot be the HTTP/2 preface, then hands the socket over. */
  #dispatch(socket: net.Socket): void {
    this.#sockets.set(socket, "pending");
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const compared = Math.min(head.length, PREFACE.length);
      const prefaceSoFar = head.subarray(0, compared).equals(PREFACE.subarray(0, compared));
      if (prefaceSoFar && head.length < PREFACE.length) return;
      socket.off("data", onData);
      socket.pause();
      socket.unshift(head);
      if (prefaceSoFar) {
        this.#sockets.set(socket, "http2");
        // The session reads what is buffered on the socket itself.
        this.#http2.emit("connection", socket);
      } else {
        this.#sockets.set(socket, "http1");
        this.#http1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  }

  #track(session: http2.ServerHttp2Session): void {
    this.#sessions.add(session);
    session.on("close", () => this.#sessions.delete(session));
    session.on("error", () => session.destroy());
    let idle: NodeJS.Timeout | undefined;
    let open = 0;
    const armIdle = () => {
      idle = setTimeout(() => session.close(), HTTP2_IDLE_TIMEOUT_MS);
      idle.unref();
    };
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      open++;
      clearTimeout(idle);
      stream.on("close", () => {
        if (--open === 0 && !session.closed) armIdle();
      });
    });
    session.on("close", () => clearTimeout(idle));
    armIdle();
  }
}

// Raw HTTP/1.1 over TLS for the fuzzer: the request bytes are sent exactly as given (malformed request lines,
// raw non-ASCII paths, duplicate or oversized headers, broken chunked bodies), one connection per request.
import net from "node:net";
import tls from "node:tls";

const HALF_CLOSE_AFTER_MS = 3_000;

export interface RawRequest {
  method: string;
  /** The request-target, sent verbatim. */
  target: string;
  headers?: [string, string][];
  body?: string | Buffer;
  /** Default true: Host: localhost. */
  host?: boolean;
  /** Default true: Content-Length of the body when there is one. */
  contentLength?: boolean;
}

export function encodeRequest(r: RawRequest): Buffer {
  const body = r.body === undefined ? undefined : Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body, "utf8");
  const lines = [`${r.method} ${r.target} HTTP/1.1`];
  if (r.host !== false) lines.push("Host: localhost");
  for (const [name, value] of r.headers ?? []) lines.push(`${name}: ${value}`);
  if (body && r.contentLength !== false) lines.push(`Content-Length: ${body.length}`);
  lines.push("Connection: close", "", "");
  const head = Buffer.from(lines.join("\r\n"), "latin1");
  return body ? Buffer.concat([head, body]) : head;
}

export interface RawResponse {
  /** Status code of the first response, undefined when the server sent none. */
  status?: number;
  headers: Record<string, string>;
  body: string;
  /** Why no response was read (timeout, connection error). */
  error?: string;
}

const resumable = new Map<number, Buffer>();

/** Sends `bytes` on a fresh TLS connection and reads until the server closes it. */
export function exchange(opts: { port: number; ca: string; localAddress?: string; bytes: Buffer; timeoutMs?: number }): Promise<RawResponse> {
  return new Promise(resolve => {
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(halfCloseTimer);
      socket.destroy();
      tcp.destroy();
      resolve({ ...parse(Buffer.concat(chunks)), ...(error ? { error } : {}) });
    };
    // The TCP connection first: its source address is what the server keys back-off on.
    const tcp = net.connect({ host: "127.0.0.1", port: opts.port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    // Write without closing our side: Node's HTTP server aborts a request whose client half-closes before the
    // answer. Only when nothing comes back for a while (an incomplete request the server still waits on) do we
    // signal end of input.
    let halfCloseTimer: NodeJS.Timeout | undefined;
    // TLS session resumption: thousands of cases need not each pay a full handshake.
    const session = resumable.get(opts.port);
    const socket = tls.connect({ socket: tcp, servername: "localhost", ca: opts.ca, ...(session ? { session } : {}) }, () => {
      socket.write(opts.bytes);
      halfCloseTimer = setTimeout(() => socket.end(), HALF_CLOSE_AFTER_MS);
    });
    const timer = setTimeout(() => finish(`no complete answer within ${opts.timeoutMs ?? 15_000} ms`), opts.timeoutMs ?? 15_000);
    socket.on("session", (ticket: Buffer) => resumable.set(opts.port, ticket));
    socket.on("data", (c: Buffer) => {
      chunks.push(c);
      clearTimeout(halfCloseTimer);
    });
    socket.on("end", () => finish());
    socket.on("close", () => finish());
    // A reset after the response was read is the server closing a connection it will not read further.
    socket.on("error", err => finish(chunks.length > 0 ? undefined : err.message));
    tcp.on("error", err => finish(chunks.length > 0 ? undefined : err.message));
  });
}

function parse(raw: Buffer): Omit<RawResponse, "error"> {
  let text = raw.toString("latin1");
  // Interim answers (100 Continue) precede the real one.
  while (/^HTTP\/1\.[01] 1\d\d /.test(text) && text.includes("\r\n\r\n")) {
    const skip = text.indexOf("\r\n\r\n") + 4;
    text = text.slice(skip);
    raw = raw.subarray(skip);
  }
  const end = text.indexOf("\r\n\r\n");
  const head = end >= 0 ? text.slice(0, end) : text;
  const [statusLine, ...headerLines] = head.split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "");
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const body = end >= 0 ? raw.subarray(end + 4).toString("utf8") : ""; // latin1: one character per byte
  return { ...(match ? { status: Number(match[1]) } : {}), headers, body };
}

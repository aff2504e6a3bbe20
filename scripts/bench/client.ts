// Timed one-at-a-time requests over keep-alive connections (HTTPS to Redfish with the sandbox CA, HTTP to
// the sandbox API server), for the measurements that are about one request's reply time, not throughput.
import http from "node:http";
import https from "node:https";
import { elapsedMs } from "./stats";

export interface TimedResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  ms: number;
}

export interface Requester {
  (method: string, path: string, opts?: { headers?: Record<string, string>; body?: string }): Promise<TimedResponse>;
  close(): void;
}

export function requester(baseUrl: string, tls?: { ca: string; servername?: string }): Requester {
  const url = new URL(baseUrl);
  const secure = url.protocol === "https:";
  const agent = secure
    ? new https.Agent({ keepAlive: true, maxSockets: 64, ca: tls?.ca, servername: tls?.servername ?? "localhost" })
    : new http.Agent({ keepAlive: true, maxSockets: 64 });
  const send: Requester = (method, path, opts = {}) =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string> = { Accept: "application/json", ...(opts.headers ?? {}) };
      if (opts.body !== undefined) headers["Content-Length"] = String(Buffer.byteLength(opts.body));
      const start = process.hrtime.bigint();
      const req = (secure ? https : http).request(
        { host: url.hostname, port: url.port, path, method, headers, agent },
        res => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8"), ms: elapsedMs(start) }));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: no reply within 30 s`)));
      if (opts.body !== undefined) req.write(opts.body);
      req.end();
    });
  send.close = () => agent.destroy();
  return send;
}

export function basicAuth(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}

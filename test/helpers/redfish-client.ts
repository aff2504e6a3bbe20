// One HTTPS request to the sandbox's Redfish server, verifying the sandbox CA: used by the e2e helper and the
// reliability/security suites (which add a keep-alive agent, a source address and token capture).
import https from "node:https";
import type { IncomingHttpHeaders } from "node:http";

export interface RedfishResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  body: any;
}

export interface RedfishRequestOptions {
  /** "user:password" for Basic auth. */
  user?: string;
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface RedfishTarget {
  port: number;
  ca: string;
  agent?: https.Agent;
  localAddress?: string;
}

export function redfishRequest(target: RedfishTarget, method: string, path: string, o: RedfishRequestOptions = {}): Promise<RedfishResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Accept: "application/json", ...(o.headers ?? {}) };
    if (o.user) headers.Authorization = `Basic ${Buffer.from(o.user).toString("base64")}`;
    if (o.token) headers["X-Auth-Token"] = o.token;
    let payload: string | undefined;
    if (o.body !== undefined) {
      payload = typeof o.body === "string" ? o.body : JSON.stringify(o.body);
      headers["Content-Type"] ??= "application/json";
    }
    const req = https.request(
      {
        host: "127.0.0.1",
        servername: "localhost",
        port: target.port,
        path,
        method,
        headers,
        ...(target.agent ? { agent: target.agent } : { ca: target.ca }),
        ...(target.localAddress ? { localAddress: target.localAddress } : {}),
      },
      res => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", c => (text += c));
        res.on("end", () => {
          let body: unknown;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            body = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
        });
      },
    );
    req.on("error", reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

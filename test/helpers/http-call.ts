// One request over HTTP or HTTPS on a connection of its own (no agent): status, headers and the whole body as text.
import http from "node:http";
import https from "node:https";

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface CallOptions {
  method?: string;
  /** An array value sends the field once per element. */
  headers?: http.OutgoingHttpHeaders;
  body?: string;
  /** HTTPS: the CA to verify the server with, or `insecure` to skip verification. */
  ca?: string;
  insecure?: boolean;
}

export function call(url: string, opts: CallOptions = {}): Promise<Reply> {
  const target = new URL(url);
  const client = target.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(
      target,
      {
        method: opts.method ?? "GET",
        headers: opts.headers,
        ...(target.protocol === "https:" ? { ca: opts.ca, rejectUnauthorized: !opts.insecure } : {}),
        agent: false,
      },
      res => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", chunk => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

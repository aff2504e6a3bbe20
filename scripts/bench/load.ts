// Load generation: autocannon (in this process, loopback only) with every response time kept, so the
// percentiles are exact to the microsecond rather than autocannon's whole-millisecond histogram.
import autocannon from "autocannon";
import { summarize, type LatencySummary } from "./stats";

export interface LoadOptions {
  url: string;
  connections: number;
  durationSeconds: number;
  method?: "GET" | "POST" | "PATCH" | "PUT";
  headers?: Record<string, string>;
  body?: string;
  /** Replace `[<id>]` in the body with a fresh id per request (AdmissionReview uids). */
  idReplacement?: boolean;
  /** Per connection: its own path/body (e.g. one object per connection, so writes do not conflict). */
  perConnection?: (index: number) => { path?: string; body?: string };
  /** Requests per second over all connections (open loop); without it every connection sends as fast as it can. */
  ratePerSecond?: number;
}

export interface LoadResult {
  connections: number;
  /** The offered rate when the run was rate-limited. */
  ratePerSecond?: number;
  durationSeconds: number;
  /** Responses with a 2xx status per second (all of them). */
  requestsPerSecond: number;
  /** Latency of the 2xx responses, without the first of each connection (its TLS handshake). */
  latencyMs: LatencySummary;
  responses: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  const statusCodes: Record<string, number> = {};
  let responses = 0;
  let ok = 0;
  let connectionIndex = 0;
  let finish!: (result: autocannon.Result) => void;
  let fail!: (err: unknown) => void;
  const done = new Promise<autocannon.Result>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  const instance = autocannon(
    {
      url: opts.url,
      connections: opts.connections,
      duration: opts.durationSeconds,
      method: opts.method ?? "GET",
      headers: opts.headers ?? {},
      ...(opts.body !== undefined ? { body: opts.body } : {}),
      idReplacement: opts.idReplacement ?? false,
      timeout: 10,
      ...(opts.ratePerSecond ? { overallRate: opts.ratePerSecond } : {}),
      ...(opts.perConnection
        ? {
            // setRequests (not setRequest, which changes only the next request) makes it this client's for the whole run.
            setupClient: (client: autocannon.Client) => {
              const own = opts.perConnection!(connectionIndex++);
              client.setRequests([{
                method: opts.method ?? "GET",
                headers: opts.headers ?? {},
                ...(own.path !== undefined ? { path: own.path } : {}),
                ...(own.body !== undefined || opts.body !== undefined ? { body: own.body ?? opts.body } : {}),
              }]);
            },
          }
        : {}),
    },
    (err, result) => (err ? fail(err) : finish(result)),
  );
  // The first request of a connection also waits for its TLS handshake (autocannon starts the clock when it
  // writes, before the connection is secure); the steady state of keep-alive clients is what is measured.
  const connected = new WeakSet<object>();
  instance.on("response", (client, statusCode, _bytes, responseTime) => {
    responses++;
    if (statusCode >= 200 && statusCode < 300) ok++;
    statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
    const first = !connected.has(client);
    connected.add(client);
    if (statusCode >= 200 && statusCode < 300 && !first) latencies.push(responseTime);
  });
  const result = await done;
  const seconds = result.duration > 0 ? result.duration : opts.durationSeconds;
  return {
    connections: opts.connections,
    ...(opts.ratePerSecond ? { ratePerSecond: opts.ratePerSecond } : {}),
    durationSeconds: Math.round(seconds * 100) / 100,
    requestsPerSecond: Math.round(ok / seconds),
    latencyMs: summarize(latencies),
    responses,
    non2xx: responses - ok,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes,
  };
}

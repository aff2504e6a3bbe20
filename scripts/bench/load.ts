// Load generation, loopback only, every response time kept (exact percentiles, not histogram buckets):
// - runLoad: autocannon, each connection sending as fast as it can (closed loop): throughput at saturation.
// - runPaced: requests issued at evenly spaced instants over a pool of keep-alive connections (open loop):
//   latency at a given load. (autocannon's own rate limit lets each connection burst through its quota at the
//   start of every second, which measures saturation again.)
// - runNewConnections: sushy's pattern, a new TLS connection per request (Connection: close), closed loop.
import autocannon from "autocannon";
import http from "node:http";
import https from "node:https";
import type { TLSSocket } from "node:tls";
import { elapsedMs, summarize, type LatencySummary } from "./stats";

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

/** The responses a run counted; its LoadResult: 2xx per second over its duration, latencies of the 2xx responses. */
class ResponseTally {
  readonly #latencies: number[] = [];
  readonly #statusCodes: Record<string, number> = {};
  #responses = 0;
  #ok = 0;

  /** One response; `latencyMs` undefined when it is not part of the steady state (a connection's first). */
  record(statusCode: number, latencyMs?: number): void {
    this.#responses++;
    this.#statusCodes[statusCode] = (this.#statusCodes[statusCode] ?? 0) + 1;
    if (statusCode < 200 || statusCode >= 300) return;
    this.#ok++;
    if (latencyMs !== undefined) this.#latencies.push(latencyMs);
  }

  result(run: { connections: number; ratePerSecond?: number; seconds: number; errors: number; timeouts: number }): LoadResult {
    return {
      connections: run.connections,
      ...(run.ratePerSecond !== undefined ? { ratePerSecond: run.ratePerSecond } : {}),
      durationSeconds: Math.round(run.seconds * 100) / 100,
      requestsPerSecond: Math.round(this.#ok / run.seconds),
      latencyMs: summarize(this.#latencies),
      responses: this.#responses,
      non2xx: this.#responses - this.#ok,
      errors: run.errors,
      timeouts: run.timeouts,
      statusCodes: this.#statusCodes,
    };
  }
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const tally = new ResponseTally();
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
    const first = !connected.has(client);
    connected.add(client);
    tally.record(statusCode, first ? undefined : responseTime);
  });
  const result = await done;
  const seconds = result.duration > 0 ? result.duration : opts.durationSeconds;
  return tally.result({ connections: opts.connections, seconds, errors: result.errors, timeouts: result.timeouts });
}

export interface PacedOptions {
  url: string;
  /** Requests per second, issued at evenly spaced instants. */
  ratePerSecond: number;
  durationSeconds: number;
  /** Size of the keep-alive connection pool (requests wait for a free connection when all are busy). */
  connections: number;
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  /** `[<id>]` in the body is replaced by a fresh id per request. */
  body?: string;
}

/** Open-loop load: the clock of a request starts at its scheduled instant, so waiting for a connection counts. */
export async function runPaced(opts: PacedOptions): Promise<LoadResult> {
  const url = new URL(opts.url);
  const secure = url.protocol === "https:";
  // The servers are the sandbox's: their certificate is not what is measured here.
  const agent = secure
    ? new https.Agent({ keepAlive: true, maxSockets: opts.connections, rejectUnauthorized: false })
    : new http.Agent({ keepAlive: true, maxSockets: opts.connections });
  const tally = new ResponseTally();
  let errors = 0;
  let issued = 0;
  const inFlight = new Set<Promise<void>>();
  const send = (sequence: number): Promise<void> =>
    new Promise<void>(resolve => {
      const start = process.hrtime.bigint();
      const body = opts.body?.replace("[<id>]", `paced-${sequence}`);
      const headers = { ...(opts.headers ?? {}), ...(body !== undefined ? { "Content-Length": String(Buffer.byteLength(body)) } : {}) };
      const req = (secure ? https : http).request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method: opts.method ?? "GET", headers, agent }, res => {
        res.resume();
        res.on("end", () => {
          // A request that opened its connection also paid for the TLS handshake: not the steady state.
          tally.record(res.statusCode ?? 0, req.reusedSocket ? elapsedMs(start) : undefined);
          resolve();
        });
      });
      req.on("error", () => {
        errors++;
        resolve();
      });
      req.setTimeout(10_000, () => req.destroy(new Error("timeout")));
      req.end(body);
    });
  const started = process.hrtime.bigint();
  const total = Math.round(opts.ratePerSecond * opts.durationSeconds);
  await new Promise<void>(resolve => {
    const tick = () => {
      const due = Math.min(total, Math.floor((elapsedMs(started) / 1000) * opts.ratePerSecond) + 1);
      while (issued < due) {
        const p = send(issued++);
        inFlight.add(p);
        void p.then(() => inFlight.delete(p));
      }
      if (issued >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(inFlight);
  const seconds = elapsedMs(started) / 1000;
  agent.destroy();
  return tally.result({ connections: opts.connections, ratePerSecond: opts.ratePerSecond, seconds, errors, timeouts: 0 });
}

export interface NewConnectionOptions {
  url: string;
  /** Requests in flight at once, each on its own new connection (closed loop). */
  concurrency: number;
  durationSeconds: number;
  headers?: Record<string, string>;
  /**
   * Offer the previous connection's TLS session (a ticket) on the next one, as Node's https.Agent does; false
   * makes every connection a full handshake, as Python's urllib3 (sushy) does.
   */
  resume: boolean;
}

export interface NewConnectionResult extends LoadResult {
  /** Connections whose TLS session was resumed (an abbreviated handshake). */
  resumed: number;
}

/**
 * sushy's pattern: every request on a new TLS connection, sent with `Connection: close`. The latency of a request
 * includes its TCP connect and TLS handshake.
 */
export async function runNewConnections(opts: NewConnectionOptions): Promise<NewConnectionResult> {
  const url = new URL(opts.url);
  // keepAlive false: the agent closes each socket after its response, but keeps the TLS sessions it was given.
  const resumingAgent = opts.resume ? new https.Agent({ keepAlive: false, maxCachedSessions: 100, rejectUnauthorized: false }) : undefined;
  const tally = new ResponseTally();
  let errors = 0;
  let resumed = 0;
  const headers = { ...(opts.headers ?? {}), Connection: "close" };
  const once = (): Promise<void> =>
    new Promise<void>(resolve => {
      const start = process.hrtime.bigint();
      const req = https.request(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname + url.search,
          method: "GET",
          headers,
          rejectUnauthorized: false,
          // agent false: a new agent per request, so no session is ever offered again.
          agent: resumingAgent ?? false,
        },
        res => {
          if ((res.socket as TLSSocket).isSessionReused()) resumed++;
          res.resume();
          res.on("end", () => {
            tally.record(res.statusCode ?? 0, elapsedMs(start));
            resolve();
          });
        },
      );
      req.on("error", () => {
        errors++;
        resolve();
      });
      req.setTimeout(10_000, () => req.destroy(new Error("timeout")));
      req.end();
    });
  const started = process.hrtime.bigint();
  const deadline = opts.durationSeconds * 1000;
  await Promise.all(
    Array.from({ length: opts.concurrency }, async () => {
      while (elapsedMs(started) < deadline) await once();
    }),
  );
  const seconds = elapsedMs(started) / 1000;
  resumingAgent?.destroy();
  return { ...tally.result({ connections: opts.concurrency, seconds, errors, timeouts: 0 }), resumed };
}

// The Ironic fleet simulation: what a conductor managing 1,000 nodes behind this BMC sends, the way sushy sends it
// (a new TLS connection per request with `Connection: close`, no TLS session resumption, one session token).
// - Power sync: every node once per sync period, spread evenly over it: GET ServiceRoot (sushy checks the
//   service), the System (power state), its SecureBoot and its Manager (BMC health): 4 GETs per node and period.
// - Deployments: `deployments` workers, each on its own node, one deployment after another while the power sync
//   runs: ForceOff and wait for Off, EjectMedia, InsertMedia and wait for Inserted, PATCH Boot (Cd, Once), On
//   and wait for On.
// Every call type gets its latency percentiles, its status codes, transport errors and 5xx. Anything but the
// status Redfish promises for the call is an error.
import https from "node:https";
import { elapsedMs, summarize, type LatencySummary } from "./stats";

export interface FleetOptions {
  /** https://host:port of the Redfish service. */
  baseUrl: string;
  username: string;
  password: string;
  /** Every node of the fleet (system ids); the first `deployments` of them are also deployed. */
  systemIds: readonly string[];
  deployments: number;
  /** Every node is synced once per period. */
  syncPeriodSeconds: number;
  /** The image a deployment inserts, per deployment worker. */
  imageUrl: (worker: number) => string;
  /** How often a deployment polls while it waits (Ironic: about once a second). */
  pollIntervalMs?: number;
  /** Longest wait for one state (Off, Inserted, On) before the deployment counts an error and moves on. */
  stateTimeoutMs?: number;
}

export interface CallStats {
  calls: number;
  latencyMs: LatencySummary;
  statusCodes: Record<string, number>;
  /** Answers other than the expected status, and transport errors. */
  errors: number;
  serverErrors: number;
}

export interface FleetResult {
  nodes: number;
  deploymentWorkers: number;
  deploymentsCompleted: number;
  syncPeriodSeconds: number;
  durationSeconds: number;
  /** Requests per second over the whole run, all call types. */
  requestsPerSecond: number;
  calls: Record<string, CallStats>;
  errors: number;
  serverErrors: number;
  /** The first few unexpected answers, for the report. */
  errorSamples: string[];
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

class Recorder {
  private readonly byCall = new Map<string, { latencies: number[]; statusCodes: Record<string, number>; errors: number; serverErrors: number }>();
  readonly errorSamples: string[] = [];

  record(call: string, ms: number, status: number, expected: readonly number[], detail: string): void {
    let entry = this.byCall.get(call);
    if (!entry) {
      entry = { latencies: [], statusCodes: {}, errors: 0, serverErrors: 0 };
      this.byCall.set(call, entry);
    }
    entry.statusCodes[status] = (entry.statusCodes[status] ?? 0) + 1;
    if (status >= 500) entry.serverErrors++;
    if (expected.includes(status)) entry.latencies.push(ms);
    else {
      entry.errors++;
      if (this.errorSamples.length < 10) this.errorSamples.push(`${call}: ${status === 0 ? "transport error" : status} ${detail.slice(0, 200)}`);
    }
  }

  stats(): Record<string, CallStats> {
    const out: Record<string, CallStats> = {};
    for (const [call, e] of this.byCall) {
      out[call] = { calls: e.latencies.length + e.errors, latencyMs: summarize(e.latencies), statusCodes: e.statusCodes, errors: e.errors, serverErrors: e.serverErrors };
    }
    return out;
  }
}

export async function runFleet(opts: FleetOptions): Promise<FleetResult> {
  const base = new URL(opts.baseUrl);
  const pollMs = opts.pollIntervalMs ?? 1_000;
  const stateTimeoutMs = opts.stateTimeoutMs ?? 60_000;
  const recorder = new Recorder();
  let requests = 0;

  /** One request on a new connection (agent false: no keep-alive, no TLS session offered again). */
  const send = (method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Answer> =>
    new Promise(resolve => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      const req = https.request(
        {
          host: base.hostname,
          port: base.port,
          path,
          method,
          agent: false,
          rejectUnauthorized: false,
          headers: {
            Connection: "close",
            Accept: "application/json",
            ...headers,
            ...(text !== undefined ? { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(text)) } : {}),
          },
        },
        res => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", err => resolve({ status: 0, headers: {}, text: err.message }));
        },
      );
      req.on("error", err => resolve({ status: 0, headers: {}, text: err.message }));
      req.setTimeout(30_000, () => req.destroy(new Error(`${method} ${path}: no answer within 30 s`)));
      req.end(text);
    });

  const login = await send("POST", "/redfish/v1/SessionService/Sessions", {}, { UserName: opts.username, Password: opts.password });
  const token = login.headers["x-auth-token"];
  if (login.status !== 201 || typeof token !== "string") throw new Error(`fleet login: ${login.status} ${login.text.slice(0, 200)}`);
  const auth = { "X-Auth-Token": token };

  const call = async (name: string, method: string, path: string, expected: readonly number[], body?: unknown): Promise<Answer> => {
    const start = process.hrtime.bigint();
    const answer = await send(method, path, auth, body);
    requests++;
    recorder.record(name, elapsedMs(start), answer.status, expected, `${method} ${path} ${answer.text}`);
    return answer;
  };
  const systemPath = (id: string) => `/redfish/v1/Systems/${encodeURIComponent(id)}`;

  const syncNode = async (id: string): Promise<void> => {
    await call("sync: GET ServiceRoot", "GET", "/redfish/v1/", [200]);
    await call("sync: GET System", "GET", systemPath(id), [200]);
    await call("sync: GET SecureBoot", "GET", `${systemPath(id)}/SecureBoot`, [200]);
    await call("sync: GET Manager", "GET", `/redfish/v1/Managers/${encodeURIComponent(id)}`, [200]);
  };

  /** Polls until `done` holds for the body of `path`; a timeout is one error of `name`. */
  const waitUntil = async (name: string, path: string, done: (body: Record<string, unknown>) => boolean): Promise<boolean> => {
    const deadline = Date.now() + stateTimeoutMs;
    for (;;) {
      const answer = await call("deploy: GET (poll)", "GET", path, [200]);
      if (answer.status === 200 && done(JSON.parse(answer.text) as Record<string, unknown>)) return true;
      if (Date.now() > deadline) {
        recorder.record(name, stateTimeoutMs, 0, [], `timed out after ${stateTimeoutMs} ms on ${path}`);
        return false;
      }
      await sleep(pollMs);
    }
  };

  const deploy = async (worker: number, id: string): Promise<boolean> => {
    const system = systemPath(id);
    const cd = `${system}/VirtualMedia/Cd`;
    const reset = (type: string) => call(`deploy: POST Reset ${type}`, "POST", `${system}/Actions/ComputerSystem.Reset`, [202, 204], { ResetType: type });
    await reset("ForceOff");
    if (!(await waitUntil("deploy: wait for Off", system, b => b.PowerState === "Off"))) return false;
    await call("deploy: POST EjectMedia", "POST", `${cd}/Actions/VirtualMedia.EjectMedia`, [200, 204], {});
    const insert = await call("deploy: POST InsertMedia", "POST", `${cd}/Actions/VirtualMedia.InsertMedia`, [202, 204], {
      Image: opts.imageUrl(worker),
      Inserted: true,
      WriteProtected: true,
    });
    if (insert.status !== 202 && insert.status !== 204) return false;
    if (!(await waitUntil("deploy: wait for Inserted", cd, b => b.Inserted === true))) return false;
    await call("deploy: PATCH Boot", "PATCH", system, [200, 204], { Boot: { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" } });
    await reset("On");
    return waitUntil("deploy: wait for On", system, b => b.PowerState === "On");
  };

  const started = process.hrtime.bigint();
  const periodMs = opts.syncPeriodSeconds * 1000;
  const nodes = opts.systemIds.length;
  // Power sync: node i is due at i * period / nodes (open loop: a slow answer does not delay the next node).
  const syncs: Promise<void>[] = [];
  const syncLoop = (async () => {
    for (let i = 0; i < nodes; i++) {
      const due = (i * periodMs) / nodes;
      const wait = due - elapsedMs(started);
      if (wait > 0) await sleep(wait);
      syncs.push(syncNode(opts.systemIds[i]));
    }
    await Promise.all(syncs);
  })();
  let syncing = true;
  void syncLoop.finally(() => (syncing = false));

  let deploymentsCompleted = 0;
  const workers = Array.from({ length: opts.deployments }, async (_, worker) => {
    const id = opts.systemIds[worker];
    // Every worker deploys at least once, and starts another while the power sync is still running.
    do {
      if (await deploy(worker, id)) deploymentsCompleted++;
    } while (syncing);
  });
  await Promise.all([syncLoop, ...workers]);
  const seconds = elapsedMs(started) / 1000;
  await send("DELETE", new URL(String(login.headers.location), base).pathname, auth);

  const calls = recorder.stats();
  const total = (pick: (s: CallStats) => number) => Object.values(calls).reduce((sum, s) => sum + pick(s), 0);
  return {
    nodes,
    deploymentWorkers: opts.deployments,
    deploymentsCompleted,
    syncPeriodSeconds: opts.syncPeriodSeconds,
    durationSeconds: Math.round(seconds * 10) / 10,
    requestsPerSecond: Math.round(requests / seconds),
    calls,
    errors: total(s => s.errors),
    serverErrors: total(s => s.serverErrors),
    errorSamples: recorder.errorSamples,
  };
}

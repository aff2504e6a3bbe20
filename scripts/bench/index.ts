// npm run bench [-- PHASE...] [--cpu-prof DIR]: the performance figures of QUALITY.md, measured against the
// sandbox cluster with the BUILT module (admission server and watcher as real processes, Redfish over HTTPS),
// baselines in the same run. Phases (all of them when none is named):
//   get        GET /redfish/v1/Systems/{id} (Basic auth, watch cache) vs a bare Hono server, 50 keep-alive connections
//   tls        the same GET with a new TLS connection per request (sushy's pattern), with and without resumption
//   freshness  API write -> change visible through Redfish
//   power      power action reply time (POST ComputerSystem.Reset) vs a plain API write, both timed on a worker thread
//   admission  Node mutate and DataVolume validate straight to the admission server (HTTPS, 50 concurrent),
//              at a fixed rate vs the bare POST, O(1) check with 2,000 node mappings, and the API write through
//              the webhook vs one without
//   fleet      an Ironic fleet: 1,000 nodes power-synced as Ironic does, 20 deployments meanwhile
//   scale      10,000 VMs in 100 namespaces: Systems collection latency, watcher RSS, cache memory per VM
// --cpu-prof DIR: the watcher's CPU profile over the phases run, written into DIR (scripts/bench/cpu-profiler.cjs;
// `npx tsx scripts/bench/profile-summary.ts FILE` prints where the time went).
// Output: a table and the JSON document on stdout, the JSON in bench-results.json; progress on stderr.
// Loopback traffic only. BENCH_QUICK=1 shortens every phase (a smoke run, not figures to publish).
import bcrypt from "bcryptjs";
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { parseArgs } from "node:util";
import { ensureBuild } from "../ensure-build";
import { startSandboxCluster, ensureNamespace, processEnv, type SandboxCluster } from "../../sandbox/cluster";
import { demoVirtualMachine } from "../../sandbox/demo";
import { waitForHttps } from "../../sandbox/module-process";
import type { KubeObject, ObjectStore } from "../../sandbox/apiserver/types";
import { basicAuth, requester, type Requester } from "./client";
import { workerRequester } from "./worker-requester";
import { cpuPerResponse } from "./cpu";
import { profilingEnv, startProfile, writeProfile } from "./cpu-profile";
import { measureHandlerScaling } from "./handlers";
import { runFleet } from "./fleet";
import { runLoad, runNewConnections, runPaced, type LoadResult, type NewConnectionResult } from "./load";
import { heapReport, heapReportEnv, mib, rssBytes, sampledRss, type HeapBreakdown } from "./memory";
import { renderTable } from "./report";
import { elapsedMs, median, summarize, type LatencySummary } from "./stats";

const QUICK = process.env.BENCH_QUICK === "1";
const PLAN = {
  connections: 50,
  warmupSeconds: QUICK ? 1 : 2,
  loadSeconds: QUICK ? 2 : 5,
  // GET: short paired rounds (bare Hono, then Redfish); the ratio is the median of the rounds' ratios, so drift
  // of a shared machine between rounds hits both sides of each ratio alike.
  getRoundSeconds: QUICK ? 2 : 3,
  rounds: QUICK ? 1 : 5,
  // A new TLS connection per request: fewer clients in flight (each one costs a handshake on both sides).
  newConnectionConcurrency: 8,
  newConnectionRounds: QUICK ? 1 : 3,
  freshnessChanges: QUICK ? 20 : 100,
  freshnessChangesAtScale: QUICK ? 10 : 50,
  powerVms: QUICK ? 10 : 50,
  powerWarmupVms: QUICK ? 2 : 10,
  scaleNamespaces: 100,
  scaleVmsPerNamespace: QUICK ? 10 : 100,
  collectionSamples: QUICK ? 5 : 20,
  mappingsForScaleCheck: 2_000,
  rssSettleSeconds: QUICK ? 3 : 10,
  // Ironic's cadence: each node's power state synced every 120 s with 4-5 GETs, ~33 GET/s for 1,000 nodes. The
  // smoke run keeps that rate with a quarter of the fleet in a quarter of the time.
  fleetNodes: QUICK ? 250 : 1_000,
  fleetDeployments: 20,
  fleetSyncPeriodSeconds: QUICK ? 30 : 120,
};

const PHASES = ["get", "tls", "freshness", "power", "admission", "fleet", "scale"] as const;
type Phase = (typeof PHASES)[number];

const VM_KEY = "virtualmachines.kubevirt.io";
const VMI_KEY = "virtualmachineinstances.kubevirt.io";
const BENCH_NAMESPACE = "bench-vms";
const FLEET_NAMESPACE = "fleet-vms";
const PASSWORD = "bench-password-1";
const RESULTS_FILE = path.resolve(process.cwd(), "bench-results.json");
const ROOT = path.resolve(__dirname, "..", "..");

const progress = (line: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const pad = (n: number, width: number) => String(n).padStart(width, "0");

// ---- the cluster under test ----

const scaleNamespaces = range(PLAN.scaleNamespaces).map(i => `scale-${pad(i, 3)}`);
const powerVmNames = range(PLAN.powerVms).map(i => `power-${i}`);
const benchNodes = range(PLAN.connections).map(i => `bench-node-${i}`);

function moduleConfig(extraMappings = 0): Record<string, unknown> {
  return {
    role: "both",
    chassis: [
      { name: "bench", namespace: BENCH_NAMESPACE },
      { name: "fleet", namespace: FLEET_NAMESPACE },
      ...scaleNamespaces.map(ns => ({ name: ns, namespace: ns })),
    ],
    infra: { namespace: BENCH_NAMESPACE },
    redfish: {
      // The fleet's images come from the sandbox's image server on loopback (the default policy refuses it), and
      // 20 deployment workers insert more often than the default per-user rate (one a second) allows.
      imageUrlPolicy: { allowCidrs: ["127.0.0.1/32"] },
      insertMediaRate: { burst: 10_000, refillSeconds: 1 },
    },
    datavolume: { storageSize: "1Gi" },
    nodeMapping: [
      ...benchNodes.map((nodeName, i) => ({ nodeName, vmName: `node-vm-${i}` })),
      ...range(extraMappings).map(i => ({ nodeName: `extra-node-${i}`, vmName: `extra-vm-${i}` })),
    ],
    nodeIdentity: { enabled: true },
    datavolumePolicy: {
      enabled: true,
      mode: "enforce",
      namespaces: [BENCH_NAMESPACE],
      csiNamePrefix: "pvc-",
      csiServiceAccounts: ["system:serviceaccount:t1-csi:kubevirt-csi-controller"],
      tenants: [{ name: "t1", labels: "csi-driver/cluster=t1", serviceAccounts: ["system:serviceaccount:t1-csi:kubevirt-csi-controller"] }],
    },
  };
}

function users(passwordHash: string): Record<string, unknown>[] {
  return [
    { username: "bench", passwordHash, chassis: ["bench"] },
    { username: "fleet", passwordHash, chassis: scaleNamespaces },
    { username: "ironic", passwordHash, chassis: ["fleet"] },
  ];
}

let macCounter = 0;
function vm(namespace: string, name: string, status?: unknown): KubeObject {
  const n = ++macCounter;
  const mac = `02:00:${[24, 16, 8, 0].map(shift => ((n >> shift) & 0xff).toString(16).padStart(2, "0")).join(":")}`;
  const uuid = `5e1d0000-0000-4000-8000-${pad(n, 12)}`;
  const obj = demoVirtualMachine(namespace, name, uuid, mac);
  return status === undefined ? obj : { ...obj, status: structuredClone(status) };
}

// ---- measurements ----

type LoadWithCpu = LoadResult & { cpuMicrosPerResponse?: number };

interface GetComparison {
  bodyBytes: number;
  rounds: { baseline: LoadWithCpu; redfish: LoadWithCpu }[];
  baseline: { requestsPerSecond: number; p50: number; p99: number };
  redfish: { requestsPerSecond: number; p50: number; p99: number };
  /** Median over the rounds of (Redfish req/s / bare Hono req/s) in the same round. */
  throughputRatio: number;
  /** Median over the rounds of each server process's CPU time (user + system) per response, in µs. */
  cpuMicrosPerResponse: { baseline?: number; redfish?: number };
  /** Latency at a fixed rate, a quarter of what the slower server sustained: both servers, same 50 connections. */
  atQuarterCapacity: { ratePerSecond: number; baseline: LoadResult; redfish: LoadResult };
}

/**
 * With 50 connections each sending as fast as it can (closed loop), latency = 50 / throughput (Little's law):
 * it measures saturation. A fixed rate well below the capacity of both servers (a quarter of the slower one's)
 * shows the latency a request sees under load, with the same offered load on both.
 */
const QUARTER = 0.25;

function medianOfRounds(results: LoadResult[]): { requestsPerSecond: number; p50: number; p99: number } {
  return {
    requestsPerSecond: median(results.map(r => r.requestsPerSecond)),
    p50: median(results.map(r => r.latencyMs.p50)),
    p99: median(results.map(r => r.latencyMs.p99)),
  };
}

function startBaselineServer(cluster: SandboxCluster, getBody: string, postBody: string, env: Record<string, string> = {}): Promise<{ port: number; child: ChildProcess }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-baseline-"));
  fs.writeFileSync(path.join(dir, "get.json"), getBody);
  fs.writeFileSync(path.join(dir, "post.json"), postBody);
  const child = spawn(
    process.execPath,
    ["--require", path.join(ROOT, "sandbox", "exit-with-parent.cjs"), "--import", "tsx", path.join(__dirname, "baseline-server.ts")],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/tmp",
        NODE_ENV: "production",
        BENCH_TLS_KEY: path.join(cluster.stateDir, "tls.key"),
        BENCH_TLS_CERT: path.join(cluster.stateDir, "tls.crt"),
        BENCH_GET_BODY: path.join(dir, "get.json"),
        BENCH_POST_BODY: path.join(dir, "post.json"),
        ...env,
      },
    },
  );
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.once("line", line => resolve({ port: (JSON.parse(line) as { port: number }).port, child }));
    child.once("exit", code => reject(new Error(`baseline server exited with ${code}`)));
  });
}

async function compareGet(cluster: SandboxCluster, baseline: { port: number; pid: number }, systemPath: string, auth: string): Promise<Omit<GetComparison, "bodyBytes">> {
  const baselinePort = baseline.port;
  const targets = {
    baseline: { url: `https://127.0.0.1:${baselinePort}${systemPath}`, headers: {} as Record<string, string> },
    redfish: { url: `https://127.0.0.1:${cluster.redfishPort}${systemPath}`, headers: { Authorization: auth } },
  };
  for (const [name, t] of Object.entries(targets)) {
    progress(`GET warm-up: ${name}`);
    await runLoad({ url: t.url, headers: t.headers, connections: PLAN.connections, durationSeconds: PLAN.warmupSeconds });
  }
  const rounds: GetComparison["rounds"] = [];
  for (let round = 0; round < PLAN.rounds; round++) {
    // Alternate the targets, so drift on the machine (other load, thermal) hits both alike.
    const bare = await cpuPerResponse(baseline.pid, () => runLoad({ url: targets.baseline.url, connections: PLAN.connections, durationSeconds: PLAN.getRoundSeconds }));
    const measured = await cpuPerResponse(cluster.watcher!.child.pid!, () =>
      runLoad({ url: targets.redfish.url, headers: targets.redfish.headers, connections: PLAN.connections, durationSeconds: PLAN.getRoundSeconds }),
    );
    progress(
      `GET round ${round + 1}: baseline ${bare.requestsPerSecond} req/s (${bare.cpuMicrosPerResponse ?? "?"} µs CPU each), ` +
        `redfish ${measured.requestsPerSecond} req/s (${measured.cpuMicrosPerResponse ?? "?"} µs CPU each; non-2xx ${measured.non2xx})`,
    );
    rounds.push({ baseline: bare, redfish: measured });
  }
  const cpuMicros = (runs: { cpuMicrosPerResponse?: number }[]) => {
    const known = runs.flatMap(r => (r.cpuMicrosPerResponse === undefined ? [] : [r.cpuMicrosPerResponse]));
    return known.length > 0 ? median(known) : undefined;
  };
  const cpuMicrosPerResponse = { baseline: cpuMicros(rounds.map(r => r.baseline)), redfish: cpuMicros(rounds.map(r => r.redfish)) };
  const baselineSummary = medianOfRounds(rounds.map(r => r.baseline));
  const measured = medianOfRounds(rounds.map(r => r.redfish));
  const ratePerSecond = Math.max(50, Math.round(Math.min(baselineSummary.requestsPerSecond, measured.requestsPerSecond) * QUARTER));
  const atRate = (t: { url: string; headers: Record<string, string> }) =>
    runPaced({ url: t.url, headers: t.headers, connections: PLAN.connections, durationSeconds: PLAN.loadSeconds, ratePerSecond });
  const atQuarterCapacity = { ratePerSecond, baseline: await atRate(targets.baseline), redfish: await atRate(targets.redfish) };
  progress(`GET at ${ratePerSecond} req/s: baseline p99 ${atQuarterCapacity.baseline.latencyMs.p99} ms, redfish p99 ${atQuarterCapacity.redfish.latencyMs.p99} ms`);
  return {
    rounds,
    baseline: baselineSummary,
    redfish: measured,
    cpuMicrosPerResponse,
    throughputRatio: round3(median(rounds.map(r => r.redfish.requestsPerSecond / r.baseline.requestsPerSecond))),
    atQuarterCapacity,
  };
}

interface NewConnectionComparison {
  concurrency: number;
  rounds: { baseline: NewConnectionResult; redfish: NewConnectionResult; baselineResumed: NewConnectionResult; redfishResumed: NewConnectionResult }[];
  /** Full handshake per request (sushy: urllib3 offers no session): medians of the rounds. */
  full: { baseline: { requestsPerSecond: number; p50: number; p99: number }; redfish: { requestsPerSecond: number; p50: number; p99: number }; throughputRatio: number };
  /** The client offers the previous connection's session ticket. */
  resumed: { baseline: { requestsPerSecond: number; p50: number; p99: number }; redfish: { requestsPerSecond: number; p50: number; p99: number }; throughputRatio: number; redfishResumedShare: number };
}

/** GET with a new TLS connection per request, full handshakes and resumed ones, paired rounds like compareGet. */
async function compareNewConnections(cluster: SandboxCluster, baselinePort: number, systemPath: string, auth: string): Promise<NewConnectionComparison> {
  const baselineUrl = `https://127.0.0.1:${baselinePort}${systemPath}`;
  const redfishUrl = `https://127.0.0.1:${cluster.redfishPort}${systemPath}`;
  const load = (url: string, resume: boolean, headers: Record<string, string> = {}) =>
    runNewConnections({ url, headers, resume, concurrency: PLAN.newConnectionConcurrency, durationSeconds: PLAN.getRoundSeconds });
  await load(redfishUrl, false, { Authorization: auth });
  const rounds: NewConnectionComparison["rounds"] = [];
  for (let round = 0; round < PLAN.newConnectionRounds; round++) {
    const baseline = await load(baselineUrl, false);
    const redfish = await load(redfishUrl, false, { Authorization: auth });
    const baselineResumed = await load(baselineUrl, true);
    const redfishResumed = await load(redfishUrl, true, { Authorization: auth });
    progress(
      `new connection per request, round ${round + 1}: baseline ${baseline.requestsPerSecond} req/s, redfish ${redfish.requestsPerSecond} req/s (non-2xx ${redfish.non2xx}, errors ${redfish.errors}); ` +
        `resumed: baseline ${baselineResumed.requestsPerSecond}, redfish ${redfishResumed.requestsPerSecond} req/s (${redfishResumed.resumed} of ${redfishResumed.responses} resumed)`,
    );
    rounds.push({ baseline, redfish, baselineResumed, redfishResumed });
  }
  const ratio = (pick: (r: NewConnectionComparison["rounds"][number]) => [LoadResult, LoadResult]) =>
    round3(median(rounds.map(r => pick(r)[1].requestsPerSecond / pick(r)[0].requestsPerSecond)));
  const resumedRuns = rounds.map(r => r.redfishResumed);
  return {
    concurrency: PLAN.newConnectionConcurrency,
    rounds,
    full: { baseline: medianOfRounds(rounds.map(r => r.baseline)), redfish: medianOfRounds(rounds.map(r => r.redfish)), throughputRatio: ratio(r => [r.baseline, r.redfish]) },
    resumed: {
      baseline: medianOfRounds(rounds.map(r => r.baselineResumed)),
      redfish: medianOfRounds(resumedRuns),
      throughputRatio: ratio(r => [r.baselineResumed, r.redfishResumed]),
      redfishResumedShare: round3(resumedRuns.reduce((n, r) => n + r.resumed, 0) / Math.max(1, resumedRuns.reduce((n, r) => n + r.responses, 0))),
    },
  };
}

/** The Ironic fleet: 1,000 stopped VMs in their own chassis, power-synced, 20 of them deployed meanwhile. */
async function measureFleet(cluster: SandboxCluster, reference: KubeObject) {
  ensureNamespace(cluster.api, FLEET_NAMESPACE);
  const names = range(PLAN.fleetNodes).map(i => `node-${pad(i, 4)}`);
  for (const name of names) cluster.api.store.create(VM_KEY, vm(FLEET_NAMESPACE, name, reference.status));
  const ids = names.map(name => `${FLEET_NAMESPACE}.${name}`);
  const redfish = requester(cluster.redfishUrl.replace("localhost", "127.0.0.1"), { ca: cluster.caPem, servername: "localhost" });
  try {
    // All 1,000 served before the clock starts.
    const auth = basicAuth("ironic", PASSWORD);
    for (let count = 0, started = Date.now(); count < names.length; ) {
      const res = await redfish("GET", "/redfish/v1/Systems", { headers: { Authorization: auth } });
      count = res.status === 200 ? ((JSON.parse(res.text) as { "Members@odata.count"?: number })["Members@odata.count"] ?? 0) : 0;
      if (Date.now() - started > 60_000) throw new Error(`only ${count} of ${names.length} fleet systems visible after 60 s`);
      if (count < names.length) await sleep(250);
    }
  } finally {
    redfish.close();
  }
  progress(`fleet: ${names.length} nodes, sync period ${PLAN.fleetSyncPeriodSeconds} s, ${PLAN.fleetDeployments} deployments`);
  const result = await runFleet({
    baseUrl: `https://127.0.0.1:${cluster.redfishPort}`,
    username: "ironic",
    password: PASSWORD,
    systemIds: ids,
    deployments: PLAN.fleetDeployments,
    syncPeriodSeconds: PLAN.fleetSyncPeriodSeconds,
    imageUrl: worker => `${cluster.isoServer.url}/images/deploy-${worker}.iso`,
  });
  progress(`fleet: ${result.requestsPerSecond} req/s for ${result.durationSeconds} s, ${result.deploymentsCompleted} deployments, ${result.errors} errors, ${result.serverErrors} 5xx`);
  for (const sample of result.errorSamples) progress(`fleet error: ${sample}`);
  return result;
}

/** Time from an API write (merge patch of the VM's firmware serial) until GET Systems/{id} shows it. */
async function measureFreshness(api: Requester, redfish: Requester, namespace: string, name: string, auth: string, changes: number): Promise<{ visibleMs: LatencySummary; writeReplyMs: LatencySummary }> {
  const visible: number[] = [];
  const writes: number[] = [];
  const systemPath = `/redfish/v1/Systems/${namespace}.${name}`;
  for (let i = 0; i < changes; i++) {
    const serial = `fresh-${Date.now()}-${i}`;
    const start = process.hrtime.bigint();
    const write = await api("PATCH", `/apis/kubevirt.io/v1/namespaces/${namespace}/virtualmachines/${name}`, {
      headers: { "Content-Type": "application/merge-patch+json" },
      body: JSON.stringify({ spec: { template: { spec: { domain: { firmware: { serial } } } } } }),
    });
    if (write.status !== 200) throw new Error(`freshness write failed: ${write.status} ${write.text.slice(0, 200)}`);
    writes.push(write.ms);
    for (;;) {
      const res = await redfish("GET", systemPath, { headers: { Authorization: auth } });
      if (res.status === 200 && (JSON.parse(res.text) as { SerialNumber?: string }).SerialNumber === serial) break;
      if (elapsedMs(start) > 10_000) throw new Error(`change ${i} not visible through Redfish after 10 s`);
    }
    visible.push(elapsedMs(start));
  }
  return { visibleMs: summarize(visible), writeReplyMs: summarize(writes) };
}

async function waitForPowerState(redfish: Requester, auth: string, ids: string[], state: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const id of ids) {
    for (;;) {
      const res = await redfish("GET", `/redfish/v1/Systems/${id}`, { headers: { Authorization: auth } });
      if (res.status === 200 && (JSON.parse(res.text) as { PowerState?: string }).PowerState === state) break;
      if (Date.now() > deadline) throw new Error(`${id} not ${state} within ${timeoutMs} ms`);
      await sleep(50);
    }
  }
}

/** When an object of `keys` last changed in the store, to wait until none has for a while (the controllers are done). */
function changeClock(store: ObjectStore, keys: readonly string[]) {
  let last = Date.now();
  const stops = keys.map(key => store.watchStored(key, undefined, () => (last = Date.now())));
  return {
    /** Resolves once nothing has changed for `quietMs`, or at `deadline` (epoch ms). */
    async quiet(quietMs: number, deadline: number): Promise<void> {
      while (Date.now() - last < quietMs && Date.now() < deadline) await sleep(Math.max(10, quietMs - (Date.now() - last)));
    },
    stop: () => stops.forEach(stop => stop()),
  };
}

/**
 * Reset reply times and the baseline API write, timed by `timed` clients on a worker thread (the bench's event
 * loop runs the sandbox, which is busy with what each Reset sets off: ./worker-requester.ts); `redfish` polls.
 */
async function measurePower(timed: { api: Requester; redfish: Requester }, redfish: Requester, auth: string, store: ObjectStore) {
  const ids = powerVmNames.map(name => `${BENCH_NAMESPACE}.${name}`);
  // Connections opened (TLS handshake) before the first timed request.
  await timed.redfish("GET", `/redfish/v1/Systems/${ids[0]}`, { headers: { Authorization: auth } });
  await timed.api("GET", `/apis/kubevirt.io/v1/namespaces/${BENCH_NAMESPACE}/virtualmachines/${powerVmNames[0]}`);
  const reset = async (id: string, resetType: string) => {
    const res = await timed.redfish("POST", `/redfish/v1/Systems/${id}/Actions/ComputerSystem.Reset`, {
      headers: { Authorization: auth, "Content-Type": "application/json" },
      body: JSON.stringify({ ResetType: resetType }),
    });
    if (res.status !== 204 && res.status !== 202) throw new Error(`Reset ${resetType} on ${id}: ${res.status} ${res.text.slice(0, 300)}`);
    return res.ms;
  };
  // One Reset at a time, each on a settled cluster (the power state reached and the controllers quiet): the
  // sandbox runs the API server and the simulated KubeVirt controllers in one event loop, so a Reset sent while the
  // previous one's VMI is still being started would wait behind controller work that a real cluster does in other
  // processes (and the baseline patch sets off none).
  const changes = changeClock(store, [VM_KEY, VMI_KEY]);
  const cycle = async (id: string, resetType: "On" | "ForceOff", timings?: number[]) => {
    const ms = await reset(id, resetType);
    timings?.push(ms);
    await waitForPowerState(redfish, auth, [id], resetType === "On" ? "On" : "Off");
    await changes.quiet(250, Date.now() + 10_000);
  };
  const on: number[] = [];
  const forceOff: number[] = [];
  // Baseline: the same kind of API write the action makes (a merge patch of the VM), straight to the API server,
  // each after the same quiet time as a Reset: a process woken after an idle spell answers slower than one kept
  // busy (on this 2-core VM a loopback round trip took 0.33 ms back to back, 1.0 ms after 300 ms idle).
  const apiWrite: number[] = [];
  try {
    // Warm-up, not counted (as the GET phase has): the first Resets run code the JIT has not compiled yet.
    for (const id of ids.slice(0, PLAN.powerWarmupVms)) {
      await cycle(id, "On");
      await cycle(id, "ForceOff");
    }
    for (const id of ids) await cycle(id, "On", on);
    for (const id of ids) await cycle(id, "ForceOff", forceOff);
    for (const name of powerVmNames) {
      await changes.quiet(250, Date.now() + 10_000);
      const res = await timed.api("PATCH", `/apis/kubevirt.io/v1/namespaces/${BENCH_NAMESPACE}/virtualmachines/${name}`, {
        headers: { "Content-Type": "application/merge-patch+json" },
        body: JSON.stringify({ metadata: { annotations: { "bench.kubevirt-infra.io/touched": String(Date.now()) } } }),
      });
      if (res.status !== 200) throw new Error(`baseline VM patch: ${res.status}`);
      apiWrite.push(res.ms);
    }
  } finally {
    changes.stop();
  }
  return { on: summarize(on), forceOff: summarize(forceOff), all: summarize([...on, ...forceOff]), apiWriteBaseline: summarize(apiWrite) };
}

function admissionReview(kind: { group: string; version: string; kind: string }, resource: string, namespace: string | undefined, object: KubeObject, username: string): string {
  const gvr = { group: kind.group, version: kind.version, resource };
  return JSON.stringify({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "[<id>]",
      kind,
      resource: gvr,
      requestKind: kind,
      requestResource: gvr,
      name: object.metadata.name,
      ...(namespace ? { namespace } : {}),
      operation: "CREATE",
      userInfo: { username, groups: ["system:authenticated"] },
      object,
      oldObject: null,
      dryRun: false,
      options: { kind: "CreateOptions", apiVersion: "meta.k8s.io/v1" },
    },
  });
}

function webhookUrls(cluster: SandboxCluster): { mutate: string; validate: string } {
  const url = (resource: string) => {
    const [config] = cluster.api.store.list(resource);
    const hooks = (config?.webhooks as { clientConfig: { url?: string } }[] | undefined) ?? [];
    const found = hooks.find(h => h.clientConfig.url)?.clientConfig.url;
    if (!found) throw new Error(`no webhook URL in ${resource}`);
    return found;
  };
  return {
    mutate: url("mutatingwebhookconfigurations.admissionregistration.k8s.io"),
    validate: url("validatingwebhookconfigurations.admissionregistration.k8s.io"),
  };
}

const nodeObject = (name: string): KubeObject => ({
  apiVersion: "v1",
  kind: "Node",
  metadata: { name, labels: { "kubernetes.io/hostname": name } },
  spec: {},
  status: { nodeInfo: { systemUUID: "5e1d0000-0000-4000-8000-000000000001" } },
});

const dataVolumeObject = (): KubeObject => ({
  apiVersion: "cdi.kubevirt.io/v1beta1",
  kind: "DataVolume",
  metadata: { name: "pvc-0b1c3a5e-8d2f-4e6a-9c7b-1a2b3c4d5e6f", namespace: BENCH_NAMESPACE, labels: { "csi-driver/cluster": "t1" } },
  spec: { source: { blank: {} }, storage: { resources: { requests: { storage: "1Gi" } }, storageClassName: "standard" } },
});

/** "config applied" lines of the admission process so far (counted as they arrive: the kept log is bounded). */
let admissionConfigsApplied = 0;

/** Applies a module config and waits until the admission process has it (it arrives through the Pepr Store). */
async function applyConfigAndWaitForAdmission(cluster: SandboxCluster, config: Record<string, unknown>, what: string): Promise<void> {
  const before = admissionConfigsApplied;
  await cluster.applyConfig(config);
  const deadline = Date.now() + 30_000;
  while (admissionConfigsApplied === before) {
    if (Date.now() > deadline) throw new Error(`the admission process did not apply the config with ${what} within 30 s`);
    await sleep(100);
  }
}

async function measureAdmission(cluster: SandboxCluster, baselinePort: number) {
  const urls = webhookUrls(cluster);
  const nodeReview = admissionReview({ group: "", version: "v1", kind: "Node" }, "nodes", undefined, nodeObject(benchNodes[0]), "system:node:bench");
  const dvReview = admissionReview(
    { group: "cdi.kubevirt.io", version: "v1beta1", kind: "DataVolume" },
    "datavolumes",
    BENCH_NAMESPACE,
    dataVolumeObject(),
    "system:serviceaccount:t1-csi:kubevirt-csi-controller",
  );
  const post = (url: string, body: string) =>
    runLoad({ url, method: "POST", body, idReplacement: true, headers: { "Content-Type": "application/json" }, connections: PLAN.connections, durationSeconds: PLAN.loadSeconds });

  // Sanity: the handlers answer what they should (a mutation with a patch; an allowed DataVolume).
  const probe = await fetchJson(urls.mutate, nodeReview.replace("[<id>]", "probe-1"));
  if (!probe.response?.allowed || !probe.response.patch) throw new Error(`Node mutate probe: unexpected answer ${JSON.stringify(probe).slice(0, 300)}`);
  const dvProbe = await fetchJson(urls.validate, dvReview.replace("[<id>]", "probe-2"));
  if (!dvProbe.response?.allowed) throw new Error(`DataVolume validate probe: unexpected answer ${JSON.stringify(dvProbe).slice(0, 300)}`);

  progress("admission: warm-up");
  await runLoad({ url: urls.mutate, method: "POST", body: nodeReview, idReplacement: true, headers: { "Content-Type": "application/json" }, connections: PLAN.connections, durationSeconds: PLAN.warmupSeconds });
  const baselinePost = await post(`https://127.0.0.1:${baselinePort}/admission`, nodeReview);
  progress(`admission: baseline POST ${baselinePost.requestsPerSecond} req/s p99 ${baselinePost.latencyMs.p99} ms`);
  const nodeMutate = await post(urls.mutate, nodeReview);
  progress(`admission: Node mutate ${nodeMutate.requestsPerSecond} req/s p99 ${nodeMutate.latencyMs.p99} ms`);
  const dvValidate = await post(urls.validate, dvReview);
  progress(`admission: DataVolume validate ${dvValidate.requestsPerSecond} req/s p99 ${dvValidate.latencyMs.p99} ms`);
  const ratePerSecond = Math.max(50, Math.round(Math.min(baselinePost.requestsPerSecond, nodeMutate.requestsPerSecond, dvValidate.requestsPerSecond) * QUARTER));
  const postAtRate = (url: string, body: string) =>
    runPaced({ url, method: "POST", body, headers: { "Content-Type": "application/json" }, connections: PLAN.connections, durationSeconds: PLAN.loadSeconds, ratePerSecond });
  const atQuarterCapacity = {
    ratePerSecond,
    baselinePost: await postAtRate(`https://127.0.0.1:${baselinePort}/admission`, nodeReview),
    nodeMutate: await postAtRate(urls.mutate, nodeReview),
    dvValidate: await postAtRate(urls.validate, dvReview),
  };
  progress(`admission at ${ratePerSecond} req/s: Node mutate p99 ${atQuarterCapacity.nodeMutate.latencyMs.p99} ms, DataVolume validate p99 ${atQuarterCapacity.dvValidate.latencyMs.p99} ms`);

  // O(1): the same Node mutate with 2,000 more node mappings in the configuration.
  await applyConfigAndWaitForAdmission(cluster, moduleConfig(PLAN.mappingsForScaleCheck), `${PLAN.mappingsForScaleCheck} more node mappings`);
  // At the same fixed rate as above: below saturation, so the latency is the service time, not queueing.
  const nodeMutateManyMappings = await postAtRate(urls.mutate, nodeReview);
  progress(`admission: Node mutate at ${ratePerSecond} req/s with ${PLAN.mappingsForScaleCheck} more mappings: p50 ${nodeMutateManyMappings.latencyMs.p50} ms`);
  await applyConfigAndWaitForAdmission(cluster, moduleConfig(), "the original node mappings");

  // End to end: PATCH through the sandbox API server, which calls the webhook over HTTPS (Nodes), vs the same
  // write on ConfigMaps, which no webhook matches. One object per connection: no write conflicts.
  const patchBody = JSON.stringify({ metadata: { annotations: { "bench.kubevirt-infra.io/seq": "[<id>]" } } });
  const e2e = (pathOf: (i: number) => string) =>
    runLoad({
      url: `${cluster.api.url}${pathOf(0)}`,
      method: "PATCH",
      body: patchBody,
      idReplacement: true,
      headers: { "Content-Type": "application/merge-patch+json" },
      connections: PLAN.connections,
      durationSeconds: PLAN.loadSeconds,
      perConnection: i => ({ path: pathOf(i) }),
    });
  const nodeWrite = await e2e(i => `/api/v1/nodes/${benchNodes[i]}`);
  progress(`admission: Node PATCH through the API server ${nodeWrite.requestsPerSecond} req/s p99 ${nodeWrite.latencyMs.p99} ms`);
  const configMapWrite = await e2e(i => `/api/v1/namespaces/${BENCH_NAMESPACE}/configmaps/bench-cm-${i}`);
  progress(`admission: ConfigMap PATCH (no webhook) ${configMapWrite.requestsPerSecond} req/s p99 ${configMapWrite.latencyMs.p99} ms`);
  const handlerScaling = measureHandlerScaling();
  progress(`admission: handlers alone, 10 -> 10,000 entries: Node mutate x${handlerScaling.nodeMutateRatio}, DataVolume validate x${handlerScaling.dvValidateRatio}`);
  return {
    handlerScaling,
    baselinePost,
    nodeMutate,
    dvValidate,
    atQuarterCapacity,
    nodeMutateManyMappings: {
      extraMappings: PLAN.mappingsForScaleCheck,
      result: nodeMutateManyMappings,
      p50Ratio: round3(nodeMutateManyMappings.latencyMs.p50 / atQuarterCapacity.nodeMutate.latencyMs.p50),
    },
    endToEnd: { nodeWrite, configMapWrite },
  };
}

/** POSTs one AdmissionReview (the admission server's certificate is the sandbox CA's; not the point here). */
function fetchJson(url: string, body: string): Promise<{ response?: { allowed?: boolean; patch?: string } }> {
  return new Promise((resolve, reject) => {
    const req = https.request(new URL(url), { method: "POST", rejectUnauthorized: false, headers: { "Content-Type": "application/json" } }, res => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => {
        try {
          resolve(JSON.parse(text) as { response?: { allowed?: boolean; patch?: string } });
        } catch {
          reject(new Error(`${url}: ${res.statusCode} ${text.slice(0, 200)}`));
        }
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

const round3 = (v: number) => Math.round(v * 1000) / 1000;

// ---- memory ----

async function measureScale(
  cluster: SandboxCluster,
  redfish: Requester,
  api: Requester,
  fleetAuth: string,
  emptyWatcher: { rss: number; heap: HeapBreakdown },
  heapReportFile: string,
  reference: KubeObject,
) {
  const pid = cluster.watcher!.child.pid!;
  const total = PLAN.scaleNamespaces * PLAN.scaleVmsPerNamespace;

  const vmChanges = changeClock(cluster.api.store, [VM_KEY]);
  const rssBefore = await sampledRss(pid);
  progress(`scale: watcher RSS before ${mib(rssBefore)} MiB; creating ${total} VMs in ${PLAN.scaleNamespaces} namespaces`);

  const started = Date.now();
  for (const ns of scaleNamespaces) ensureNamespace(cluster.api, ns);
  for (const [n, ns] of scaleNamespaces.entries()) {
    for (let i = 0; i < PLAN.scaleVmsPerNamespace; i++) {
      // Created with the status the simulator gives a stopped VM, so it has (almost) nothing left to write.
      cluster.api.store.create(VM_KEY, vm(ns, `vm-${pad(n * PLAN.scaleVmsPerNamespace + i, 5)}`, reference.status));
    }
    await new Promise(resolve => setImmediate(resolve)); // let the API server stream the events
  }
  const createdSeconds = (Date.now() - started) / 1000;

  let count = 0;
  while (count < total) {
    const res = await redfish("GET", "/redfish/v1/Systems", { headers: { Authorization: fleetAuth } });
    count = res.status === 200 ? ((JSON.parse(res.text) as { "Members@odata.count"?: number })["Members@odata.count"] ?? 0) : 0;
    if (Date.now() - started > 180_000) throw new Error(`only ${count} of ${total} systems visible after 180 s`);
    if (count < total) await sleep(250);
  }
  const visibleSeconds = (Date.now() - started) / 1000;
  progress(`scale: ${total} systems visible through Redfish after ${visibleSeconds.toFixed(1)} s; waiting for the cluster to settle`);
  await vmChanges.quiet(2_000, started + 240_000);
  vmChanges.stop();
  await sleep(1_000);
  const rssAfter = await sampledRss(pid, PLAN.rssSettleSeconds);
  const peak = rssBytes(pid).peak;

  const collection: number[] = [];
  for (let i = 0; i < PLAN.collectionSamples; i++) {
    const res = await redfish("GET", "/redfish/v1/Systems", { headers: { Authorization: fleetAuth } });
    if (res.status !== 200) throw new Error(`Systems collection: ${res.status}`);
    collection.push(res.ms);
  }
  const collectionBytes = Buffer.byteLength((await redfish("GET", "/redfish/v1/Systems", { headers: { Authorization: fleetAuth } })).text);
  const single: number[] = [];
  const oneId = `${scaleNamespaces[50 % scaleNamespaces.length]}.vm-${pad(Math.floor(total / 2), 5)}`;
  for (let i = 0; i < 200; i++) single.push((await redfish("GET", `/redfish/v1/Systems/${oneId}`, { headers: { Authorization: fleetAuth } })).ms);
  // The response cache's memory: every system GET once (System, SecureBoot, Manager: what a power sync reads),
  // RSS settled before and after.
  const responseCacheBefore = await sampledRss(pid, PLAN.rssSettleSeconds);
  const ids = scaleNamespaces.flatMap((ns, n) => range(PLAN.scaleVmsPerNamespace).map(i => `${ns}.vm-${pad(n * PLAN.scaleVmsPerNamespace + i, 5)}`));
  for (let i = 0; i < ids.length; i += 50) {
    await Promise.all(
      ids.slice(i, i + 50).flatMap(id =>
        [`/redfish/v1/Systems/${id}`, `/redfish/v1/Systems/${id}/SecureBoot`, `/redfish/v1/Managers/${id}`].map(async p => {
          const res = await redfish("GET", p, { headers: { Authorization: fleetAuth } });
          if (res.status !== 200) throw new Error(`GET ${p}: ${res.status}`);
        }),
      ),
    );
  }
  const responseCacheAfter = await sampledRss(pid, PLAN.rssSettleSeconds);
  progress(`scale: response cache filled for ${ids.length} systems: RSS ${mib(responseCacheBefore)} -> ${mib(responseCacheAfter)} MiB`);
  progress("scale: freshness with 10,000 VMs in the cache");
  const freshness = await measureFreshness(api, redfish, scaleNamespaces[0], `vm-${pad(0, 5)}`, fleetAuth, PLAN.freshnessChangesAtScale);

  // A watcher started with the VMs already there: its memory holds the cache and nothing left over from the
  // load phases, so (RSS - RSS of a fresh watcher without them) / VMs is the memory per cached VM.
  progress("scale: restarting the watcher with the VMs in place");
  await cluster.stopModule(["watcher"]);
  const restarted = Date.now();
  await cluster.startModule(["watcher"]);
  await waitForHttps(cluster.redfishPort, "/healthz", cluster.caPem, 180_000);
  const syncedSeconds = (Date.now() - restarted) / 1000;
  const freshPid = cluster.watcher!.child.pid!;
  const freshRss = await sampledRss(freshPid, PLAN.rssSettleSeconds);
  const freshHeap = await heapReport(freshPid, heapReportFile);
  return {
    vms: total,
    namespaces: PLAN.scaleNamespaces,
    createSeconds: round3(createdSeconds),
    allVisibleSeconds: round3(visibleSeconds),
    collection: { latencyMs: summarize(collection), bodyBytes: collectionBytes, user: "fleet (100 chassis)" },
    singleSystemLatencyMs: summarize(single),
    watcher: { rssBeforeMiB: mib(rssBefore), rssAfterMiB: mib(rssAfter), peakRssMiB: mib(peak) },
    freshWatcher: { rssMiB: mib(freshRss), peakRssMiB: mib(rssBytes(freshPid).peak), liveHeapMiB: mib(freshHeap.liveHeapBytes), syncedSeconds: round3(syncedSeconds) },
    // The live heap (after a full collection) is what the cache holds; RSS moves with V8's own schedule.
    cacheBytesPerVm: Math.round((freshHeap.liveHeapBytes - emptyWatcher.heap.liveHeapBytes) / total),
    rssBytesPerVm: Math.round((freshRss - emptyWatcher.rss) / total),
    rssDeltaBytesPerVm: Math.round((rssAfter - rssBefore) / total),
    responseCache: { rssBeforeMiB: mib(responseCacheBefore), rssAfterMiB: mib(responseCacheAfter), bytesPerVm: Math.round((responseCacheAfter - responseCacheBefore) / total) },
    freshnessAtScale: freshness,
  };
}

// ---- main ----

function benchArguments(): { phases: Set<Phase>; cpuProfileDir?: string } {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { "cpu-prof": { type: "string" } } });
  const unknown = positionals.filter(p => !(PHASES as readonly string[]).includes(p));
  if (unknown.length > 0) throw new Error(`unknown phase ${unknown.join(", ")}: choose from ${PHASES.join(", ")}`);
  const phases = new Set<Phase>(positionals.length > 0 ? (positionals as Phase[]) : PHASES);
  return { phases, ...(values["cpu-prof"] ? { cpuProfileDir: path.resolve(values["cpu-prof"]) } : {}) };
}

async function main(): Promise<void> {
  const { phases, cpuProfileDir } = benchArguments();
  const runs = (phase: Phase) => phases.has(phase);
  const runStarted = Date.now();
  progress("building the module if needed (not counted in the bench time)");
  await ensureBuild(line => progress(line));
  const benchStarted = Date.now();
  const loadAverageAtStart = os.loadavg().map(v => Math.round(v * 100) / 100);
  const passwordHash = bcrypt.hashSync(PASSWORD, 10);
  const heapReportFile = path.join(os.tmpdir(), `bench-heap-${process.pid}.json`);
  const cluster = await startSandboxCluster({
    config: moduleConfig(),
    users: users(passwordHash),
    iso: { sizeBytes: 256 * 1024 },
    // Every module process answers heap reports (SIGUSR2); with --cpu-prof, also the profiler's requests.
    moduleEnv: processEnv(heapReportEnv(heapReportFile), cpuProfileDir ? profilingEnv(cpuProfileDir) : {}),
    onLog: (line, source) => {
      if (source === "admission" && line.includes("config applied")) admissionConfigsApplied++;
    },
  });
  const children: ChildProcess[] = [];
  const redfishUrl = cluster.redfishUrl.replace("localhost", "127.0.0.1");
  const redfishTls = { ca: cluster.caPem, servername: "localhost" };
  const redfish = requester(redfishUrl, redfishTls);
  const api = requester(cluster.api.url);
  const watcherPid = cluster.watcher!.child.pid!;
  try {
    const auth = basicAuth("bench", PASSWORD);
    const fleetAuth = basicAuth("fleet", PASSWORD);
    ensureNamespace(cluster.api, BENCH_NAMESPACE);
    for (const name of ["reference", "probe", "fresh", ...powerVmNames]) cluster.api.store.create(VM_KEY, vm(BENCH_NAMESPACE, name));
    for (const [i, name] of benchNodes.entries()) {
      cluster.api.store.create(VM_KEY, vm(BENCH_NAMESPACE, `node-vm-${i}`));
      cluster.api.store.create("nodes", nodeObject(name));
      cluster.api.store.create("configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `bench-cm-${i}`, namespace: BENCH_NAMESPACE }, data: { a: "b" } });
    }
    await waitForHttps(cluster.redfishPort, "/redfish/v1/", cluster.caPem, 60_000);
    await waitForPowerState(redfish, auth, [`${BENCH_NAMESPACE}.probe`, ...powerVmNames.map(n => `${BENCH_NAMESPACE}.${n}`)], "Off");
    const watcherRssAtStart = runs("scale") ? await sampledRss(watcherPid, PLAN.rssSettleSeconds) : undefined;
    const watcherHeapAtStart = runs("scale") ? await heapReport(watcherPid, heapReportFile) : undefined;

    const systemPath = `/redfish/v1/Systems/${BENCH_NAMESPACE}.probe`;
    const sample = await redfish("GET", systemPath, { headers: { Authorization: auth } });
    if (sample.status !== 200) throw new Error(`GET ${systemPath}: ${sample.status} ${sample.text.slice(0, 300)}`);
    const admissionSizedBody = JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { uid: "x".repeat(36), allowed: true, patchType: "JSONPatch", patch: "x".repeat(300) } });
    const baseline = await startBaselineServer(cluster, sample.text, admissionSizedBody, cpuProfileDir ? profilingEnv(cpuProfileDir) : {});
    children.push(baseline.child);

    const step = (phase: Phase, what: string) => progress(`${[...phases].indexOf(phase) + 1}/${phases.size} ${what}`);
    const results: Partial<Results> = {};
    if (cpuProfileDir) for (const pid of [watcherPid, baseline.child.pid!]) startProfile(pid);
    if (runs("get")) {
      step("get", "GET Systems/{id} vs bare Hono, keep-alive");
      results.get = { bodyBytes: Buffer.byteLength(sample.text), ...(await compareGet(cluster, { port: baseline.port, pid: baseline.child.pid! }, systemPath, auth)) };
    }
    if (runs("tls")) {
      step("tls", "GET Systems/{id} vs bare Hono, a new TLS connection per request");
      results.newConnection = await compareNewConnections(cluster, baseline.port, systemPath, auth);
    }
    if (runs("freshness")) {
      step("freshness", "watch freshness");
      results.freshness = await measureFreshness(api, redfish, BENCH_NAMESPACE, "fresh", auth, PLAN.freshnessChanges);
    }
    if (runs("power")) {
      step("power", "power actions");
      const timed = { api: workerRequester(cluster.api.url), redfish: workerRequester(redfishUrl, redfishTls) };
      try {
        results.power = await measurePower(timed, redfish, auth, cluster.api.store);
      } finally {
        timed.api.close();
        timed.redfish.close();
      }
    }
    if (runs("admission")) {
      step("admission", "admission");
      results.admission = await measureAdmission(cluster, baseline.port);
    }
    const reference = cluster.api.store.get(VM_KEY, BENCH_NAMESPACE, "reference");
    if (!reference?.status) throw new Error("the reference VM has no status yet");
    if (runs("fleet")) {
      step("fleet", `Ironic fleet of ${PLAN.fleetNodes} nodes`);
      results.fleet = await measureFleet(cluster, reference);
    }
    if (runs("scale")) {
      step("scale", "10,000 VMs");
      results.scale = await measureScale(cluster, redfish, api, fleetAuth, { rss: watcherRssAtStart!, heap: watcherHeapAtStart! }, heapReportFile, reference);
    }

    if (cpuProfileDir) {
      progress(`watcher CPU profile over the phases: ${await writeProfile(cpuProfileDir, watcherPid)}`);
      progress(`bare Hono's CPU profile over the phases: ${await writeProfile(cpuProfileDir, baseline.child.pid!)}`);
    }
    const document = {
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? "unknown",
        memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
        node: process.version,
        platform: `${os.platform()} ${os.release()}`,
        loadAverageAtStart,
        loadAverageAtEnd: os.loadavg().map(v => Math.round(v * 100) / 100),
      },
      quick: QUICK,
      phases: [...phases],
      plan: PLAN,
      startedAt: new Date(benchStarted).toISOString(),
      benchSeconds: Math.round((Date.now() - benchStarted) / 100) / 10,
      buildSeconds: Math.round((benchStarted - runStarted) / 100) / 10,
      ...(watcherRssAtStart !== undefined ? { watcherRssAtStartMiB: mib(watcherRssAtStart) } : {}),
      ...(watcherHeapAtStart !== undefined ? { watcherLiveHeapAtStartMiB: mib(watcherHeapAtStart.liveHeapBytes) } : {}),
      ...results,
      bars: evaluateBars(results),
    };
    fs.writeFileSync(RESULTS_FILE, `${JSON.stringify(document, null, 2)}\n`);
    process.stdout.write(`${renderTable(document)}\n\n${JSON.stringify(document, null, 2)}\n`);
    progress(`done in ${document.benchSeconds} s; results in ${RESULTS_FILE}`);
  } finally {
    redfish.close();
    api.close();
    for (const child of children) child.kill("SIGTERM");
    await cluster.stop();
    fs.rmSync(heapReportFile, { force: true });
  }
}

export interface Bar {
  bar: string;
  target: string;
  measured: string;
  met: boolean;
}

type Results = {
  get: GetComparison;
  newConnection: NewConnectionComparison;
  freshness: { visibleMs: LatencySummary; writeReplyMs: LatencySummary };
  power: Awaited<ReturnType<typeof measurePower>>;
  admission: Awaited<ReturnType<typeof measureAdmission>>;
  fleet: Awaited<ReturnType<typeof measureFleet>>;
  scale: Awaited<ReturnType<typeof measureScale>>;
};

/** The bars of QUALITY.md that the phases run measure. */
function evaluateBars(r: Partial<Results>): Bar[] {
  const ms = (v: number) => `${v.toFixed(2)} ms`;
  const pct = (v: number) => `${(v * 100).toFixed(1)} %`;
  const bars: Bar[] = [];
  if (r.get) {
    const quarter = r.get.atQuarterCapacity;
    bars.push(
      { bar: "GET Systems/{id} throughput vs bare Hono, keep-alive, 50 connections", target: ">= 70 %", measured: pct(r.get.throughputRatio), met: r.get.throughputRatio >= 0.7 },
      {
        bar: `GET Systems/{id} p99 at ${quarter.ratePerSecond} req/s (a quarter of capacity), 50 connections`,
        target: "<= bare Hono p99 + 1 ms",
        measured: `${ms(quarter.redfish.latencyMs.p99)} (bare Hono ${ms(quarter.baseline.latencyMs.p99)})`,
        met: quarter.redfish.latencyMs.p99 <= quarter.baseline.latencyMs.p99 + 1,
      },
    );
  }
  if (r.newConnection) {
    const full = r.newConnection.full;
    bars.push({ bar: "GET Systems/{id} throughput vs bare Hono, a new TLS connection per request", target: ">= 80 %", measured: `${pct(full.throughputRatio)} (with resumption ${pct(r.newConnection.resumed.throughputRatio)})`, met: full.throughputRatio >= 0.8 });
  }
  if (r.fleet) {
    bars.push({ bar: `Ironic fleet: ${r.fleet.nodes} nodes, ${r.fleet.deploymentWorkers} deployments`, target: "0 errors, 0 5xx", measured: `${r.fleet.errors} errors, ${r.fleet.serverErrors} 5xx`, met: r.fleet.errors === 0 && r.fleet.serverErrors === 0 });
  }
  if (r.scale) {
    const fullScale = r.scale.vms === 10_000;
    bars.push(
      { bar: `GET Systems median with ${r.scale.vms} VMs`, target: "< 100 ms", measured: ms(r.scale.collection.latencyMs.p50), met: fullScale && r.scale.collection.latencyMs.p50 < 100 },
      {
        bar: `watcher RSS with ${r.scale.vms} VMs (after the load phases / freshly started)`,
        target: "< 200 MiB freshly started",
        measured: `${r.scale.watcher.rssAfterMiB} MiB / ${r.scale.freshWatcher.rssMiB} MiB`,
        met: fullScale && r.scale.freshWatcher.rssMiB < 200,
      },
      { bar: "cache memory per VM (live heap)", target: "< 5 KiB", measured: `${(r.scale.cacheBytesPerVm / 1024).toFixed(1)} KiB`, met: fullScale && r.scale.cacheBytesPerVm < 5 * 1024 },
    );
  }
  if (r.freshness) bars.push({ bar: "freshness p99", target: "< 100 ms", measured: ms(r.freshness.visibleMs.p99), met: r.freshness.visibleMs.p99 < 100 });
  if (r.admission) {
    const a = r.admission.atQuarterCapacity;
    const within = (x: LoadResult) => x.latencyMs.p50 <= a.baselinePost.latencyMs.p50 + 1 && x.latencyMs.p99 <= a.baselinePost.latencyMs.p99 + 1;
    bars.push(
      {
        bar: `Node mutate p50/p99 at ${a.ratePerSecond} req/s (a quarter of capacity), 50 connections`,
        target: "<= bare POST + 1 ms",
        measured: `${ms(a.nodeMutate.latencyMs.p50)} / ${ms(a.nodeMutate.latencyMs.p99)} (bare Hono ${ms(a.baselinePost.latencyMs.p50)} / ${ms(a.baselinePost.latencyMs.p99)})`,
        met: within(a.nodeMutate),
      },
      {
        bar: `DataVolume validate p50/p99 at ${a.ratePerSecond} req/s, 50 connections`,
        target: "<= bare POST + 1 ms",
        measured: `${ms(a.dvValidate.latencyMs.p50)} / ${ms(a.dvValidate.latencyMs.p99)}`,
        met: within(a.dvValidate),
      },
      {
        bar: "admission handlers O(1): time per call with 10,000 / with 10 mappings (Node) or tenants (DataVolume)",
        target: "~1 (< 1.5)",
        measured: `Node ${r.admission.handlerScaling.nodeMutateRatio}, DataVolume ${r.admission.handlerScaling.dvValidateRatio}`,
        met: r.admission.handlerScaling.nodeMutateRatio < 1.5 && r.admission.handlerScaling.dvValidateRatio < 1.5,
      },
    );
  }
  if (r.power) bars.push({ bar: "POST Reset reply p50", target: "< 5 ms", measured: ms(r.power.all.p50), met: r.power.all.p50 < 5 });
  return bars;
}

main().catch(err => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

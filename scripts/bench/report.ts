// The readable form of bench-results.json: a plain-text table (stdout of npm run bench) and the Markdown
// table of docs/benchmarks.md (`npx tsx scripts/bench/report.ts bench-results.json`).
import fs from "node:fs";
import type { FleetResult } from "./fleet";
import type { HandlerScaling } from "./handlers";
import type { LoadResult } from "./load";
import type { LatencySummary } from "./stats";

type Summary = { requestsPerSecond: number; p50: number; p99: number };

interface Document {
  machine: { cpus: number; cpuModel: string; node: string; platform: string; loadAverageAtStart: number[]; loadAverageAtEnd?: number[] };
  quick: boolean;
  benchSeconds: number;
  startedAt: string;
  watcherRssAtStartMiB?: number;
  watcherLiveHeapAtStartMiB?: number;
  get?: {
    bodyBytes: number;
    baseline: { requestsPerSecond: number; p50: number; p99: number };
    redfish: { requestsPerSecond: number; p50: number; p99: number };
    throughputRatio: number;
    cpuMicrosPerResponse?: { baseline?: number; redfish?: number };
    rounds: unknown[];
    atQuarterCapacity: { ratePerSecond: number; baseline: LoadResult; redfish: LoadResult };
  };
  newConnection?: {
    concurrency: number;
    rounds: unknown[];
    full: { baseline: Summary; redfish: Summary; throughputRatio: number };
    resumed: { baseline: Summary; redfish: Summary; throughputRatio: number; redfishResumedShare: number };
  };
  fleet?: Omit<FleetResult, "errorSamples">;
  freshness?: { visibleMs: LatencySummary; writeReplyMs: LatencySummary };
  power?: { on: LatencySummary; forceOff: LatencySummary; all: LatencySummary; apiWriteBaseline: LatencySummary };
  admission?: {
    handlerScaling: HandlerScaling;
    baselinePost: LoadResult;
    nodeMutate: LoadResult;
    dvValidate: LoadResult;
    atQuarterCapacity: { ratePerSecond: number; baselinePost: LoadResult; nodeMutate: LoadResult; dvValidate: LoadResult };
    nodeMutateManyMappings: { extraMappings: number; result: LoadResult; p50Ratio: number };
    endToEnd: { nodeWrite: LoadResult; configMapWrite: LoadResult };
  };
  scale?: {
    vms: number;
    namespaces: number;
    allVisibleSeconds: number;
    collection: { latencyMs: LatencySummary; bodyBytes: number };
    singleSystemLatencyMs: LatencySummary;
    watcher: { rssBeforeMiB: number; rssAfterMiB: number; peakRssMiB: number };
    freshWatcher: { rssMiB: number; peakRssMiB: number; liveHeapMiB?: number; syncedSeconds: number };
    /** Live heap (after a full collection) with the VMs minus without them, per VM. */
    cacheBytesPerVm: number;
    rssBytesPerVm?: number;
    rssDeltaBytesPerVm: number;
    responseCache?: { rssBeforeMiB: number; rssAfterMiB: number; bytesPerVm: number };
    freshnessAtScale: { visibleMs: LatencySummary };
  };
  bars: { bar: string; target: string; measured: string; met: boolean }[];
}

type Row = [string, string, string, string];

const f = (v: number, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : "n/a");
const ratio = (a: number, b: number) => (b > 0 ? `${f(a / b, 2)}x` : "n/a");
const load = (r: LoadResult) => `${r.requestsPerSecond} req/s, p50 ${f(r.latencyMs.p50)} ms, p99 ${f(r.latencyMs.p99)} ms${r.non2xx + r.errors > 0 ? `, ${r.non2xx} non-2xx, ${r.errors} errors` : ""}`;
const latency = (r: LoadResult) => `p50 ${f(r.latencyMs.p50)} ms, p99 ${f(r.latencyMs.p99)} ms${r.non2xx + r.errors > 0 ? `, ${r.non2xx} non-2xx, ${r.errors} errors` : ""}`;

const summary = (x: Summary) => `${x.requestsPerSecond} req/s, p50 ${f(x.p50)} ms, p99 ${f(x.p99)} ms`;

function rows(d: Document): Row[] {
  const out: Row[] = [];
  if (d.get) {
    const q = d.get.atQuarterCapacity;
    out.push(
      ["GET Systems/{id}, Basic auth, 50 keep-alive connections", summary(d.get.redfish), `bare Hono: ${summary(d.get.baseline)}`, `${f(d.get.throughputRatio * 100, 1)} % of baseline throughput (median of ${d.get.rounds.length} paired rounds)`],
      [
        "CPU time of the server process per GET response (user + system)",
        d.get.cpuMicrosPerResponse?.redfish !== undefined ? `${d.get.cpuMicrosPerResponse.redfish} µs` : "n/a",
        d.get.cpuMicrosPerResponse?.baseline !== undefined ? `bare Hono: ${d.get.cpuMicrosPerResponse.baseline} µs` : "n/a",
        d.get.cpuMicrosPerResponse?.redfish !== undefined && d.get.cpuMicrosPerResponse.baseline !== undefined
          ? `${f(d.get.cpuMicrosPerResponse.redfish / d.get.cpuMicrosPerResponse.baseline, 2)}x (median of the rounds)`
          : "",
      ],
      [`GET Systems/{id} at ${q.ratePerSecond} req/s (1/4 of the slower), 50 connections`, latency(q.redfish), `bare Hono: ${latency(q.baseline)}`, `p99 ${ratio(q.redfish.latencyMs.p99, q.baseline.latencyMs.p99)}`],
    );
  }
  if (d.newConnection) {
    const n = d.newConnection;
    out.push(
      [`GET Systems/{id}, a new TLS connection per request (full handshake), ${n.concurrency} in flight`, summary(n.full.redfish), `bare Hono: ${summary(n.full.baseline)}`, `${f(n.full.throughputRatio * 100, 1)} % of baseline throughput (median of ${n.rounds.length} paired rounds)`],
      [`the same, resuming the TLS session (ticket)`, `${summary(n.resumed.redfish)}; ${f(n.resumed.redfishResumedShare * 100, 0)} % resumed`, `bare Hono: ${summary(n.resumed.baseline)}`, `${f(n.resumed.throughputRatio * 100, 1)} % of baseline throughput`],
    );
  }
  if (d.fleet) {
    const fl = d.fleet;
    out.push([
      `Ironic fleet: ${fl.nodes} nodes synced every ${fl.syncPeriodSeconds} s, ${fl.deploymentWorkers} deployments, new TLS connection per request`,
      `${fl.requestsPerSecond} req/s for ${f(fl.durationSeconds, 1)} s, ${fl.deploymentsCompleted} deployments completed`,
      "",
      `${fl.errors} errors, ${fl.serverErrors} 5xx`,
    ]);
    for (const [call, st] of Object.entries(fl.calls)) {
      out.push([`  ${call}`, `p50 ${f(st.latencyMs.p50)} ms, p99 ${f(st.latencyMs.p99)} ms (n=${st.calls})`, "", `${st.errors} errors, ${st.serverErrors} 5xx`]);
    }
  }
  if (d.freshness) {
    out.push(["Freshness: API write -> visible in Redfish", `p50 ${f(d.freshness.visibleMs.p50)} ms, p99 ${f(d.freshness.visibleMs.p99)} ms (n=${d.freshness.visibleMs.count})`, `the API write alone: p50 ${f(d.freshness.writeReplyMs.p50)} ms`, ratio(d.freshness.visibleMs.p50, d.freshness.writeReplyMs.p50)]);
  }
  if (d.power) {
    out.push(["POST Reset reply (On, ForceOff)", `p50 ${f(d.power.all.p50)} ms, p99 ${f(d.power.all.p99)} ms (n=${d.power.all.count})`, `plain VM patch: p50 ${f(d.power.apiWriteBaseline.p50)} ms, p99 ${f(d.power.apiWriteBaseline.p99)} ms`, ratio(d.power.all.p50, d.power.apiWriteBaseline.p50)]);
  }
  const a = d.admission;
  if (a) {
    out.push(
      ["Node mutate, admission server, 50 concurrent", load(a.nodeMutate), `bare Hono POST: ${load(a.baselinePost)}`, `p99 ${ratio(a.nodeMutate.latencyMs.p99, a.baselinePost.latencyMs.p99)}`],
      ["DataVolume validate, admission server, 50 concurrent", load(a.dvValidate), `bare Hono POST: ${load(a.baselinePost)}`, `p99 ${ratio(a.dvValidate.latencyMs.p99, a.baselinePost.latencyMs.p99)}`],
      [`Node mutate at ${a.atQuarterCapacity.ratePerSecond} req/s (1/4 of the slower), 50 connections`, latency(a.atQuarterCapacity.nodeMutate), `bare Hono POST: ${latency(a.atQuarterCapacity.baselinePost)}`, `p99 ${ratio(a.atQuarterCapacity.nodeMutate.latencyMs.p99, a.atQuarterCapacity.baselinePost.latencyMs.p99)}`],
      [`DataVolume validate at ${a.atQuarterCapacity.ratePerSecond} req/s, 50 connections`, latency(a.atQuarterCapacity.dvValidate), `bare Hono POST: ${latency(a.atQuarterCapacity.baselinePost)}`, `p99 ${ratio(a.atQuarterCapacity.dvValidate.latencyMs.p99, a.atQuarterCapacity.baselinePost.latencyMs.p99)}`],
      [`Node mutate at ${a.atQuarterCapacity.ratePerSecond} req/s with +${a.nodeMutateManyMappings.extraMappings} node mappings`, latency(a.nodeMutateManyMappings.result), `without them: ${latency(a.atQuarterCapacity.nodeMutate)}`, `p50 ${f(a.nodeMutateManyMappings.p50Ratio)}x`],
      [
        "Admission handlers alone (no HTTP), time per call",
        `Node mutate ${a.handlerScaling.nodeMutate.map(x => `${f(x.microsPerCall, 1)} µs @${x.mappings}`).join(", ")} mappings`,
        `DataVolume validate ${a.handlerScaling.dvValidate.map(x => `${f(x.microsPerCall, 1)} µs @${x.tenants}`).join(", ")} tenants`,
        `x${a.handlerScaling.nodeMutateRatio} / x${a.handlerScaling.dvValidateRatio} from 10 to 10,000`,
      ],
      ["Node PATCH through the API server (webhook over HTTPS)", load(a.endToEnd.nodeWrite), `ConfigMap PATCH, no webhook: ${load(a.endToEnd.configMapWrite)}`, `p50 ${ratio(a.endToEnd.nodeWrite.latencyMs.p50, a.endToEnd.configMapWrite.latencyMs.p50)}`],
    );
  }
  const s = d.scale;
  if (s) {
    out.push(
      [`GET Systems with ${s.vms} VMs in ${s.namespaces} namespaces`, `p50 ${f(s.collection.latencyMs.p50)} ms, p99 ${f(s.collection.latencyMs.p99)} ms (${Math.round(s.collection.bodyBytes / 1024)} KiB body)`, `GET Systems/{id} at that scale: p50 ${f(s.singleSystemLatencyMs.p50)} ms`, ""],
      [`Watcher RSS with ${s.vms} VMs, after the load phases`, `${s.watcher.rssAfterMiB} MiB (peak ${s.watcher.peakRssMiB} MiB)`, `before loading them: ${s.watcher.rssBeforeMiB} MiB`, `${f(s.rssDeltaBytesPerVm / 1024, 1)} KiB per VM`],
      [
        `Watcher RSS started with ${s.vms} VMs in place`,
        `${s.freshWatcher.rssMiB} MiB (peak ${s.freshWatcher.peakRssMiB} MiB); synced in ${f(s.freshWatcher.syncedSeconds, 1)} s`,
        `started without them: ${d.watcherRssAtStartMiB ?? NaN} MiB`,
        s.rssBytesPerVm !== undefined ? `${f(s.rssBytesPerVm / 1024, 1)} KiB of RSS per VM` : `${f(s.cacheBytesPerVm / 1024, 1)} KiB per VM`,
      ],
      ...(s.freshWatcher.liveHeapMiB !== undefined
        ? [[`Watcher live heap started with ${s.vms} VMs in place (after a full collection)`, `${s.freshWatcher.liveHeapMiB} MiB`, `started without them: ${d.watcherLiveHeapAtStartMiB ?? NaN} MiB`, `${f(s.cacheBytesPerVm / 1024, 1)} KiB per VM`] as Row]
        : []),
      ...(s.responseCache
        ? [[`Response cache: System, SecureBoot and Manager of all ${s.vms} VMs GET once`, `watcher RSS ${s.responseCache.rssBeforeMiB} -> ${s.responseCache.rssAfterMiB} MiB`, "", `${f(s.responseCache.bytesPerVm / 1024, 1)} KiB per VM`] as Row]
        : []),
      [`Freshness with ${s.vms} VMs`, `p50 ${f(s.freshnessAtScale.visibleMs.p50)} ms, p99 ${f(s.freshnessAtScale.visibleMs.p99)} ms (n=${s.freshnessAtScale.visibleMs.count})`, "", ""],
      [`Time until all ${s.vms} VMs are served`, `${f(s.allVisibleSeconds, 1)} s`, "", ""],
    );
  }
  return out;
}

function machineLine(d: Document): string {
  return `${d.machine.cpus} cores (${d.machine.cpuModel}), Node ${d.machine.node}, ${d.machine.platform}; load average at start ${d.machine.loadAverageAtStart.join(" / ")}${d.machine.loadAverageAtEnd ? `, at the end ${d.machine.loadAverageAtEnd.join(" / ")}` : ""}; bench ${d.benchSeconds} s${d.quick ? " (BENCH_QUICK: smoke run)" : ""}`;
}

export function renderTable(d: Document): string {
  const header: Row = ["measurement", "measured", "baseline (same run)", "ratio"];
  const all = [header, ...rows(d)];
  const widths = header.map((_, i) => Math.max(...all.map(r => r[i].length)));
  const line = (r: Row) => r.map((cell, i) => cell.padEnd(widths[i])).join(" | ");
  const bars = d.bars.map(b => `  ${b.met ? "met    " : "NOT MET"}  ${b.bar}: ${b.measured} (bar ${b.target})`);
  return [machineLine(d), "", line(header), widths.map(w => "-".repeat(w)).join("-+-"), ...rows(d).map(line), "", "QUALITY.md bars:", ...bars].join("\n");
}

export function renderMarkdown(d: Document): string {
  const esc = (cell: string) => cell.replace(/\|/g, "\\|");
  const table = [
    "| measurement | measured | baseline (same run) | ratio |",
    "| --- | --- | --- | --- |",
    ...rows(d).map(r => `| ${r.map(esc).join(" | ")} |`),
  ];
  const bars = ["| QUALITY.md bar | target | measured | met |", "| --- | --- | --- | --- |", ...d.bars.map(b => `| ${esc(b.bar)} | ${esc(b.target)} | ${esc(b.measured)} | ${b.met ? "yes" : "**no**"} |`)];
  return [`Machine: ${machineLine(d)}.`, "", ...table, "", ...bars].join("\n");
}

if (require.main === module) {
  const file = process.argv[2] ?? "bench-results.json";
  process.stdout.write(`${renderMarkdown(JSON.parse(fs.readFileSync(file, "utf8")) as Document)}\n`);
}

// npm run bench:watcher: the watcher's memory and connection rows of the bench, on their own (the whole
// `npm run bench` takes long and loads the machine). Against the sandbox with the BUILT module:
//   1. RSS of a watcher started with no VMs, then of one started with 10,000 VMs in 100 namespaces already
//      there; the cache cost per VM is the difference of their live heaps (after a full collection) / VMs, and the
//      RSS difference / VMs is reported beside it;
//   2. TCP connections from the watcher to the API server (from /proc: sockets, not HTTP/2 streams), sampled
//      every 100 ms through watch expiries (watch timeout 5 s) and one API server restart; and the API server's
//      own count of them by protocol afterwards (the module's client speaks HTTP/2, Pepr's own calls HTTP/1.1).
//   3. where the watcher's memory is, both times (scripts/bench/heap-report.cjs, preloaded): V8's heap, its young
//      generation, external memory and what is outside the heap.
// Output: one JSON document on stdout; progress on stderr. BENCH_QUICK=1: 1,000 VMs.
// --watcher-node-options "...": Node options for the watcher (e.g. the V8 heap sizes a Deployment's memory limit gives);
// --watcher-env NAME=VALUE (repeatable): more environment for the watcher (e.g. MALLOC_ARENA_MAX=2).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { ensureBuild } from "../ensure-build";
import { ensureNamespace, processEnv, startSandboxCluster, type SandboxCluster } from "../../sandbox/cluster";
import { demoVirtualMachine } from "../../sandbox/demo";
import { waitForHttps } from "../../sandbox/module-process";
import { establishedConnections } from "./connections";
import { heapReport, heapReportEnv, mib, rssBytes, sampledRss } from "./memory";

const QUICK = process.env.BENCH_QUICK === "1";
const NAMESPACES = 100;
const VMS_PER_NAMESPACE = QUICK ? 10 : 100;
const SETTLE_SECONDS = 10;
const WATCH_TIMEOUT_SECONDS = 5;
const VM_KEY = "virtualmachines.kubevirt.io";

const progress = (line: string) => process.stderr.write(`[bench:watcher ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));
const pad = (n: number, width: number) => String(n).padStart(width, "0");
const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `scale-${pad(i, 3)}`);

async function restartWatcher(cluster: SandboxCluster): Promise<number> {
  await cluster.stopModule(["watcher"]);
  await cluster.startModule(["watcher"]);
  await waitForHttps(cluster.redfishPort, "/healthz", cluster.caPem, 300_000);
  return cluster.watcher!.child.pid!;
}

async function sampleConnections(cluster: SandboxCluster, port: number, ms: number, during?: () => Promise<void>): Promise<number> {
  let max = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const pid = cluster.watcher?.child.pid;
      if (pid === undefined || cluster.watcher?.child.exitCode !== null) throw new Error(`the watcher exited (${cluster.watcher?.child.exitCode})`);
      max = Math.max(max, establishedConnections(pid, port));
      await sleep(100);
    }
  })();
  await Promise.all([sleep(ms), during?.()]);
  sampling = false;
  await sampler;
  return max;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { "watcher-node-options": { type: "string", default: "" }, "watcher-env": { type: "string", multiple: true, default: [] } },
  });
  const watcherNodeOptions = values["watcher-node-options"];
  const watcherEnv = Object.fromEntries(
    values["watcher-env"].map(pair => {
      const at = pair.indexOf("=");
      if (at <= 0) throw new Error(`--watcher-env ${pair}: expected NAME=VALUE`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
  await ensureBuild(line => progress(line));
  const heapReportFile = path.join(os.tmpdir(), `bench-watcher-heap-${process.pid}.json`);
  const cluster = await startSandboxCluster({
    config: { role: "infra", chassis: namespaces.map(ns => ({ name: ns, namespace: ns })) },
    users: [],
    moduleEnv: processEnv(
      { ...watcherEnv, ...heapReportEnv(heapReportFile), KUBEVIRT_INFRA_WATCH_TIMEOUT_SECONDS: String(WATCH_TIMEOUT_SECONDS) },
      watcherNodeOptions ? { NODE_OPTIONS: watcherNodeOptions } : {},
    ),
    processes: ["watcher"],
    onLog: (line, source) => {
      if (source === "watcher" && /"level":(50|60)|Error|exited/.test(line)) progress(`watcher: ${line.slice(0, 400)}`);
    },
  });
  try {
    await waitForHttps(cluster.redfishPort, "/healthz", cluster.caPem, 120_000);
    let pid = await restartWatcher(cluster);
    const emptyRss = await sampledRss(pid, SETTLE_SECONDS);
    const emptyHeap = await heapReport(pid, heapReportFile);
    progress(`watcher without VMs: ${mib(emptyRss)} MiB (${JSON.stringify(emptyHeap)})`);

    await cluster.stopModule(["watcher"]);
    const total = NAMESPACES * VMS_PER_NAMESPACE;
    let n = 0;
    for (const ns of namespaces) {
      ensureNamespace(cluster.api, ns);
      for (let i = 0; i < VMS_PER_NAMESPACE; i++, n++) {
        const uuid = `5e1d0000-0000-4000-8000-${pad(n, 12)}`;
        const mac = `02:00:${[16, 8, 0].map(shift => ((n >> shift) & 0xff).toString(16).padStart(2, "0")).join(":")}:00`;
        cluster.api.store.create(VM_KEY, demoVirtualMachine(ns, `vm-${pad(n, 5)}`, uuid, mac));
      }
    }
    progress(`${total} VMs created; starting the watcher with them in place`);
    const started = Date.now();
    await cluster.startModule(["watcher"]);
    await waitForHttps(cluster.redfishPort, "/healthz", cluster.caPem, 300_000);
    const syncedSeconds = (Date.now() - started) / 1000;
    pid = cluster.watcher!.child.pid!;
    const rss = await sampledRss(pid, SETTLE_SECONDS);
    const peak = rssBytes(pid).peak;
    const heap = await heapReport(pid, heapReportFile);
    progress(`watcher heap with ${total} VMs: ${JSON.stringify(heap)}`);
    progress(`watcher with ${total} VMs: ${mib(rss)} MiB (peak ${mib(peak)} MiB), synced after ${syncedSeconds.toFixed(1)} s`);

    const port = cluster.api.port;
    const withExpiries = await sampleConnections(cluster, port, 4 * WATCH_TIMEOUT_SECONDS * 1000);
    const throughRestart = await sampleConnections(cluster, port, 15_000, () => cluster.api.restart(1_000));
    const settled = establishedConnections(pid, port);
    const byProtocol = cluster.api.connections();
    const result = {
      vms: total,
      watcher: { rssWithoutVmsMiB: mib(emptyRss), rssWithVmsMiB: mib(rss), peakRssMiB: mib(peak), syncedSeconds: Math.round(syncedSeconds * 10) / 10 },
      watcherMemory: { withoutVms: emptyHeap, withVms: heap, nodeOptions: watcherNodeOptions, env: watcherEnv },
      // The live heap (after a full collection) is what the cache holds; RSS moves with V8's own schedule.
      cacheBytesPerVm: Math.round((heap.liveHeapBytes - emptyHeap.liveHeapBytes) / total),
      rssBytesPerVm: Math.round((rss - emptyRss) / total),
      connectionsToApiServer: { maxWithWatchExpiries: withExpiries, maxThroughApiServerRestart: throughRestart, afterRestart: settled, afterRestartByProtocol: { http2: byProtocol.http2, http1: byProtocol.http1 }, watchTimeoutSeconds: WATCH_TIMEOUT_SECONDS },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await cluster.stop();
    fs.rmSync(heapReportFile, { force: true });
  }
}

main().catch(error => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});

// Process memory figures from /proc (Linux): resident set now and its peak, and a settled sample; and, from inside a
// process that preloads heap-report.cjs, how that memory divides between V8's heap and the rest.
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { median } from "./stats";

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

export function rssBytes(pid: number): { rss: number; peak: number; file: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kib("VmRSS"), peak: kib("VmHWM"), file: kib("RssFile") };
}

/**
 * Resident memory once it has settled: sampled every second for `seconds`, the median of the last three.
 * V8 gives memory back some seconds after the garbage of a burst (an initial list, a load phase) is collected.
 */
export async function sampledRss(pid: number, seconds = 3): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < seconds; i++) {
    samples.push(rssBytes(pid).rss);
    if (i < seconds - 1) await sleep(1_000);
  }
  return median(samples.slice(-3));
}

export const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

/** The NODE_OPTIONS that make a process answer `heapReport` (scripts/bench/heap-report.cjs). */
export function heapReportEnv(file: string): Record<string, string> {
  return { NODE_OPTIONS: `--require ${path.join(__dirname, "heap-report.cjs")}`, BENCH_HEAP_REPORT_FILE: file };
}

/** Where a process's resident memory is, in MiB: V8's heap (its young generation apart) and what lies outside it. */
export interface HeapBreakdown {
  rssMiB: number;
  heapCommittedMiB: number;
  heapUsedMiB: number;
  /** Heap used after the full collection the report starts with: the live heap, in bytes. */
  liveHeapBytes: number;
  /** The young generation's two semi-spaces (committed): V8 sizes them from the memory it may use. */
  youngGenerationMiB: number;
  /** Strings, arrays and code over V8's large-object threshold (mostly the source text of loaded modules). */
  largeObjectsMiB: number;
  /** Buffers and other memory held outside the heap by JS objects. */
  externalMiB: number;
  /** RSS that is neither heap nor external: the node binary, native libraries, malloc'd memory. */
  outsideHeapMiB: number;
  /** The part of the RSS mapped from files (the node binary and its libraries; /proc RssFile). */
  fileBackedMiB: number;
  heapSizeLimitMiB: number;
}

const heapReportSchema = z.object({
  memoryUsage: z.object({ rss: z.number(), heapTotal: z.number(), heapUsed: z.number(), external: z.number() }),
  heapSizeLimit: z.number(),
  spaces: z.record(z.string(), z.object({ committed: z.number(), used: z.number() })),
});

/** Asks a process started with `heapReportEnv(file)` for its heap report (SIGUSR2) and waits for it. */
export async function heapReport(pid: number, file: string, timeoutMs = 30_000): Promise<HeapBreakdown> {
  fs.rmSync(file, { force: true });
  process.kill(pid, "SIGUSR2");
  const deadline = Date.now() + timeoutMs;
  while (!fs.existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`no heap report from process ${pid} within ${timeoutMs} ms`);
    await sleep(100);
  }
  const { memoryUsage, heapSizeLimit, spaces } = heapReportSchema.parse(JSON.parse(fs.readFileSync(file, "utf8")));
  return {
    rssMiB: mib(memoryUsage.rss),
    heapCommittedMiB: mib(memoryUsage.heapTotal),
    heapUsedMiB: mib(memoryUsage.heapUsed),
    liveHeapBytes: memoryUsage.heapUsed,
    youngGenerationMiB: mib(spaces.new_space?.committed ?? 0),
    largeObjectsMiB: mib(spaces.large_object_space?.committed ?? 0),
    externalMiB: mib(memoryUsage.external),
    outsideHeapMiB: mib(memoryUsage.rss - memoryUsage.heapTotal - memoryUsage.external),
    fileBackedMiB: mib(rssBytes(pid).file),
    heapSizeLimitMiB: mib(heapSizeLimit),
  };
}

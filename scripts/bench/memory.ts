// Process memory figures from /proc (Linux): resident set now and its peak, and a settled sample.
import fs from "node:fs";
import { median } from "./stats";

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

export function rssBytes(pid: number): { rss: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kib("VmRSS"), peak: kib("VmHWM") };
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

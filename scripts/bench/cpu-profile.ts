// CPU profiles of the module processes for the bench scripts (--cpu-prof DIR): the processes preload
// cpu-profiler.cjs, and each SIGUSR2 pair (start, stop) writes DIR/cpu-<pid>-<n>.cpuprofile, n counting from 1.
// `npx tsx scripts/bench/profile-summary.ts FILE` prints where the time went.
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** The environment of a module process that can be profiled into `dir`. */
export function profilingEnv(dir: string): Record<string, string> {
  fs.mkdirSync(dir, { recursive: true });
  return { NODE_OPTIONS: `--require ${path.join(__dirname, "cpu-profiler.cjs")}`, BENCH_CPU_PROFILE_DIR: dir };
}

/** Starts a profile of the process (it must have been started with profilingEnv). */
export function startProfile(pid: number): void {
  process.kill(pid, "SIGUSR2");
}

/** Stops the process's `sequence`-th profile and waits until the profiler has written it; its path. */
export async function writeProfile(dir: string, pid: number, sequence = 1): Promise<string> {
  const file = path.join(dir, `cpu-${pid}-${sequence}.cpuprofile`);
  process.kill(pid, "SIGUSR2");
  for (let waited = 0; !fs.existsSync(file); waited += 100) {
    if (waited > 30_000) throw new Error(`no CPU profile in ${file} after 30 s`);
    await sleep(100);
  }
  return file;
}

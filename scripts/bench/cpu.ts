// CPU time a process has used (user + system, from /proc/PID/stat): with the responses counted over the same span,
// the CPU cost of one response, which a busy shared machine changes much less than it changes throughput.
import fs from "node:fs";

const CLOCK_TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** CPU milliseconds (user + system) the process has used so far; undefined where /proc is not available. */
export function processCpuMs(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Fields after the command name (which may hold spaces, inside parentheses): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** CPU microseconds per response of `pid` while `run` ran; undefined where /proc is not available. */
export async function cpuPerResponse<T extends { responses: number }>(pid: number, run: () => Promise<T>): Promise<T & { cpuMicrosPerResponse?: number }> {
  const before = processCpuMs(pid);
  const result = await run();
  const after = processCpuMs(pid);
  if (before === undefined || after === undefined || result.responses === 0) return result;
  return { ...result, cpuMicrosPerResponse: Math.round(((after - before) * 1000) / result.responses) };
}

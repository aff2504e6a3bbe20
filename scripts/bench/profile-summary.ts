// Where the time went in a V8 CPU profile (e.g. the watcher's from `npm run bench -- get --cpu-prof DIR`): self time
// per function, as a share of the busy time (everything but "(idle)"). Positions in the minified module bundle are
// mapped back to the TypeScript sources through its source map (dist/*.js.map).
//   npx tsx scripts/bench/profile-summary.ts FILE.cpuprofile [--top N]
import fs from "node:fs";
import { SourceMap } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  ms: number;
  /** Share of the busy (non-idle) time. */
  share: number;
}

/** `file:line` of a frame, in the original source when the script has a source map next to it. */
function locator(): (frame: ProfileNode["callFrame"]) => string {
  const maps = new Map<string, SourceMap | undefined>();
  const mapOf = (url: string) => {
    if (!maps.has(url)) {
      let map: SourceMap | undefined;
      try {
        const file = url.startsWith("file:") ? fileURLToPath(url) : url;
        map = new SourceMap(JSON.parse(fs.readFileSync(`${file}.map`, "utf8")) as ConstructorParameters<typeof SourceMap>[0]);
      } catch {
        map = undefined; // no map: the script's own positions
      }
      maps.set(url, map);
    }
    return maps.get(url);
  };
  return frame => {
    const entry = mapOf(frame.url)?.findEntry(frame.lineNumber, frame.columnNumber) as { originalSource?: string; originalLine?: number } | undefined;
    if (entry?.originalSource) return `${entry.originalSource.replace(/^.*node_modules\//, "").replace(/^(\.\.\/)+/, "")}:${(entry.originalLine ?? 0) + 1}`;
    return `${path.basename(frame.url)}:${frame.lineNumber + 1}`;
  };
}

/** Self time per function (name, file, line), most first; idle time is left out of the shares. */
export function selfTimes(profile: Profile): { busyMs: number; idleMs: number; functions: SelfTime[] } {
  const where = locator();
  const byNode = new Map(profile.nodes.map(n => [n.id, n]));
  const micros = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    const frame = byNode.get(id)?.callFrame;
    if (!frame) return;
    if (frame.functionName === "(idle)") {
      idle += delta;
      return;
    }
    busy += delta;
    const name = `${frame.functionName || "(anonymous)"}${frame.url ? ` ${where(frame)}` : ""}`;
    micros.set(name, (micros.get(name) ?? 0) + delta);
  });
  const functions = [...micros]
    .map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, share: busy > 0 ? us / busy : 0 }))
    .sort((a, b) => b.ms - a.ms);
  return { busyMs: Math.round(busy / 1000), idleMs: Math.round(idle / 1000), functions };
}

if (require.main === module) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "25" } } });
  if (positionals.length !== 1) throw new Error("usage: profile-summary.ts FILE.cpuprofile [--top N]");
  const summary = selfTimes(JSON.parse(fs.readFileSync(positionals[0], "utf8")) as Profile);
  process.stdout.write(`busy ${summary.busyMs} ms, idle ${summary.idleMs} ms; self time, share of busy:\n`);
  for (const fn of summary.functions.slice(0, Number(values.top))) {
    process.stdout.write(`${(fn.share * 100).toFixed(1).padStart(5)} %  ${String(fn.ms).padStart(8)} ms  ${fn.name}\n`);
  }
}

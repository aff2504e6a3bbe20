// Builds the module with `pepr build` when dist/ is missing or older than the sources. `pepr build` exits 0
// even when TypeScript fails, so success is judged by the files it must produce.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(__dirname, "..");
const outputs = ["dist/pepr-kubevirt-infra.js", "dist/pepr-module-kubevirt-infra.yaml"].map(f => path.join(root, f));
const sources = ["pepr.ts", "package.json", "capabilities", "redfish"];

function newestMtime(p: string): number {
  const full = path.join(root, p);
  if (!fs.existsSync(full)) return 0;
  const stat = fs.statSync(full);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return fs.readdirSync(full).reduce((max, entry) => Math.max(max, newestMtime(path.join(p, entry))), stat.mtimeMs);
}

export function buildIsStale(): boolean {
  if (!outputs.every(f => fs.existsSync(f))) return true;
  const built = Math.min(...outputs.map(f => fs.statSync(f).mtimeMs));
  return sources.some(s => newestMtime(s) > built);
}

const lockDir = path.join(root, "dist.build-lock");

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** One build at a time: parallel test runs (or a test run beside `npm start`) must not build over each other. */
function withBuildLock(fn: () => void): void {
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      fs.mkdirSync(lockDir);
      break;
    } catch {
      const age = fs.existsSync(lockDir) ? Date.now() - fs.statSync(lockDir).mtimeMs : 0;
      if (age > 180_000) fs.rmSync(lockDir, { recursive: true, force: true }); // left by a killed build
      if (Date.now() > deadline) throw new Error(`waited 180 s for another build to finish (${lockDir})`);
      sleepSync(500);
    }
  }
  try {
    fn();
  } finally {
    fs.rmSync(lockDir, { recursive: true, force: true });
  }
}

export function ensureBuild(log: (line: string) => void = console.log): void {
  if (!buildIsStale()) return;
  withBuildLock(() => buildLocked(log));
}

function buildLocked(log: (line: string) => void): void {
  if (!buildIsStale()) return; // another process built it while we waited
  log("Building the module (npm run build)...");
  const before = outputs.map(f => (fs.existsSync(f) ? fs.statSync(f).mtimeMs : 0));
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const result = spawnSync(npm, ["run", "--silent", "build"], { cwd: root, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  // pepr build exits 0 on TypeScript errors and leaves the previous dist/ in place: only fresh outputs count.
  const fresh = outputs.every((f, i) => fs.existsSync(f) && fs.statSync(f).mtimeMs > before[i]);
  if (result.status !== 0 || !fresh) {
    process.stderr.write(result.stdout ?? "");
    process.stderr.write(result.stderr ?? "");
    throw new Error("`npm run build` failed: dist/pepr-kubevirt-infra.js and dist/pepr-module-kubevirt-infra.yaml were not (re)written");
  }
}

if (require.main === module) {
  ensureBuild();
}

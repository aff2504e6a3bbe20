// Builds the module with `pepr build` when dist/ is missing or older than the sources. `pepr build` exits 0
// even when TypeScript fails and leaves the previous dist/ in place, so success is judged by fresh outputs.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const root = path.resolve(__dirname, "..");
const outputs = ["dist/pepr-kubevirt-infra.js", "dist/pepr-module-kubevirt-infra.yaml"].map(f => path.join(root, f));
const sources = ["pepr.ts", "package.json", "capabilities", "redfish", "scripts/post-build.ts", "scripts/deploy"];
const lockDir = path.join(root, "dist.build-lock");
const LOCK_STALE_MS = 15 * 60_000;

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

/** Whether the process that took the lock is gone (a test worker killed at its hook timeout leaves the lock behind). */
function lockOwnerGone(): boolean {
  const pid = Number(fs.readFileSync(path.join(lockDir, "pid"), { encoding: "utf8", flag: "a+" }));
  if (!Number.isInteger(pid) || pid <= 0) return false; // being written: the owner just took it
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/** One build at a time: parallel test files (or a test run beside `npm start`) must not build over each other. */
async function withBuildLock(fn: () => Promise<void>): Promise<void> {
  for (;;) {
    try {
      fs.mkdirSync(lockDir);
      fs.writeFileSync(path.join(lockDir, "pid"), String(process.pid));
      break;
    } catch {
      try {
        const age = Date.now() - fs.statSync(lockDir).mtimeMs;
        // Left by a killed build: its owner is gone, or (another PID namespace) it is older than any build.
        if (lockOwnerGone() || age > LOCK_STALE_MS) fs.rmSync(lockDir, { recursive: true, force: true });
      } catch {
        // released meanwhile
      }
      await new Promise(r => setTimeout(r, 500));
    }
  }
  try {
    await fn();
  } finally {
    fs.rmSync(lockDir, { recursive: true, force: true });
  }
}

export async function ensureBuild(log: (line: string) => void = console.log): Promise<void> {
  if (!buildIsStale()) return;
  await withBuildLock(async () => {
    if (!buildIsStale()) return; // another process built it while we waited
    log("Building the module (npm run build)...");
    const before = outputs.map(f => (fs.existsSync(f) ? fs.statSync(f).mtimeMs : 0));
    const child = spawn("npm", ["run", "--silent", "build"], { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", d => (output += d));
    child.stderr.on("data", d => (output += d));
    const status = await new Promise<number | null>(resolve => child.once("exit", resolve));
    const fresh = outputs.every((f, i) => fs.existsSync(f) && fs.statSync(f).mtimeMs > before[i]);
    if (status !== 0 || !fresh) {
      process.stderr.write(output);
      throw new Error("`npm run build` failed: dist/pepr-kubevirt-infra.js and dist/pepr-module-kubevirt-infra.yaml were not (re)written");
    }
  });
}

if (require.main === module) {
  ensureBuild().catch(e => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}

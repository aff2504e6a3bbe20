// Reads the capabilities (and their bindings) out of the BUILT module, the way `pepr build` does: the bundle
// runs with PEPR_MODE=build and PeprModule sends its capability list over the IPC channel, then exits.
// Using the bundle, not the sources, means the RBAC rules describe exactly what will run in the cluster.
import { fork } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { BuildCapability } from "./rbac";

const TIMEOUT_MS = 60_000;

/** `pepr` and the other externals of the bundle resolve from this repository's node_modules, wherever dist/ is. */
const NODE_MODULES = path.resolve(__dirname, "../../node_modules");

/** Same bundle bytes, same capabilities: a process asks the bundle once (the fork takes seconds). */
const byContent = new Map<string, Promise<BuildCapability[]>>();

export function loadBuiltCapabilities(bundlePath: string): Promise<BuildCapability[]> {
  if (!fs.existsSync(bundlePath)) {
    return Promise.reject(new Error(`${bundlePath} is missing: run \`pepr build\` first (npm run build does both)`));
  }
  const key = createHash("sha256").update(fs.readFileSync(bundlePath)).digest("hex");
  const cached = byContent.get(key);
  if (cached) return cached;
  const onDisk = readSaved(bundlePath, key);
  const loading = onDisk ? Promise.resolve(onDisk) : askBundle(bundlePath).then(capabilities => (save(bundlePath, key, capabilities), capabilities));
  byContent.set(key, loading);
  loading.catch(() => byContent.delete(key));
  return loading;
}

// Every process that renders the deployment (post-build, each sandbox cluster of a test run) would otherwise
// fork the bundle again: the answer is kept next to the bundle, keyed by the bundle's hash.
function savedPath(bundlePath: string): string {
  return path.join(path.dirname(bundlePath), ".pepr-original", "capabilities.json");
}

function readSaved(bundlePath: string, key: string): BuildCapability[] | undefined {
  try {
    const saved = JSON.parse(fs.readFileSync(savedPath(bundlePath), "utf8")) as { bundleSha256?: string; capabilities?: BuildCapability[] };
    return saved.bundleSha256 === key && Array.isArray(saved.capabilities) ? saved.capabilities : undefined;
  } catch {
    return undefined;
  }
}

function save(bundlePath: string, key: string, capabilities: BuildCapability[]): void {
  const file = savedPath(bundlePath);
  const temp = `${file}.${process.pid}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(temp, JSON.stringify({ bundleSha256: key, capabilities }));
    fs.renameSync(temp, file); // atomic: concurrent readers see the old file or the new one
  } catch {
    fs.rmSync(temp, { force: true }); // a read-only dist/ only costs the next process a fork
  }
}

function askBundle(bundlePath: string): Promise<BuildCapability[]> {
  return new Promise((resolve, reject) => {
    const nodePath = [NODE_MODULES, process.env.NODE_PATH].filter(Boolean).join(path.delimiter);
    const child = fork(bundlePath, [], {
      // Plain node (no loader hooks of the parent), like the controller image runs the bundle.
      execArgv: [],
      env: { ...process.env, NODE_OPTIONS: "", NODE_PATH: nodePath, PEPR_MODE: "build", LOG_LEVEL: "warn", PEPR_WATCH_MODE: "false" },
      stdio: ["ignore", "ignore", "pipe", "ipc"],
    });
    let stderr = "";
    let settled = false;
    const finish = (error: Error | undefined, value?: BuildCapability[]) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill();
      if (error) reject(error);
      else resolve(value ?? []);
    };
    const timer = setTimeout(() => finish(new Error(`${bundlePath} did not report its capabilities within ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
    child.stderr?.on("data", chunk => (stderr = (stderr + String(chunk)).slice(-4000)));
    child.on("message", message => {
      if (!Array.isArray(message)) return finish(new Error(`${bundlePath} sent an unexpected build message`));
      finish(undefined, message as BuildCapability[]);
    });
    child.on("error", error => finish(error));
    child.on("exit", code => finish(new Error(`${bundlePath} exited (${code}) without reporting its capabilities${stderr ? `:\n${stderr}` : ""}`)));
  });
}

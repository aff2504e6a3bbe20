// Runs the built module (dist/pepr-kubevirt-infra.js) the way Pepr runs it in its pods: one process as the
// admission server (PEPR_WATCH_MODE=false) and one as the watcher (PEPR_WATCH_MODE=true), each a separate
// Node process with its own KUBECONFIG, TLS pair and port.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import fs from "node:fs";
import https from "node:https";
import path from "node:path";

export const MODULE_DIST = path.resolve(__dirname, "..", "dist");
export const MODULE_BUNDLE = path.join(MODULE_DIST, "pepr-kubevirt-infra.js");
const EXIT_WITH_PARENT = path.resolve(__dirname, "exit-with-parent.cjs");

export interface ModuleProcessOptions {
  role: "admission" | "watcher";
  kubeconfig: string;
  port: number;
  tlsKeyPath: string;
  tlsCertPath: string;
  apiPath: string;
  env?: Record<string, string>;
  /** Every log line (the module's JSON logs), for tests that assert on logs and for `npm start` output. */
  onLog?: (line: string, role: "admission" | "watcher") => void;
}

export interface ModuleProcess {
  role: "admission" | "watcher";
  port: number;
  child: ChildProcess;
  /** All log lines seen so far (bounded), for assertions. */
  logs: string[];
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

const MAX_KEPT_LINES = 20_000;

// Module processes still running when this process exits are killed synchronously on the way out (a test
// worker torn down mid-run, an exception in `npm start`). exit-with-parent.cjs covers the cases where this
// process is killed outright; this covers a child whose event loop is too busy or stuck to notice.
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export function startModuleProcess(opts: ModuleProcessOptions): ModuleProcess {
  if (!fs.existsSync(MODULE_BUNDLE)) {
    throw new Error(`${MODULE_BUNDLE} is missing: run \`npm run build\` first`);
  }
  const child = spawn(process.execPath, ["--require", EXIT_WITH_PARENT, MODULE_BUNDLE], {
    cwd: path.resolve(__dirname, ".."),
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      NODE_ENV: "production",
      LOG_LEVEL: process.env.MODULE_LOG_LEVEL ?? "info",
      PEPR_PRETTY_LOGS: "false",
      PEPR_WATCH_MODE: opts.role === "watcher" ? "true" : "false",
      PEPR_PORT: String(opts.port),
      PEPR_API_PATH: opts.apiPath,
      SSL_KEY_PATH: opts.tlsKeyPath,
      SSL_CERT_PATH: opts.tlsCertPath,
      KUBECONFIG: opts.kubeconfig,
      ...opts.env,
    },
  });
  const logs: string[] = [];
  const waiters = new Set<{ pattern: RegExp; resolve: (line: string) => void }>();
  const onLine = (line: string): void => {
    if (!line) return;
    if (logs.length >= MAX_KEPT_LINES) logs.shift();
    logs.push(line);
    opts.onLog?.(line, opts.role);
    for (const w of waiters) {
      if (w.pattern.test(line)) {
        waiters.delete(w);
        w.resolve(line);
      }
    }
  };
  for (const stream of [child.stdout, child.stderr]) {
    let buffer = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      buffer += chunk;
      const lines = buffer.split("\n");
      buffer = lines.pop() ?? "";
      lines.forEach(onLine);
    });
  }
  let exited = false;
  running.add(child);
  child.once("exit", () => {
    exited = true;
    running.delete(child);
  });

  return {
    role: opts.role,
    port: opts.port,
    child,
    logs,
    waitForLog(pattern, timeoutMs = 15_000) {
      const seen = logs.find(l => pattern.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = { pattern, resolve: (line: string) => (clearTimeout(timer), resolve(line)) };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`${opts.role}: no log line matching ${pattern} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
      await once(child, "exit").catch(() => undefined);
      clearTimeout(timer);
    },
  };
}

/** Polls GET https://127.0.0.1:<port><path> until it answers 2xx (self-signed: the caller's CA is passed). */
export async function waitForHttps(port: number, urlPath: string, ca: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  while (Date.now() < deadline) {
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = https.get({ host: "127.0.0.1", port, path: urlPath, ca, servername: "localhost", timeout: 2_000 }, res => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.on("timeout", () => req.destroy(new Error("timeout")));
      });
      if (status >= 200 && status < 300) return;
      lastError = `HTTP ${status}`;
    } catch (e) {
      lastError = (e as Error).message;
    }
    await new Promise(r => setTimeout(r, 200));
  }
  throw new Error(`https://127.0.0.1:${port}${urlPath} not ready after ${timeoutMs} ms: ${lastError}`);
}

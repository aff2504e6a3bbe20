// A standalone OpenStack Ironic (Debian's ironic-api + ironic-conductor) for end-to-end tests: noauth, sqlite,
// JSON-RPC between API and conductor, everything on loopback at free ports, its state in a temporary directory.
// Only the interfaces Metal3 uses with a Redfish BMC are enabled: redfish power/management/inspect/bios,
// redfish-virtual-media boot and the ramdisk deploy (live ISO).
//
// The processes are started with PR_SET_PDEATHSIG, so they die with the test process even when it is killed
// (stop() is the normal way); ironic-api's worker processes exit with their parent (oslo.service).
import { spawn, type ChildProcess } from "node:child_process";
import { execFile } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { vi } from "vitest";
import { freePort } from "../../sandbox/ports";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3";
export const IRONIC_API = "/usr/bin/ironic-api";
export const IRONIC_CONDUCTOR = "/usr/bin/ironic-conductor";
const IRONIC_DBSYNC = "/usr/bin/ironic-dbsync";

/** Exec a program with SIGTERM as its parent-death signal (survives execve; Linux prctl PR_SET_PDEATHSIG = 1). */
const DIE_WITH_PARENT = "import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); os.execv(sys.argv[1], sys.argv[1:])";

export function ironicInstalled(): boolean {
  return [IRONIC_API, IRONIC_CONDUCTOR, IRONIC_DBSYNC, PYTHON].every(p => fs.existsSync(p));
}

function config(dir: string, apiPort: number, rpcPort: number, httpPort: number): string {
  return `[DEFAULT]
auth_strategy = noauth
host = 127.0.0.1
rpc_transport = json-rpc
enabled_hardware_types = redfish
enabled_boot_interfaces = redfish-virtual-media
enabled_deploy_interfaces = ramdisk
enabled_inspect_interfaces = redfish
enabled_management_interfaces = redfish
enabled_power_interfaces = redfish
enabled_bios_interfaces = redfish
enabled_vendor_interfaces = no-vendor
enabled_network_interfaces = noop
default_network_interface = noop
enabled_console_interfaces = no-console
enabled_raid_interfaces = no-raid
enabled_rescue_interfaces = no-rescue
use_stderr = true
tempdir = ${dir}/tmp
[api]
host_ip = 127.0.0.1
port = ${apiPort}
api_workers = 1
[json_rpc]
auth_strategy = noauth
host_ip = 127.0.0.1
port = ${rpcPort}
[database]
connection = sqlite:///${dir}/ironic.sqlite
[conductor]
automated_clean = false
# power-state sync (Metal3 relies on it), often enough to see within a test
sync_power_state_interval = 5
[service_catalog]
# where Ironic's own API is (ramdisk kernel parameters); noauth: no Keystone catalog
auth_type = none
endpoint_override = http://127.0.0.1:${apiPort}
[deploy]
http_root = ${dir}/http
http_url = http://127.0.0.1:${httpPort}/
[redfish]
# no Swift: a boot_iso URL is handed to the BMC as it is
use_swift = false
connection_attempts = 3
connection_retry_interval = 1
[oslo_concurrency]
lock_path = ${dir}/lock
`;
}

export interface StandaloneIronic {
  url: string;
  dir: string;
  /** Calls the Ironic API (JSON in, JSON out; throws with the body on an error status). */
  api<T = Record<string, any>>(method: string, path: string, body?: unknown): Promise<T>;
  /** Both processes' output so far (for failure messages). */
  logs(): string;
  stop(): Promise<void>;
}

/**
 * The web server of Ironic's http_root (what Metal3's ironic-image runs httpd for): Ironic publishes the ISOs it
 * hands to the BMC there. Files only, no listing, nothing outside the root.
 */
async function serveHttpRoot(root: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const file = path.resolve(root, `.${decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname)}`);
    const stat = file.startsWith(`${root}${path.sep}`) && fs.existsSync(file) ? fs.statSync(file) : undefined;
    if (!stat?.isFile() || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Length": stat.size, "Content-Type": "application/octet-stream" });
    if (req.method === "HEAD") res.end();
    else fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  return server;
}

export async function startIronic(): Promise<StandaloneIronic> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kubevirt-infra-ironic-"));
  for (const sub of ["tmp", "http", "lock"]) fs.mkdirSync(path.join(dir, sub));
  const [apiPort, rpcPort] = [await freePort(), await freePort()];
  const httpRoot = await serveHttpRoot(path.join(dir, "http"));
  const conf = path.join(dir, "ironic.conf");
  fs.writeFileSync(conf, config(dir, apiPort, rpcPort, (httpRoot.address() as { port: number }).port));
  await run(IRONIC_DBSYNC, ["--config-file", conf, "create_schema"], { timeout: 120_000 });

  // requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's CA (sushy sets the node's
  // redfish_verify_ca on its session): Ironic must see only the CA each node names, as in a deployment.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== "REQUESTS_CA_BUNDLE" && key !== "CURL_CA_BUNDLE"));
  const output: string[] = [];
  const children: ChildProcess[] = [];
  for (const program of [IRONIC_CONDUCTOR, IRONIC_API]) {
    const child = spawn(PYTHON, ["-c", DIE_WITH_PARENT, program, "--config-file", conf], { env, stdio: ["ignore", "pipe", "pipe"] });
    const name = path.basename(program);
    for (const stream of [child.stdout, child.stderr]) stream?.on("data", (d: Buffer) => output.push(`[${name}] ${d.toString()}`));
    children.push(child);
  }
  const url = `http://127.0.0.1:${apiPort}`;

  const api: StandaloneIronic["api"] = async (method, p, body) => {
    const res = await fetch(`${url}${p}`, {
      method,
      headers: { "Content-Type": "application/json", "X-OpenStack-Ironic-API-Version": "latest" },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`Ironic ${method} ${p}: ${res.status} ${text}`);
    return (text ? JSON.parse(text) : {}) as never;
  };

  const stop = async () => {
    await Promise.all(
      children.map(
        child =>
          new Promise<void>(resolve => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
            child.once("exit", () => {
              clearTimeout(kill);
              resolve();
            });
            child.kill("SIGTERM");
          }),
      ),
    );
    await new Promise(resolve => httpRoot.close(resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  };

  // Ready when the API answers and the conductor has registered the redfish driver.
  // Up once a conductor has registered the redfish driver; a process that exits ends the wait at once.
  const started = await vi
    .waitFor(
      async () => {
        if (children.some(ch => ch.exitCode !== null)) return "a process exited";
        const drivers = await api<{ drivers: { name: string; hosts: string[] }[] }>("GET", "/v1/drivers"); // throws while not listening
        if (!drivers.drivers.some(d => d.name === "redfish" && d.hosts.length > 0)) throw new Error("no conductor with the redfish driver yet");
        return "up";
      },
      { timeout: 120_000, interval: 500 },
    )
    .catch((e: unknown) => (e instanceof Error ? e.message : String(e)));
  if (started !== "up") {
    await stop();
    throw new Error(`standalone Ironic did not start (${started}):\n${output.join("").slice(-4000)}`);
  }
  return { url, dir, api, logs: () => output.join(""), stop };
}

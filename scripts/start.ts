// `npm start`: builds the module if needed, starts the sandbox cluster (API server, KubeVirt/CDI simulators,
// image server) and the built module as real processes, seeds the demo, and prints how to use it.
// Ctrl-C stops everything it started.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { ensureBuild } from "./ensure-build";
import { startSandboxCluster } from "../sandbox/cluster";
import { waitForHttps } from "../sandbox/module-process";

const root = path.resolve(__dirname, "..");

function portFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`${name}=${raw} is not a port number (0-65535)`);
    process.exit(2);
  }
  return port;
}

const USAGE = `usage: npm start [-- --help]
Settings are environment variables: REDFISH_PORT (default 8443, 0 = any free port), SANDBOX_API_PORT (default 0),
SANDBOX_STATE_DIR (default .sandbox), SANDBOX_VERBOSE=true (print the module's logs here).`;

/** No arguments but --help: anything else is refused rather than silently ignored. */
function parseCommandLine(argv: string[]): { help: boolean } {
  try {
    return parseArgs({ args: argv, options: { help: { type: "boolean", short: "h", default: false } }, strict: true }).values;
  } catch (e) {
    console.error(`${e instanceof Error ? e.message : String(e)}\n${USAGE}`);
    process.exit(2);
  }
}

async function main(): Promise<void> {
  if (parseCommandLine(process.argv.slice(2)).help) {
    console.log(USAGE);
    return;
  }
  const redfishPort = portFromEnv("REDFISH_PORT", 8443);
  const apiPort = portFromEnv("SANDBOX_API_PORT", 0);
  const stateDir = path.resolve(root, process.env.SANDBOX_STATE_DIR || ".sandbox");
  fs.rmSync(stateDir, { recursive: true, force: true });
  fs.mkdirSync(stateDir, { recursive: true });

  await ensureBuild();
  const verbose = process.env.SANDBOX_VERBOSE === "true";
  const logFile = fs.createWriteStream(path.join(stateDir, "module.log"));
  console.log("Starting the sandbox cluster and the module...");
  const cluster = await startSandboxCluster({
    demo: true,
    apiPort,
    redfishPort,
    stateDir,
    onLog: (line, source) => {
      logFile.write(`[${source}] ${line}\n`);
      if (verbose) console.log(`[${source}] ${line}`);
    },
  });

  // startSandboxCluster returns once the configuration is in force in both module processes; the Redfish
  // listener starts from that configuration, so wait for it too before announcing it.
  await waitForHttps(cluster.redfishPort, "/redfish/v1/", cluster.caPem, 60_000);

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping the module and the sandbox...`);
    await cluster.stop().catch(e => console.error(e));
    logFile.end();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));

  const redfish = `https://localhost:${cluster.redfishPort}`;
  const caPath = path.relative(process.cwd(), path.join(stateDir, "ca.crt")) || "ca.crt";
  console.log(`
kubevirt-infra is running against the sandbox cluster.

  Sandbox API server   ${cluster.api.url}      (SANDBOX_API_PORT)
  Kubeconfig           ${cluster.kubeconfig}
  Redfish (HTTPS)      ${redfish}/redfish/v1/   (REDFISH_PORT)
  Sandbox CA           ${caPath}
  Image server         ${cluster.isoServer.url}/images/demo.iso
  Module logs          ${path.join(stateDir, "module.log")}   (SANDBOX_VERBOSE=true prints them here)

Try:
  curl --cacert ${caPath} ${redfish}/redfish/v1/
  curl --cacert ${caPath} -u admin:admin123 ${redfish}/redfish/v1/Systems
  curl --cacert ${caPath} -u tenant1:tenant1-pass ${redfish}/redfish/v1/Systems
  curl --cacert ${caPath} -u admin:admin123 -H 'Content-Type: application/json' \\
       -d '{"ResetType":"On"}' ${redfish}/redfish/v1/Systems/tenant1-vms.vm-1/Actions/ComputerSystem.Reset
  # virtual media: insert the demo ISO (202 + a Task), then watch the Task progress
  curl --cacert ${caPath} -u admin:admin123 -H 'Content-Type: application/json' \\
       -d '{"Image":"${cluster.isoServer.url}/slow/demo.iso"}' \\
       ${redfish}/redfish/v1/Systems/tenant1-vms.vm-1/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia
  curl --cacert ${caPath} -u admin:admin123 ${redfish}/redfish/v1/TaskService/Tasks
  KUBECONFIG=${cluster.kubeconfig} kubectl get nodes -o yaml     # any kubectl-style client works

Ctrl-C stops everything.`);
}

main().catch(e => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});

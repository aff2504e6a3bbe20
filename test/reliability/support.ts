// Shared by the reliability and security suites: the sandbox cluster with the BUILT module (every log line of
// the API server, admission server and watcher captured), VMs, and a Redfish client over HTTPS that can speak
// from any loopback address (127.0.0.0/8 all reaches the watcher) and records every session token it sees.
import https from "node:https";
import { expect } from "vitest";
import { redfishRequest, type RedfishRequestOptions, type RedfishResponse } from "../helpers/redfish-client";
import { startTestCluster, type TestCluster } from "../helpers/cluster";
import { demoVirtualMachine } from "../../sandbox/demo";
import { waitForHttps } from "../../sandbox/module-process";
import type { KubeObject } from "../../sandbox/apiserver/types";
import { SANDBOX_ANNOTATIONS } from "../../sandbox/simulators";
import type { SandboxClusterOptions } from "../../sandbox/cluster";

export const VM_KEY = "virtualmachines.kubevirt.io";
export const VMI_KEY = "virtualmachineinstances.kubevirt.io";
export const DV_KEY = "datavolumes.cdi.kubevirt.io";
export const MEDIA_FOR_LABEL = "kubevirt-infra.io/media-for";

export interface CapturedLine {
  source: string;
  line: string;
}

export interface SuiteCluster extends TestCluster {
  /** Every log line of every process of the sandbox (API server, admission, watcher, restarts included). */
  logs: CapturedLine[];
  /** Session tokens seen in any X-Auth-Token response header during the suite. */
  issuedTokens: Set<string>;
  client(opts?: { localAddress?: string }): RedfishClient;
  /** Kills the watcher (SIGKILL: a crash, no graceful shutdown) and starts a new one; resolves when Redfish answers. */
  crashAndRestartWatcher(): Promise<void>;
  waitForRedfish(): Promise<void>;
  /**
   * Resolves once every line the watcher logged before the call is in `logs`: the watcher logs a failed login
   * (info level) with the username, and its output arrives in order.
   */
  watcherLogsFlushed(): Promise<void>;
}

export async function startSuiteCluster(opts: SandboxClusterOptions): Promise<SuiteCluster> {
  const logs: CapturedLine[] = [];
  const cluster = await startTestCluster({ ...opts, onLog: (line, source) => logs.push({ source, line }) });
  const issuedTokens = new Set<string>();
  const suite = cluster as SuiteCluster;
  suite.logs = logs;
  suite.issuedTokens = issuedTokens;
  suite.client = (o = {}) => redfishClient(cluster, issuedTokens, o.localAddress);
  // /healthz on the Redfish port answers 200 once the initial lists have filled the watch cache.
  suite.waitForRedfish = () => waitForHttps(cluster.redfishPort, "/healthz", cluster.caPem, 60_000);
  suite.crashAndRestartWatcher = async () => {
    cluster.watcher!.child.kill("SIGKILL");
    await cluster.stopModule(["watcher"]);
    await cluster.startModule(["watcher"]);
    await suite.waitForRedfish();
  };
  let barriers = 0;
  suite.watcherLogsFlushed = async () => {
    const username = `log-barrier-${++barriers}`;
    // An address of its own, so the barrier's failed logins never hold back a test's logins.
    const target = { port: cluster.redfishPort, ca: cluster.caPem, localAddress: `127.0.0.${200 + (barriers % 50)}` };
    expect((await redfishRequest(target, "GET", "/redfish/v1/Systems", { user: `${username}:not-a-password` })).status).toBe(401);
    await cluster.watcher!.waitForLog(new RegExp(`"username":"${username}"`), 10_000);
  };
  await suite.waitForRedfish();
  return suite;
}

/**
 * The one-chassis cluster of the media suites: namespace rel-vms = chassis "rel", user ops, VMs stepping every
 * 50 ms; `iso` sets how fast the image server serves.
 */
export const RELIABILITY_NAMESPACE = "rel-vms";
export const RELIABILITY_USER = "ops:ops-password-1";

export async function startReliabilityCluster(
  iso: SandboxClusterOptions["iso"],
  moduleEnv?: SandboxClusterOptions["moduleEnv"],
): Promise<{ c: SuiteCluster; rf: RedfishClient }> {
  const c = await startSuiteCluster({
    config: {
      chassis: [{ name: "rel", namespace: RELIABILITY_NAMESPACE }],
      datavolume: { storageSize: "1Gi" },
      // The local image server is on loopback: allowed explicitly, as a lab does. The concurrency suite makes
      // 70 inserts as one user within seconds.
      redfish: { imageUrlPolicy: { allowCidrs: ["127.0.0.1/32"] }, insertMediaRate: { burst: 200 } },
    },
    users: [{ username: "ops", password: "ops-password-1", chassis: ["rel"] }],
    kubevirt: { stepDelayMs: 50 },
    iso,
    moduleEnv,
  });
  createNamespace(c, RELIABILITY_NAMESPACE);
  return { c, rf: c.client() };
}

// ---- Redfish over HTTPS ----

export type { RedfishResponse };
export type RequestOptions = RedfishRequestOptions;

export interface RedfishClient {
  request(method: string, path: string, opts?: RequestOptions): Promise<RedfishResponse>;
  close(): void;
}

function redfishClient(cluster: TestCluster, issuedTokens: Set<string>, localAddress?: string): RedfishClient {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 32, ca: cluster.caPem });
  return {
    request: async (method, path, o = {}) => {
      const res = await redfishRequest({ port: cluster.redfishPort, ca: cluster.caPem, agent, localAddress }, method, path, o);
      const token = res.headers["x-auth-token"];
      if (typeof token === "string" && token !== "") issuedTokens.add(token);
      return res;
    },
    close: () => agent.destroy(),
  };
}

// ---- cluster objects ----

let vmCounter = 0;

/** A VM like the demo's (2 vCPU, 4 GiB, one NIC with a MAC, a container disk), stopped unless told otherwise. */
export function vmObject(
  namespace: string,
  name: string,
  o: { runStrategy?: string; acpiShutdownSeconds?: number; labels?: Record<string, string> } = {},
): KubeObject {
  const n = ++vmCounter;
  const hex = (shift: number) => ((n >> shift) & 0xff).toString(16).padStart(2, "0");
  const vm = demoVirtualMachine(namespace, name, `5e1d0000-0000-4000-8000-${String(n).padStart(12, "0")}`, `02:00:00:${hex(16)}:${hex(8)}:${hex(0)}`);
  const spec = vm.spec as { runStrategy: string; template: { metadata: { annotations?: Record<string, string> } } };
  if (o.runStrategy) spec.runStrategy = o.runStrategy;
  if (o.acpiShutdownSeconds !== undefined) {
    spec.template.metadata.annotations = { [SANDBOX_ANNOTATIONS.acpiShutdownSeconds]: String(o.acpiShutdownSeconds) };
  }
  if (o.labels) vm.metadata.labels = { ...vm.metadata.labels, ...o.labels };
  return vm;
}

export function createNamespace(c: TestCluster, name: string): void {
  if (!c.api.store.get("namespaces", undefined, name)) c.api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
}

/** DataVolumes this module made as virtual media of a VM (by its label), as the API server has them. */
export function mediaDataVolumes(c: TestCluster, namespace: string, vmName: string): KubeObject[] {
  return c.api.store.list(DV_KEY, namespace).filter(dv => dv.metadata.labels?.[MEDIA_FOR_LABEL] === vmName);
}

export function httpSourceUrl(dv: KubeObject): string | undefined {
  return (dv.spec as { source?: { http?: { url?: string } } } | undefined)?.source?.http?.url;
}

/** The DataVolume name the VM's virtual CD volume references, if any. */
export function attachedDataVolume(vm: KubeObject | undefined): string | undefined {
  const volumes = (vm?.spec as { template?: { spec?: { volumes?: { name: string; dataVolume?: { name?: string } }[] } } } | undefined)?.template?.spec?.volumes ?? [];
  return volumes.find(v => v.name === "virtualmedia-cd")?.dataVolume?.name;
}

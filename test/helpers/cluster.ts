// Test helper: the sandbox cluster with the built module, plus clients for it.
//
//   const c = await startTestCluster({ config: {...}, users: [...] });   // or { demo: true }
//   const core = c.kc.makeApiClient(CoreV1Api);                          // @kubernetes/client-node against the sandbox
//   await c.redfish("GET", "/redfish/v1/Systems", { user: "admin:admin123" })   // HTTPS with the sandbox CA
//   await c.waitFor(() => condition, { timeoutMs: 5000 })
//   afterAll(() => c.stop())
//
// Everything started here is stopped by c.stop(); module processes also exit if the test process dies.
import { KubeConfig } from "@kubernetes/client-node";
import { redfishRequest, type RedfishRequestOptions, type RedfishResponse } from "./redfish-client";
import { startSandboxCluster, type SandboxCluster, type SandboxClusterOptions } from "../../sandbox/cluster";
import { ensureBuild } from "../../scripts/ensure-build";

type Truthy<T> = Exclude<T, undefined | null | false | 0 | "">;

export interface TestCluster extends SandboxCluster {
  kc: KubeConfig;
  redfish(method: string, path: string, opts?: RedfishRequestOptions): Promise<RedfishResponse>;
  /** Resolves with the first truthy value the probe returns (exceptions count as "not yet"). */
  waitFor<T>(probe: () => T | Promise<T>, opts?: { timeoutMs?: number; intervalMs?: number; what?: string }): Promise<Truthy<T>>;
}

export async function startTestCluster(opts: SandboxClusterOptions = {}): Promise<TestCluster> {
  // End-to-end suites run the BUILT module: build once (under a lock) when the sources are newer than dist/.
  if (opts.module !== false) await ensureBuild(() => undefined);
  // The module runs under the generated ServiceAccount RBAC, enforced: a 403 means the chart lacks a rule.
  const cluster = await startSandboxCluster({ rbac: true, ...opts });
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);

  const redfish: TestCluster["redfish"] = (method, path, o = {}) =>
    redfishRequest({ port: cluster.redfishPort, ca: cluster.caPem }, method, path, o);

  const waitFor: TestCluster["waitFor"] = async (probe, o = {}) => {
    const deadline = Date.now() + (o.timeoutMs ?? 10_000);
    let last: unknown;
    for (;;) {
      try {
        last = await probe();
        if (last) return last as never;
      } catch (e) {
        last = e;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${o.what ?? "condition"}; last: ${String(last)}`);
      await new Promise(r => setTimeout(r, o.intervalMs ?? 100));
    }
  };

  return Object.assign(cluster, { kc, redfish, waitFor }) as TestCluster;
}

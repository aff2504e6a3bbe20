// Test helper: the sandbox cluster with the built module, plus clients for it.
//
//   const c = await startTestCluster({ config: {...}, users: [...] });   // or { demo: true }
//   const core = c.kc.makeApiClient(CoreV1Api);                          // @kubernetes/client-node against the sandbox
//   await c.redfish("GET", "/redfish/v1/Systems", { user: "admin:admin123" })   // HTTPS with the sandbox CA
//   await expect.poll(() => condition, { message: "what" }).toBe(true)   // or vi.waitFor(() => present(value, "what"))
//   afterAll(() => c.stop())
//
// Everything started here is stopped by c.stop(); module processes also exit if the test process dies.
import { KubeConfig } from "@kubernetes/client-node";
import { redfishRequest, type RedfishRequestOptions, type RedfishResponse } from "./redfish-client";
import { startSandboxCluster, type SandboxCluster, type SandboxClusterOptions } from "../../sandbox/cluster";
import { ensureBuild } from "../../scripts/ensure-build";

export interface TestCluster extends SandboxCluster {
  kc: KubeConfig;
  redfish(method: string, path: string, opts?: RedfishRequestOptions): Promise<RedfishResponse>;
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

  return Object.assign(cluster, { kc, redfish }) as TestCluster;
}

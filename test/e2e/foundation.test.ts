// The foundation, end to end: the sandbox API server calls the BUILT module's admission server over HTTPS,
// and a ConfigMap change is in force in both module processes (watcher and admission) within 5 s; an invalid
// change is refused with the field named while the last good configuration stays in force.
import fs from "node:fs";
import { CoreV1Api, type V1ConfigMap } from "@kubernetes/client-node";
import YAML from "yaml";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestCluster, type TestCluster } from "../helpers/cluster";
import type { ModuleProcess } from "../../sandbox/module-process";
import { present } from "../helpers/present";

interface LogLine {
  msg?: string;
  configMapResourceVersion?: string;
  [k: string]: unknown;
}

function parsed(proc: ModuleProcess | undefined): LogLine[] {
  return (proc?.logs ?? []).flatMap(l => {
    try {
      return [JSON.parse(l) as LogLine];
    } catch {
      return [];
    }
  });
}

const baseConfig = {
  role: "both",
  infra: { namespace: "tenant1-vms" },
  nodeMapping: [{ nodeName: "worker-0", vmName: "vm-1" }],
};

describe("foundation: sandbox + built module", () => {
  let c: TestCluster;
  const apiserverLog: string[] = [];

  beforeAll(async () => {
    c = await startTestCluster({
      config: baseConfig,
      onLog: (line, source) => {
        if (source === "apiserver") apiserverLog.push(line);
      },
    });
  });
  afterAll(async () => c?.stop());

  it("calls the module's admission server over HTTPS when a Node is created", async () => {
    const core = c.kc.makeApiClient(CoreV1Api);
    await core.createNode({ body: { metadata: { name: "admission-probe" }, spec: {} } });
    // The API server verified the admission server's certificate against the webhook's caBundle and got an
    // answer (a "call failed" line would mean TLS or transport trouble, hidden by failurePolicy Ignore).
    const call = apiserverLog.find(l => l.includes("CREATE") && l.includes("admission-probe") && /mutating/i.test(l));
    expect(call, apiserverLog.join("\n")).toMatch(/allowed in [\d.]+ms/);
    expect(apiserverLog.some(l => l.includes("admission-probe") && l.includes("call failed"))).toBe(false);
    // ...and the admission process itself logged the request it served.
    await c.admission!.waitForLog(/"msg":"Incoming request".*admission-probe|admission-probe.*"msg":"Incoming request"/, 5_000);
  });

  it("runs the watcher with its Deployment's process settings (the manifest's watcher env)", () => {
    const environ = fs.readFileSync(`/proc/${c.watcher!.child.pid}/environ`, "utf8").split("\0");
    expect(environ).toContain("MALLOC_ARENA_MAX=2");
    expect(environ.find(v => v.startsWith("NODE_OPTIONS="))).toContain("--max-semi-space-size=4");
  });

  it("puts a ConfigMap change in force in the watcher and the admission process within 5 s", async () => {
    const core = c.kc.makeApiClient(CoreV1Api);
    // Both processes have the initial configuration.
    await c.watcher!.waitForLog(/config applied generation=/, 20_000);
    await c.admission!.waitForLog(/config applied generation=/, 20_000);

    const current = await core.readNamespacedConfigMap({ name: "kubevirt-infra-config", namespace: "pepr-system" });
    const changed: V1ConfigMap = {
      ...current,
      data: { "config.yaml": YAML.stringify({ ...baseConfig, nodeMapping: [{ nodeName: "worker-0", vmName: "vm-2" }] }) },
    };
    const started = Date.now();
    const written = await core.replaceNamespacedConfigMap({ name: "kubevirt-infra-config", namespace: "pepr-system", body: changed });
    const rv = written.metadata!.resourceVersion!;
    const inForce = (p: ModuleProcess | undefined): boolean =>
      parsed(p).some(l => l.msg?.startsWith("config applied") && l.configMapResourceVersion === rv);
    await expect.poll(() => inForce(c.watcher) && inForce(c.admission), { timeout: 5_000, interval: 50, message: `config rv ${rv} in both processes` }).toBe(true);
    const elapsed = Date.now() - started;
    console.log(`config change in force in watcher and admission after ${elapsed} ms`);
    expect(elapsed).toBeLessThan(5_000);
  });

  it("refuses an invalid change with the field named and keeps the last good config", async () => {
    const core = c.kc.makeApiClient(CoreV1Api);
    const current = await core.readNamespacedConfigMap({ name: "kubevirt-infra-config", namespace: "pepr-system" });
    const applied = parsed(c.watcher).filter(l => l.msg?.startsWith("config applied")).length;
    await core.replaceNamespacedConfigMap({
      name: "kubevirt-infra-config",
      namespace: "pepr-system",
      body: { ...current, data: { "config.yaml": YAML.stringify({ ...baseConfig, chassis: [{ name: "t1", namespace: "Not_A_Namespace" }] }) } },
    });
    const refusal = await c.watcher!.waitForLog(/config refused/, 5_000);
    expect(refusal).toContain("chassis[0].namespace");
    // An Event on the ConfigMap tells whoever runs `kubectl describe configmap` why.
    const events = await vi.waitFor(async () => {
      const list = await core.listNamespacedEvent({ namespace: "pepr-system" });
      return present(
        list.items.find(e => e.involvedObject.name === "kubevirt-infra-config" && e.type === "Warning" && e.message?.includes("chassis[0].namespace")),
        "Warning Event on the ConfigMap",
      );
    }, { timeout: 5_000, interval: 100 });
    expect(events?.message).toContain("chassis[0].namespace");
    // Nothing new was applied. Not vacuous: a valid change written after the refused one is applied after it (the
    // watcher takes ConfigMap versions in order), so once it is in force the refused one has been handled.
    const marker = await core.replaceNamespacedConfigMap({
      name: "kubevirt-infra-config",
      namespace: "pepr-system",
      body: { ...current, metadata: { ...current.metadata, resourceVersion: undefined }, data: { "config.yaml": YAML.stringify({ ...baseConfig, nodeMapping: [{ nodeName: "worker-0", vmName: "vm-1" }] }) } },
    });
    const markerRv = marker.metadata!.resourceVersion!;
    const appliedLines = () => parsed(c.watcher).filter(l => l.msg?.startsWith("config applied"));
    await expect.poll(() => appliedLines().some(l => l.configMapResourceVersion === markerRv), { timeout: 5_000, interval: 50, message: `the later config rv ${markerRv} applied` }).toBe(true);
    expect(appliedLines().filter(l => l.configMapResourceVersion !== markerRv).length).toBe(applied);
  });
});

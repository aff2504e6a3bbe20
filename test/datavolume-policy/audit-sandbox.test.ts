// The watcher audit fed by the shared DataVolume informer (real list + watch), writing through the real gateway
// to the sandbox API server: Events on the DataVolumes, the summary ConfigMap, the metric; re-audit on config change.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { K8s, kind, metricsCollector } from "pepr";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { SharedInformers } from "../../capabilities/common/informers";
import { closeSharedKubeClient, sharedKubeClient } from "../../capabilities/common/kube-client";
import { startApiServer, type ApiServer, type KubeObject } from "../../sandbox/apiserver";
import { recordEvent } from "../../capabilities/common/gateway";
import { DataVolume } from "../../capabilities/common/kinds";
import { encodePublishedConfig } from "../../capabilities/config/publish";
import { applyPublishedConfig, currentConfig, onConfigChange } from "../../capabilities/config/runtime";
import { moduleConfigSchema } from "../../capabilities/config/schema";
import { dataVolumeAudit, startDataVolumeAuditWatch } from "../../capabilities/datavolume-policy";
import { AUDIT_CONFIGMAP } from "../../capabilities/datavolume-policy/summary";
import { configDoc, dataVolume, NS, TENANT1_LABELS } from "./policy-helpers";

const DV = "datavolumes.cdi.kubevirt.io";
let api: ApiServer;
let stateDir: string;

let informers: SharedInformers;
const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined };

/** Waits until the DataVolume informer holds exactly what the API server stores in the policed namespaces (resourceVersions included). */
async function informerCaughtUp(): Promise<void> {
  const versions = (objs: { metadata: { namespace?: string; name?: string; resourceVersion?: string } }[]) =>
    objs.map(o => `${o.metadata.namespace}/${o.metadata.name}@${o.metadata.resourceVersion}`).sort();
  const informer = informers.informer("DataVolume");
  const policed = (o: KubeObject) => (currentConfig()?.datavolumePolicy.namespaces ?? []).includes(o.metadata.namespace!);
  await vi.waitFor(() => expect(versions(informer.list())).toEqual(versions(api.store.list(DV).filter(policed))), { timeout: 10_000 });
}

function storedDataVolume(name: string, opts: Parameters<typeof dataVolume>[1] = {}): KubeObject {
  const obj = dataVolume(name, opts) as KubeObject;
  delete obj.metadata.uid; // the API server assigns it
  return api.store.create(DV, obj);
}

const eventsIn = (namespace: string) =>
  api.store.list("events", namespace).filter(e => (e.source as { component?: string })?.component === "kubevirt-infra");

function useConfig(doc: Record<string, unknown>, version: string): void {
  const outcome = applyPublishedConfig(encodePublishedConfig(moduleConfigSchema.parse(doc), version));
  expect(outcome.status).toBe("applied");
}

const classes = { storageClassEnforcement: { allowAll: false, allowDefault: true, allowList: ["fast"] } };

beforeAll(async () => {
  api = await startApiServer();
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "dv-audit-"));
  const kubeconfig = path.join(stateDir, "kubeconfig");
  await api.writeKubeconfig(kubeconfig);
  process.env.KUBECONFIG = kubeconfig;
  await closeSharedKubeClient();
  for (const name of ["pepr-system", NS, "tenant2-vms"]) {
    api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
  }
  informers = new SharedInformers(await sharedKubeClient(), {
    log: quiet,
    config: { current: currentConfig, onChange: onConfigChange },
    backoff: { initialMs: 50, maxMs: 500 },
  });
  startDataVolumeAuditWatch(informers);
});

afterAll(async () => {
  dataVolumeAudit().stop();
  await informers?.stop();
  await closeSharedKubeClient();
  await api?.close();
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

describe("DataVolume audit against the sandbox API server", () => {
  it("reports pre-existing violating DataVolumes with Events, a summary ConfigMap and a metric", async () => {
    storedDataVolume("pvc-unlabelled");
    storedDataVolume("pvc-compliant", { labels: TENANT1_LABELS });
    storedDataVolume("pvc-slow", { labels: TENANT1_LABELS, storageClassName: "slow" });
    storedDataVolume("vm-1-rootdisk");
    storedDataVolume("pvc-other-ns", { namespace: "tenant2-vms" });

    useConfig(configDoc(classes), "1");
    await informerCaughtUp();
    await dataVolumeAudit().flush();

    const events = eventsIn(NS);
    expect(events.map(e => [(e.involvedObject as { name: string }).name, e.reason]).sort()).toEqual([
      ["pvc-slow", "DisallowedStorageClass"],
      ["pvc-unlabelled", "MissingTenantLabels"],
    ]);
    const unlabelled = events.find(e => e.reason === "MissingTenantLabels")!;
    expect(unlabelled).toMatchObject({ type: "Warning", involvedObject: { kind: "DataVolume", namespace: NS } });
    expect((unlabelled.involvedObject as { uid: string }).uid).toBe(api.store.get(DV, NS, "pvc-unlabelled")!.metadata.uid);
    expect(unlabelled.message).toContain(`label csi-driver/cluster is missing (expected "tenant1")`);
    expect(eventsIn("tenant2-vms")).toEqual([]);

    const summary = api.store.get("configmaps", AUDIT_CONFIGMAP.namespace, AUDIT_CONFIGMAP.name);
    const data = summary?.data as Record<string, string>;
    expect(data["summary.txt"]).toContain(`Namespace ${NS}: 3 CSI DataVolumes, 2 with violations`);
    expect(data["summary.txt"]).toContain("pvc-unlabelled");
    expect(JSON.parse(data["summary.json"]).totals).toMatchObject({ csiDataVolumes: 3, violatingDataVolumes: 2 });

    const metrics = await metricsCollector.getMetrics();
    expect(metrics).toContain('pepr_kubevirt_infra_dv_policy_violations{rule="requiredLabels"} 1');
    expect(metrics).toContain('pepr_kubevirt_infra_dv_policy_violations{rule="storageClass"} 1');
  });

  it("does not repeat Events on a re-list, and a repeated report after a restart is absorbed by the fixed name", async () => {
    const lists = informers.informer("DataVolume").stats().lists;
    api.dropWatches({ expired: true }); // 410 in the stream: the informer re-lists, replaying nothing new
    await vi.waitFor(() => expect(informers.informer("DataVolume").stats().lists).toBe(lists + 1), { timeout: 10_000 });
    await dataVolumeAudit().flush();
    expect(eventsIn(NS)).toHaveLength(2);

    const existing = eventsIn(NS)[0];
    const dv = api.store.get(DV, NS, (existing.involvedObject as { name: string }).name)!;
    await recordEvent(dv, "Warning", existing.reason as string, existing.message as string, { name: existing.metadata.name });
    expect(eventsIn(NS)).toHaveLength(2);
  });

  it("re-audits on a config change, and updates the summary when DataVolumes are fixed or deleted", async () => {
    useConfig(configDoc({ ...classes, namespaces: [NS, "tenant2-vms"] }), "2");
    // The newly policed namespace's DataVolumes arrive on its own stream.
    await informerCaughtUp();
    await dataVolumeAudit().flush();
    expect(eventsIn("tenant2-vms").map(e => [(e.involvedObject as { name: string }).name, e.reason])).toEqual([
      ["pvc-other-ns", "MissingTenantLabels"],
    ]);

    await K8s(DataVolume).Apply(
      { apiVersion: "cdi.kubevirt.io/v1beta1", kind: "DataVolume", metadata: { name: "pvc-unlabelled", namespace: NS, labels: TENANT1_LABELS } },
      { force: true },
    );
    api.store.delete(DV, NS, "pvc-slow");
    await informerCaughtUp();
    await dataVolumeAudit().flush();

    const data = api.store.get("configmaps", AUDIT_CONFIGMAP.namespace, AUDIT_CONFIGMAP.name)!.data as Record<string, string>;
    expect(data["summary.txt"]).toContain(`Namespace ${NS}: 2 CSI DataVolumes, 0 with violations`);
    expect(data["summary.txt"]).toContain("Namespace tenant2-vms: 1 CSI DataVolumes, 1 with violations");
    expect(data["summary.txt"]).not.toContain("pvc-slow");
    const list = await K8s(kind.ConfigMap).InNamespace(AUDIT_CONFIGMAP.namespace).Get(AUDIT_CONFIGMAP.name);
    expect(list.metadata?.labels).toMatchObject({ "app.kubernetes.io/managed-by": "kubevirt-infra" });
  });
});

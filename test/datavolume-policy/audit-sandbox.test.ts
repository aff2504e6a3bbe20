// The watcher audit through the capability's Pepr Watch bindings, writing through the real gateway (Pepr's K8s())
// to the sandbox API server: Events on the DataVolumes, the summary ConfigMap, the metric; re-audit on config change.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { K8s, kind, metricsCollector } from "pepr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type ApiServer, type KubeObject } from "../../sandbox/apiserver";
import { recordEvent } from "../../capabilities/common/gateway";
import { DataVolume } from "../../capabilities/common/kinds";
import { encodePublishedConfig } from "../../capabilities/config/publish";
import { applyPublishedConfig } from "../../capabilities/config/runtime";
import { moduleConfigSchema } from "../../capabilities/config/schema";
import { DataVolumePolicy, dataVolumeAudit } from "../../capabilities/datavolume-policy";
import { AUDIT_CONFIGMAP } from "../../capabilities/datavolume-policy/summary";
import { configDoc, dataVolume, NS, TENANT1_LABELS } from "./policy-helpers";

const DV = "datavolumes.cdi.kubevirt.io";
let api: ApiServer;
let stateDir: string;

const watchBinding = (event: string) => {
  const binding = DataVolumePolicy.bindings.find(b => b.isWatch && b.event === event && b.watchCallback);
  if (!binding) throw new Error(`no ${event} watch binding`);
  return binding.watchCallback!;
};

/** Delivers every stored DataVolume to the Watch binding, as Pepr's list+watch does at start and on re-list. */
async function deliverAll(): Promise<void> {
  const list = await K8s(DataVolume).Get();
  const onUpsert = watchBinding("CREATEORUPDATE");
  for (const dv of list.items) await onUpsert(dv, "ADDED" as never);
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
  process.env.KUBECONFIG = kubeconfig; // Pepr's K8s() reads it on every call
  for (const name of ["pepr-system", NS, "tenant2-vms"]) {
    api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
  }
});

afterAll(async () => {
  dataVolumeAudit().stop();
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
    await deliverAll();
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
    await deliverAll();
    await dataVolumeAudit().flush();
    expect(eventsIn(NS)).toHaveLength(2);

    const existing = eventsIn(NS)[0];
    const dv = api.store.get(DV, NS, (existing.involvedObject as { name: string }).name)!;
    await recordEvent(dv, "Warning", existing.reason as string, existing.message as string, { name: existing.metadata.name });
    expect(eventsIn(NS)).toHaveLength(2);
  });

  it("re-audits on a config change, and updates the summary when DataVolumes are fixed or deleted", async () => {
    useConfig(configDoc({ ...classes, namespaces: [NS, "tenant2-vms"] }), "2");
    await dataVolumeAudit().flush();
    expect(eventsIn("tenant2-vms").map(e => [(e.involvedObject as { name: string }).name, e.reason])).toEqual([
      ["pvc-other-ns", "MissingTenantLabels"],
    ]);

    const fixed = await K8s(DataVolume).Apply(
      { apiVersion: "cdi.kubevirt.io/v1beta1", kind: "DataVolume", metadata: { name: "pvc-unlabelled", namespace: NS, labels: TENANT1_LABELS } },
      { force: true },
    );
    await watchBinding("CREATEORUPDATE")(fixed, "MODIFIED" as never);
    const gone = api.store.get(DV, NS, "pvc-slow")!;
    api.store.delete(DV, NS, "pvc-slow");
    await watchBinding("DELETE")(gone as never, "DELETED" as never);
    await dataVolumeAudit().flush();

    const data = api.store.get("configmaps", AUDIT_CONFIGMAP.namespace, AUDIT_CONFIGMAP.name)!.data as Record<string, string>;
    expect(data["summary.txt"]).toContain(`Namespace ${NS}: 2 CSI DataVolumes, 0 with violations`);
    expect(data["summary.txt"]).toContain("Namespace tenant2-vms: 1 CSI DataVolumes, 1 with violations");
    expect(data["summary.txt"]).not.toContain("pvc-slow");
    const list = await K8s(kind.ConfigMap).InNamespace(AUDIT_CONFIGMAP.namespace).Get(AUDIT_CONFIGMAP.name);
    expect(list.metadata?.labels).toMatchObject({ "app.kubernetes.io/managed-by": "kubevirt-infra" });
  });
});

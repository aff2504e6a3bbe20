// Tasks of virtual-media imports, derived from DataVolumes: state and progress mapping, ids, the TaskService
// and task monitors over a watch cache, and that a new app (a restarted watcher) shows the same tasks.
import { describe, expect, it } from "vitest";
import type { KubeObject } from "../../redfish/cache/types";
import { CD_VOLUME } from "../../redfish/media/model";
import { mediaDataVolume } from "../../redfish/media/plan";
import { mediaSettings } from "../../redfish/media/settings";
import { importProgress, mediaTaskBody, parseTaskId, percentOf, taskIdOf } from "../../redfish/tasks/derive";
import { AUTH, revise, testConfig, testService } from "./fixtures";

const NOW = Date.parse("2025-01-01T00:10:00Z");

function mediaDv(vmObj: KubeObject, suffix: string, status?: Record<string, unknown>, created = "2025-01-01T00:09:00Z"): KubeObject {
  const name = `${vmObj.metadata.name}-cd-${suffix}`;
  const dv = mediaDataVolume(
    { namespace: vmObj.metadata.namespace!, name: vmObj.metadata.name!, uid: vmObj.metadata.uid! },
    name,
    { image: `http://images.example/${suffix}.iso`, protocol: "HTTP", credentials: { username: "u", password: "Never-Shown-9" } },
    mediaSettings(testConfig().datavolume),
  );
  return { ...dv, metadata: { ...dv.metadata, uid: `uid-${name}`, resourceVersion: String(Math.floor(Math.random() * 1e6) + 5000), creationTimestamp: created }, ...(status ? { status } : {}) };
}

const running = (progress: string) => ({
  phase: "ImportInProgress",
  progress,
  conditions: [{ type: "Running", status: "True", reason: "Pod is running", message: "", lastTransitionTime: "2025-01-01T00:09:05Z" }],
});
const succeeded = {
  phase: "Succeeded",
  progress: "100.0%",
  conditions: [
    { type: "Ready", status: "True", reason: "", message: "", lastTransitionTime: "2025-01-01T00:09:30Z" },
    { type: "Running", status: "False", reason: "Completed", message: "Import Complete", lastTransitionTime: "2025-01-01T00:09:30Z" },
  ],
};
const failed = {
  phase: "Failed",
  progress: "N/A",
  conditions: [
    {
      type: "Running",
      status: "False",
      reason: "Error",
      message: "Unable to connect to http data source: expected status code 200, got 404. Status: 404 Not Found",
      lastTransitionTime: "2025-01-01T00:09:10Z",
    },
  ],
};

describe("import progress from a DataVolume", () => {
  it("maps CDI phases to TaskState, TaskStatus and PercentComplete", () => {
    const v = { metadata: { name: "vm-1", namespace: "ns", uid: "u1" } } as KubeObject;
    expect(importProgress(mediaDv(v, "aaaaaa"), NOW)).toMatchObject({ state: "New", status: "OK", percent: 0 });
    expect(importProgress(mediaDv(v, "aaaaaa", { phase: "Pending", progress: "N/A" }), NOW)).toMatchObject({ state: "Pending", percent: 0 });
    expect(importProgress(mediaDv(v, "aaaaaa", { phase: "ImportScheduled" }), NOW)).toMatchObject({ state: "Pending" });
    expect(importProgress(mediaDv(v, "aaaaaa", running("42.17%")), NOW)).toMatchObject({ state: "Running", status: "OK", percent: 42 });
    expect(importProgress(mediaDv(v, "aaaaaa", running("N/A")), NOW).percent).toBeUndefined();
    expect(importProgress(mediaDv(v, "aaaaaa", succeeded), NOW)).toEqual({ state: "Completed", status: "OK", percent: 100, endTime: "2025-01-01T00:09:30Z" });
    expect(importProgress(mediaDv(v, "aaaaaa", failed), NOW)).toMatchObject({
      state: "Exception",
      status: "Critical",
      reason: "The image could not be downloaded.",
      detail: expect.stringContaining("got 404"),
      endTime: "2025-01-01T00:09:10Z",
    });
  });

  it("reports a retrying importer's error, a blocked importer, a timeout and a cancelled import", () => {
    const v = { metadata: { name: "vm-1", namespace: "ns", uid: "u1" } } as KubeObject;
    const retrying = {
      phase: "ImportInProgress",
      conditions: [{ type: "Running", status: "False", reason: "Error", message: "Unable to connect to http data source: connection refused" }],
    };
    expect(importProgress(mediaDv(v, "aaaaaa", retrying), NOW)).toMatchObject({
      state: "Exception",
      reason: "The image could not be downloaded.",
      detail: expect.stringContaining("connection refused"),
    });
    const blocked = { phase: "ImportScheduled", conditions: [{ type: "Running", status: "False", reason: "CreateContainerConfigError", message: 'configmap "corp-ca" not found' }] };
    expect(importProgress(mediaDv(v, "aaaaaa", blocked), NOW)).toMatchObject({ state: "Pending", status: "Warning", reason: expect.stringContaining("corp-ca") });
    const old = mediaDv(v, "aaaaaa", running("10.00%"), "2025-01-01T00:00:00Z");
    expect(importProgress(old, NOW, 300)).toMatchObject({
      state: "Exception",
      percent: 10,
      reason: "The image could not be downloaded.",
      detail: expect.stringContaining("300 seconds"),
    });
    expect(importProgress(old, NOW, 3600).state).toBe("Running");
    const deleting = mediaDv(v, "aaaaaa", running("50.00%"));
    deleting.metadata.deletionTimestamp = "2025-01-01T00:09:50Z";
    expect(importProgress(deleting, NOW).state).toBe("Cancelled");
  });

  it("parses CDI progress strings", () => {
    expect(percentOf("42.10%")).toBe(42);
    expect(percentOf("100.0%")).toBe(100);
    expect(percentOf("0%")).toBe(0);
    expect(percentOf("N/A")).toBeUndefined();
    expect(percentOf("150%")).toBe(100);
    expect(percentOf(undefined)).toBeUndefined();
    expect(percentOf("-3%")).toBeUndefined();
  });

  it("names tasks <namespace>.<DataVolume> and reads the VM back from the id", () => {
    expect(taskIdOf("tenant1-vms", "vm.a-cd-abc123")).toBe("tenant1-vms.vm.a-cd-abc123");
    expect(parseTaskId("tenant1-vms.vm.a-cd-abc123")).toEqual({ namespace: "tenant1-vms", dataVolumeName: "vm.a-cd-abc123", vmName: "vm.a" });
    expect(parseTaskId("tenant1-vms.rootdisk")).toBeUndefined();
    expect(parseTaskId("nodot")).toBeUndefined();
    expect(parseTaskId(".x-cd-abc123")).toBeUndefined();
  });

  it("renders the Task with its monitor and payload, never the credentials", () => {
    const v = { metadata: { name: "vm-1", namespace: "ns", uid: "u1" } } as KubeObject;
    const body = mediaTaskBody(mediaDv(v, "aaaaaa", failed), { insertTarget: "/target", now: NOW });
    expect(body).toMatchObject({
      Id: "ns.vm-1-cd-aaaaaa",
      TaskState: "Exception",
      TaskStatus: "Critical",
      StartTime: "2025-01-01T00:09:00Z",
      EndTime: "2025-01-01T00:09:10Z",
      TaskMonitor: "/redfish/v1/TaskService/TaskMonitors/ns.vm-1-cd-aaaaaa",
      Payload: { TargetUri: "/target", HttpOperation: "POST", JsonBody: JSON.stringify({ Image: "http://images.example/aaaaaa.iso" }) },
    });
    expect((body.Messages as any[])[0]).toMatchObject({ MessageId: "Base.1.18.1.GeneralError", Resolution: expect.stringContaining("The image could not be downloaded.") });
    // What the target answered stays out of the tenant's view (it would make InsertMedia a port scanner).
    expect(JSON.stringify(body)).not.toMatch(/404|Not Found|connect/);
    expect(JSON.stringify(body)).not.toContain("Never-Shown-9");
  });
});

describe("the TaskService and task monitors over the watch cache", () => {
  function withDrive(vmObj: KubeObject, dvName: string): KubeObject {
    return revise(vmObj, copy => {
      const spec = (copy.spec as any).template.spec;
      spec.domain.devices.disks.push({ name: CD_VOLUME, cdrom: { bus: "sata" } });
      spec.volumes.push({ name: CD_VOLUME, dataVolume: { name: dvName } });
    });
  }

  function setup() {
    const svc = testService();
    const vmB = svc.cache.getVm("tenant1-vms", "vm-b")!.vm as KubeObject;
    const vmC = svc.cache.getVm("tenant2-vms", "vm-c")!.vm as KubeObject;
    const dvRunning = mediaDv(vmB, "run001", running("37.50%"));
    const dvOld = mediaDv(vmB, "old001", succeeded);
    const dvC = mediaDv(vmC, "ccc001", failed);
    svc.cache.apply("VirtualMachine", "MODIFIED", withDrive(vmB, dvRunning.metadata.name!));
    svc.cache.apply("VirtualMachine", "MODIFIED", withDrive(vmC, dvC.metadata.name!));
    for (const dv of [dvRunning, dvOld, dvC]) svc.cache.apply("DataVolume", "ADDED", dv);
    const get = (path: string, auth = AUTH.alice) => svc.request(path, { headers: { Authorization: auth } });
    return { svc, get, dvRunning, dvOld, dvC };
  }

  it("lists a task per media DataVolume, to the users of its chassis only", async () => {
    const { get } = setup();
    const alice = (await (await get("/redfish/v1/TaskService/Tasks")).json()) as any;
    expect(alice.Members.map((m: any) => m["@odata.id"])).toEqual([
      "/redfish/v1/TaskService/Tasks/tenant1-vms.vm-b-cd-old001",
      "/redfish/v1/TaskService/Tasks/tenant1-vms.vm-b-cd-run001",
    ]);
    const bob = (await (await get("/redfish/v1/TaskService/Tasks", AUTH.bob)).json()) as any;
    expect(bob.Members).toEqual([{ "@odata.id": "/redfish/v1/TaskService/Tasks/tenant2-vms.vm-c-cd-ccc001" }]);
    expect((await get("/redfish/v1/TaskService/Tasks/tenant2-vms.vm-c-cd-ccc001")).status).toBe(404);
    expect((await get("/redfish/v1/TaskService/TaskMonitors/tenant2-vms.vm-c-cd-ccc001")).status).toBe(404);
    expect((await get("/redfish/v1/TaskService/Tasks/tenant1-vms.vm-b-cd-nosuch")).status).toBe(404);
  });

  it("task monitors: 202 + Location + Retry-After while running, 204 when completed, the error when failed", async () => {
    const { get } = setup();
    const runningRes = await get("/redfish/v1/TaskService/TaskMonitors/tenant1-vms.vm-b-cd-run001");
    expect(runningRes.status).toBe(202);
    expect(runningRes.headers.get("Location")).toBe("/redfish/v1/TaskService/TaskMonitors/tenant1-vms.vm-b-cd-run001");
    expect(runningRes.headers.get("Retry-After")).toBe("2");
    expect(await runningRes.json()).toMatchObject({
      "@odata.id": "/redfish/v1/TaskService/Tasks/tenant1-vms.vm-b-cd-run001",
      "@odata.type": "#Task.v1_7_0.Task",
      TaskState: "Running",
      PercentComplete: 37,
    });
    expect((await get("/redfish/v1/TaskService/TaskMonitors/tenant1-vms.vm-b-cd-old001")).status).toBe(204);
    const failedRes = await get("/redfish/v1/TaskService/TaskMonitors/tenant2-vms.vm-c-cd-ccc001", AUTH.bob);
    expect(failedRes.status).toBe(400);
    expect(JSON.stringify(await failedRes.json())).toContain("The image could not be downloaded.");
  });

  it("the drive shows the attached import; a restarted watcher (a new app and cache) shows the same tasks", async () => {
    const { svc, get, dvRunning } = setup();
    const cd = (await (await get("/redfish/v1/Systems/tenant1-vms.vm-b/VirtualMedia/Cd")).json()) as any;
    expect(cd).toMatchObject({ Image: "http://images.example/run001.iso", ImageName: "run001.iso", Inserted: false, ConnectedVia: "URI", TransferProtocolType: "HTTP" });
    const before = await (await get(`/redfish/v1/TaskService/Tasks/tenant1-vms.${dvRunning.metadata.name}`)).text();

    const restarted = testService();
    for (const rec of svc.cache.listVms("tenant1-vms")) restarted.cache.apply("VirtualMachine", "MODIFIED", rec.vm as KubeObject);
    for (const rec of svc.cache.listVms("tenant1-vms")) for (const dv of rec.dataVolumes) restarted.cache.apply("DataVolume", "ADDED", dv as KubeObject);
    restarted.clock.now = svc.clock.now;
    const after = await (await restarted.request(`/redfish/v1/TaskService/Tasks/tenant1-vms.${dvRunning.metadata.name}`, { headers: { Authorization: AUTH.alice } })).text();
    expect(after).toBe(before);
  });
});

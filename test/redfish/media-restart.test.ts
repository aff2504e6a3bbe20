// Restarts of the watcher's Redfish side (cache, controllers, app) in the middle of virtual-media work: the
// state is derived from the cluster, so tasks continue, and whatever an interrupted insert or eject left
// behind is cleaned up: media either attached or cleanly absent, never an orphaned DataVolume.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CD_VOLUME } from "../../redfish/media";
import { attachOps, mediaDataVolume } from "../../redfish/media/plan";
import { withVmLock } from "../../redfish/media/lock";
import { mediaSettings } from "../../redfish/media/settings";
import type { KubeObject } from "../../redfish/cache/types";
import type { KubeObject as StoreObject } from "../../sandbox/apiserver/types";
import { applyJsonPatch, type Json } from "../../sandbox/apiserver/patch";
import { cdUri, DV_KEY, insertUri, NS, startMediaSandbox, VM_KEY, type MediaSandbox } from "./media-helpers";

let sb: MediaSandbox;

beforeAll(async () => {
  sb = await startMediaSandbox({ iso: { sizeBytes: 2 * 1024 * 1024, slowChunkIntervalMs: 30 } });
});
afterAll(async () => {
  await sb?.stop();
});

const settings = () => mediaSettings(sb.config.datavolume);

/** A DataVolume of ours for the VM, written straight to the store (what an insert had created before a crash). */
function createOurDataVolume(vmName: string, suffix: string, image: string): StoreObject {
  const vm = sb.api.store.get(VM_KEY, NS, vmName)!;
  const dv = mediaDataVolume({ namespace: NS, name: vmName, uid: vm.metadata.uid! }, `${vmName}-cd-${suffix}`, { image, protocol: "HTTP" }, settings());
  return sb.api.store.create(DV_KEY, dv as StoreObject);
}

/** Points the VM's drive at a DataVolume, straight in the store (what an insert's VM patch did before a crash). */
function attachInStore(vmName: string, dvName: string): void {
  const vm = sb.api.store.get(VM_KEY, NS, vmName)!;
  sb.api.store.update(VM_KEY, applyJsonPatch(vm as unknown as Json, attachOps(vm as KubeObject, dvName)) as unknown as StoreObject);
}

function mediaNames(vmName: string): string[] {
  return sb.mediaDataVolumes(vmName).map(dv => dv.metadata.name!).sort();
}

describe("watcher restarts", () => {
  it("an import running across a restart keeps its task, completes, and is not started again", async () => {
    sb.createVm("restart-1");
    const image = `${sb.iso.url}/slow/restart.iso`;
    const res = await sb.request(insertUri("restart-1"), { body: { Image: image } });
    expect(res.status).toBe(202);
    const task = (await res.json()) as any;
    await expect
      .poll(
        async () => {
          const t = await sb.json(task["@odata.id"]);
          return t.TaskState === "Running" && t.PercentComplete > 0;
        },
        { message: "the import to be under way" },
      )
      .toBe(true);

    sb.restartWatcher();
    const after = await sb.json(task["@odata.id"]);
    expect(after.Id).toBe(task.Id);
    expect(["Running", "Completed"]).toContain(after.TaskState);
    expect((await sb.json(cdUri("restart-1"))).Image).toBe(image);

    await expect.poll(async () => (await sb.request(task.TaskMonitor)).status, { message: "the import to complete", timeout: 15_000 }).toBe(204);
    expect((await sb.json(cdUri("restart-1"))).Inserted).toBe(true);
    expect(mediaNames("restart-1")).toHaveLength(1);
    expect(sb.iso.downloads.get("/slow/restart.iso")).toBe(1);
  });

  it("a DataVolume created by an insert that never reached the VM is deleted after the restart", async () => {
    sb.createVm("crash-create");
    sb.watcher.stop(); // the watcher is down...
    createOurDataVolume("crash-create", "orphan", `${sb.iso.url}/images/orphan.iso`);
    expect(mediaNames("crash-create")).toEqual(["crash-create-cd-orphan"]);
    sb.restartWatcher({ reverseListOrder: true }); // ...and comes back
    await expect.poll(() => mediaNames("crash-create").length, { message: "the orphan to be deleted" }).toBe(0);
    expect((sb.api.store.get(VM_KEY, NS, "crash-create")!.spec as any).template.spec.volumes.map((v: any) => v.name)).toEqual(["rootdisk"]);
    expect(await sb.json(cdUri("crash-create"))).toMatchObject({ Image: null, Inserted: false });
  });

  it("the replaced DataVolume of a replace interrupted after the VM patch is deleted; the new one stays", async () => {
    sb.createVm("crash-replace");
    const first = await sb.request(insertUri("crash-replace"), { body: { Image: `${sb.iso.url}/images/old.iso` } });
    expect(first.status).toBe(202);
    const [old] = mediaNames("crash-replace");
    sb.watcher.stop();
    createOurDataVolume("crash-replace", "newone", `${sb.iso.url}/images/new.iso`);
    attachInStore("crash-replace", "crash-replace-cd-newone");
    expect(mediaNames("crash-replace")).toEqual([old, "crash-replace-cd-newone"].sort());
    sb.restartWatcher();
    await expect.poll(() => mediaNames("crash-replace").length, { message: "the replaced DataVolume to be deleted" }).toBe(1);
    expect(mediaNames("crash-replace")).toEqual(["crash-replace-cd-newone"]);
    await expect.poll(async () => (await sb.json(cdUri("crash-replace"))).Inserted, { message: "the new image" }).toBe(true);
    expect((await sb.json(cdUri("crash-replace"))).Image).toBe(`${sb.iso.url}/images/new.iso`);
  });

  it("an eject interrupted after the VM patch leaves an empty drive and no DataVolume", async () => {
    sb.createVm("crash-eject");
    expect((await sb.request(insertUri("crash-eject"), { body: { Image: `${sb.iso.url}/images/e.iso` } })).status).toBe(202);
    sb.watcher.stop();
    const vm = sb.api.store.get(VM_KEY, NS, "crash-eject")!;
    const spec = structuredClone(vm.spec) as any;
    spec.template.spec.volumes = spec.template.spec.volumes.filter((v: any) => v.name !== CD_VOLUME);
    spec.template.spec.domain.devices.disks = spec.template.spec.domain.devices.disks.filter((d: any) => d.name !== CD_VOLUME);
    sb.api.store.update(VM_KEY, { ...vm, spec });
    expect(mediaNames("crash-eject")).toHaveLength(1);
    sb.restartWatcher();
    await expect.poll(() => mediaNames("crash-eject").length, { message: "the ejected DataVolume to be deleted" }).toBe(0);
    expect(await sb.json(cdUri("crash-eject"))).toMatchObject({ Image: null, Inserted: false });
  });

  it("leaves a DataVolume the drive uses alone, whatever the order the cache lists the kinds in", async () => {
    sb.createVm("steady-1");
    expect((await sb.request(insertUri("steady-1"), { body: { Image: `${sb.iso.url}/images/s.iso` } })).status).toBe(202);
    const before = mediaNames("steady-1");
    for (const reverseListOrder of [false, true, false, true]) sb.restartWatcher({ reverseListOrder });
    // Not vacuous: once the last watcher's cache has listed the VM and its DataVolume, its media controller has
    // looked at them, and a delete it decided on holds the VM's lock; a marker taking that lock runs after it.
    await expect.poll(() => sb.watcher.cache.getVm(NS, "steady-1")?.dataVolumes.map(dv => dv.metadata.name).sort(), { message: "the last watcher listed steady-1" }).toEqual(before);
    await withVmLock(`${NS}/steady-1`, async () => undefined);
    expect(mediaNames("steady-1")).toEqual(before);
  });
});

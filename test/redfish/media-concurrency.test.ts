// Virtual media under concurrency, against the sandbox: many VMs at once, conflicting requests on one VM, and
// another writer changing the VM in the middle of an insert.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CD_VOLUME } from "../../redfish/media";
import { busyVmCount, withVmLock } from "../../redfish/media/lock";
import { cdUri, DV_KEY, ejectUri, insertUri, NS, startMediaSandbox, VM_KEY, type MediaSandbox } from "./media-helpers";

let sb: MediaSandbox;

beforeAll(async () => {
  sb = await startMediaSandbox({ iso: { sizeBytes: 128 * 1024 } });
});
afterAll(async () => {
  await sb?.stop();
});

function cdVolume(name: string): { name: string; dataVolume?: { name: string } } | undefined {
  return (sb.api.store.get(VM_KEY, NS, name)!.spec as any).template.spec.volumes.find((v: any) => v.name === CD_VOLUME);
}

/** The invariant: at most one DataVolume of ours per drive, and the drive refers to exactly that one. */
function expectConsistent(name: string): void {
  const dvs = sb.mediaDataVolumes(name);
  const volume = cdVolume(name);
  expect(dvs.length, `DataVolumes of ${name}`).toBeLessThanOrEqual(1);
  if (volume) expect(dvs.map(d => d.metadata.name)).toEqual([volume.dataVolume?.name]);
  else expect(dvs).toEqual([]);
}

describe("concurrency", () => {
  it("50 VMs inserting at once proceed in parallel and all complete", async () => {
    const names = Array.from({ length: 50 }, (_, i) => `par-${i}`);
    for (const name of names) sb.createVm(name);
    await expect.poll(() => names.every(n => sb.watcher.cache.getVm(NS, n)), { message: "the cache to see 50 VMs" }).toBeTruthy();

    let maxBusy = 0;
    let sampling = true;
    const sample = () => {
      maxBusy = Math.max(maxBusy, busyVmCount());
      if (sampling) setImmediate(sample);
    };
    sample();
    const responses = await Promise.all(names.map(n => sb.request(insertUri(n), { body: { Image: `${sb.iso.url}/images/${n}.iso` } })));
    sampling = false;
    expect(responses.map(r => r.status)).toEqual(names.map(() => 202));
    // Requests on different VMs do not wait for each other.
    expect(maxBusy).toBeGreaterThan(10);

    await expect
      .poll(
        async () => {
          for (const n of names) if (!(await sb.json(cdUri(n))).Inserted) return false;
          return true;
        },
        { message: "all 50 imports", timeout: 30_000 },
      )
      .toBe(true);
    for (const n of names) {
      expectConsistent(n);
      expect(sb.mediaDataVolumes(n)).toHaveLength(1);
      expect(sb.iso.downloads.get(`/images/${n}.iso`)).toBe(1);
    }
  });

  it("20 concurrent conflicting requests on one VM are serialised: all answered, one DataVolume, no orphan", async () => {
    sb.createVm("busy-1");
    await expect.poll(() => sb.watcher.cache.getVm(NS, "busy-1"), { message: "the VM in the cache" }).toBeTruthy();
    const system = `/redfish/v1/Systems/${NS}.busy-1`;
    const requests = Array.from({ length: 20 }, (_, i) => {
      if (i % 5 === 4) return sb.request(ejectUri("busy-1"), { method: "POST" });
      if (i % 5 === 3) return sb.request(insertUri("busy-1"), { body: { Image: `${sb.iso.url}/images/same.iso` } });
      return sb.request(insertUri("busy-1"), { body: { Image: `${sb.iso.url}/images/busy-${i}.iso` } });
    });
    // Other writers on the same VM at the same time (boot override, power), racing the media patches.
    const others = [
      sb.request(system, { method: "PATCH", body: { Boot: { BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Continuous" } } }),
      sb.request(`${system}/Actions/ComputerSystem.Reset`, { body: { ResetType: "On" } }),
    ];
    const statuses = (await Promise.all(requests)).map(r => r.status);
    for (const status of statuses) expect([202, 204]).toContain(status);
    for (const r of await Promise.all(others)) expect(r.status).toBeLessThan(500);

    expectConsistent("busy-1");
    // The cache (what Redfish shows) agrees with the cluster.
    const cd = await sb.json(cdUri("busy-1"));
    const dvs = sb.mediaDataVolumes("busy-1");
    expect(cd.Image).toBe(dvs.length ? (dvs[0].spec as any).source.http.url : null);
    // Nothing left behind once the controllers settle: the cache has seen the cluster's DataVolumes (so the media
    // controller has looked at them), and a marker taking the VM's lock runs after every change queued on it.
    const names = (list: readonly { metadata: { name?: string } }[] | undefined) => list?.map(dv => dv.metadata.name).sort();
    await expect
      .poll(() => names(sb.watcher.cache.getVm(NS, "busy-1")?.dataVolumes)?.join() === names(sb.mediaDataVolumes("busy-1"))?.join(), { message: "the cache agrees with the cluster" })
      .toBe(true);
    await withVmLock(`${NS}/busy-1`, async () => undefined);
    expectConsistent("busy-1");
  });

  it("a change to the VM by another writer during an insert is kept, and the insert still lands", async () => {
    sb.createVm("raced-1");
    await expect.poll(() => sb.watcher.cache.getVm(NS, "raced-1"), { message: "the VM in the cache" }).toBeTruthy();
    let raced = false;
    // Between our DataVolume create and our VM patch, someone else updates the VM (bumps its resourceVersion).
    const unwatch = sb.api.store.watch(DV_KEY, NS, ev => {
      if (raced || ev.type !== "ADDED" || ev.object.metadata.labels?.["kubevirt-infra.io/media-for"] !== "raced-1") return;
      raced = true;
      const current = sb.api.store.get(VM_KEY, NS, "raced-1")!;
      sb.api.store.update(VM_KEY, { ...current, metadata: { ...current.metadata, labels: { ...current.metadata.labels, "other-writer": "yes" } } });
    });
    try {
      const res = await sb.request(insertUri("raced-1"), { body: { Image: `${sb.iso.url}/images/raced.iso` } });
      expect(res.status).toBe(202);
    } finally {
      unwatch();
    }
    expect(raced).toBe(true);
    const vm = sb.api.store.get(VM_KEY, NS, "raced-1")!;
    expect(vm.metadata.labels?.["other-writer"]).toBe("yes");
    expect(cdVolume("raced-1")?.dataVolume?.name).toBeDefined();
    expectConsistent("raced-1");
  });
});

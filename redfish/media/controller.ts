// The media controller of the watcher: deletes DataVolumes of ours that the VM no longer refers to. They are
// what an insert or eject interrupted by a restart (or a failed delete) leaves behind; after it, every VM has
// at most one virtual media DataVolume, the one its drive uses. Driven by cache changes; the cache replays every
// object when it is seeded, so a restarted watcher cleans up what its predecessor left.
import { Log } from "pepr";
import type { ClusterCache, KubeObject } from "../cache/types";
import { clusterDriver, type KubeVirtDriver } from "../kubevirt/driver";
import { withVmLock } from "./lock";
import { driveSlot, isMediaDataVolumeOf, vmNameOfMediaDataVolume } from "./model";

/** Names of our DataVolumes of the VM that its drive does not use (from the cache). */
export function unreferencedMediaDataVolumes(vm: Readonly<KubeObject>, dataVolumes: readonly Readonly<KubeObject>[]): string[] {
  const slot = driveSlot(vm);
  const inUse = slot.kind === "attached" ? slot.dataVolumeName : undefined;
  return dataVolumes
    .filter(dv => isMediaDataVolumeOf(dv, vm) && dv.metadata.name !== inUse && !dv.metadata.deletionTimestamp)
    .map(dv => dv.metadata.name!);
}

export function startMediaController(cache: ClusterCache, driver: KubeVirtDriver = clusterDriver): () => void {
  let stopped = false;
  const queued = new Set<string>();

  const cleanUp = async (namespace: string, name: string): Promise<void> => {
    const rec = cache.getVm(namespace, name);
    if (!rec || unreferencedMediaDataVolumes(rec.vm, rec.dataVolumes).length === 0) return;
    // Under the VM's lock no insert of this process is between creating a DataVolume and referring to it;
    // the fresh read makes sure the drive does not use the DataVolume by now.
    await withVmLock(`${namespace}/${name}`, async () => {
      // A request that held the lock may have settled it meanwhile (it waits for its writes to show).
      const settled = cache.getVm(namespace, name);
      if (stopped || !settled || unreferencedMediaDataVolumes(settled.vm, settled.dataVolumes).length === 0) return;
      const vm = await driver.readVm(namespace, name);
      const current = cache.getVm(namespace, name);
      if (!vm || !current || vm.metadata.uid !== current.vm.metadata.uid) return;
      for (const dvName of unreferencedMediaDataVolumes(vm, current.dataVolumes)) {
        await driver.deleteDataVolume(namespace, dvName);
        Log.info({ namespace, name, dataVolume: dvName }, "virtual media: deleted a DataVolume the VM no longer uses");
      }
    });
  };

  const schedule = (namespace: string, name: string): void => {
    const key = `${namespace}/${name}`;
    if (stopped || queued.has(key)) return;
    queued.add(key);
    // Coalesces the burst of events of one change (VM, DataVolume, PVC status) into one look.
    setImmediate(() => {
      queued.delete(key);
      if (stopped) return;
      cleanUp(namespace, name).catch(e =>
        Log.warn({ namespace, name, err: e instanceof Error ? e.message : String(e) }, "virtual media: cleanup failed; retried on the next change"),
      );
    });
  };

  const unsubscribe = cache.onChange(ev => {
    if (ev.kind === "VirtualMachine") schedule(ev.namespace, ev.name);
    else if (ev.kind === "DataVolume") {
      const vmName = vmNameOfMediaDataVolume(ev.name);
      if (vmName) schedule(ev.namespace, vmName);
    }
  });
  return () => {
    stopped = true;
    unsubscribe();
  };
}

// The media controller of the watcher: deletes DataVolumes of ours that the VM no longer refers to. They are
// what an insert or eject interrupted by a restart (or a failed delete) leaves behind; after it, every VM has
// at most one virtual media DataVolume, the one its drive uses. Driven by cache changes; the cache replays every
// object when the cache lists it, so a restarted watcher cleans up what its predecessor left.
// It also reports failed imports with CDI's reason to the log and as a Warning Event on the VM: tenants only
// see "the image could not be downloaded" (tasks/derive.ts), the platform team sees why.
import { Log } from "../platform";
import type { ClusterCache, KubeObject } from "../cache/types";
import { clusterDriver, type KubeVirtDriver } from "../kubevirt/driver";
import { withVmLock } from "./lock";
import { importProgress } from "../tasks/derive";
import { driveSlot, imageUrlOf, isMediaDataVolumeOf, vmNameOfMediaDataVolume } from "./model";

export const IMPORT_FAILED_EVENT_REASON = "VirtualMediaImportFailed";

/** The image URL without query and fragment: pre-signed URLs carry their signature there. */
function withoutQuery(image: string): string {
  return image.replace(/[?#].*$/, "");
}

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
  // Per VM, the DataVolumes whose failure this process reported (the Event's fixed name dedupes across restarts);
  // pruned to the VM's current DataVolumes, so it holds only live ones.
  const reported = new Map<string, Set<string>>();

  const reportFailures = (namespace: string, name: string): void => {
    const key = `${namespace}/${name}`;
    const rec = cache.getVm(namespace, name);
    if (!rec) {
      reported.delete(key);
      return;
    }
    const seen = new Set([...(reported.get(key) ?? [])].filter(dvName => rec.dataVolumes.some(dv => dv.metadata.name === dvName)));
    for (const dv of rec.dataVolumes) {
      const dvName = dv.metadata.name!;
      if (seen.has(dvName) || !isMediaDataVolumeOf(dv, rec.vm)) continue;
      const progress = importProgress(dv, Date.now());
      if (progress.state !== "Exception" || !progress.detail) continue;
      seen.add(dvName);
      const image = withoutQuery(imageUrlOf(dv) ?? "");
      Log.warn({ namespace, name, dataVolume: dvName, image, reason: progress.detail }, "virtual media: image import failed");
      const message = `Import of ${image} into DataVolume ${dvName} failed: ${progress.detail}`.slice(0, 1024);
      void driver.warningEvent(rec.vm, IMPORT_FAILED_EVENT_REASON, message, `${dvName}.import-failed`);
    }
    if (seen.size > 0) reported.set(key, seen);
    else reported.delete(key);
  };

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
      reportFailures(namespace, name);
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

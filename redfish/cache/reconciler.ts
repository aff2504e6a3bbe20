// The loop behind the watcher's VM controllers (power, boot): look at a VM whenever the cache shows a change of it
// or of its VMI, write when its record calls for it, one write per VM at a time, and never repeat a write the
// cache cannot show yet. Event-driven, no polling; the cache replays every object when it is seeded, so what a
// controller keeps on the VM (annotations) is picked up again after a restart.
import { Log } from "pepr";
import type { ClusterCache, VmRecord } from "./types";

/**
 * What the loop does after a successful `act` before it acts on the VM again:
 * - "await-newer-vm": skip records with the VM resourceVersion `act` was given (its write is not visible yet,
 *   and planning again from the same record would repeat it);
 * - "look-again": act on the next change even if the VM itself did not change (e.g. only its VMI did).
 */
export type AfterAct = "await-newer-vm" | "look-again";

export interface VmReconciler {
  /** Whether the cached record calls for a write now. */
  needsWrite(rec: VmRecord): boolean;
  /** Makes the write(s) the record calls for, and logs what it did. */
  act(rec: VmRecord): Promise<AfterAct>;
  /** Logged (warn, with the error message) when `act` fails; the next change of the VM or its VMI retries. */
  failureMessage: string;
}

/** Runs the reconciler on every VM and VMI change of the cache. Returns unsubscribe. */
export function startVmReconciler(cache: ClusterCache, reconciler: VmReconciler): () => void {
  const inFlight = new Set<string>();
  // resourceVersion of the VM an act was given, while its outcome is "await-newer-vm".
  const actedOn = new Map<string, string | undefined>();
  const reconcile = (namespace: string, name: string): void => {
    const key = `${namespace}/${name}`;
    if (inFlight.has(key)) return;
    const rec = cache.getVm(namespace, name);
    if (rec && actedOn.has(key) && actedOn.get(key) === rec.vm.metadata.resourceVersion) return;
    actedOn.delete(key);
    if (!rec || !reconciler.needsWrite(rec)) return;
    inFlight.add(key);
    reconciler
      .act(rec)
      .then(after => {
        if (after === "await-newer-vm") actedOn.set(key, rec.vm.metadata.resourceVersion);
      })
      .catch(e => Log.warn({ namespace, name, err: e instanceof Error ? e.message : String(e) }, reconciler.failureMessage))
      .finally(() => {
        inFlight.delete(key);
        // Events that arrived while the write was running were skipped: look again.
        const after = cache.getVm(namespace, name);
        if (after && after.vm.metadata.resourceVersion !== rec.vm.metadata.resourceVersion) reconcile(namespace, name);
      });
  };
  return cache.onChange(ev => {
    if (ev.kind === "VirtualMachine" || ev.kind === "VirtualMachineInstance") reconcile(ev.namespace, ev.name);
  });
}

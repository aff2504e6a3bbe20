// The loop behind the watcher's VM controllers (power, boot, media): look at a VM whenever the cache shows a
// change of it or of its VMI, write when its record calls for it, one write per VM at a time, and never repeat
// a write the cache cannot show yet. Keys go through the shared keyed work queue: a VM is queued once however
// many events arrive, and a failed write is retried with back-off even if the VM does not change again. The
// informers replay every object when they list, so what a controller keeps on the VM (annotations) is picked
// up again after a restart.
import { Log } from "../platform";
import { WorkQueue } from "../../capabilities/common/work-queue";
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
  /** Logged (warn, with the error message) when `act` fails; the VM is retried with back-off. */
  failureMessage: string;
}

export interface VmReconcilerOptions {
  /** VMs acted on at once. */
  concurrency?: number;
  /** Retry back-off of a failed act: doubles from `baseDelayMs` up to `maxDelayMs`. */
  retry?: { baseDelayMs: number; maxDelayMs: number };
}

/** Runs the reconciler on every VM and VMI change of the cache. Returns stop. */
export function startVmReconciler(cache: ClusterCache, reconciler: VmReconciler, opts: VmReconcilerOptions = {}): () => void {
  // resourceVersion of the VM an act was given, while its outcome is "await-newer-vm" (compared for equality only).
  const actedOn = new Map<string, string | undefined>();
  /** The record when it calls for an act now. */
  const due = (key: string): VmRecord | undefined => {
    const [namespace, name] = key.split("/");
    const rec = cache.getVm(namespace, name);
    if (rec && actedOn.has(key) && actedOn.get(key) === rec.vm.metadata.resourceVersion) return undefined;
    actedOn.delete(key);
    return rec && reconciler.needsWrite(rec) ? rec : undefined;
  };
  const queue: WorkQueue = new WorkQueue(
    async key => {
      const rec = due(key);
      if (rec) {
        const after = await reconciler.act(rec);
        if (after === "await-newer-vm") actedOn.set(key, rec.vm.metadata.resourceVersion);
      }
      queue.forget(key); // done: the next failure starts its back-off from the beginning
    },
    {
      concurrency: opts.concurrency ?? 16,
      baseDelayMs: opts.retry?.baseDelayMs,
      maxDelayMs: opts.retry?.maxDelayMs,
      onError: (key, e) => {
        const [namespace, name] = key.split("/");
        Log.warn({ namespace, name, err: e instanceof Error ? e.message : String(e) }, reconciler.failureMessage);
      },
    },
  );
  // Only VMs that call for an act are queued (most events need none); the worker checks again when it runs.
  const unsubscribe = cache.onChange(ev => {
    if (ev.kind !== "VirtualMachine" && ev.kind !== "VirtualMachineInstance") return;
    const key = `${ev.namespace}/${ev.name}`;
    if (due(key)) queue.add(key);
  });
  return () => {
    unsubscribe();
    queue.shutDown();
  };
}

// Per-VM serialisation of virtual-media changes in this process: requests on one VM run one after the other,
// requests on different VMs in parallel. (Across processes the VM's resourceVersion guards every patch.)

const tails = new Map<string, Promise<unknown>>();

/** Runs `fn` once every earlier call with the same key has settled. */
export function withVmLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const previous = tails.get(key) ?? Promise.resolve();
  const run = previous.then(fn, fn);
  const tail = run.then(
    () => undefined,
    () => undefined,
  );
  tails.set(key, tail);
  // Forget the key once nothing is queued behind this call, so the map holds only busy VMs.
  void tail.then(() => {
    if (tails.get(key) === tail) tails.delete(key);
  });
  return run;
}

/** Number of VMs with media work queued or running (diagnostics, tests). */
export function busyVmCount(): number {
  return tails.size;
}

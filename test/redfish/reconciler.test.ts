// The VM reconcile loop of the power and boot controllers, on a real WatchCache: one act per VM at a time,
// no repeated act on a VM version it already acted on ("await-newer-vm"), another look on any change
// ("look-again"), failures logged and retried with back-off (or at once on the next change).
import { Log } from "pepr";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { startVmReconciler, type AfterAct } from "../../redfish/cache/reconciler";
import { WatchCache } from "../../redfish/cache/store";
import type { KubeObject, VmRecord } from "../../redfish/cache/types";
import { revise, runningVmi, vm } from "./fixtures";

/** The cache, a VM that needs a write (label todo), and a reconciler whose acts the test settles by hand. */
function setup() {
  const cache = new WatchCache([]);
  const acts: { rec: VmRecord; settle: (outcome: AfterAct | Error) => void }[] = [];
  const stop = startVmReconciler(cache, {
    needsWrite: rec => rec.vm.metadata.labels?.todo !== undefined,
    act: rec =>
      new Promise<AfterAct>((resolve, reject) => {
        acts.push({ rec, settle: outcome => (outcome instanceof Error ? reject(outcome) : resolve(outcome)) });
      }),
    failureMessage: "test write failed",
  });
  let current: KubeObject = vm("ns", "vm1", { labels: { todo: "yes" } });
  cache.apply("VirtualMachine", "ADDED", current);
  return {
    cache,
    acts,
    stop,
    /** A newer VM version (changed by `change`) arrives in the cache. */
    updateVm(change: (copy: KubeObject) => void = () => {}) {
      current = revise(current, change);
      cache.apply("VirtualMachine", "MODIFIED", current);
    },
    /** Settles the first act and lets the loop handle its outcome. */
    async settleFirstAct(outcome: AfterAct | Error) {
      acts[0].settle(outcome);
      await new Promise(r => setTimeout(r, 0));
    },
    /** Only the VMI changes: the VM's resourceVersion stays. */
    vmiChanged() {
      cache.apply("VirtualMachineInstance", "ADDED", runningVmi(current));
    },
  };
}

let t: ReturnType<typeof setup>;
beforeEach(() => {
  t = setup();
});
afterEach(() => {
  t.stop();
  vi.restoreAllMocks();
});

describe("startVmReconciler", () => {
  it("acts on a VM that needs a write, once while the act runs, and looks again at a VM that changed meanwhile", async () => {
    expect(t.acts).toHaveLength(1);
    t.vmiChanged();
    t.updateVm();
    expect(t.acts).toHaveLength(1); // in flight: skipped
    await t.settleFirstAct("await-newer-vm");
    expect(t.acts).toHaveLength(2); // the VM changed while the act ran: looked at again
    expect(t.acts[1].rec.vm.metadata.resourceVersion).not.toBe(t.acts[0].rec.vm.metadata.resourceVersion);
  });

  it("does not act on a VM that needs no write, nor on a VM that changed meanwhile into needing none", async () => {
    t.updateVm(copy => delete copy.metadata.labels!.todo);
    await t.settleFirstAct("await-newer-vm");
    t.vmiChanged();
    t.updateVm();
    expect(t.acts).toHaveLength(1);
  });

  it('"await-newer-vm": the same VM version is not acted on again, a newer one is', async () => {
    await t.settleFirstAct("await-newer-vm");
    t.vmiChanged();
    expect(t.acts).toHaveLength(1);
    t.updateVm();
    expect(t.acts).toHaveLength(2);
  });

  it('"look-again": a change of the VMI alone is enough to act again', async () => {
    await t.settleFirstAct("look-again");
    expect(t.acts).toHaveLength(1); // nothing changed meanwhile: no act of its own accord
    t.vmiChanged();
    expect(t.acts).toHaveLength(2);
    expect(t.acts[1].rec.vm.metadata.resourceVersion).toBe(t.acts[0].rec.vm.metadata.resourceVersion);
  });

  it("logs a failed act with the error message and tries again on the next change", async () => {
    const warned: unknown[][] = [];
    vi.spyOn(Log, "warn").mockImplementation(((...args: unknown[]) => void warned.push(args)) as never);
    await t.settleFirstAct(new Error("API server down"));
    expect(warned).toEqual([[{ namespace: "ns", name: "vm1", err: "API server down" }, "test write failed"]]);
    t.vmiChanged();
    expect(t.acts).toHaveLength(2);
  });

  it("retries a failed act with growing back-off although nothing changes", async () => {
    t.stop();
    vi.useFakeTimers();
    try {
      vi.spyOn(Log, "warn").mockImplementation((() => undefined) as never);
      const cache = new WatchCache([]);
      let attempts = 0;
      const stop = startVmReconciler(
        cache,
        {
          needsWrite: () => true,
          act: async () => {
            attempts++;
            if (attempts < 3) throw new Error("API server down");
            return "await-newer-vm";
          },
          failureMessage: "test write failed",
        },
        { retry: { baseDelayMs: 1_000, maxDelayMs: 60_000 } },
      );
      cache.apply("VirtualMachine", "ADDED", vm("ns", "retried"));
      await vi.advanceTimersByTimeAsync(0);
      expect(attempts).toBe(1);
      await vi.advanceTimersByTimeAsync(999);
      expect(attempts).toBe(1);
      await vi.advanceTimersByTimeAsync(1);
      expect(attempts).toBe(2);
      await vi.advanceTimersByTimeAsync(1_999); // second back-off: 2 s
      expect(attempts).toBe(2);
      await vi.advanceTimersByTimeAsync(1);
      expect(attempts).toBe(3);
      await vi.advanceTimersByTimeAsync(120_000); // succeeded: no more attempts on the same VM version
      expect(attempts).toBe(3);
      stop();
    } finally {
      vi.useRealTimers();
    }
  });

  it("stops reacting to cache changes once unsubscribed", async () => {
    await t.settleFirstAct("look-again");
    t.stop();
    t.updateVm();
    t.vmiChanged();
    expect(t.acts).toHaveLength(1);
  });
});

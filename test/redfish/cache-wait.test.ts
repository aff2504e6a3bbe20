// Read-your-writes (redfish/cache/wait.ts): a write is waited for by the resourceVersion it answered with, whether
// its watch event reaches the cache before the answer, after it, or followed by other changes of the VM.
import { afterEach, describe, expect, it, vi } from "vitest";
import { WatchCache } from "../../redfish/cache/store";
import { VmVersions } from "../../redfish/cache/wait";
import { makeVm } from "./power-fixtures";

const NS = "tenant1";

function cacheWithVm(): { cache: WatchCache; write: (resourceVersion: string) => void } {
  const cache = new WatchCache([]);
  for (const kind of ["VirtualMachine", "VirtualMachineInstance", "DataVolume"] as const) cache.applyList(kind, []);
  const vm = makeVm({ namespace: NS, name: "vm" });
  vm.metadata.resourceVersion = "10";
  cache.apply("VirtualMachine", "ADDED", structuredClone(vm));
  const write = (resourceVersion: string) => {
    vm.metadata.resourceVersion = resourceVersion;
    cache.apply("VirtualMachine", "MODIFIED", structuredClone(vm));
  };
  return { cache, write };
}

afterEach(() => vi.useRealTimers());

describe("VmVersions", () => {
  it("resolves when the write's event arrives after its answer", async () => {
    const { cache, write } = cacheWithVm();
    const versions = new VmVersions(cache, NS, "vm");
    let shown: boolean | undefined;
    const waiting = versions.shown("11").then(ok => (shown = ok));
    await Promise.resolve();
    expect(shown).toBeUndefined();
    write("11");
    expect(await waiting).toBe(true);
    versions.stop();
  });

  it("resolves at once when the event came before the answer, even with later changes on top", async () => {
    const { cache, write } = cacheWithVm();
    const versions = new VmVersions(cache, NS, "vm");
    write("11"); // the write's own event
    write("12"); // a controller's status update right after it
    expect(await versions.shown("11")).toBe(true);
    versions.stop();
  });

  it("gives up after the timeout when the version never shows (e.g. a relist skipped it)", async () => {
    vi.useFakeTimers();
    const { cache, write } = cacheWithVm();
    const versions = new VmVersions(cache, NS, "vm");
    const waiting = versions.shown("11", 2_000);
    write("12");
    await vi.advanceTimersByTimeAsync(1_999);
    let settled = false;
    void waiting.then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await waiting).toBe(false);
    versions.stop();
  });

  it("resolves when the VM is deleted meanwhile", async () => {
    const { cache } = cacheWithVm();
    const versions = new VmVersions(cache, NS, "vm");
    const waiting = versions.shown("11");
    cache.apply("VirtualMachine", "DELETED", { ...makeVm({ namespace: NS, name: "vm" }), metadata: { namespace: NS, name: "vm", resourceVersion: "11" } });
    expect(await waiting).toBe(true);
    versions.stop();
  });
});

// The watcher's mirror of the infra cluster's VMs against a sandbox API server: first complete view, watch
// updates, and recovery after the infra API server went away and came back (re-list, no restart).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import { InfraMirror } from "../../capabilities/node-identity/infra-mirror";
import type { InfraSnapshot } from "../../capabilities/node-identity/infra-index";

const NS = "vms";
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "infra-mirror-"));
const cleanup: (() => Promise<void> | void)[] = [];
afterAll(async () => {
  for (const fn of cleanup.reverse()) await fn();
  fs.rmSync(dir, { recursive: true, force: true });
});

function createVms(api: ApiServer, vms: { name: string; uuid?: string; hostname?: string }[]): void {
  api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } });
  for (const vm of vms) {
    api.store.create("virtualmachines.kubevirt.io", {
      apiVersion: "kubevirt.io/v1",
      kind: "VirtualMachine",
      metadata: { name: vm.name, namespace: NS },
      spec: { template: { spec: { domain: { ...(vm.uuid ? { firmware: { uuid: vm.uuid } } : {}), devices: {} } } } },
    });
  }
}

/** The latest snapshot, once it passes `test`. */
function until(snapshots: InfraSnapshot[], test: (s: InfraSnapshot) => boolean, what: string): Promise<InfraSnapshot> {
  return vi.waitFor(
    () => {
      const last = snapshots.at(-1);
      if (last && test(last)) return last;
      throw new Error(`still waiting for ${what}; last: ${JSON.stringify(last)}`);
    },
    { timeout: 10_000, interval: 20 },
  );
}

const names = (s: InfraSnapshot) => s.vms.map(v => v.name).sort();

describe("InfraMirror", () => {
  it("lists, follows the watch, and merges VM UUIDs with VMI hostnames", async () => {
    const api = await startApiServer();
    cleanup.push(() => api.close());
    const kubeconfig = path.join(dir, "a");
    await api.writeKubeconfig(kubeconfig);
    createVms(api, [{ name: "vm-1", uuid: "U1" }, { name: "vm-2" }]);

    const snapshots: InfraSnapshot[] = [];
    // The mirror's debounced publishes, counted when they have run (this delay is used by nothing else).
    const DEBOUNCE_MS = 23;
    let publishesRun = 0;
    const realSetTimeout = globalThis.setTimeout;
    const spy = vi.spyOn(globalThis, "setTimeout").mockImplementation(((callback: (...args: unknown[]) => void, ms?: number, ...args: unknown[]) =>
      realSetTimeout((...given: unknown[]) => {
        callback(...given);
        if (ms === DEBOUNCE_MS) publishesRun++;
      }, ms, ...args)) as typeof setTimeout);
    cleanup.push(() => spy.mockRestore());
    const mirror = new InfraMirror({ kubeconfig: fs.readFileSync(kubeconfig, "utf8"), namespaces: [NS], onSnapshot: s => snapshots.push(s), debounceMs: DEBOUNCE_MS });
    cleanup.push(() => mirror.stop());
    mirror.start();

    const first = await until(snapshots, s => s.vms.length === 2, "the first snapshot");
    expect(first.namespaces).toEqual([NS]);
    expect(first.vms.find(v => v.name === "vm-1")).toEqual({ namespace: NS, name: "vm-1", firmwareUUID: "U1" });

    api.store.create("virtualmachineinstances.kubevirt.io", {
      apiVersion: "kubevirt.io/v1",
      kind: "VirtualMachineInstance",
      metadata: { name: "vm-2", namespace: NS },
      spec: { hostname: "guest-2", domain: { firmware: { uuid: "U2" }, devices: {} } },
    });
    const withVmi = await until(snapshots, s => s.vms.some(v => v.hostname === "guest-2"), "the VMI's hostname");
    expect(withVmi.vms.find(v => v.name === "vm-2")).toEqual({ namespace: NS, name: "vm-2", firmwareUUID: "U2", hostname: "guest-2" });

    api.store.delete("virtualmachines.kubevirt.io", NS, "vm-1");
    await until(snapshots, s => !s.vms.some(v => v.name === "vm-1"), "vm-1 gone");

    // A status-only change (not indexed) publishes nothing new.
    const count = snapshots.length;
    const runBefore = publishesRun;
    api.store.mutate("virtualmachines.kubevirt.io", NS, "vm-2", obj => ({ ...obj, metadata: { ...obj.metadata, labels: { touched: "yes" } } }));
    // Not vacuous: every watch event schedules a publish; once the one for this change has run, it published or not.
    await vi.waitFor(() => expect(publishesRun).toBeGreaterThan(runBefore), { timeout: 10_000, interval: 10 });
    expect(snapshots).toHaveLength(count);
  });

  it("reports an unreachable infra API and recovers by re-listing when it comes back", async () => {
    const first = await startApiServer();
    const port = first.port;
    const kubeconfig = path.join(dir, "b");
    await first.writeKubeconfig(kubeconfig);
    createVms(first, [{ name: "old-vm", uuid: "OLD" }]);

    const snapshots: InfraSnapshot[] = [];
    const errors: string[] = [];
    const mirror = new InfraMirror({
      kubeconfig: fs.readFileSync(kubeconfig, "utf8"),
      namespaces: [NS],
      onSnapshot: s => snapshots.push(s),
      onError: message => errors.push(message),
      debounceMs: 10,
    });
    cleanup.push(() => mirror.stop());
    mirror.start();
    await until(snapshots, s => names(s).join() === "old-vm", "the first snapshot");

    await first.close();
    await expect.poll(() => errors[0], { message: "an error reported for the unreachable infra API" }).toMatch(/infra virtualmachine/);
    // The last known view stays in force while the infra API is down.
    expect(names(snapshots.at(-1)!)).toEqual(["old-vm"]);

    // A new server on the same address with different content (and resourceVersions starting over).
    const second = await startApiServer({ port });
    cleanup.push(() => second.close());
    createVms(second, [{ name: "new-vm", uuid: "NEW" }]);
    const recovered = await until(snapshots, s => names(s).join() === "new-vm", "the re-listed view");
    expect(recovered.vms[0].firmwareUUID).toBe("NEW");
  });
});

// The Pepr bindings of capabilities/redfish.ts: the registered Watch callbacks feed the watch cache, and a
// configuration change rebuilds its chassis index. Runs with PEPR_MODE=dev (vitest.config), where Pepr
// registers watch bindings; the server is not started (PEPR_WATCH_MODE is not "true").
import { describe, expect, it } from "vitest";
import { Redfish, redfishCache } from "../../capabilities/redfish";
import { applyConfigSource } from "../../capabilities/config/runtime";
import { dataVolume, revise, runningVmi, vm } from "./fixtures";

type WatchCallback = (obj: unknown, phase: string) => unknown;

function callbacks(kind: string, event: string): WatchCallback[] {
  return Redfish.bindings
    .filter(b => b.isWatch && b.kind.kind === kind && b.event === event)
    .map(b => b.watchCallback as unknown as WatchCallback);
}

describe("Redfish capability bindings", () => {
  it("registers created-or-updated and deleted watches for VMs, VMIs and DataVolumes", () => {
    for (const kind of ["VirtualMachine", "VirtualMachineInstance", "DataVolume"]) {
      expect(callbacks(kind, "CREATEORUPDATE"), kind).toHaveLength(1);
      expect(callbacks(kind, "DELETE"), kind).toHaveLength(1);
    }
    const groups = Redfish.bindings.filter(b => b.isWatch).map(b => `${b.kind.group}/${b.kind.version}/${b.kind.kind}`);
    expect(new Set(groups)).toEqual(
      new Set(["kubevirt.io/v1/VirtualMachine", "kubevirt.io/v1/VirtualMachineInstance", "cdi.kubevirt.io/v1beta1/DataVolume"]),
    );
  });

  it("feeds the watch cache from the Watch callbacks", async () => {
    const [vmUpsert] = callbacks("VirtualMachine", "CREATEORUPDATE");
    const [vmDelete] = callbacks("VirtualMachine", "DELETE");
    const [vmiUpsert] = callbacks("VirtualMachineInstance", "CREATEORUPDATE");
    const [dvUpsert] = callbacks("DataVolume", "CREATEORUPDATE");

    const machine = vm("binding-ns", "m1", { dataVolumeTemplates: ["m1-root"] });
    await vmUpsert(machine, "ADDED");
    await dvUpsert(dataVolume("binding-ns", "m1-root"), "ADDED");
    await vmiUpsert(runningVmi(machine), "ADDED");
    const rec = redfishCache.getVm("binding-ns", "m1")!;
    expect(rec.vm.metadata.name).toBe("m1");
    expect(rec.vmi?.metadata.name).toBe("m1");
    expect(rec.dataVolumes.map(d => d.metadata.name)).toEqual(["m1-root"]);

    const relabelled = revise(machine, v => (v.metadata.labels!.team = "blue"));
    await vmUpsert(relabelled, "MODIFIED");
    expect(redfishCache.getVm("binding-ns", "m1")!.vm.metadata.labels!.team).toBe("blue");
    await vmDelete(relabelled, "DELETED");
    expect(redfishCache.getVm("binding-ns", "m1")).toBeUndefined();
  });

  it("rebuilds the chassis index when the configuration changes", async () => {
    const [vmUpsert] = callbacks("VirtualMachine", "CREATEORUPDATE");
    await vmUpsert(vm("binding-ns", "in-chassis", { labels: { redfish: "yes" } }), "ADDED");
    await vmUpsert(vm("binding-ns", "outside"), "ADDED");
    expect(redfishCache.listVmsInChassis("binding")).toEqual([]);
    const outcome = await applyConfigSource({
      configMap: {
        metadata: { name: "kubevirt-infra-config", namespace: "pepr-system" },
        data: {
          "config.yaml": [
            "chassis:",
            "  - name: binding",
            "    namespace: binding-ns",
            "    vmSelector: { matchLabels: { redfish: \"yes\" } }",
          ].join("\n"),
        },
      },
    });
    expect(JSON.stringify(outcome)).not.toMatch(/rejected|error/i);
    expect(redfishCache.listVmsInChassis("binding").map(r => r.vm.metadata.name)).toEqual(["in-chassis"]);
  });
});

// Pure rules of the KubeVirt/CDI simulators: run strategy, boot device and boot-order validation, change-request
// trimming, printableStatus precedence, progress formatting. The behaviour end to end is in simulators.test.ts.
import { describe, expect, it } from "vitest";
import type { KubeObject } from "../../sandbox/apiserver/types";
import { formatProgress } from "../../sandbox/simulators/cdi/http-import";
import { bootDevice, bootOrderCauses, firmwareOf } from "../../sandbox/simulators/kubevirt/boot";
import { generatedMac, restartRelevantHash, runStrategyOf, uuidV5, type Disk, type VmiSpec } from "../../sandbox/simulators/kubevirt/model";
import { trimChangeRequests, vmiSpecFromTemplate } from "../../sandbox/simulators/kubevirt/vm-controller";
import { printableStatus } from "../../sandbox/simulators/kubevirt/vm-status";
import type { VolumeState } from "../../sandbox/simulators/kubevirt/volumes";

const vm = (extra: Partial<KubeObject["metadata"]> = {}): KubeObject => ({ apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", metadata: { name: "vm", uid: "vm-uid", ...extra } });
const vmi = (phase: string, extra: Partial<KubeObject["metadata"]> = {}, conditions: object[] = []): KubeObject => ({
  apiVersion: "kubevirt.io/v1",
  kind: "VirtualMachineInstance",
  metadata: { name: "vm", uid: "vmi-uid", ...extra },
  status: { phase, conditions },
});
const noVolumes: VolumeState = { provisioning: false, waitingForConsumer: false, missing: [], readyForVmi: true, populated: true };

describe("runStrategyOf", () => {
  it("maps spec.running and runStrategy like vm.RunStrategy()", () => {
    expect(runStrategyOf({})).toEqual({ strategy: "Halted" });
    expect(runStrategyOf({ running: true })).toEqual({ strategy: "Always" });
    expect(runStrategyOf({ running: false })).toEqual({ strategy: "Halted" });
    expect(runStrategyOf({ runStrategy: "RerunOnFailure" })).toEqual({ strategy: "RerunOnFailure" });
    expect(runStrategyOf({ running: null, runStrategy: "Manual" })).toEqual({ strategy: "Manual" });
  });

  it("rejects both fields and unknown strategies", () => {
    expect(runStrategyOf({ running: true, runStrategy: "Always" })).toEqual({ error: "running and runstrategy are mutually exclusive", field: "spec.running" });
    expect(runStrategyOf({ runStrategy: "Sometimes" })).toEqual({ error: "unknown runstrategy: Sometimes", field: "spec.runStrategy" });
  });
});

describe("boot device", () => {
  const spec = (disks: Disk[], volumes: string[], interfaces: { name: string; bootOrder?: number }[] = []): VmiSpec => ({
    domain: { devices: { disks, interfaces } },
    volumes: volumes.map(name => ({ name })),
  });

  it("boots the lowest bootOrder among disks and interfaces", () => {
    expect(bootDevice(spec([{ name: "root", bootOrder: 2 }, { name: "cd", cdrom: {}, bootOrder: 1 }], ["root", "cd"]))).toBe("cd");
    expect(bootDevice(spec([{ name: "root", bootOrder: 2 }], ["root"], [{ name: "nic", bootOrder: 1 }]))).toBe("nic");
  });

  it("falls back to the first disk with a volume when no device has a boot order", () => {
    expect(bootDevice(spec([{ name: "empty-cd", cdrom: {} }, { name: "root" }], ["root"]))).toBe("root");
    expect(bootDevice(spec([], []))).toBeUndefined();
  });

  it("skips an empty CD-ROM tray even when it has the lowest order, and boots nothing unordered", () => {
    expect(bootDevice(spec([{ name: "cd", cdrom: {}, bootOrder: 1 }, { name: "root", bootOrder: 2 }], ["root"]))).toBe("root");
    expect(bootDevice(spec([{ name: "cd", cdrom: {}, bootOrder: 1 }, { name: "root" }], ["root"]))).toBeUndefined();
  });

  it("reports duplicate and non-positive boot orders in KubeVirt's words", () => {
    const causes = bootOrderCauses(spec([{ name: "a", bootOrder: 1 }, { name: "b", bootOrder: 1 }, { name: "c", bootOrder: 0 }], ["a", "b", "c"], [{ name: "nic", bootOrder: 1 }]), "spec");
    expect(causes).toEqual([
      "spec.domain.devices.disks[1].bootOrder: Boot order for spec.domain.devices.disks[1].bootOrder already set for a different device.",
      "spec.domain.devices.disks[2].bootOrder: spec.domain.devices.disks[2] must have a boot order > 0, if supplied",
      "spec.domain.devices.interfaces[0].bootOrder: Boot order for spec.domain.devices.interfaces[0].bootOrder already set for a different device.",
    ]);
    expect(bootOrderCauses(spec([{ name: "a", bootOrder: 1 }, { name: "b", bootOrder: 2 }], ["a", "b"]), "spec")).toEqual([]);
  });

  it("reads the firmware from the bootloader", () => {
    expect(firmwareOf({ domain: { firmware: { bootloader: { efi: {} } } } })).toBe("uefi");
    expect(firmwareOf({ domain: { firmware: { bootloader: { bios: {} } } } })).toBe("bios");
    expect(firmwareOf({})).toBe("bios");
  });
});

describe("VMI spec from the template", () => {
  it("adds KubeVirt's defaults without touching the template", () => {
    const template = { domain: { devices: { disks: [{ name: "root", disk: {} }] } }, volumes: [{ name: "root" }, { name: "cloudinit" }] };
    const spec = vmiSpecFromTemplate("vm-1", template);
    expect(spec.terminationGracePeriodSeconds).toBe(180);
    expect(spec.networks).toEqual([{ name: "default", pod: {} }]);
    expect((spec.domain as any).devices.interfaces).toEqual([{ name: "default", masquerade: {} }]);
    expect((spec.domain as any).devices.disks.map((d: { name: string }) => d.name)).toEqual(["root", "cloudinit"]);
    expect((spec.domain as any).firmware.uuid).toBe(uuidV5("vm-1", "6a1a24a1-4061-4607-8bf4-a3963d0c5895"));
    expect(template.domain.devices.disks).toHaveLength(1);
  });

  it("keeps what the template sets", () => {
    const spec = vmiSpecFromTemplate("vm-1", { terminationGracePeriodSeconds: 5, domain: { firmware: { uuid: "u" }, devices: { autoattachPodInterface: false } } });
    expect(spec.terminationGracePeriodSeconds).toBe(5);
    expect((spec.domain as any).firmware.uuid).toBe("u");
    expect(spec.networks).toBeUndefined();
  });

  it("derives RFC 4122 v5 UUIDs and stable MACs", () => {
    expect(uuidV5("www.example.com", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")).toBe("2ed6657d-e927-568b-95e1-2665a8aea6a2");
    expect(generatedMac("ns", "vm", "default")).toMatch(/^02(:[0-9a-f]{2}){5}$/);
    expect(generatedMac("ns", "vm", "default")).toBe(generatedMac("ns", "vm", "default"));
    expect(generatedMac("ns", "vm", "default")).not.toBe(generatedMac("ns", "vm2", "default"));
  });

  it("ignores hotplugged volumes and key order in the restart-relevant hash", () => {
    const base = { domain: { devices: { disks: [{ name: "root" }] } }, volumes: [{ name: "root", containerDisk: { image: "a" } }] };
    const hot = structuredClone(base) as any;
    hot.volumes.push({ name: "hp", dataVolume: { name: "dv", hotpluggable: true } });
    hot.domain.devices.disks.push({ name: "hp", disk: { bus: "scsi" } });
    expect(restartRelevantHash(hot)).toBe(restartRelevantHash(base));
    expect(restartRelevantHash({ volumes: base.volumes, domain: base.domain })).toBe(restartRelevantHash(base));
    expect(restartRelevantHash({ ...base, volumes: [{ name: "root", containerDisk: { image: "b" } }] })).not.toBe(restartRelevantHash(base));
  });
});

describe("stateChangeRequests trimming", () => {
  it("drops a stop request once its VMI is gone or replaced, and a start request once a VMI runs", () => {
    const stopOld = { action: "Stop" as const, uid: "old" };
    expect(trimChangeRequests([stopOld, { action: "Start" }], undefined)).toEqual([{ action: "Start" }]);
    expect(trimChangeRequests([stopOld], vmi("Running", { uid: "old" }))).toEqual([stopOld]);
    expect(trimChangeRequests([stopOld, { action: "Start" }], vmi("Running", { uid: "new" }))).toEqual([]);
    expect(trimChangeRequests([{ action: "Start" }], vmi("Succeeded"))).toEqual([{ action: "Start" }]);
    expect(trimChangeRequests([{ action: "Start" }], vmi("Running", { deletionTimestamp: "2024-01-01T00:00:00Z" }))).toEqual([{ action: "Start" }]);
  });
});

describe("printableStatus", () => {
  const input = (over: Partial<Parameters<typeof printableStatus>[0]>) => ({ vm: vm(), requests: [], startPending: false, volumes: noVolumes, strategy: "Always" as const, ...over });

  it("follows virt-controller's precedence", () => {
    expect(printableStatus(input({ vm: vm({ deletionTimestamp: "t" }), vmi: vmi("Running") }))).toBe("Terminating");
    expect(printableStatus(input({ vmi: vmi("Running", { deletionTimestamp: "t" }) }))).toBe("Stopping");
    expect(printableStatus(input({ vmi: vmi("Running", {}, [{ type: "Paused", status: "True" }]) }))).toBe("Paused");
    expect(printableStatus(input({ vmi: vmi("Running"), volumes: { ...noVolumes, error: "DataVolume x is in Failed phase" } }))).toBe("Running");
    expect(printableStatus(input({ volumes: { ...noVolumes, error: "DataVolume x is in Failed phase", provisioning: true } }))).toBe("DataVolumeError");
    expect(printableStatus(input({ volumes: { ...noVolumes, provisioning: true }, startPending: true }))).toBe("Provisioning");
    expect(printableStatus(input({ volumes: { ...noVolumes, waitingForConsumer: true }, vmi: vmi("Pending") }))).toBe("WaitingForVolumeBinding");
    expect(printableStatus(input({ strategy: "Halted", volumes: { ...noVolumes, waitingForConsumer: true } }))).toBe("Stopped");
    expect(printableStatus(input({ vmi: vmi("Scheduling") }))).toBe("Starting");
    expect(printableStatus(input({ startPending: true }))).toBe("Starting");
    expect(printableStatus(input({ vmi: vmi("Succeeded") }))).toBe("Stopped");
    expect(printableStatus(input({ strategy: "Halted" }))).toBe("Stopped");
  });
});

describe("formatProgress", () => {
  it("formats like CDI and never shows 100% before the end", () => {
    expect(formatProgress(421, 1000)).toBe("42.10%");
    expect(formatProgress(0, 1000)).toBe("0.00%");
    expect(formatProgress(999_999, 1_000_000)).toBe("99.99%");
    expect(formatProgress(1000, 1000)).toBe("99.99%");
    expect(formatProgress(5, undefined)).toBe("N/A");
  });
});

// Boot order computation over many VM shapes, PATCH planning, the Boot view (unit).
import { describe, expect, it } from "vitest";
import type { JsonPatchOp } from "../../capabilities/common/gateway";
import { bootView } from "../../redfish/boot";
import { bootDevicesOf, overrideOrders, restoredOrders, targetDevice, type BootDevice } from "../../redfish/boot/devices";
import { BOOT_OVERRIDE_ANNOTATION, overrideStatus, recordedOverride } from "../../redfish/boot/override";
import { parseBootPatch, planBootPatch } from "../../redfish/boot/patch";
import { RedfishError } from "../../redfish/errors";
import { templateSpecOf } from "../../redfish/kubevirt/objects";
import { CD_VOLUME } from "../../redfish/media";
import { attachOps } from "../../redfish/media/plan";
import { CDROM, ROOT_DISK, makeVm, makeVmi, rec } from "./power-fixtures";

function devices(disks: Record<string, unknown>[], interfaces: Record<string, unknown>[] = [], volumes?: Record<string, unknown>[]): BootDevice[] {
  return bootDevicesOf({ domain: { devices: { disks, interfaces } }, volumes: volumes ?? disks.map(d => ({ name: d.name })) });
}

/** Applies the JSON patch ops the planner produced to a copy of the VM (test, add, replace, remove). */
function applyOps(obj: unknown, ops: JsonPatchOp[]): any {
  const doc = structuredClone(obj) as any;
  const segs = (p: string) => p.slice(1).split("/").map(s => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  for (const op of ops) {
    const path = segs(op.path);
    const last = path.pop()!;
    const parent = path.reduce((o, k) => o[k], doc);
    if (op.op === "test") expect(parent[last]).toEqual(op.value);
    else if (op.op === "remove") delete parent[last];
    else parent[last] = structuredClone(op.value);
  }
  return doc;
}

function orderOfTemplate(vm: any): Record<string, number | undefined> {
  const d = vm.spec.template.spec.domain.devices;
  return Object.fromEntries([
    ...(d.disks ?? []).map((x: any) => [`disk/${x.name}`, x.bootOrder]),
    ...(d.interfaces ?? []).map((x: any) => [`interface/${x.name}`, x.bootOrder]),
  ]);
}

function assertUnique(orders: Record<string, number | null>): void {
  const values = Object.values(orders).filter((v): v is number => v !== null);
  expect(new Set(values).size).toBe(values.length);
  for (const v of values) expect(v).toBeGreaterThanOrEqual(1);
}

describe("boot devices and orders", () => {
  it("reads disks (cdrom / disk / lun), interfaces and implicit volume disks", () => {
    const list = bootDevicesOf({
      domain: { devices: { disks: [ROOT_DISK, CDROM, { name: "scsi", lun: {} }, { name: "bare" }], interfaces: [{ name: "default", bootOrder: 2 }] } },
      volumes: [{ name: "rootdisk" }, { name: "cdrom" }, { name: "scsi" }, { name: "bare" }, { name: "cloudinit" }],
    });
    expect(list.map(d => [d.key, d.media, d.bootOrder ?? null, !!d.implicit])).toEqual([
      ["disk/rootdisk", "disk", null, false],
      ["disk/cdrom", "cdrom", null, false],
      ["disk/scsi", "lun", null, false],
      ["disk/bare", "disk", null, false],
      ["disk/cloudinit", "disk", null, true],
      ["interface/default", "nic", 2, false],
    ]);
  });

  it("Cd first, disks behind it, when no device had a bootOrder (the default boots the disks)", () => {
    const orders = overrideOrders(devices([ROOT_DISK, CDROM], [{ name: "default" }]), "Cd");
    expect(orders).toEqual({ "disk/cdrom": 1, "disk/rootdisk": 2, "interface/default": null });
  });

  it("keeps the relative order of the bootable devices and renumbers them without duplicates", () => {
    const list = devices([{ ...ROOT_DISK, bootOrder: 5 }, CDROM, { name: "data", disk: {} }], [{ name: "nic", bootOrder: 10 }]);
    expect(overrideOrders(list, "Cd")).toEqual({ "disk/cdrom": 1, "disk/rootdisk": 2, "interface/nic": 3, "disk/data": null });
    expect(overrideOrders(list, "Pxe")).toEqual({ "interface/nic": 1, "disk/rootdisk": 2, "disk/cdrom": null, "disk/data": null });
    expect(overrideOrders(list, "Hdd")).toEqual({ "disk/rootdisk": 1, "interface/nic": 2, "disk/cdrom": null, "disk/data": null });
  });

  it("Hdd boots the disk the VM already prefers, not the first in the list", () => {
    const list = devices([{ name: "data", disk: {} }, { ...ROOT_DISK, bootOrder: 1 }]);
    expect(targetDevice(list, "Hdd")?.name).toBe("rootdisk");
    expect(overrideOrders(list, "Hdd")).toEqual({ "disk/rootdisk": 1, "disk/data": null });
  });

  it("with several CD-ROMs picks the preferred (virtual media) drive, else the one already in the order, else the first", () => {
    const list = devices([ROOT_DISK, { name: "cd-a", cdrom: {} }, { name: "cd-b", cdrom: {}, bootOrder: 3 }]);
    expect(targetDevice(list, "Cd")?.name).toBe("cd-b");
    expect(targetDevice(list, "Cd", "cd-a")?.name).toBe("cd-a");
    expect(targetDevice(devices([{ name: "cd-a", cdrom: {} }, { name: "cd-b", cdrom: {} }]), "Cd")?.name).toBe("cd-a");
  });

  it("Pxe takes the interface with the lowest bootOrder, else the first", () => {
    expect(targetDevice(devices([ROOT_DISK], [{ name: "a" }, { name: "b", bootOrder: 4 }]), "Pxe")?.name).toBe("b");
    expect(targetDevice(devices([ROOT_DISK], [{ name: "a" }, { name: "b" }]), "Pxe")?.name).toBe("a");
  });

  it("returns undefined for a target the VM has no device for", () => {
    expect(overrideOrders(devices([ROOT_DISK]), "Cd")).toBeUndefined();
    expect(overrideOrders(devices([ROOT_DISK]), "Pxe")).toBeUndefined();
    expect(overrideOrders(devices([CDROM]), "Hdd")).toBeUndefined();
    expect(overrideOrders(devices([]), "Hdd")).toBeUndefined();
  });

  it("an implicit volume disk can be the Hdd target", () => {
    const list = bootDevicesOf({ domain: { devices: {} }, volumes: [{ name: "root" }] });
    expect(overrideOrders(list, "Hdd")).toEqual({ "disk/root": 1 });
  });

  it("never produces duplicate or non-positive bootOrders, over many random shapes (even invalid input)", () => {
    let state = 7;
    const rnd = (n: number) => ((state = (state * 1103515245 + 12345) % 2147483648), state % n);
    for (let i = 0; i < 500; i++) {
      const disks = Array.from({ length: rnd(5) }, (_, j) => ({
        name: `d${j}`,
        ...(rnd(3) === 0 ? { cdrom: {} } : rnd(5) === 0 ? { lun: {} } : { disk: {} }),
        ...(rnd(2) === 0 ? { bootOrder: rnd(4) + (rnd(4) === 0 ? 0 : 1) } : {}),
      }));
      const interfaces = Array.from({ length: rnd(3) }, (_, j) => ({ name: `n${j}`, ...(rnd(2) === 0 ? { bootOrder: rnd(6) + 1 } : {}) }));
      const list = devices(disks, interfaces);
      for (const target of ["Cd", "Pxe", "Hdd"] as const) {
        const orders = overrideOrders(list, target);
        if (!orders) continue;
        assertUnique(orders);
        const first = Object.entries(orders).find(([, v]) => v === 1)![0];
        const expected = { Cd: ["cdrom"], Pxe: ["nic"], Hdd: ["disk", "lun"] }[target];
        expect(expected).toContain(list.find(d => d.key === first)!.media);
      }
    }
  });

  it("restores saved orders and keeps a device added since unless it would collide", () => {
    const now = devices([{ ...ROOT_DISK, bootOrder: 2 }, { ...CDROM, bootOrder: 1 }, { name: "new", disk: {}, bootOrder: 1 }, { name: "other", disk: {}, bootOrder: 7 }]);
    expect(restoredOrders(now, { "disk/rootdisk": 1, "disk/cdrom": null })).toEqual({
      "disk/rootdisk": 1,
      "disk/cdrom": null,
      "disk/new": null,
      "disk/other": 7,
    });
  });
});

describe("Boot PATCH validation", () => {
  const fails = (body: unknown) => {
    try {
      parseBootPatch(body);
    } catch (e) {
      return e as RedfishError;
    }
    throw new Error("expected a RedfishError");
  };

  it("accepts the three writable properties and nothing else", () => {
    expect(parseBootPatch({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once", BootSourceOverrideMode: "UEFI" })).toEqual({
      BootSourceOverrideTarget: "Cd",
      BootSourceOverrideEnabled: "Once",
      BootSourceOverrideMode: "UEFI",
    });
    expect(parseBootPatch({})).toEqual({});
  });

  it("names the property and the problem", () => {
    expect(fails({ BootSourceOverrideTarget: "Floppy" })).toMatchObject({ status: 400, messageId: "Base.1.18.1.PropertyValueNotInList", messageArgs: ["Floppy", "Boot/BootSourceOverrideTarget"] });
    expect(fails({ BootSourceOverrideEnabled: true })).toMatchObject({ status: 400, messageId: "Base.1.18.1.PropertyValueTypeError" });
    expect(fails({ BootSourceOverrideMode: null })).toMatchObject({ status: 400, messageId: "Base.1.18.1.PropertyValueTypeError" });
    expect(fails({ Foo: 1 })).toMatchObject({ status: 400, messageId: "Base.1.18.1.PropertyUnknown", messageArgs: ["Boot/Foo"] });
    expect(fails({ "BootSourceOverrideTarget@Redfish.AllowableValues": ["Cd"] })).toMatchObject({ status: 400, messageId: "Base.1.18.1.PropertyNotWritable" });
    expect(fails("Cd")).toMatchObject({ status: 400, messageId: "Base.1.18.1.PropertyValueTypeError" });
    expect(fails([])).toMatchObject({ status: 400 });
    expect(fails(null)).toMatchObject({ status: 400 });
  });
});

describe("Boot override planning", () => {
  const vmWithCd = (extra: Parameters<typeof makeVm>[0] = {}) =>
    makeVm({ disks: [{ ...ROOT_DISK, bootOrder: 1 }, CDROM], interfaces: [{ name: "default", masquerade: {} }], ...extra });

  it("Once Cd: CD-ROM first, the rest behind it, override recorded; the view reads Cd / Once", () => {
    const vm = vmWithCd();
    const ops = planBootPatch(rec(vm), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    const after = applyOps(vm, ops);
    expect(orderOfTemplate(after)).toEqual({ "disk/rootdisk": 2, "disk/cdrom": 1, "interface/default": undefined });
    const record = recordedOverride(after)!;
    expect(record).toMatchObject({ target: "Cd", enabled: "Once", original: { "disk/rootdisk": 1, "disk/cdrom": null, "interface/default": null } });
    expect(bootView(rec(after))).toMatchObject({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once", BootSourceOverrideMode: "Legacy" });
    // The lists are replaced only after a test of the VM's resourceVersion: orders are unique across disks AND
    // interfaces, so a concurrent edit of either list (not only the one replaced) fails the patch.
    expect(ops[0]).toEqual({ op: "test", path: "/metadata/resourceVersion", value: vm.metadata.resourceVersion });
  });

  it("a plan from a stale cache entry does not land on lists changed meanwhile (no duplicate boot order)", () => {
    const cdOnce = applyOps(vmWithCd(), planBootPatch(rec(vmWithCd()), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" }));
    cdOnce.metadata.resourceVersion = "2";
    // Pxe written by someone else: the interface boots first, and the VM's resourceVersion moves.
    const pxe = applyOps(cdOnce, planBootPatch(rec(cdOnce), { BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Continuous" }));
    pxe.metadata.resourceVersion = "3";
    expect(orderOfTemplate(pxe)["interface/default"]).toBe(1);
    // Hdd planned from the entry before it replaces the disks list (rootdisk first)...
    const stale = planBootPatch(rec(cdOnce), { BootSourceOverrideTarget: "Hdd", BootSourceOverrideEnabled: "Continuous" });
    expect(stale.some(o => o.op === "replace" && o.path.endsWith("/disks"))).toBe(true);
    // ...and must not land on the VM as it is now: the patch's resourceVersion test fails.
    expect(() => applyOps(pxe, stale)).toThrow();
  });

  it("Target without Enabled means Once; Enabled without Target keeps the target", () => {
    const vm = vmWithCd();
    const once = applyOps(vm, planBootPatch(rec(vm), { BootSourceOverrideTarget: "Pxe" }));
    expect(recordedOverride(once)).toMatchObject({ target: "Pxe", enabled: "Once" });
    const continuous = applyOps(once, planBootPatch(rec(once), { BootSourceOverrideEnabled: "Continuous" }));
    expect(recordedOverride(continuous)).toMatchObject({ target: "Pxe", enabled: "Continuous" });
    expect(orderOfTemplate(continuous)).toEqual({ "disk/rootdisk": 2, "disk/cdrom": undefined, "interface/default": 1 });
  });

  it("switching targets computes from the original order, and None/Disabled restores it exactly", () => {
    const vm = vmWithCd();
    const cd = applyOps(vm, planBootPatch(rec(vm), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Continuous" }));
    const hdd = applyOps(cd, planBootPatch(rec(cd), { BootSourceOverrideTarget: "Hdd" }));
    expect(orderOfTemplate(hdd)).toEqual({ "disk/rootdisk": 1, "disk/cdrom": undefined, "interface/default": undefined });
    expect(recordedOverride(hdd)?.original).toEqual({ "disk/rootdisk": 1, "disk/cdrom": null, "interface/default": null });
    for (const body of [{ BootSourceOverrideTarget: "None" as const }, { BootSourceOverrideEnabled: "Disabled" as const }]) {
      const restored = applyOps(cd, planBootPatch(rec(cd), body));
      expect(restored.spec).toEqual(vm.spec);
      expect(restored.metadata.annotations?.[BOOT_OVERRIDE_ANNOTATION]).toBeUndefined();
      expect(bootView(rec(restored))).toMatchObject({ BootSourceOverrideTarget: "None", BootSourceOverrideEnabled: "Disabled" });
    }
  });

  it("repeating the same override writes nothing", () => {
    const vm = vmWithCd();
    const cd = applyOps(vm, planBootPatch(rec(vm), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" }));
    expect(planBootPatch(rec(cd), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" })).toEqual([]);
    expect(planBootPatch(rec(vm), { BootSourceOverrideTarget: "None" })).toEqual([]);
  });

  it("Cd on a VM without CD-ROM targets the empty virtual drive: recorded, and InsertMedia's drive comes first", () => {
    const vm = makeVm({ disks: [ROOT_DISK] });
    const ops = planBootPatch(rec(vm), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    const patched = applyOps(vm, ops);
    expect(recordedOverride(patched)).toMatchObject({ target: "Cd", enabled: "Once", applied: { [`disk/${CD_VOLUME}`]: 1, "disk/rootdisk": 2 } });
    expect(bootView(rec(patched))).toMatchObject({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    const withDrive = applyOps(patched, attachOps(patched, "vm1-cd-abcdef"));
    expect(bootDevicesOf(templateSpecOf(withDrive)).map(d => [d.name, d.bootOrder])).toEqual([
      ["rootdisk", 2],
      [CD_VOLUME, 1],
    ]);
    // Without an override the drive is added without a bootOrder, as before.
    expect(bootDevicesOf(templateSpecOf(applyOps(vm, attachOps(vm, "vm1-cd-abcdef")))).map(d => d.bootOrder)).toEqual([undefined, undefined]);
    // Someone changed the order since: the override no longer holds, the drive takes no place.
    const reordered = applyOps(patched, [{ op: "replace", path: "/spec/template/spec/domain/devices/disks/0/bootOrder", value: 5 }]);
    expect(bootDevicesOf(templateSpecOf(applyOps(reordered, attachOps(reordered, "vm1-cd-abcdef")))).map(d => d.bootOrder)).toEqual([5, undefined]);
  });

  it("Pxe or Hdd without such a device is a 409 that says what to do, never a silent success", () => {
    const vm = makeVm({ disks: [], interfaces: [] });
    for (const target of ["Pxe", "Hdd"] as const) {
      let err: unknown;
      try {
        planBootPatch(rec(vm), { BootSourceOverrideTarget: target, BootSourceOverrideEnabled: "Once" });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(RedfishError);
      expect(err).toMatchObject({ status: 409, messageId: "Base.1.18.1.PropertyValueResourceConflict" });
      expect((err as Error).message).toMatch(/Add an? (interface|disk) to the VirtualMachine/);
    }
  });

  it("a Once override is used once a new VMI started from it: the view reads Disabled again", () => {
    const vm = vmWithCd();
    const runningVmi = makeVmi(vm, { uid: "old-vmi" });
    const cd = applyOps(vm, planBootPatch(rec(vm, runningVmi), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" }));
    expect(recordedOverride(cd)?.vmiUid).toBe("old-vmi");
    // The VMI that was running when the override was set did not boot from it.
    expect(overrideStatus(rec(cd, runningVmi)).kind).toBe("active");
    const newVmi = makeVmi(cd, { uid: "new-vmi" });
    expect(overrideStatus(rec(cd, newVmi)).kind).toBe("used");
    expect(bootView(rec(cd, newVmi))).toMatchObject({ BootSourceOverrideTarget: "None", BootSourceOverrideEnabled: "Disabled" });
    // A VMI created from the template before the override (other uid, old order) does not count.
    expect(overrideStatus(rec(cd, makeVmi(vm, { uid: "racing-vmi" }))).kind).toBe("active");
  });

  it("an override whose order someone changed afterwards is no longer reported", () => {
    const vm = vmWithCd();
    const cd = applyOps(vm, planBootPatch(rec(vm), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Continuous" }));
    cd.spec.template.spec.domain.devices.disks[0].bootOrder = 9;
    expect(bootView(rec(cd))).toMatchObject({ BootSourceOverrideTarget: "None", BootSourceOverrideEnabled: "Disabled" });
  });

  it("implicit volume disks get a disk entry when they take part in the order", () => {
    const vm = makeVm({ disks: [CDROM], volumes: [{ name: "cdrom" }, { name: "root", containerDisk: { image: "x" } }] });
    const after = applyOps(vm, planBootPatch(rec(vm), { BootSourceOverrideTarget: "Cd" }));
    expect(after.spec.template.spec.domain.devices.disks).toEqual([
      { ...CDROM, bootOrder: 1 },
      { name: "root", disk: {}, bootOrder: 2 },
    ]);
  });

  it("Cd boots the virtual-media drive (CD-ROM on a DataVolume the VM owns) rather than another CD-ROM", () => {
    const vm = makeVm({
      disks: [{ ...ROOT_DISK, bootOrder: 1 }, { name: "drivers", cdrom: {} }, { name: "media", cdrom: {} }],
      volumes: [{ name: "rootdisk", containerDisk: { image: "x" } }, { name: "drivers", containerDisk: { image: "y" } }, { name: "media", dataVolume: { name: "vm1-media" } }],
    });
    const dv = {
      apiVersion: "cdi.kubevirt.io/v1beta1",
      kind: "DataVolume",
      metadata: { name: "vm1-media", namespace: "tenant1", ownerReferences: [{ apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", name: "vm1", uid: vm.metadata.uid! }] },
    };
    const withMedia = { vm, dataVolumes: [dv] };
    expect(orderOfTemplate(applyOps(vm, planBootPatch(withMedia, { BootSourceOverrideTarget: "Cd" })))).toEqual({
      "disk/rootdisk": 2,
      "disk/drivers": undefined,
      "disk/media": 1,
    });
    // Without the owned DataVolume, the first CD-ROM is taken.
    expect(orderOfTemplate(applyOps(vm, planBootPatch(rec(vm), { BootSourceOverrideTarget: "Cd" })))["disk/drivers"]).toBe(1);
  });

  it("unreadable annotations are ignored (treated as no override)", () => {
    const vm = vmWithCd({ annotations: { [BOOT_OVERRIDE_ANNOTATION]: "{not json" } });
    expect(bootView(rec(vm))).toMatchObject({ BootSourceOverrideTarget: "None", BootSourceOverrideEnabled: "Disabled" });
    const ops = planBootPatch(rec(vm), { BootSourceOverrideTarget: "Cd" });
    expect(recordedOverride(applyOps(vm, ops))).toMatchObject({ target: "Cd" });
  });
});

describe("Boot mode", () => {
  it("reflects the firmware: efi = UEFI, bios or nothing = Legacy", () => {
    expect(bootView(rec(makeVm())).BootSourceOverrideMode).toBe("Legacy");
    expect(bootView(rec(makeVm({ firmware: { bootloader: { bios: {} } } }))).BootSourceOverrideMode).toBe("Legacy");
    expect(bootView(rec(makeVm({ firmware: { bootloader: { efi: {} } } }))).BootSourceOverrideMode).toBe("UEFI");
  });

  it("a change rewrites the bootloader only, keeping uuid and serial", () => {
    const vm = makeVm({ firmware: { uuid: "u-1", serial: "s-1" } });
    const uefi = applyOps(vm, planBootPatch(rec(vm), { BootSourceOverrideMode: "UEFI" }));
    expect(uefi.spec.template.spec.domain.firmware).toEqual({ uuid: "u-1", serial: "s-1", bootloader: { efi: { secureBoot: false } } });
    const legacy = applyOps(uefi, planBootPatch(rec(uefi), { BootSourceOverrideMode: "Legacy" }));
    expect(legacy.spec.template.spec.domain.firmware).toEqual({ uuid: "u-1", serial: "s-1", bootloader: { bios: {} } });
    expect(planBootPatch(rec(legacy), { BootSourceOverrideMode: "Legacy" })).toEqual([]);
    const noFirmware = makeVm();
    expect(applyOps(noFirmware, planBootPatch(rec(noFirmware), { BootSourceOverrideMode: "UEFI" })).spec.template.spec.domain.firmware).toEqual({
      bootloader: { efi: { secureBoot: false } },
    });
  });

  it("lists the allowable values of all three properties", () => {
    expect(bootView(rec(makeVm()))).toEqual({
      BootSourceOverrideEnabled: "Disabled",
      BootSourceOverrideTarget: "None",
      BootSourceOverrideMode: "Legacy",
      "BootSourceOverrideEnabled@Redfish.AllowableValues": ["Disabled", "Once", "Continuous"],
      "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Cd", "Hdd"],
      "BootSourceOverrideMode@Redfish.AllowableValues": ["UEFI", "Legacy"],
    });
  });
});

// Boot override semantics against the in-memory KubeVirt behind the driver seam: the template's boot order and
// firmware after each PATCH, what the next VMI is created from, the boot controller restoring a used Once, and
// refusals that change nothing. What the guest really boots from stays end to end in boot-sandbox.test.ts.
import { afterEach, describe, expect, it, vi } from "vitest";
import { BOOT_OVERRIDE_ANNOTATION, applyBootPatch, bootView, startBootController } from "../../redfish/boot";
import { bootDevicesOf } from "../../redfish/boot/devices";
import { bootModeOf } from "../../redfish/boot/firmware";
import { vmiSpecOf } from "../../redfish/kubevirt/objects";
import { reset, startPowerController, type PowerDeps } from "../../redfish/power";
import { CD_VOLUME, MediaService, mediaSettings } from "../../redfish/media";
import { FakeKubeVirt, PATCH_TEST_FAILED } from "./fake-kubevirt";
import { testConfig } from "./fixtures";
import { CDROM, ROOT_DISK, makeVm } from "./power-fixtures";

const NS = "tenant1";
const stops: (() => void)[] = [];
afterEach(() => stops.splice(0).forEach(stop => stop()));

function setup(shape: Parameters<typeof makeVm>[0] = {}) {
  const fake = new FakeKubeVirt();
  const power: PowerDeps = { driver: fake, settings: { powerOffStaysOff: true } };
  stops.push(startPowerController(fake.cache, { driver: fake, settings: () => power.settings }), startBootController(fake.cache, fake));
  fake.addVm(
    makeVm({
      namespace: NS,
      name: "vm",
      runStrategy: "Halted",
      disks: [{ ...ROOT_DISK, bootOrder: 1 }, CDROM],
      interfaces: [{ name: "default", masquerade: {} }],
      ...shape,
    }),
  );
  const rec = () => fake.record(NS, "vm");
  const patch = (boot: unknown) => applyBootPatch(fake, rec(), boot);
  const templateOrder = () =>
    ((fake.vm(NS, "vm")!.spec as any).template.spec.domain.devices.disks as { name: string; bootOrder?: number }[]).map(d => [d.name, d.bootOrder ?? null]);
  /** The device the new VMI boots from: the lowest bootOrder of its spec. */
  const bootedFrom = () => {
    const devices = bootDevicesOf(vmiSpecOf(fake.vmi(NS, "vm"))).filter(d => d.bootOrder !== undefined);
    return devices.sort((a, b) => a.bootOrder! - b.bootOrder!)[0]?.name;
  };
  /** Off (if on), On, and KubeVirt creates the VMI from the template as it is now. */
  const powerCycle = async () => {
    if (fake.vmi(NS, "vm")) await reset(rec(), "ForceOff", power);
    fake.settle();
    await reset(rec(), "On", power);
    fake.settle();
    await vi.waitFor(() => expect(fake.vm(NS, "vm")!.metadata.annotations ?? {}).not.toHaveProperty(["kubevirt-infra.io/power-on-requested"]));
  };
  return { fake, power, rec, patch, templateOrder, bootedFrom, powerCycle };
}

describe("boot override semantics (fake KubeVirt)", () => {
  it("Once Cd: the CD-ROM first in the template; restored by the controller once a VMI used it; reads Disabled after", async () => {
    const t = setup();
    await t.patch({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    expect(bootView(t.rec())).toMatchObject({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    expect(t.templateOrder()).toEqual([
      ["rootdisk", 2],
      ["cdrom", 1],
    ]);
    await t.powerCycle();
    expect(t.bootedFrom()).toBe("cdrom");
    await vi.waitFor(() => expect(t.fake.vm(NS, "vm")!.metadata.annotations?.[BOOT_OVERRIDE_ANNOTATION]).toBeUndefined());
    expect(t.templateOrder()).toEqual([
      ["rootdisk", 1],
      ["cdrom", null],
    ]);
    expect(bootView(t.rec())).toMatchObject({ BootSourceOverrideTarget: "None", BootSourceOverrideEnabled: "Disabled" });
    await t.powerCycle();
    expect(t.bootedFrom()).toBe("rootdisk");
  });

  it("Once set while running: ForceRestart is a VM restart (new VMI from the new template), not a VMI reset", async () => {
    const t = setup();
    await t.powerCycle();
    await t.patch({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    t.fake.calls.length = 0;
    await reset(t.rec(), "ForceRestart", t.power);
    expect(t.fake.calls.filter(c => !c.method.startsWith("read")).map(c => [c.method, c.detail])).toEqual([["restartVm", { gracePeriodSeconds: 0 }]]);
    t.fake.settle();
    expect(t.bootedFrom()).toBe("cdrom");
  });

  it("Continuous Pxe stays across starts until set back to None", async () => {
    const t = setup();
    await t.patch({ BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Continuous" });
    await t.powerCycle();
    expect(t.bootedFrom()).toBe("default");
    await t.powerCycle();
    expect(t.bootedFrom()).toBe("default");
    expect(bootView(t.rec())).toMatchObject({ BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Continuous" });
    await t.patch({ BootSourceOverrideTarget: "None" });
    await t.powerCycle();
    expect(t.bootedFrom()).toBe("rootdisk");
  });

  it("BootSourceOverrideMode changes the firmware of the next VMI, not of the running one", async () => {
    const t = setup();
    await t.powerCycle();
    expect(bootModeOf(vmiSpecOf(t.fake.vmi(NS, "vm")))).toBe("Legacy");
    await t.patch({ BootSourceOverrideMode: "UEFI" });
    expect(bootView(t.rec()).BootSourceOverrideMode).toBe("UEFI");
    expect(bootModeOf(vmiSpecOf(t.fake.vmi(NS, "vm")))).toBe("Legacy");
    await t.powerCycle();
    expect(bootModeOf(vmiSpecOf(t.fake.vmi(NS, "vm")))).toBe("UEFI");
  });

  it("Cd without a CD-ROM is accepted like an empty virtual drive: recorded, the VM boots its disks until media is inserted, then the CD", async () => {
    for (const enabled of ["Once", "Continuous"] as const) {
      const t = setup({ disks: [{ ...ROOT_DISK, bootOrder: 1 }] });
      const media = new MediaService({ cache: t.fake.cache, driver: t.fake, settings: () => mediaSettings(testConfig().datavolume), firstResultWaitMs: 0 });
      await t.patch({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: enabled });
      expect(bootView(t.rec())).toMatchObject({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: enabled });
      expect(t.templateOrder()).toEqual([["rootdisk", 2]]); // the empty drive holds place 1
      if (enabled === "Continuous") {
        // Started with the drive empty: it falls through to the disk, as a physical machine does; the override stays.
        await t.powerCycle();
        expect(t.bootedFrom()).toBe("rootdisk");
        expect(bootView(t.rec())).toMatchObject({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Continuous" });
      }
      await media.insert(t.rec(), { image: "http://images.example.org/boot.iso", protocol: "HTTP" });
      t.fake.setImport(NS, t.fake.dataVolumes(NS)[0].metadata.name!, "Succeeded", { progress: "100.0%" });
      expect(t.templateOrder()).toEqual([["rootdisk", 2], [CD_VOLUME, 1]]);
      await t.powerCycle();
      expect(t.bootedFrom()).toBe(CD_VOLUME);
      // Once is used by that start; Continuous stays, also across an eject (the drive empties, the override does not).
      if (enabled === "Once") expect(bootView(t.rec()).BootSourceOverrideEnabled).toBe("Disabled");
      else {
        await media.eject(t.rec());
        expect(bootView(t.rec())).toMatchObject({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Continuous" });
        await t.patch({ BootSourceOverrideTarget: "None" });
        expect(t.templateOrder()).toEqual([["rootdisk", 1]]);
      }
    }
  });

  it("Pxe without an interface is 409 and invalid bodies are 400; neither writes", async () => {
    const t = setup({ disks: [{ ...ROOT_DISK, bootOrder: 1 }], interfaces: [] });
    await expect(t.patch({ BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Once" })).rejects.toMatchObject({
      status: 409,
      messageId: "Base.1.18.1.PropertyValueResourceConflict",
    });
    await expect(t.patch({ BootSourceOverrideTarget: "Usb" })).rejects.toMatchObject({ status: 400 });
    await expect(t.patch({ BootOrder: ["cdrom"] })).rejects.toMatchObject({ status: 400 });
    await expect(t.patch("Cd")).rejects.toMatchObject({ status: 400 });
    expect(t.fake.calls).toEqual([]);
  });

  it("a device list changed by someone else after the cache read is not overwritten: the patch is recomputed", async () => {
    const t = setup();
    const stale = t.rec();
    t.fake.mutate("VirtualMachine", NS, "vm", vm => {
      const spec = (vm.spec as any).template.spec;
      spec.domain.devices.disks.push({ name: "data", disk: {} });
      spec.volumes.push({ name: "data", emptyDisk: { capacity: "1Gi" } });
    });
    await applyBootPatch(t.fake, stale, { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    expect(t.templateOrder()).toEqual([
      ["rootdisk", 2],
      ["cdrom", 1],
      ["data", null],
    ]);
  });

  it("a patch that keeps conflicting is 409 ResourceInUse", async () => {
    const t = setup();
    t.fake.failNext("patchVm", PATCH_TEST_FAILED);
    t.fake.failNext("patchVm", PATCH_TEST_FAILED);
    await expect(t.patch({ BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Once" })).rejects.toMatchObject({
      status: 409,
      messageId: "Base.1.18.1.ResourceInUse",
    });
  });
});

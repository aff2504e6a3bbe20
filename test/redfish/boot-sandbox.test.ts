// Boot override against the sandbox API server and KubeVirt simulator: what the guest really boots from
// (VMI annotation sandbox.kubevirt.io/booted-from) across starts, with the boot controller restoring Once.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BOOT_OVERRIDE_ANNOTATION, applyBootPatch, bootView } from "../../redfish/boot";
import { reset } from "../../redfish/power";
import { SANDBOX_ANNOTATIONS } from "../../sandbox/simulators";
import { CDROM, ROOT_DISK, makeVm } from "./power-fixtures";
import { startPowerSandbox, VM_KEY, type PowerSandbox } from "./power-sandbox";

let sb: PowerSandbox;
let seq = 0;
const uniqueName = (base: string) => `${base}-${++seq}`;

beforeAll(async () => {
  sb = await startPowerSandbox({ namespace: "boot-test" });
});
afterAll(async () => sb?.stop());

const bootedFrom = (name: string) => sb.vmi(name)?.metadata.annotations?.[SANDBOX_ANNOTATIONS.bootedFrom];
const firmware = (name: string) => sb.vmi(name)?.metadata.annotations?.[SANDBOX_ANNOTATIONS.firmware];
const vmiUid = (name: string) => sb.vmi(name)?.metadata.uid;
const templateDisks = (name: string) =>
  ((sb.vm(name).spec as any).template.spec.domain.devices.disks as { name: string; bootOrder?: number }[]).map(d => [d.name, d.bootOrder ?? null]);

/** rootdisk (bootOrder 1) + a CD-ROM with media + one NIC; the guest honours ACPI quickly. */
async function createInstallableVm(name: string, extra: Parameters<typeof makeVm>[0] = {}) {
  sb.createVm(
    makeVm({
      name,
      runStrategy: "Halted",
      terminationGracePeriodSeconds: 180,
      templateAnnotations: { [SANDBOX_ANNOTATIONS.acpiShutdownSeconds]: "0.05" },
      disks: [{ ...ROOT_DISK, bootOrder: 1 }, CDROM],
      interfaces: [{ name: "default", masquerade: {} }],
      ...extra,
    }),
  );
  await sb.waitFor(() => sb.cache.getVm(sb.namespace, name), "VM in cache");
}

async function powerCycle(name: string) {
  const before = vmiUid(name);
  if (sb.state(name) !== "Off") {
    await reset(sb.record(name), "ForceOff", sb.power);
    await sb.waitFor(() => sb.state(name) === "Off", "Off");
  }
  await reset(sb.record(name), "On", sb.power);
  await sb.waitFor(() => sb.state(name) === "On" && vmiUid(name) !== before && bootedFrom(name), "booted");
}

describe("boot override on sandbox KubeVirt", () => {
  it("Once Cd boots the next start from the CD-ROM and the one after from disk; Enabled reads Disabled after use", async () => {
    const name = uniqueName("once");
    await createInstallableVm(name);
    await applyBootPatch(sb.power.driver, sb.record(name), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    await sb.waitFor(() => bootView(sb.record(name)).BootSourceOverrideTarget === "Cd", "override visible");
    expect(bootView(sb.record(name))).toMatchObject({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    expect(templateDisks(name)).toEqual([
      ["rootdisk", 2],
      ["cdrom", 1],
    ]);

    await powerCycle(name);
    expect(bootedFrom(name)).toBe("cdrom");
    // The boot controller puts the original order back as soon as the VMI exists.
    await sb.waitFor(() => sb.vm(name).metadata.annotations?.[BOOT_OVERRIDE_ANNOTATION] === undefined, "override consumed");
    expect(templateDisks(name)).toEqual([
      ["rootdisk", 1],
      ["cdrom", null],
    ]);
    await sb.waitFor(() => bootView(sb.record(name)).BootSourceOverrideEnabled === "Disabled", "view Disabled");
    expect(bootView(sb.record(name)).BootSourceOverrideTarget).toBe("None");

    await powerCycle(name);
    expect(bootedFrom(name)).toBe("rootdisk");
  });

  it("Once set while the VM runs: a ForceRestart recreates the VMI so the override is honoured, then disk again", async () => {
    const name = uniqueName("once-running");
    await createInstallableVm(name);
    await powerCycle(name);
    expect(bootedFrom(name)).toBe("rootdisk");
    await applyBootPatch(sb.power.driver, sb.record(name), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    await sb.waitFor(() => bootView(sb.record(name)).BootSourceOverrideTarget === "Cd", "override visible");
    const before = vmiUid(name);
    await reset(sb.record(name), "ForceRestart", sb.power); // Ironic's reboot: a VMI reset would boot the old order again
    await sb.waitFor(() => vmiUid(name) !== before && sb.state(name) === "On" && bootedFrom(name), "restarted");
    expect(bootedFrom(name)).toBe("cdrom");
    await sb.waitFor(() => bootView(sb.record(name)).BootSourceOverrideEnabled === "Disabled", "consumed");
    const second = vmiUid(name);
    await reset(sb.record(name), "ForceRestart", sb.power);
    await sb.waitFor(() => vmiUid(name) !== second && sb.state(name) === "On" && bootedFrom(name), "restarted again");
    expect(bootedFrom(name)).toBe("rootdisk");
  });

  it("Continuous Pxe stays across starts until set back to None", async () => {
    const name = uniqueName("continuous");
    await createInstallableVm(name);
    await applyBootPatch(sb.power.driver, sb.record(name), { BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Continuous" });
    await sb.waitFor(() => bootView(sb.record(name)).BootSourceOverrideEnabled === "Continuous", "override visible");
    await powerCycle(name);
    expect(bootedFrom(name)).toBe("default");
    await powerCycle(name);
    expect(bootedFrom(name)).toBe("default");
    expect(bootView(sb.record(name))).toMatchObject({ BootSourceOverrideTarget: "Pxe", BootSourceOverrideEnabled: "Continuous" });
    await applyBootPatch(sb.power.driver, sb.record(name), { BootSourceOverrideTarget: "None" });
    await sb.waitFor(() => bootView(sb.record(name)).BootSourceOverrideTarget === "None", "override gone");
    await powerCycle(name);
    expect(bootedFrom(name)).toBe("rootdisk");
  });

  it("BootSourceOverrideMode changes the firmware at the next start", async () => {
    const name = uniqueName("mode");
    await createInstallableVm(name);
    await powerCycle(name);
    expect(firmware(name)).toBe("bios");
    expect(bootView(sb.record(name)).BootSourceOverrideMode).toBe("Legacy");
    await applyBootPatch(sb.power.driver, sb.record(name), { BootSourceOverrideMode: "UEFI" });
    await sb.waitFor(() => bootView(sb.record(name)).BootSourceOverrideMode === "UEFI", "UEFI in view");
    expect(firmware(name)).toBe("bios"); // the running VMI keeps its firmware
    await powerCycle(name);
    expect(firmware(name)).toBe("uefi");
  });

  it("Cd on a VM without a CD-ROM fails with 409 and changes nothing", async () => {
    const name = uniqueName("nocd");
    await createInstallableVm(name, { disks: [{ ...ROOT_DISK, bootOrder: 1 }] });
    const rv = sb.vm(name).metadata.resourceVersion;
    await expect(applyBootPatch(sb.power.driver, sb.record(name), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" })).rejects.toMatchObject({
      status: 409,
      messageId: "Base.1.18.1.PropertyValueResourceConflict",
    });
    expect(sb.vm(name).metadata.resourceVersion).toBe(rv);
  });

  it("invalid bodies are 400 and change nothing", async () => {
    const name = uniqueName("invalid");
    await createInstallableVm(name);
    const rv = sb.vm(name).metadata.resourceVersion;
    await expect(applyBootPatch(sb.power.driver, sb.record(name), { BootSourceOverrideTarget: "Usb" })).rejects.toMatchObject({ status: 400 });
    await expect(applyBootPatch(sb.power.driver, sb.record(name), { BootOrder: ["cdrom"] })).rejects.toMatchObject({ status: 400 });
    await expect(applyBootPatch(sb.power.driver, sb.record(name), "Cd")).rejects.toMatchObject({ status: 400 });
    expect(sb.vm(name).metadata.resourceVersion).toBe(rv);
  });

  it("a device list changed by someone else after the cache read is not overwritten: the patch is recomputed", async () => {
    const name = uniqueName("concurrent");
    await createInstallableVm(name);
    const stale = sb.record(name);
    // Another client adds a data disk (and its volume) meanwhile.
    sb.api.store.mutate(VM_KEY, sb.namespace, name, obj => {
      const spec = structuredClone(obj.spec) as any;
      spec.template.spec.domain.devices.disks.push({ name: "data", disk: {} });
      spec.template.spec.volumes.push({ name: "data", emptyDisk: { capacity: "1Gi" } });
      return { ...obj, spec };
    });
    await applyBootPatch(sb.power.driver, stale, { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    expect(templateDisks(name)).toEqual([
      ["rootdisk", 2],
      ["cdrom", 1],
      ["data", null],
    ]);
  });
});

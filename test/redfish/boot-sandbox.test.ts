// Boot override against the sandbox API server and KubeVirt simulator: what the guest really boots from
// (VMI annotation sandbox.kubevirt.io/booted-from) across starts, with the boot controller restoring Once.
// Template order, firmware, refusals and conflicts run against the fake driver in boot-driver.test.ts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BOOT_OVERRIDE_ANNOTATION, applyBootPatch, bootView } from "../../redfish/boot";
import { reset } from "../../redfish/power";
import { SANDBOX_ANNOTATIONS } from "../../sandbox/simulators";
import { CDROM, ROOT_DISK, makeVm } from "./power-fixtures";
import { startPowerSandbox, type PowerSandbox } from "./power-sandbox";

let sb: PowerSandbox;
let seq = 0;
const uniqueName = (base: string) => `${base}-${++seq}`;

beforeAll(async () => {
  sb = await startPowerSandbox({ namespace: "boot-test" });
});
afterAll(async () => sb?.stop());

const bootedFrom = (name: string) => sb.vmi(name)?.metadata.annotations?.[SANDBOX_ANNOTATIONS.bootedFrom];
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
  await expect.poll(() => sb.cache.getVm(sb.namespace, name), { message: "VM in cache" }).toBeTruthy();
}

async function powerCycle(name: string) {
  const before = vmiUid(name);
  if (sb.state(name) !== "Off") {
    await reset(sb.record(name), "ForceOff", sb.power);
    await expect.poll(() => sb.state(name), { message: "Off" }).toBe("Off");
  }
  await reset(sb.record(name), "On", sb.power);
  await expect.poll(() => sb.state(name) === "On" && vmiUid(name) !== before && bootedFrom(name), { message: "booted" }).toBeTruthy();
}

describe("boot override on sandbox KubeVirt", () => {
  it("Once Cd boots the next start from the CD-ROM and the one after from disk; Enabled reads Disabled after use", async () => {
    const name = uniqueName("once");
    await createInstallableVm(name);
    await applyBootPatch(sb.power.driver, sb.record(name), { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    await expect.poll(() => bootView(sb.record(name)).BootSourceOverrideTarget, { message: "override visible" }).toBe("Cd");
    expect(bootView(sb.record(name))).toMatchObject({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });
    expect(templateDisks(name)).toEqual([
      ["rootdisk", 2],
      ["cdrom", 1],
    ]);

    await powerCycle(name);
    expect(bootedFrom(name)).toBe("cdrom");
    // The boot controller puts the original order back as soon as the VMI exists.
    await expect.poll(() => sb.vm(name).metadata.annotations?.[BOOT_OVERRIDE_ANNOTATION], { message: "override consumed" }).toBeUndefined();
    expect(templateDisks(name)).toEqual([
      ["rootdisk", 1],
      ["cdrom", null],
    ]);
    await expect.poll(() => bootView(sb.record(name)).BootSourceOverrideEnabled, { message: "view Disabled" }).toBe("Disabled");
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
    await expect.poll(() => bootView(sb.record(name)).BootSourceOverrideTarget, { message: "override visible" }).toBe("Cd");
    const before = vmiUid(name);
    await reset(sb.record(name), "ForceRestart", sb.power); // Ironic's reboot: a VMI reset would boot the old order again
    await expect.poll(() => vmiUid(name) !== before && sb.state(name) === "On" && bootedFrom(name), { message: "restarted" }).toBeTruthy();
    expect(bootedFrom(name)).toBe("cdrom");
    await expect.poll(() => bootView(sb.record(name)).BootSourceOverrideEnabled, { message: "consumed" }).toBe("Disabled");
    const second = vmiUid(name);
    await reset(sb.record(name), "ForceRestart", sb.power);
    await expect.poll(() => vmiUid(name) !== second && sb.state(name) === "On" && bootedFrom(name), { message: "restarted again" }).toBeTruthy();
    expect(bootedFrom(name)).toBe("rootdisk");
  });

});

// SecureBoot PATCH over the in-memory KubeVirt behind the driver seam: SecureBootEnable writes the template (with
// the SMM feature secure boot needs), applies at the next start, reads back on SecureBoot and Bios; what the VM
// cannot do is an error that names the property.
import { afterEach, describe, expect, it } from "vitest";
import { createRedfishApp } from "../../redfish/app";
import { startPowerController } from "../../redfish/power";
import { chassisDefinitions } from "../../redfish/settings";
import { FakeKubeVirt } from "./fake-kubevirt";
import { AUTH, testConfig, vm } from "./fixtures";

const NS = "tenant1-vms";
const SYS = `/redfish/v1/Systems/${NS}`;
const stops: (() => void)[] = [];
afterEach(() => stops.splice(0).forEach(stop => stop()));

function setup(firmware: Record<string, unknown>, features?: Record<string, unknown>) {
  const config = testConfig();
  const fake = new FakeKubeVirt(chassisDefinitions(config));
  stops.push(startPowerController(fake.cache, { driver: fake, settings: () => ({ powerOffStaysOff: true }) }));
  const app = createRedfishApp({ cache: fake.cache, config: () => config, driver: fake });
  const vmObj = vm(NS, "sb", { runStrategy: "Halted" }) as any;
  vmObj.spec.template.spec.domain.firmware = firmware;
  if (features) vmObj.spec.template.spec.domain.features = features;
  fake.addVm({ ...vmObj, status: {} });
  const request = (path: string, method = "GET", body?: unknown) =>
    Promise.resolve(
      app.request(
        path,
        { method, headers: { Authorization: AUTH.alice, ...(body !== undefined ? { "Content-Type": "application/json" } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) },
        { incoming: { socket: { remoteAddress: "192.0.2.7" } } },
      ),
    );
  const json = async (path: string) => (await request(path)).json() as Promise<any>;
  const domain = () => (fake.vm(NS, "sb")!.spec as any).template.spec.domain;
  return { fake, request, json, domain };
}

describe("SecureBoot PATCH", () => {
  it("SecureBootEnable true on a UEFI VM: the template gets secure boot and SMM, the next start boots with it; Bios shows it", async () => {
    const t = setup({ bootloader: { efi: { secureBoot: false } } });
    expect(await t.json(`${SYS}.sb/SecureBoot`)).toMatchObject({ SecureBootEnable: false, SecureBootMode: "SetupMode" });
    const res = await t.request(`${SYS}.sb/SecureBoot`, "PATCH", { SecureBootEnable: true });
    expect(res.status, await res.clone().text()).toBe(204);
    expect(t.domain().firmware.bootloader.efi).toEqual({ secureBoot: true });
    expect(t.domain().features.smm).toEqual({ enabled: true });
    // Applied at the next start: the guest is off, so it booted without it.
    expect(await t.json(`${SYS}.sb/SecureBoot`)).toMatchObject({ SecureBootEnable: true, SecureBootCurrentBoot: "Disabled", SecureBootMode: "UserMode" });
    expect((await t.json(`${SYS}.sb/Bios`)).Attributes).toMatchObject({ BootMode: "Uefi", SecureBoot: "Enabled", Smm: "Enabled" });

    expect((await t.request(`${SYS}.sb/Actions/ComputerSystem.Reset`, "POST", { ResetType: "On" })).status).toBe(204);
    t.fake.settle();
    const vmiDomain = (t.fake.vmi(NS, "sb")!.spec as any).domain;
    expect(vmiDomain.firmware.bootloader.efi.secureBoot).toBe(true);
    expect(vmiDomain.features.smm.enabled).toBe(true);
    expect((await t.json(`${SYS}.sb/SecureBoot`)).SecureBootCurrentBoot).toBe("Enabled");
    expect((await t.json(`${SYS}.sb`)).BiosVersion).toBe("OVMF secure boot (KubeVirt)");

    // Off again: secure boot goes, SMM stays (other firmware may use it); repeating writes nothing.
    expect((await t.request(`${SYS}.sb/SecureBoot`, "PATCH", { SecureBootEnable: false })).status).toBe(204);
    expect(t.domain().firmware.bootloader.efi).toEqual({ secureBoot: false });
    expect(t.domain().features.smm).toEqual({ enabled: true });
    const writes = t.fake.calls.filter(c => c.method === "patchVm").length;
    expect((await t.request(`${SYS}.sb/SecureBoot`, "PATCH", { SecureBootEnable: false })).status).toBe(204);
    expect(t.fake.calls.filter(c => c.method === "patchVm").length).toBe(writes);
  });

  it("turns SMM on where the template had it disabled, and keeps the other EFI settings", async () => {
    const t = setup({ bootloader: { efi: { secureBoot: false, persistent: true } } }, { smm: { enabled: false }, acpi: {} });
    expect((await t.request(`${SYS}.sb/SecureBoot`, "PATCH", { SecureBootEnable: true })).status).toBe(204);
    expect(t.domain().firmware.bootloader.efi).toEqual({ secureBoot: true, persistent: true });
    expect(t.domain().features).toEqual({ smm: { enabled: true }, acpi: {} });
  });

  it("refuses what the VM cannot do or the body cannot mean, naming the property, and writes nothing", async () => {
    const t = setup({ bootloader: { bios: {} } });
    const before = t.fake.calls.length;
    const legacy = await t.request(`${SYS}.sb/SecureBoot`, "PATCH", { SecureBootEnable: true });
    expect(legacy.status).toBe(409);
    const legacyError = ((await legacy.json()) as any).error;
    expect(legacyError.message).toContain("UEFI");
    expect(legacyError["@Message.ExtendedInfo"][0].RelatedProperties).toEqual(["#/SecureBootEnable"]);
    // Off on legacy BIOS is already true: nothing to write.
    expect((await t.request(`${SYS}.sb/SecureBoot`, "PATCH", { SecureBootEnable: false })).status).toBe(204);

    const cases: [unknown, number, string][] = [
      [{ SecureBootEnable: "yes" }, 400, "PropertyValueTypeError"],
      [{ SecureBootCurrentBoot: "Enabled" }, 400, "PropertyNotWritable"],
      [{ SecureBootMode: "DeployedMode" }, 400, "PropertyNotWritable"],
      [{ Colour: "blue" }, 400, "PropertyUnknown"],
      [{}, 400, "EmptyJSON"],
    ];
    for (const [body, status, messageId] of cases) {
      const res = await t.request(`${SYS}.sb/SecureBoot`, "PATCH", body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      expect(((await res.json()) as any).error["@Message.ExtendedInfo"][0].MessageId).toContain(messageId);
    }
    expect(t.fake.calls.slice(before).filter(c => !c.method.startsWith("read"))).toEqual([]);
  });
});

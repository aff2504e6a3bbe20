// Bios @Redfish.Settings over the in-memory KubeVirt behind the driver seam: Bios/Settings records BootMode and
// SecureBoot on the VM (an annotation, so a new app over the same cluster still sees them), a Reset that starts the
// guest writes them into the template through the Boot-mode and SecureBoot code paths, and bad input is an error
// naming the attribute.
import { afterEach, describe, expect, it } from "vitest";
import { createRedfishApp } from "../../redfish/app";
import { startPowerController } from "../../redfish/power";
import { BIOS_SETTINGS_ANNOTATION } from "../../redfish/resources/bios-settings";
import { chassisDefinitions } from "../../redfish/settings";
import { FakeKubeVirt } from "./fake-kubevirt";
import { AUTH, testConfig, vm } from "./fixtures";

const NS = "tenant1-vms";
const SYS = `/redfish/v1/Systems/${NS}.fw`;
const stops: (() => void)[] = [];
afterEach(() => stops.splice(0).forEach(stop => stop()));

function setup(firmware: Record<string, unknown>, opts: { running?: boolean; features?: Record<string, unknown> } = {}) {
  const config = testConfig();
  const fake = new FakeKubeVirt(chassisDefinitions(config));
  stops.push(startPowerController(fake.cache, { driver: fake, settings: () => ({ powerOffStaysOff: true }) }));
  const vmObj = vm(NS, "fw", { runStrategy: opts.running ? "Always" : "Halted" }) as any;
  vmObj.spec.template.spec.domain.firmware = firmware;
  if (opts.features) vmObj.spec.template.spec.domain.features = opts.features;
  fake.addVm({ ...vmObj, status: {} }, { running: opts.running });
  // A new app is a new watcher: everything it knows comes from the cluster.
  const newApp = () => createRedfishApp({ cache: fake.cache, config: () => config, driver: fake });
  let app = newApp();
  const request = (path: string, method = "GET", body?: unknown, auth = AUTH.alice) =>
    Promise.resolve(
      app.request(
        path,
        {
          method,
          headers: { Authorization: auth, ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
          ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
        },
        { incoming: { socket: { remoteAddress: "192.0.2.7" } } },
      ),
    );
  const json = async (path: string) => (await request(path)).json() as Promise<any>;
  const domain = () => (fake.vm(NS, "fw")!.spec as any).template.spec.domain;
  const writes = () => fake.calls.filter(c => !c.method.startsWith("read")).length;
  const restartWatcher = () => (app = newApp());
  return { fake, request, json, domain, writes, restartWatcher };
}

async function errorOf(res: Response) {
  return ((await res.json()) as any).error["@Message.ExtendedInfo"][0] as { MessageId: string; Message: string; RelatedProperties?: string[] };
}

describe("Bios @Redfish.Settings", () => {
  it("Bios links its SettingsObject (OnReset) and the ResetBios action; Settings is empty while nothing is pending", async () => {
    const t = setup({ bootloader: { bios: {} } });
    const bios = await t.json(`${SYS}/Bios`);
    expect(bios["@Redfish.Settings"]).toEqual({
      "@odata.type": "#Settings.v1_3_5.Settings",
      SettingsObject: { "@odata.id": `${SYS}/Bios/Settings` },
      SupportedApplyTimes: ["OnReset"],
    });
    expect(bios.Actions["#Bios.ResetBios"].target).toBe(`${SYS}/Bios/Actions/Bios.ResetBios`);
    const settings = await t.json(`${SYS}/Bios/Settings`);
    expect(settings).toMatchObject({ "@odata.id": `${SYS}/Bios/Settings`, "@odata.type": "#Bios.v1_1_0.Bios", Id: "Settings", Attributes: {} });
    // Bios itself stays read-only.
    expect((await t.request(`${SYS}/Bios`, "PATCH", { Attributes: { BootMode: "Uefi" } })).status).toBe(405);
  });

  it("pending BootMode and SecureBoot survive a watcher restart and reach the guest at the next start", async () => {
    const t = setup({ bootloader: { bios: {} } });
    const res = await t.request(`${SYS}/Bios/Settings`, "PATCH", {
      Attributes: { BootMode: "Uefi", SecureBoot: "Enabled" },
      // What sushy's set_attributes(..., apply_time=OnReset) sends.
      "@Redfish.SettingsApplyTime": { "@odata.type": "#Settings.v1_0_0.PreferredApplyTime", ApplyTime: "OnReset" },
    });
    expect(res.status, await res.clone().text()).toBe(204);
    // Recorded, not applied: the template and Bios still have legacy BIOS.
    expect(t.domain().firmware).toEqual({ bootloader: { bios: {} } });
    expect((await t.json(`${SYS}/Bios`)).Attributes).toMatchObject({ BootMode: "Bios", SecureBoot: "Disabled" });
    expect(JSON.parse((t.fake.vm(NS, "fw")!.metadata.annotations as Record<string, string>)[BIOS_SETTINGS_ANNOTATION])).toEqual({
      BootMode: "Uefi",
      SecureBoot: "Enabled",
    });

    t.restartWatcher();
    expect((await t.json(`${SYS}/Bios/Settings`)).Attributes).toEqual({ BootMode: "Uefi", SecureBoot: "Enabled" });

    expect((await t.request(`${SYS}/Actions/ComputerSystem.Reset`, "POST", { ResetType: "On" })).status).toBe(204);
    t.fake.settle();
    const vmiDomain = (t.fake.vmi(NS, "fw")!.spec as any).domain;
    expect(vmiDomain.firmware.bootloader.efi.secureBoot).toBe(true);
    expect(vmiDomain.features.smm.enabled).toBe(true);
    expect((await t.json(`${SYS}/Bios`)).Attributes).toMatchObject({ BootMode: "Uefi", SecureBoot: "Enabled", Smm: "Enabled" });
    expect((await t.json(`${SYS}/Bios/Settings`)).Attributes).toEqual({});
    expect((await t.json(`${SYS}/SecureBoot`)).SecureBootCurrentBoot).toBe("Enabled");
    expect(t.fake.vm(NS, "fw")!.metadata.annotations?.[BIOS_SETTINGS_ANNOTATION]).toBeUndefined();
  });

  it("a ForceRestart of a running guest with pending SecureBoot makes a new VMI that has it", async () => {
    const t = setup({ bootloader: { efi: { secureBoot: false } } }, { running: true });
    const before = t.fake.vmi(NS, "fw")!.metadata.uid;
    expect((await t.request(`${SYS}/Bios/Settings`, "PATCH", { Attributes: { SecureBoot: "Enabled" } })).status).toBe(204);
    expect((await t.request(`${SYS}/Actions/ComputerSystem.Reset`, "POST", { ResetType: "ForceRestart" })).status).toBe(204);
    t.fake.settle();
    const vmi = t.fake.vmi(NS, "fw")!;
    expect(vmi.metadata.uid).not.toBe(before);
    expect((vmi.spec as any).domain.firmware.bootloader.efi.secureBoot).toBe(true);
    expect(t.fake.calls.map(c => c.method)).toContain("restartVm");
  });

  it("a power off does not apply pending settings", async () => {
    const t = setup({ bootloader: { efi: { secureBoot: false } } }, { running: true });
    expect((await t.request(`${SYS}/Bios/Settings`, "PATCH", { Attributes: { BootMode: "Bios" } })).status).toBe(204);
    expect((await t.request(`${SYS}/Actions/ComputerSystem.Reset`, "POST", { ResetType: "ForceOff" })).status).toBe(204);
    t.fake.settle();
    expect(t.domain().firmware).toEqual({ bootloader: { efi: { secureBoot: false } } });
    expect((await t.json(`${SYS}/Bios/Settings`)).Attributes).toEqual({ BootMode: "Bios" });
  });

  it("ResetBios records the defaults of the VM's firmware kind as pending; an empty body and {} are the same request", async () => {
    const uefi = setup({ bootloader: { efi: {} } }, { features: { smm: {} } });
    expect((await uefi.request(`${SYS}/Bios/Settings`, "PATCH", { Attributes: { BootMode: "Bios", SecureBoot: "Disabled" } })).status).toBe(204);
    expect((await uefi.request(`${SYS}/Bios/Actions/Bios.ResetBios`, "POST")).status).toBe(204);
    expect((await uefi.json(`${SYS}/Bios/Settings`)).Attributes).toEqual({ SecureBoot: "Disabled" });
    expect((await uefi.request(`${SYS}/Bios/Actions/Bios.ResetBios`, "POST", {})).status).toBe(204);
    const unknown = await uefi.request(`${SYS}/Bios/Actions/Bios.ResetBios`, "POST", { Everything: true });
    expect(unknown.status).toBe(400);
    expect((await errorOf(unknown)).MessageId).toContain("ActionParameterUnknown");
    expect((await uefi.request(`${SYS}/Actions/ComputerSystem.Reset`, "POST", { ResetType: "On" })).status).toBe(204);
    uefi.fake.settle();
    expect((uefi.fake.vmi(NS, "fw")!.spec as any).domain.firmware.bootloader.efi.secureBoot).toBe(false);

    const legacy = setup({ bootloader: { bios: {} } });
    expect((await legacy.request(`${SYS}/Bios/Settings`, "PATCH", { Attributes: { BootMode: "Uefi" } })).status).toBe(204);
    expect((await legacy.request(`${SYS}/Bios/Actions/Bios.ResetBios`, "POST")).status).toBe(204);
    expect((await legacy.json(`${SYS}/Bios/Settings`)).Attributes).toEqual({});
    expect(legacy.fake.vm(NS, "fw")!.metadata.annotations?.[BIOS_SETTINGS_ANNOTATION]).toBeUndefined();
  });

  it("refuses what cannot be set, naming the attribute, and writes nothing", async () => {
    const t = setup({ bootloader: { bios: {} } });
    const before = t.writes();
    const cases: [unknown, number, string, string][] = [
      [{ Attributes: { Colour: "blue" } }, 400, "PropertyUnknown", "#/Attributes/Colour"],
      [{ Attributes: { Smm: "Enabled" } }, 400, "PropertyNotWritable", "#/Attributes/Smm"],
      [{ Attributes: { ProcessorSockets: 4 } }, 400, "PropertyNotWritable", "#/Attributes/ProcessorSockets"],
      [{ Attributes: { BootMode: "Legacy" } }, 400, "PropertyValueNotInList", "#/Attributes/BootMode"],
      [{ Attributes: { SecureBoot: true } }, 400, "PropertyValue", "#/Attributes/SecureBoot"],
      [{ Attributes: { BootMode: "Uefi" }, "@Redfish.SettingsApplyTime": { ApplyTime: "Immediate" } }, 400, "PropertyValueNotInList", "#/@Redfish.SettingsApplyTime/ApplyTime"],
      [{ Id: "Other" }, 400, "PropertyNotWritable", "#/Id"],
      [{ BootMode: "Uefi" }, 400, "PropertyUnknown", "#/BootMode"],
      [{ Attributes: { SecureBoot: "Enabled" } }, 409, "PropertyValueResourceConflict", "#/Attributes/SecureBoot"],
    ];
    for (const [body, status, messageId, related] of cases) {
      const res = await t.request(`${SYS}/Bios/Settings`, "PATCH", body);
      expect(res.status, JSON.stringify(body)).toBe(status);
      const info = await errorOf(res);
      expect(info.MessageId, JSON.stringify(body)).toContain(messageId);
      expect(info.RelatedProperties, JSON.stringify(body)).toEqual([related]);
    }
    expect((await t.request(`${SYS}/Bios/Settings`, "PATCH", "{not json")).status).toBe(400);
    expect(t.writes()).toBe(before);
  });

  it("another tenant's system is 404 for Settings and ResetBios", async () => {
    const t = setup({ bootloader: { efi: {} } });
    const before = t.writes();
    expect((await t.request(`${SYS}/Bios/Settings`, "GET", undefined, AUTH.bob)).status).toBe(404);
    expect((await t.request(`${SYS}/Bios/Settings`, "PATCH", { Attributes: { SecureBoot: "Disabled" } }, AUTH.bob)).status).toBe(404);
    expect((await t.request(`${SYS}/Bios/Actions/Bios.ResetBios`, "POST", {}, AUTH.bob)).status).toBe(404);
    expect(t.writes()).toBe(before);
  });

  it("an unreadable annotation counts as nothing pending", async () => {
    const t = setup({ bootloader: { efi: {} } });
    t.fake.mutate("VirtualMachine", NS, "fw", o => (o.metadata.annotations = { [BIOS_SETTINGS_ANNOTATION]: "{oops" }));
    expect((await t.json(`${SYS}/Bios/Settings`)).Attributes).toEqual({});
    expect((await t.request(`${SYS}/Bios/Settings`, "PATCH", { Attributes: { SecureBoot: "Disabled" } })).status).toBe(204);
    expect((await t.json(`${SYS}/Bios/Settings`)).Attributes).toEqual({ SecureBoot: "Disabled" });
  });
});

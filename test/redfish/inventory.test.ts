// The hardware inventory (Processors, Memory, Storage, SimpleStorage, EthernetInterfaces), Bios and SecureBoot,
// derived from realistic VM/VMI/DataVolume objects and served tenant-scoped with ETags.
import { describe, expect, it } from "vitest";
import { AUTH, dataVolume, revise, runningVmi, testService, vm } from "./fixtures";

type Json = Record<string, any>;

async function getJson(s: ReturnType<typeof testService>, path: string, auth = AUTH.alice): Promise<{ status: number; body: Json; headers: Headers }> {
  const res = await s.request(path, { headers: { Authorization: auth } });
  return { status: res.status, body: (await res.json()) as Json, headers: res.headers };
}

const SYS = "/redfish/v1/Systems/tenant1-vms";

/** A VM with a 40Gi DataVolume root disk, a 2Gi emptyDisk, a containerDisk and an attached ISO CD-ROM. */
function storageVm(): { vmObj: Json; dvs: Json[] } {
  const vmObj = vm("tenant1-vms", "store", { dataVolumeTemplates: ["store-root"], cpu: { sockets: 2, cores: 4, threads: 2, model: "host-passthrough" }, memory: { guest: "6Gi" } }) as Json;
  vmObj.spec.dataVolumeTemplates[0].spec.storage.resources.requests.storage = "40Gi";
  const spec = vmObj.spec.template.spec;
  spec.domain.devices.disks.push(
    { name: "scratch", disk: { bus: "sata" } },
    { name: "cloudinit", disk: { bus: "virtio" } },
    { name: "virtualmedia-cd", cdrom: { bus: "sata", readonly: true } },
  );
  spec.volumes.push(
    { name: "scratch", emptyDisk: { capacity: "2Gi" } },
    { name: "cloudinit", cloudInitNoCloud: { userData: "#cloud-config" } },
    { name: "virtualmedia-cd", dataVolume: { name: "store-iso" } },
  );
  const root = dataVolume("tenant1-vms", "store-root", vmObj as never) as Json;
  root.spec.storage.resources.requests.storage = "40Gi";
  const iso = dataVolume("tenant1-vms", "store-iso", vmObj as never) as Json;
  iso.spec = { source: { http: { url: "http://images/boot.iso" } }, storage: { resources: { requests: { storage: "1Gi" } } } };
  iso.status = { phase: "ImportInProgress", progress: "12.00%" };
  return { vmObj, dvs: [root, iso] };
}

describe("Processors and Memory", () => {
  it("has one Processor per socket with the architecture, model, cores and threads Ironic counts", async () => {
    const s = testService();
    const { vmObj } = storageVm();
    s.cache.apply("VirtualMachine", "ADDED", vmObj as never);
    const system = (await getJson(s, `${SYS}.store`)).body;
    expect(system.Processors).toEqual({ "@odata.id": `${SYS}.store/Processors` });
    const list = await getJson(s, `${SYS}.store/Processors`);
    expect(list.body).toMatchObject({ "@odata.type": "#ProcessorCollection.ProcessorCollection", "Members@odata.count": 2 });
    expect(list.body.Members).toEqual([{ "@odata.id": `${SYS}.store/Processors/CPU0` }, { "@odata.id": `${SYS}.store/Processors/CPU1` }]);
    const cpu = await getJson(s, `${SYS}.store/Processors/CPU1`);
    expect(cpu.body).toMatchObject({
      "@odata.type": "#Processor.v1_10_0.Processor",
      Id: "CPU1",
      ProcessorType: "CPU",
      ProcessorArchitecture: "x86",
      InstructionSet: "x86-64",
      Model: "host-passthrough",
      TotalCores: 4,
      TotalThreads: 8,
      Status: { State: "Enabled", Health: "OK" },
    });
    expect(cpu.headers.get("ETag")).toMatch(/^"/);
    expect((await getJson(s, `${SYS}.store/Processors/CPU2`)).status).toBe(404);

    // an arm64 VM
    const arm = revise(vmObj as never, (v: Json) => (v.spec.template.spec.architecture = "arm64"));
    s.cache.apply("VirtualMachine", "MODIFIED", arm);
    expect((await getJson(s, `${SYS}.store/Processors/CPU0`)).body).toMatchObject({ ProcessorArchitecture: "ARM", InstructionSet: "ARM-A64" });
  });

  it("splits the guest memory into modules, one per socket, that add up to it", async () => {
    const s = testService();
    const { vmObj } = storageVm();
    const odd = revise(vmObj as never, (v: Json) => (v.spec.template.spec.domain.memory.guest = "5000Mi"));
    s.cache.apply("VirtualMachine", "ADDED", odd);
    const list = (await getJson(s, `${SYS}.store/Memory`)).body;
    expect(list.Members).toEqual([{ "@odata.id": `${SYS}.store/Memory/DIMM0` }, { "@odata.id": `${SYS}.store/Memory/DIMM1` }]);
    const sizes = await Promise.all(list.Members.map(async (m: Json) => (await getJson(s, m["@odata.id"])).body));
    expect(sizes[0]).toMatchObject({ "@odata.type": "#Memory.v1_10_0.Memory", MemoryType: "DRAM", Status: { State: "Enabled", Health: "OK" } });
    expect(sizes.map(m => m.CapacityMiB)).toEqual([2500, 2500]);
    expect((await getJson(s, `${SYS}.store/Memory/DIMM2`)).status).toBe(404);
  });
});

describe("Storage and SimpleStorage", () => {
  it("has a Drive per disk with the requested capacity, the CD-ROM as an optical drive, the same in SimpleStorage", async () => {
    const s = testService();
    const { vmObj, dvs } = storageVm();
    s.cache.apply("VirtualMachine", "ADDED", vmObj as never);
    for (const dv of dvs) s.cache.apply("DataVolume", "ADDED", dv as never);

    expect((await getJson(s, `${SYS}.store/Storage`)).body.Members).toEqual([{ "@odata.id": `${SYS}.store/Storage/1` }]);
    const storage = (await getJson(s, `${SYS}.store/Storage/1`)).body;
    expect(storage["@odata.type"]).toBe("#Storage.v1_9_0.Storage");
    expect(storage.Drives.map((d: Json) => d["@odata.id"])).toEqual(
      ["rootdisk", "scratch", "cloudinit", "virtualmedia-cd"].map(d => `${SYS}.store/Storage/1/Drives/${d}`),
    );
    const drive = async (name: string) => (await getJson(s, `${SYS}.store/Storage/1/Drives/${name}`)).body;
    expect(await drive("rootdisk")).toMatchObject({
      "@odata.type": "#Drive.v1_11_0.Drive",
      CapacityBytes: 40 * 2 ** 30,
      MediaType: "HDD",
      Protocol: "PCIe",
      Status: { State: "Enabled", Health: "OK" },
    });
    expect(await drive("scratch")).toMatchObject({ CapacityBytes: 2 * 2 ** 30, Protocol: "SATA" });
    expect(await drive("cloudinit")).toMatchObject({ CapacityBytes: 0 });
    expect((await drive("cloudinit")).Description).toContain("capacity not known");
    const cd = await drive("virtualmedia-cd");
    expect(cd).toMatchObject({ Name: "CD-ROM virtualmedia-cd", CapacityBytes: 2 ** 30, Status: { State: "Starting", Health: "OK" } });
    expect(cd.MediaType).toBeUndefined();
    expect(cd.Description).toContain("Optical drive");
    expect((await getJson(s, `${SYS}.store/Storage/1/Drives/nope`)).status).toBe(404);
    expect((await getJson(s, `${SYS}.store/Storage/2`)).status).toBe(404);

    const simple = (await getJson(s, `${SYS}.store/SimpleStorage/1`)).body;
    expect(simple["@odata.type"]).toBe("#SimpleStorage.v1_3_0.SimpleStorage");
    expect(simple.Devices.map((d: Json) => [d.Name, d.CapacityBytes, d.Status.State])).toEqual([
      ["rootdisk", 40 * 2 ** 30, "Enabled"],
      ["scratch", 2 * 2 ** 30, "Enabled"],
      ["cloudinit", 0, "Enabled"],
      ["CD-ROM virtualmedia-cd", 2 ** 30, "Starting"],
    ]);

    // a failed import shows on the drive and the subsystem; the ETag follows the change
    const before = await getJson(s, `${SYS}.store/Storage/1`);
    s.cache.apply("DataVolume", "MODIFIED", revise(dvs[1] as never, (d: Json) => (d.status = { phase: "Failed" })));
    const after = await getJson(s, `${SYS}.store/Storage/1`);
    expect(after.body.Status.Health).toBe("Critical");
    expect(after.headers.get("ETag")).not.toBe(before.headers.get("ETag"));
    expect((await drive("virtualmedia-cd")).Status).toEqual({ State: "Enabled", Health: "Critical" });
  });

  it("takes the capacity from dataVolumeTemplates before the DataVolume exists", async () => {
    const s = testService();
    const { vmObj } = storageVm();
    s.cache.apply("VirtualMachine", "ADDED", vmObj as never);
    const root = (await getJson(s, `${SYS}.store/Storage/1/Drives/rootdisk`)).body;
    expect(root).toMatchObject({ CapacityBytes: 40 * 2 ** 30, Status: { State: "Starting" } });
  });

  it("is tenant-scoped like the system", async () => {
    const s = testService();
    for (const path of ["Processors", "Processors/CPU0", "Memory", "Storage", "Storage/1", "Storage/1/Drives/rootdisk", "SimpleStorage/1", "Bios", "SecureBoot"]) {
      expect((await getJson(s, `/redfish/v1/Systems/tenant2-vms.vm-c/${path}`)).status, path).toBe(404);
      expect((await getJson(s, `/redfish/v1/Systems/tenant2-vms.vm-c/${path}`, AUTH.bob)).status, path).toBe(200);
    }
  });
});

describe("EthernetInterfaces for inspection", () => {
  it("reports MAC, link, speed and an Enabled/OK status that Ironic creates ports from", async () => {
    const s = testService();
    const nic = (await getJson(s, `${SYS}.vm-a/EthernetInterfaces/default`)).body;
    expect(nic).toMatchObject({ MACAddress: "02:00:00:aa:bb:01", LinkStatus: "LinkUp", SpeedMbps: null, Status: { State: "Enabled", Health: "OK" } });
  });
});

describe("Bios and SecureBoot", () => {
  it("reflects the VM firmware read-only, with BiosVersion on the System and FirmwareVersion on the Manager", async () => {
    const s = testService();
    const legacy = (await getJson(s, `${SYS}.vm-b`)).body;
    expect(legacy).toMatchObject({ BiosVersion: "SeaBIOS (KubeVirt)", Bios: { "@odata.id": `${SYS}.vm-b/Bios` }, SecureBoot: { "@odata.id": `${SYS}.vm-b/SecureBoot` } });
    const bios = await getJson(s, `${SYS}.vm-b/Bios`);
    expect(bios.body).toMatchObject({
      "@odata.type": "#Bios.v1_1_0.Bios",
      Id: "Bios",
      Attributes: { BootMode: "Bios", SecureBoot: "Disabled", Smm: "Disabled", MachineType: "q35", ProcessorSockets: 1 },
    });
    expect(bios.headers.get("Allow")).toBe("GET, HEAD");
    const patch = await s.request(`${SYS}.vm-b/Bios`, { method: "PATCH", headers: { Authorization: AUTH.alice, "Content-Type": "application/json" }, body: "{}" });
    expect(patch.status).toBe(405);
    expect((await getJson(s, `${SYS}.vm-b/SecureBoot`)).body).toMatchObject({
      "@odata.type": "#SecureBoot.v1_1_0.SecureBoot",
      SecureBootEnable: false,
      SecureBootCurrentBoot: "Disabled",
      SecureBootMode: null,
    });
    expect((await getJson(s, "/redfish/v1/Managers/tenant1-vms.vm-b")).body.FirmwareVersion).toMatch(/^\d+\.\d+\.\d+/);

    // UEFI with secure boot (KubeVirt's default for efi: {}), SMM on, running
    const secure = vm("tenant1-vms", "secure", { runStrategy: "Always" }) as Json;
    secure.spec.template.spec.domain.firmware.bootloader = { efi: {} };
    secure.spec.template.spec.domain.features = { smm: {} };
    s.cache.apply("VirtualMachine", "ADDED", secure as never);
    expect((await getJson(s, `${SYS}.secure/SecureBoot`)).body).toMatchObject({ SecureBootEnable: true, SecureBootCurrentBoot: "Disabled", SecureBootMode: "UserMode" });
    s.cache.apply("VirtualMachineInstance", "ADDED", runningVmi(secure as never));
    expect((await getJson(s, `${SYS}.secure/SecureBoot`)).body.SecureBootCurrentBoot).toBe("Enabled");
    expect((await getJson(s, `${SYS}.secure/Bios`)).body.Attributes).toMatchObject({ BootMode: "Uefi", SecureBoot: "Enabled", Smm: "Enabled" });
    expect((await getJson(s, `${SYS}.secure`)).body.BiosVersion).toBe("OVMF secure boot (KubeVirt)");

    // UEFI without secure boot: setup mode
    const plain = revise(secure as never, (v: Json) => (v.spec.template.spec.domain.firmware.bootloader = { efi: { secureBoot: false } }));
    s.cache.apply("VirtualMachine", "MODIFIED", plain);
    expect((await getJson(s, `${SYS}.secure/SecureBoot`)).body).toMatchObject({ SecureBootEnable: false, SecureBootMode: "SetupMode" });
  });

  it("answers a SecureBoot PATCH it cannot apply with an error naming the property, never a silent success", async () => {
    const s = testService();
    // vm-b boots legacy BIOS: no secure boot without UEFI (secure-boot.test.ts covers the PATCH that applies).
    const res = await s.request(`${SYS}.vm-b/SecureBoot`, {
      method: "PATCH",
      headers: { Authorization: AUTH.alice, "Content-Type": "application/json" },
      body: JSON.stringify({ SecureBootEnable: true }),
    });
    expect(res.status).toBe(409);
    const body = (await res.json()) as Json;
    expect(body.error["@Message.ExtendedInfo"][0]).toMatchObject({ MessageId: expect.stringContaining("PropertyValueResourceConflict"), RelatedProperties: ["#/SecureBootEnable"] });
    expect(JSON.stringify(body)).toContain("UEFI");
    expect((await getJson(s, `${SYS}.vm-b/SecureBoot`)).body.SecureBootEnable).toBe(false);
    // another tenant's system: the same 404 as a missing one
    const foreign = await s.request("/redfish/v1/Systems/tenant2-vms.vm-c/SecureBoot", { method: "PATCH", headers: { Authorization: AUTH.alice, "Content-Type": "application/json" }, body: "{}" });
    expect(foreign.status).toBe(404);
  });
});

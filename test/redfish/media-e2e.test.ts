// Virtual media end to end with the BUILT module (watcher + admission processes) against the sandbox cluster of
// `npm start` (demo data): the Ironic sequence over HTTPS, a watcher killed and restarted during an import, and
// Debian's python3-sushy driving insert/eject the way Ironic does; the failures Ironic must see, Boot Cd without
// media, and a SecureBoot PATCH applied at the next start.
import { execFile, execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestCluster, type TestCluster } from "../helpers/cluster";
import { present } from "../helpers/present";

const NS = "tenant1-vms";
const ADMIN = "admin:admin123";
const VM_KEY = "virtualmachines.kubevirt.io";
const VMI_KEY = "virtualmachineinstances.kubevirt.io";
const DV_KEY = "datavolumes.cdi.kubevirt.io";
/** Debian's python3-sushy lives in the system interpreter's dist-packages. */
const PYTHON = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

function sushyInstalled(): boolean {
  try {
    execFileSync(PYTHON, ["-c", "import sushy"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
/** Like the conformance suite: skipped (loudly) without python3-sushy, except where CI requires the clients. */
const HAVE_SUSHY = sushyInstalled() || process.env.REQUIRE_CONFORMANCE_CLIENTS === "true";
if (!HAVE_SUSHY) console.warn("python3-sushy is not installed: the sushy virtual-media test is SKIPPED (apt-get install -y python3-sushy)");

let c: TestCluster;

beforeAll(async () => {
  c = await startTestCluster({ demo: true, iso: { sizeBytes: 2 * 1024 * 1024, slowChunkIntervalMs: 40 } });
  await redfishUp();
});
afterAll(async () => {
  await c?.stop();
});

async function redfishUp(): Promise<void> {
  await vi.waitFor(
    async () => expect((await c.redfish("GET", `/redfish/v1/Systems/${NS}.vm-1`, { user: ADMIN })).status, "the Redfish server of the watcher").toBe(200),
    { timeout: 60_000, interval: 100 },
  );
}

const system = (vm: string) => `/redfish/v1/Systems/${NS}.${vm}`;
const cd = (vm: string) => `${system(vm)}/VirtualMedia/Cd`;

function mediaDataVolumes(vm: string) {
  return c.api.store.list(DV_KEY, NS).filter(dv => dv.metadata.labels?.["kubevirt-infra.io/media-for"] === vm);
}

async function get(p: string): Promise<any> {
  const res = await c.redfish("GET", p, { user: ADMIN });
  expect(res.status, `GET ${p}: ${res.text}`).toBe(200);
  return res.body;
}

describe("virtual media with the built module", () => {
  it("the Ironic sequence (ForceOff, Eject, Insert, Boot Cd Once, On) ends with the VMI booted from the CD", async () => {
    const vm = "vm-1";
    const off = await c.redfish("POST", `${system(vm)}/Actions/ComputerSystem.Reset`, { user: ADMIN, body: { ResetType: "ForceOff" } });
    expect(off.status).toBeLessThan(300);
    expect((await c.redfish("POST", `${cd(vm)}/Actions/VirtualMedia.EjectMedia`, { user: ADMIN })).status).toBe(204);

    const image = `${c.isoServer.url}/images/demo.iso`;
    const started = Date.now();
    const insert = await c.redfish("POST", `${cd(vm)}/Actions/VirtualMedia.InsertMedia`, { user: ADMIN, body: { Image: image } });
    expect(insert.status, insert.text).toBe(202);
    expect(Date.now() - started).toBeLessThan(5_000);
    const monitor = insert.headers.location as string;
    expect(monitor).toMatch(/^\/redfish\/v1\/TaskService\/TaskMonitors\//);

    const boot = await c.redfish("PATCH", system(vm), { user: ADMIN, body: { Boot: { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" } } });
    expect(boot.status, boot.text).toBe(204);
    const on = await c.redfish("POST", `${system(vm)}/Actions/ComputerSystem.Reset`, { user: ADMIN, body: { ResetType: "On" } });
    expect(on.status, on.text).toBeLessThan(300);

    const vmi = await vi.waitFor(
      () => {
        const v = c.api.store.get(VMI_KEY, NS, vm);
        return present(v?.metadata.annotations?.["sandbox.kubevirt.io/booted-from"] ? v : undefined, "the VMI to boot");
      },
      { timeout: 30_000, interval: 100 },
    );
    expect(vmi!.metadata.annotations!["sandbox.kubevirt.io/booted-from"]).toBe("virtualmedia-cd");
    await expect.poll(async () => (await c.redfish("GET", monitor, { user: ADMIN })).status, { timeout: 20_000, interval: 100, message: "the task to complete" }).toBe(204);
    expect(await get(cd(vm))).toMatchObject({ Image: image, Inserted: true, ConnectedVia: "URI" });
    // The datavolume-policy webhook of the demo polices tenant1-vms: the module's own DataVolume is exempt.
    expect(mediaDataVolumes(vm)).toHaveLength(1);
  });

  it("a watcher killed and restarted during an import leaves a consistent state and the task completes", async () => {
    const vm = "vm-2";
    const image = `${c.isoServer.url}/slow/restart.iso`;
    const insert = await c.redfish("POST", `${cd(vm)}/Actions/VirtualMedia.InsertMedia`, { user: ADMIN, body: { Image: image } });
    expect(insert.status, insert.text).toBe(202);
    const taskUri = insert.body["@odata.id"] as string;
    await expect.poll(async () => (await get(taskUri)).TaskState, { timeout: 10_000, interval: 100, message: "the import to run" }).toBe("Running");

    await c.stopModule(["watcher"]);
    await c.startModule(["watcher"]);
    await redfishUp();

    expect((await get(cd(vm))).Image).toBe(image);
    await expect.poll(async () => (await get(taskUri)).TaskState, { timeout: 30_000, interval: 100, message: "the import to complete after the restart" }).toBe("Completed");
    expect((await get(taskUri)).PercentComplete).toBe(100);
    expect(await get(cd(vm))).toMatchObject({ Image: image, Inserted: true });
    const dvs = mediaDataVolumes(vm);
    expect(dvs).toHaveLength(1);
    const volumes = (c.api.store.get(VM_KEY, NS, vm)!.spec as any).template.spec.volumes;
    expect(volumes).toContainEqual({ name: "virtualmedia-cd", dataVolume: { name: dvs[0].metadata.name } });
  });

  it("Boot Cd Once on a VM without a CD-ROM is 204 (an empty virtual drive); after InsertMedia and On the VMI boots from the CD", async () => {
    const sys = "/redfish/v1/Systems/tenant2-vms.vm-2";
    const drive = `${sys}/VirtualMedia/Cd`;
    expect((await c.redfish("POST", `${sys}/Actions/ComputerSystem.Reset`, { user: ADMIN, body: { ResetType: "ForceOff" } })).status).toBeLessThan(300);
    expect((await c.redfish("POST", `${drive}/Actions/VirtualMedia.EjectMedia`, { user: ADMIN })).status).toBe(204);
    const disks = () => ((c.api.store.get(VM_KEY, "tenant2-vms", "vm-2")!.spec as any).template.spec.domain.devices.disks as { cdrom?: unknown }[]);
    expect(disks().some(d => d.cdrom !== undefined)).toBe(false);

    const boot = await c.redfish("PATCH", sys, { user: ADMIN, body: { Boot: { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" } } });
    expect(boot.status, boot.text).toBe(204);
    expect((await get(sys)).Boot).toMatchObject({ BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" });

    const insert = await c.redfish("POST", `${drive}/Actions/VirtualMedia.InsertMedia`, { user: ADMIN, body: { Image: `${c.isoServer.url}/images/empty-drive.iso` } });
    expect(insert.status, insert.text).toBe(202);
    const on = await c.redfish("POST", `${sys}/Actions/ComputerSystem.Reset`, { user: ADMIN, body: { ResetType: "On" } });
    expect(on.status, on.text).toBeLessThan(300);
    await expect
      .poll(() => c.api.store.get(VMI_KEY, "tenant2-vms", "vm-2")?.metadata.annotations?.["sandbox.kubevirt.io/booted-from"], { timeout: 30_000 })
      .toBe("virtualmedia-cd");
  });

  it("InsertMedia of a 404 image fails within 60 s naming the image and leaves the drive empty; Eject + ForceOff leave no DataVolume", async () => {
    const vm = "vm-2";
    const sys = `/redfish/v1/Systems/tenant2-vms.${vm}`;
    const drive = `${sys}/VirtualMedia/Cd`;
    expect((await c.redfish("POST", `${sys}/Actions/ComputerSystem.Reset`, { user: ADMIN, body: { ResetType: "ForceOff" } })).status).toBeLessThan(300);
    await expect.poll(async () => (await get(sys)).PowerState, { timeout: 20_000 }).toBe("Off");
    const image = `${c.isoServer.url}/missing/deploy.iso`;
    const started = Date.now();
    const insert = await c.redfish("POST", `${drive}/Actions/VirtualMedia.InsertMedia`, { user: ADMIN, body: { Image: image } });
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(insert.status, insert.text).toBe(400);
    expect(insert.body.error.message).toContain(image);
    expect(insert.body.error.message).toContain("The image could not be downloaded.");
    expect(insert.text).not.toMatch(/404|Not Found/);
    expect(await get(drive)).toMatchObject({ Image: null, Inserted: false });

    expect((await c.redfish("POST", `${drive}/Actions/VirtualMedia.EjectMedia`, { user: ADMIN })).status).toBe(204);
    expect((await c.redfish("POST", `${sys}/Actions/ComputerSystem.Reset`, { user: ADMIN, body: { ResetType: "ForceOff" } })).status).toBeLessThan(300);
    const ofDrive = () => c.api.store.list(DV_KEY, "tenant2-vms").filter(dv => dv.metadata.labels?.["kubevirt-infra.io/media-for"] === vm);
    await expect.poll(() => ofDrive().length, { timeout: 20_000 }).toBe(0);
  });

  it.skipIf(!HAVE_SUSHY)("python3-sushy inserts and ejects through the Manager's VirtualMedia, as Ironic does", async () => {
    const caFile = path.join(c.stateDir, "ca.crt");
    const image = `${c.isoServer.url}/images/sushy.iso`;
    const script = String.raw`
import json, sys, time, sushy
base, ca, image = sys.argv[1:4]
root = sushy.Sushy(base, username="admin", password="admin123", verify=ca)
system = root.get_system("/redfish/v1/Systems/tenant2-vms.vm-1")
manager = system.managers[0]
out = {}
vmedia = [m for m in manager.virtual_media.get_members() if sushy.VIRTUAL_MEDIA_CD in m.media_types]
out["devices"] = [m.identity for m in vmedia]
device = vmedia[0]
device.insert_media(image, inserted=True, write_protected=True)
for _ in range(200):
    device.refresh(force=True)
    if device.inserted:
        break
    time.sleep(0.1)
out["inserted"] = device.inserted
out["image"] = device.image
device.eject_media()
device.refresh(force=True)
out["after_eject"] = {"inserted": device.inserted, "image": device.image}
print(json.dumps(out))
`;
    // requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override sushy's `verify`: point them at the sandbox CA.
    const env = { ...process.env, REQUESTS_CA_BUNDLE: caFile, CURL_CA_BUNDLE: caFile };
    const output = await new Promise<string>((resolve, reject) =>
      execFile(PYTHON, ["-c", script, c.redfishUrl, caFile, image], { timeout: 60_000, env }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const result = JSON.parse(output.trim().split("\n").pop()!);
    expect(result).toEqual({ devices: ["Cd"], inserted: true, image, after_eject: { inserted: false, image: null } });
    expect(c.api.store.list(DV_KEY, "tenant2-vms").filter(dv => dv.metadata.labels?.["kubevirt-infra.io/media-for"] === "vm-1")).toEqual([]);
  });
});

describe("firmware with the built module", () => {
  it("SecureBoot PATCH + On: the VMI boots with secure boot and SMM; SecureBoot and Bios read it back", async () => {
    const sys = "/redfish/v1/Systems/tenant2-vms.vm-1";
    expect((await c.redfish("POST", `${sys}/Actions/ComputerSystem.Reset`, { user: ADMIN, body: { ResetType: "ForceOff" } })).status).toBeLessThan(300);
    await expect.poll(async () => (await get(sys)).PowerState, { timeout: 20_000 }).toBe("Off");
    const uefi = await c.redfish("PATCH", sys, { user: ADMIN, body: { Boot: { BootSourceOverrideMode: "UEFI" } } });
    expect(uefi.status, uefi.text).toBe(204);
    const patch = await c.redfish("PATCH", `${sys}/SecureBoot`, { user: ADMIN, body: { SecureBootEnable: true } });
    expect(patch.status, patch.text).toBe(204);
    await expect.poll(async () => (await get(`${sys}/SecureBoot`)).SecureBootEnable, { timeout: 10_000 }).toBe(true);
    expect((await get(`${sys}/Bios`)).Attributes).toMatchObject({ BootMode: "Uefi", SecureBoot: "Enabled", Smm: "Enabled" });

    const on = await c.redfish("POST", `${sys}/Actions/ComputerSystem.Reset`, { user: ADMIN, body: { ResetType: "On" } });
    expect(on.status, on.text).toBeLessThan(300);
    await expect.poll(() => (c.api.store.get(VMI_KEY, "tenant2-vms", "vm-1")?.spec as any)?.domain?.firmware?.bootloader?.efi?.secureBoot, { timeout: 30_000 }).toBe(true);
    expect((c.api.store.get(VMI_KEY, "tenant2-vms", "vm-1")!.spec as any).domain.features.smm.enabled).toBe(true);
    await expect.poll(async () => (await get(`${sys}/SecureBoot`)).SecureBootCurrentBoot, { timeout: 10_000 }).toBe("Enabled");
    expect((await get(sys)).BiosVersion).toBe("OVMF secure boot (KubeVirt)");
  });
});

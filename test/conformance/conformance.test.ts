// Redfish conformance with real clients: Debian's python3-sushy (what Ironic/Metal3 use) drives the install
// sequence and the power actions; DMTF's redfishtool reads the tree and acts. Both talk HTTPS to the BUILT
// module's watcher in the sandbox, verifying the sandbox CA.
//
// Where the clients are not installed the suite reports itself skipped, loudly; with
// REQUIRE_CONFORMANCE_CLIENTS=true (CI) a missing client is a failure.
import { execFile, execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestCluster, type TestCluster } from "../helpers/cluster";
import { demoVirtualMachine } from "../../sandbox/demo";
import { INSPECTED_MACS, INSPECTED_PROPERTIES, inspectedVirtualMachine } from "./inspected-vm";
import type { KubeObject } from "../../sandbox/apiserver/types";
import { present } from "../helpers/present";

const run = promisify(execFile);
const PYTHON = "/usr/bin/python3"; // Debian's python, where python3-sushy lives (not a pyenv/venv python)
const SUSHY_FLOW = path.join(__dirname, "sushy_flow.py");

function available(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: "ignore", timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

const haveSushy = available(PYTHON, ["-c", "import sushy"]);
const haveRedfishtool = available("redfishtool", ["-V"]);
const required = process.env.REQUIRE_CONFORMANCE_CLIENTS === "true";
if (!haveSushy || !haveRedfishtool) {
  const missing = [!haveSushy && "python3-sushy", !haveRedfishtool && "redfishtool"].filter(Boolean).join(", ");
  const message = `Redfish conformance suite: ${missing} not installed (apt-get install -y python3-sushy redfishtool)`;
  if (required) throw new Error(`${message}; REQUIRE_CONFORMANCE_CLIENTS=true`);
  console.warn(`\n${"!".repeat(100)}\n!! SKIPPED: ${message}\n${"!".repeat(100)}\n`);
}

const SYSTEM = "tenant1-vms.conformance-vm";
const INSPECTED = "tenant1-vms.inspected-vm";
const BIOS_SYSTEM = "tenant1-vms.bios-vm";


describe.skipIf(!haveSushy || !haveRedfishtool)("Redfish conformance (sushy, redfishtool)", () => {
  let c: TestCluster;
  let caFile: string;
  let base: string;
  // The clients verify the server certificate against the sandbox CA; the machine's CA bundle variables
  // (REQUESTS_CA_BUNDLE...) would otherwise override it.
  const clientEnv = (): NodeJS.ProcessEnv => ({ ...process.env, REQUESTS_CA_BUNDLE: caFile, CURL_CA_BUNDLE: caFile, SSL_CERT_FILE: caFile });

  beforeAll(async () => {
    c = await startTestCluster({ demo: true });
    caFile = path.join(c.stateDir, "ca.crt");
    base = `https://localhost:${c.redfishPort}`;
    // A guest that honours ACPI within a second, so GracefulShutdown is observable quickly.
    const vm = demoVirtualMachine("tenant1-vms", "conformance-vm", "5e1d0000-0000-4000-8000-00000000c0f0", "02:00:00:00:0c:0f");
    const template = (vm.spec as { template: { metadata: { annotations?: Record<string, string> } } }).template;
    template.metadata.annotations = { "sandbox.kubevirt.io/acpi-shutdown-seconds": "1" };
    c.api.store.create("virtualmachines.kubevirt.io", vm);
    c.api.store.create("virtualmachines.kubevirt.io", inspectedVirtualMachine("tenant1-vms", "inspected-vm"));
    const biosVm = demoVirtualMachine("tenant1-vms", "bios-vm", "5e1d0000-0000-4000-8000-00000000b105", "02:00:00:00:0b:05");
    (biosVm.spec as any).template.spec.domain.firmware.bootloader = { bios: {} }; // eslint-disable-line @typescript-eslint/no-explicit-any
    c.api.store.create("virtualmachines.kubevirt.io", biosVm);
    for (const system of [SYSTEM, INSPECTED, BIOS_SYSTEM]) {
      await vi.waitFor(
        async () => expect((await c.redfish("GET", `/redfish/v1/Systems/${system}`, { user: "admin:admin123" })).status, `${system} in the Redfish cache`).toBe(200),
        { timeout: 15_000, interval: 100 },
      );
    }
  });
  afterAll(async () => c?.stop());

  async function sushy(phase: "install" | "power" | "inspect" | "bios", system = SYSTEM): Promise<{ steps: { name: string; [k: string]: unknown }[]; [k: string]: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const args = [SUSHY_FLOW, phase, base, "admin", "admin123", system, caFile, `${c.isoServer.url}/images/conformance.iso`];
    try {
      const { stdout } = await run(PYTHON, args, { env: clientEnv(), timeout: 240_000 });
      return JSON.parse(stdout.trim().split("\n").pop()!);
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string; message: string };
      throw new Error(`sushy ${phase} failed: ${err.message}\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
    }
  }

  const step = (r: { steps: { name: string; [k: string]: unknown }[] }, name: string) => {
    const s = r.steps.find(x => x.name === name);
    expect(s, `step ${name} in ${JSON.stringify(r.steps)}`).toBeDefined();
    return s!;
  };

  it("sushy: Ironic's redfish inspection gets cpus, memory_mb, local_gb, cpu_arch and the MACs of the VM spec", async () => {
    const r = await sushy("inspect", INSPECTED);
    expect(r.inspected).toEqual({ ...INSPECTED_PROPERTIES, boot_mode: "UEFI", macs: INSPECTED_MACS });
    expect(r.processors).toEqual([
      { id: "CPU0", type: "CPU", instruction_set: "x86-64", cores: 2, threads: 4, model: null },
      { id: "CPU1", type: "CPU", instruction_set: "x86-64", cores: 2, threads: 4, model: null },
    ]);
    expect(r.drives).toEqual([
      { id: "rootdisk", capacity: 30 * 2 ** 30, media_type: "HDD", state: expect.stringMatching(/^(Enabled|Starting)$/) },
      { id: "scratch", capacity: 2 * 2 ** 30, media_type: "HDD", state: "Enabled" },
    ]);
    expect(r.bios.attributes).toMatchObject({ BootMode: "Uefi", SecureBoot: "Enabled", Smm: "Enabled" });
    expect(r.bios.version).toBe("OVMF secure boot (KubeVirt)");
    expect(r.secure_boot).toEqual({ enabled: true, current_boot: "Disabled" });
    expect(r.manager_firmware).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("sushy: the Ironic virtual-media install boots the VM from the CD once", async () => {
    const r = await sushy("install");
    expect(r.redfish_version).toMatch(/^1\./);
    expect(r.systems).toContain(`/redfish/v1/Systems/${SYSTEM}`);
    const system = r.system as { uuid: string; macs: string[]; allowed_resets: string[] };
    expect(system.uuid).toBe("5e1d0000-0000-4000-8000-00000000c0f0");
    expect(system.macs).toContain("02:00:00:00:0c:0f");
    expect(system.allowed_resets).not.toContain("Nmi");
    expect(system.allowed_resets).toEqual(expect.arrayContaining(["On", "ForceOff", "GracefulShutdown", "ForceRestart"]));
    expect(Number(step(r, "ForceOff").seconds)).toBeLessThan(10);
    expect(Number(step(r, "insert accepted").seconds)).toBeLessThan(2); // the reply does not wait for the import
    expect(step(r, "inserted").image).toContain("/images/conformance.iso");

    // The running VMI booted from the CD-ROM the media was attached to.
    const vm = c.api.store.get("virtualmachines.kubevirt.io", "tenant1-vms", "conformance-vm") as KubeObject;
    const disks = (vm.spec as any).template.spec.domain.devices.disks as { name: string; cdrom?: unknown }[];
    const cdrom = disks.find(d => d.cdrom);
    expect(cdrom, JSON.stringify(disks)).toBeDefined();
    const vmi = await vi.waitFor(() => {
      const o = c.api.store.get("virtualmachineinstances.kubevirt.io", "tenant1-vms", "conformance-vm");
      return present(o?.metadata.annotations?.["sandbox.kubevirt.io/booted-from"] ? o : undefined, "the VMI's boot record");
    }, { timeout: 15_000, interval: 100 });
    expect(vmi.metadata.annotations?.["sandbox.kubevirt.io/booted-from"]).toBe(cdrom!.name);
  });

  it("sushy: BIOS settings as Ironic applies them: pending until the next start, then the VM's firmware; ResetBios", async () => {
    const r = await sushy("bios", BIOS_SYSTEM);
    expect(r.supported_apply_times).toEqual(["OnReset"]);
    expect(r.before).toMatchObject({ BootMode: "Bios", SecureBoot: "Disabled" });
    expect(r.pending).toEqual({ BootMode: "Uefi", SecureBoot: "Enabled" });
    expect(r.before_reset).toMatchObject({ BootMode: "Bios", SecureBoot: "Disabled" });
    expect(r.after_reset).toMatchObject({ BootMode: "Uefi", SecureBoot: "Enabled", Smm: "Enabled" });
    expect(r.not_applied).toEqual({});
    expect(r.pending_after_reset).toEqual({});
    expect(r.current_boot_after_reset).toBe("Enabled");
    expect(r.pending_after_reset_bios).toEqual({ SecureBoot: "Disabled" });
    expect(r.current_boot_after_factory_reset).toBe("Disabled");
    expect(r.after_factory_reset).toMatchObject({ BootMode: "Uefi", SecureBoot: "Disabled" });
    expect(r.read_only_error).toContain("PropertyNotWritable");
    // The VMI the last start created has the firmware the settings asked for, from the sandbox's KubeVirt.
    const vm = c.api.store.get("virtualmachines.kubevirt.io", "tenant1-vms", "bios-vm") as KubeObject;
    expect((vm.spec as any).template.spec.domain.firmware.bootloader).toEqual({ efi: { secureBoot: false } }); // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(vm.metadata.annotations?.["kubevirt-infra.io/bios-settings"]).toBeUndefined();
  });

  it("sushy: power actions, the one-time boot reads Disabled afterwards, eject, Nmi refused", async () => {
    const r = await sushy("power");
    expect(step(r, "after one-time boot").enabled).toBe("Disabled");
    expect(Number(step(r, "GracefulShutdown").seconds)).toBeLessThan(30);
    expect(step(r, "eject after install").inserted).toBe(false);
    step(r, "Nmi rejected");
    expect(step(r, "logout").old_token_status).toBe(401);
  });

  it("redfishtool: reads the tree with Basic and Session auth and drives power and boot", async () => {
    const rt = async (...args: string[]) => {
      const { stdout } = await run("redfishtool", ["-r", `localhost:${c.redfishPort}`, "-u", "admin", "-p", "admin123", "-S", "Always", ...args], {
        env: clientEnv(),
        timeout: 60_000,
      });
      return stdout;
    };
    const root = JSON.parse(await rt("root"));
    expect(root["@odata.id"]).toBe("/redfish/v1/");
    const systems = JSON.parse(await rt("Systems"));
    expect(systems.Members.map((m: { "@odata.id": string }) => m["@odata.id"])).toContain(`/redfish/v1/Systems/${SYSTEM}`);
    const sessionSystem = JSON.parse(await rt("-A", "Session", "Systems", "-I", SYSTEM));
    expect(sessionSystem.Id).toBe(SYSTEM);
    await rt("Systems", "-I", SYSTEM, "setBootOverride", "Once", "Pxe");
    const afterBoot = JSON.parse(await rt("Systems", "-I", SYSTEM));
    expect(afterBoot.Boot.BootSourceOverrideTarget).toBe("Pxe");
    expect(afterBoot.Boot.BootSourceOverrideEnabled).toBe("Once");
    await rt("Systems", "-I", SYSTEM, "reset", "On");
    await expect.poll(async () => JSON.parse(await rt("Systems", "-I", SYSTEM)).PowerState, { timeout: 30_000, interval: 100, message: "On via redfishtool" }).toBe("On");
    for (const sub of ["Chassis", "Managers", "SessionService", "AccountService"]) {
      const body = JSON.parse(await rt(sub));
      expect(body["@odata.id"], sub).toMatch(/^\/redfish\/v1\//);
    }
    // A tenant user does not see the other tenant's systems.
    const { stdout } = await run("redfishtool", ["-r", `localhost:${c.redfishPort}`, "-u", "tenant1", "-p", "tenant1-pass", "-S", "Always", "Systems"], { env: clientEnv() });
    const ids = JSON.parse(stdout).Members.map((m: { "@odata.id": string }) => m["@odata.id"]);
    expect(ids.every((id: string) => id.startsWith("/redfish/v1/Systems/tenant1-vms."))).toBe(true);
    expect(fs.existsSync(caFile)).toBe(true);
  });
});

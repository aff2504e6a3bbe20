// OpenStack Ironic (Debian's 21.4, standalone) drives the sandbox through the BUILT module's Redfish service the
// way Metal3 does: enroll -> manage -> redfish inspection -> provide -> ramdisk deploy of a live ISO with
// redfish-virtual-media -> power off/on -> undeploy.
//
// Where Ironic is not installed the suite reports itself skipped, loudly; with REQUIRE_IRONIC=true (CI) a
// missing Ironic is a failure. A deploy of an image the cluster cannot import ends in `deploy failed`.
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { KubeObject } from "../../sandbox/apiserver/types";
import { INSPECTED_MACS, INSPECTED_PROPERTIES, inspectedVirtualMachine } from "../conformance/inspected-vm";
import { startTestCluster, type TestCluster } from "../helpers/cluster";
import { ironicInstalled, startIronic, type StandaloneIronic } from "./standalone-ironic";
import { present } from "../helpers/present";

const haveIronic = ironicInstalled();
if (!haveIronic) {
  const message = "Ironic end-to-end suite: ironic-api / ironic-conductor not installed (apt-get install -y ironic-api ironic-conductor)";
  if (process.env.REQUIRE_IRONIC === "true") throw new Error(`${message}; REQUIRE_IRONIC=true`);
  console.warn(`\n${"!".repeat(100)}\n!! SKIPPED: ${message}\n${"!".repeat(100)}\n`);
}

const NAMESPACE = "tenant1-vms";
const VM = "ironic-vm";

type Node = { uuid: string; provision_state: string; target_provision_state: string | null; power_state: string | null; target_power_state: string | null; last_error: string | null; properties: Record<string, unknown> };

describe.skipIf(!haveIronic)("Ironic (standalone, redfish + redfish-virtual-media + ramdisk deploy)", () => {
  let c: TestCluster;
  let ironic: StandaloneIronic;
  let node: string;

  beforeAll(async () => {
    [c, ironic] = await Promise.all([startTestCluster({ demo: true }), startIronic()]);
    c.api.store.create("virtualmachines.kubevirt.io", inspectedVirtualMachine(NAMESPACE, VM));
    await vi.waitFor(
      async () => expect((await c.redfish("GET", `/redfish/v1/Systems/${NAMESPACE}.${VM}`, { user: "admin:admin123" })).status, "the VM in the Redfish cache").toBe(200),
      { timeout: 15_000, interval: 100 },
    );
  });
  afterAll(async () => {
    await Promise.all([c?.stop(), ironic?.stop()]);
  });

  // A failing step shows what Ironic logged (its warnings and errors name the Redfish call that failed).
  beforeEach(ctx =>
    ctx.onTestFailed(() => {
      const vm = c?.api.store.get("virtualmachines.kubevirt.io", NAMESPACE, VM);
      const dataVolumes = c?.api.store.list("datavolumes.cdi.kubevirt.io", NAMESPACE).map(dv => [dv.metadata.name, dv.status]);
      console.error(`VM status: ${JSON.stringify(vm?.status)}\nDataVolumes: ${JSON.stringify(dataVolumes)}`);
      console.error(`Ironic's log (tail):\n${ironic?.logs().slice(-12_000)}`);
    }),
  );

  const getNode = () => ironic.api<Node>("GET", `/v1/nodes/${node}`);

  /**
   * Requests a provision-state change and waits until Ironic settles in `expected`. The conductor records the
   * transition before the API answers, so any other settled state, or a failed one, is a failure.
   */
  async function provision(target: string, expected: string, timeoutMs = 120_000): Promise<Node> {
    await ironic.api("PUT", `/v1/nodes/${node}/states/provision`, { target });
    // Ironic keeps the target on a failure (`deploy failed` -> active): a settled or failed state ends the wait.
    const n = await vi.waitFor(
      async () => {
        const current = await getNode();
        const settled = current.target_provision_state === null || / failed$|^error$/.test(current.provision_state);
        if (!settled) throw new Error(`${target}: still ${current.provision_state} -> ${current.target_provision_state} after ${timeoutMs} ms: ${current.last_error}`);
        return current;
      },
      { timeout: timeoutMs, interval: 500 },
    );
    if (n.target_provision_state !== null || n.provision_state !== expected) {
      throw new Error(`${target}: the node settled in ${n.provision_state}, not ${expected}: ${n.last_error}\n${ironic.logs().slice(-3000)}`);
    }
    return n;
  }

  async function power(target: "power on" | "power off"): Promise<void> {
    await ironic.api("PUT", `/v1/nodes/${node}/states/power`, { target });
    await vi.waitFor(async () => {
      const n = await getNode();
      expect(n.power_state, `Ironic ${target}; last error: ${n.last_error ?? "none"}`).toBe(target);
    }, { timeout: 120_000, interval: 500 });
  }

  it("enrolls and manages the VM through its Redfish address", async () => {
    const created = await ironic.api<Node>("POST", "/v1/nodes", {
      name: VM,
      driver: "redfish",
      boot_interface: "redfish-virtual-media",
      deploy_interface: "ramdisk",
      inspect_interface: "redfish",
      bios_interface: "redfish",
      driver_info: {
        redfish_address: `https://localhost:${c.redfishPort}`,
        redfish_system_id: `/redfish/v1/Systems/${NAMESPACE}.${VM}`,
        redfish_username: "tenant1",
        redfish_password: "tenant1-pass",
        redfish_verify_ca: path.join(c.stateDir, "ca.crt"),
      },
    });
    node = created.uuid;
    expect(created.provision_state).toBe("enroll");
    const managed = await provision("manage", "manageable");
    expect(managed.power_state).toBe("power off");
    // The BIOS interface cached the firmware attributes (no "Bios is missing" error on manage).
    const settings = await ironic.api<{ bios: { name: string; value: string }[] }>("GET", `/v1/nodes/${node}/bios`);
    expect(Object.fromEntries(settings.bios.map(s => [s.name, s.value]))).toMatchObject({ BootMode: "Uefi", SecureBoot: "Enabled" });
  });

  it("redfish inspection fills the node's properties and ports from the inventory", async () => {
    const inspected = await provision("inspect", "manageable");
    expect(inspected.properties).toMatchObject({
      cpus: INSPECTED_PROPERTIES.cpus,
      memory_mb: String(INSPECTED_PROPERTIES.memory_mb),
      local_gb: String(INSPECTED_PROPERTIES.local_gb),
      cpu_arch: INSPECTED_PROPERTIES.cpu_arch,
    });
    expect(String(inspected.properties.capabilities)).toContain("boot_mode:uefi");
    const ports = await ironic.api<{ ports: { address: string }[] }>("GET", `/v1/ports?node=${node}`);
    expect(ports.ports.map(p => p.address).sort()).toEqual(INSPECTED_MACS);
  });

  it("provides, deploys a live ISO (the VMI boots from the CD-ROM), powers off and on, and undeploys", async () => {
    await provision("provide", "available");
    await ironic.api("PATCH", `/v1/nodes/${node}`, [{ op: "add", path: "/instance_info/boot_iso", value: `${c.isoServer.url}/images/live.iso` }]);
    const active = await provision("active", "active", 180_000);
    expect(active.power_state).toBe("power on");
    const vm = c.api.store.get("virtualmachines.kubevirt.io", NAMESPACE, VM) as KubeObject;
    const cdrom = ((vm.spec as any).template.spec.domain.devices.disks as { name: string; cdrom?: unknown }[]).find(d => d.cdrom);
    expect(cdrom).toBeDefined();
    const vmi = await vi.waitFor(() => {
      const o = c.api.store.get("virtualmachineinstances.kubevirt.io", NAMESPACE, VM);
      return present(o?.metadata.annotations?.["sandbox.kubevirt.io/booted-from"] ? o : undefined, "the VMI's boot record");
    }, { timeout: 30_000, interval: 100 });
    expect(vmi.metadata.annotations?.["sandbox.kubevirt.io/booted-from"]).toBe(cdrom!.name);

    await power("power off");
    expect(c.api.store.get("virtualmachineinstances.kubevirt.io", NAMESPACE, VM)).toBeUndefined();
    await power("power on");
    expect(c.api.store.get("virtualmachineinstances.kubevirt.io", NAMESPACE, VM)).toBeDefined();

    await provision("deleted", "available", 180_000);
    const n = await getNode();
    expect(n.power_state).toBe("power off");
    // The ISO was ejected: no media DataVolume of the VM is left.
    const media = c.api.store
      .list("datavolumes.cdi.kubevirt.io", NAMESPACE)
      .filter(dv => dv.metadata.labels?.["kubevirt-infra.io/media-for"] === VM);
    expect(media.map(dv => dv.metadata.name)).toEqual([]);
  }, 600_000);

  it("a deploy of an image the cluster cannot import (404 to the importer) ends in `deploy failed` naming the image; undeploy leaves no DataVolume", async () => {
    // Ironic checks the href itself (HEAD and GET) before it inserts it, so a plain 404 URL never reaches the BMC
    // (with the default ramdisk_image_download_source `local` Ironic even downloads and serves the ISO itself).
    // What does is an image server Ironic reaches and the cluster's importer does not: here it serves Ironic's
    // client (python-requests) and answers 404 to everyone else.
    const imageServer = http.createServer((req, res) => {
      if (/python-requests/.test(req.headers["user-agent"] ?? "")) {
        const body = Buffer.alloc(64 * 1024);
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(body.length) }).end(req.method === "HEAD" ? undefined : body);
      } else res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    });
    await new Promise<void>(resolve => imageServer.listen(0, "127.0.0.1", resolve));
    try {
      const image = `http://127.0.0.1:${(imageServer.address() as AddressInfo).port}/only-ironic-sees-it/live.iso`;
      // `http`: Ironic hands the URL to the BMC instead of serving its own copy (as Metal3 does for live ISOs).
      await ironic.api("PATCH", `/v1/nodes/${node}`, [
        { op: "add", path: "/instance_info/boot_iso", value: image },
        { op: "add", path: "/instance_info/ramdisk_image_download_source", value: "http" },
      ]);
      await ironic.api("PUT", `/v1/nodes/${node}/states/provision`, { target: "active" });
      const failed = await vi.waitFor(
        async () => {
          const n = await getNode();
          expect(n.provision_state, "the deploy of an image the importer cannot fetch").toBe("deploy failed");
          return n;
        },
        { timeout: 120_000, interval: 500 },
      );
      expect(failed.last_error).toContain(image);
      expect(failed.last_error).toContain("could not be downloaded");
      expect(failed.last_error).not.toMatch(/404|Not Found/);

      await provision("deleted", "available", 180_000);
      const media = c.api.store
        .list("datavolumes.cdi.kubevirt.io", NAMESPACE)
        .filter(dv => dv.metadata.labels?.["kubevirt-infra.io/media-for"] === VM);
      expect(media.map(dv => dv.metadata.name)).toEqual([]);
    } finally {
      await new Promise(resolve => imageServer.close(resolve));
    }
  }, 300_000);

  /** The guest of the next VMI takes `seconds` to honour the ACPI power button (the simulator's shutdown time). */
  function guestShutdownTakes(seconds: number): void {
    const vm = structuredClone(c.api.store.get("virtualmachines.kubevirt.io", NAMESPACE, VM) as KubeObject);
    const template = (vm.spec as { template: { metadata: { annotations?: Record<string, string> } } }).template;
    template.metadata.annotations = { ...template.metadata.annotations, "sandbox.kubevirt.io/acpi-shutdown-seconds": String(seconds) };
    c.api.store.update("virtualmachines.kubevirt.io", vm);
  }

  const vmiExists = () => c.api.store.get("virtualmachineinstances.kubevirt.io", NAMESPACE, VM) !== undefined;

  it("`power off --soft` returns when the guest is off: Ironic sees power on while the guest shuts down; its soft-off timeout still fails and a hard off follows", async () => {
    const SHUTDOWN_SECONDS = 6;
    guestShutdownTakes(SHUTDOWN_SECONDS);
    await power("power on");
    expect(vmiExists()).toBe(true);

    // What `baremetal node power off --soft --power-timeout 60` sends.
    const started = Date.now();
    await ironic.api("PUT", `/v1/nodes/${node}/states/power`, { target: "soft power off", timeout: 60 });
    const seen: { node: string; redfish: string; vmi: boolean }[] = [];
    const done = await vi.waitFor(
      async () => {
        const [n, system] = await Promise.all([getNode(), c.redfish("GET", `/redfish/v1/Systems/${NAMESPACE}.${VM}`, { user: "tenant1:tenant1-pass" })]);
        const sample = { node: `${n.power_state} -> ${n.target_power_state}`, redfish: String(system.body?.PowerState), vmi: vmiExists() };
        if (seen.at(-1)?.node !== sample.node || seen.at(-1)?.redfish !== sample.redfish || seen.at(-1)?.vmi !== sample.vmi) seen.push(sample);
        if (n.target_power_state !== null) throw new Error(`soft power off still in progress: ${JSON.stringify(seen)}`);
        return { node: n, vmi: sample.vmi };
      },
      { timeout: 90_000, interval: 200 },
    );
    const seconds = (Date.now() - started) / 1000;
    expect(done.node.power_state, `Ironic's soft power off; last error: ${done.node.last_error}; seen ${JSON.stringify(seen)}`).toBe("power off");
    expect(done.node.last_error).toBeNull();
    // Ironic finished only once the guest was really off, not when the shutdown began.
    expect(done.vmi, JSON.stringify(seen)).toBe(false);
    expect(seconds, JSON.stringify(seen)).toBeGreaterThanOrEqual(SHUTDOWN_SECONDS - 1);
    // While the guest was shutting down, Redfish said On and Ironic kept waiting.
    expect(seen, JSON.stringify(seen)).toContainEqual({ node: "power on -> power off", redfish: "On", vmi: true });

    // A guest slower than Ironic's soft-off timeout: the soft power off fails (Ironic saw it On the whole time) and
    // the hard power off a client escalates to (Metal3 does) ends it at once.
    guestShutdownTakes(120);
    await power("power on");
    await ironic.api("PUT", `/v1/nodes/${node}/states/power`, { target: "soft power off", timeout: 3 });
    const timedOut = await vi.waitFor(
      async () => {
        const n = await getNode();
        if (n.target_power_state !== null) throw new Error("soft power off still in progress");
        return n;
      },
      { timeout: 60_000, interval: 200 },
    );
    expect(timedOut.power_state).toBe("power on");
    expect(timedOut.last_error).toMatch(/power off|timed out/i);
    expect(vmiExists()).toBe(true);
    await power("power off");
    expect(vmiExists()).toBe(false);
  }, 300_000);
});

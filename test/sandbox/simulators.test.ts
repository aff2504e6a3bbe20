// The KubeVirt and CDI simulators against the real sandbox API server, driven over its REST API with
// @kubernetes/client-node (objects) and plain HTTP PUTs (KubeVirt subresources), and a local image server.
import { CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createCertificateAuthority, issueServerCertificate } from "../../capabilities/common/tls";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import { startCdiSimulator, startKubeVirtSimulator, type CdiSimulator, type KubeVirtSimulator } from "../../sandbox/simulators";
import { present } from "../helpers/present";

const NS = "sim";
const STEP_MS = 20;
/** client-node sends a patch in the format named by this header. */
const jsonPatch = setHeaderOptions("Content-Type", PatchStrategy.JsonPatch);

// ---------------------------------------------------------------- local image server (http and https)

interface SeenRequest {
  path: string;
  headers: http.IncomingHttpHeaders;
}

const CHUNK = 16 * 1024;

function imageHandler(seen: SeenRequest[], closedEarly: Set<string>) {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = new URL(req.url ?? "/", "http://x");
    seen.push({ path: url.pathname, headers: req.headers });
    const [, kind, arg] = url.pathname.split("/");
    const size = Number(arg);
    if (kind === "auth") {
      const expected = `Basic ${Buffer.from("importer:s3cret").toString("base64")}`;
      if (req.headers.authorization !== expected) return void res.writeHead(401, { "www-authenticate": "Basic" }).end();
      if (req.headers["x-media-token"] !== "abc") return void res.writeHead(403).end();
    }
    if (kind === "redirect") return void res.writeHead(302, { location: `/image/${size}` }).end();
    if (!["image", "slow", "auth", "nolength", "hang"].includes(kind) || !Number.isFinite(size)) return void res.writeHead(404).end("not found");
    const headers: http.OutgoingHttpHeaders = { "content-type": "application/octet-stream" };
    if (kind !== "nolength") headers["content-length"] = String(size);
    res.writeHead(200, headers);
    res.on("close", () => {
      if (!res.writableFinished) closedEarly.add(url.pathname);
    });
    let sent = 0;
    const slow = kind === "slow" || kind === "hang";
    const next = (): void => {
      if (res.destroyed) return;
      if (kind === "hang" && sent >= CHUNK) return; // sends one chunk, then never finishes
      if (sent >= size) return void res.end();
      const n = Math.min(CHUNK, size - sent);
      sent += n;
      res.write(Buffer.alloc(n, 7));
      if (slow) setTimeout(next, 25);
      else setImmediate(next);
    };
    next();
  };
}

// ---------------------------------------------------------------- harness

let api: ApiServer;
let kubevirt: KubeVirtSimulator;
let cdi: CdiSimulator;
let objects: CustomObjectsApi;
let core: CoreV1Api;
let httpServer: http.Server;
let httpsServer: https.Server;
let imageUrl: string;
let secureUrl: string;
let caPem: string;
let stateDir: string;
const seen: SeenRequest[] = [];
const closedEarly = new Set<string>();

async function listen(server: http.Server | https.Server): Promise<number> {
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  api = await startApiServer({ port: 0 });
  kubevirt = startKubeVirtSimulator(api, { stepDelayMs: STEP_MS });
  cdi = startCdiSimulator(api, { progressIntervalMs: 40, stepDelayMs: STEP_MS });
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "simulators-test-"));
  await api.writeKubeconfig(path.join(stateDir, "kubeconfig"));
  const kc = new KubeConfig();
  kc.loadFromFile(path.join(stateDir, "kubeconfig"));
  objects = kc.makeApiClient(CustomObjectsApi);
  core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: NS } } });

  httpServer = http.createServer(imageHandler(seen, closedEarly));
  imageUrl = `http://127.0.0.1:${await listen(httpServer)}`;
  const ca = createCertificateAuthority("simulators test CA");
  caPem = ca.certPem;
  const cert = issueServerCertificate(ca, { commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
  httpsServer = https.createServer({ key: cert.keyPem, cert: cert.certPem }, imageHandler(seen, closedEarly));
  secureUrl = `https://127.0.0.1:${await listen(httpsServer)}`;
});

afterAll(async () => {
  kubevirt?.stop();
  await cdi?.stop();
  await api?.close();
  for (const server of [httpServer, httpsServer]) {
    server?.closeAllConnections();
    await new Promise(resolve => server?.close(resolve));
  }
  if (stateDir) fs.rmSync(stateDir, { recursive: true, force: true });
});

/** vi.waitFor's options for awaited values here (expect.poll's come from vitest.config.ts). */
const WAIT = { timeout: 5000, interval: 15 };


type Obj = { metadata: { name: string; uid: string; annotations?: Record<string, string>; labels?: Record<string, string>; deletionTimestamp?: string; ownerReferences?: { uid: string; controller?: boolean }[] }; spec: any; status?: any };

interface VmOptions {
  runStrategy?: string;
  running?: boolean;
  grace?: number;
  annotations?: Record<string, string>;
  disks?: object[];
  volumes?: object[];
  interfaces?: object[];
  firmware?: object;
  dataVolumeTemplates?: object[];
}

function vmBody(name: string, o: VmOptions = {}): object {
  const spec: Record<string, unknown> = {
    template: {
      metadata: { labels: { "kubevirt.io/domain": name }, annotations: o.annotations ?? {} },
      spec: {
        ...(o.grace === undefined ? {} : { terminationGracePeriodSeconds: o.grace }),
        domain: {
          ...(o.firmware ? { firmware: o.firmware } : {}),
          devices: {
            disks: o.disks ?? [{ name: "root", disk: { bus: "virtio" } }],
            interfaces: o.interfaces ?? [{ name: "default", masquerade: {}, macAddress: "02:00:00:aa:00:01" }],
          },
          memory: { guest: "1Gi" },
        },
        networks: [{ name: "default", pod: {} }],
        volumes: o.volumes ?? [{ name: "root", containerDisk: { image: "quay.io/containerdisks/fedora:latest" } }],
      },
    },
  };
  if (o.runStrategy !== undefined) spec.runStrategy = o.runStrategy;
  if (o.running !== undefined) spec.running = o.running;
  if (o.dataVolumeTemplates) spec.dataVolumeTemplates = o.dataVolumeTemplates;
  return { apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", metadata: { name, namespace: NS }, spec };
}

const VM_API = { group: "kubevirt.io", version: "v1", namespace: NS, plural: "virtualmachines" };
const VMI_API = { group: "kubevirt.io", version: "v1", namespace: NS, plural: "virtualmachineinstances" };
const DV_API = { group: "cdi.kubevirt.io", version: "v1beta1", namespace: NS, plural: "datavolumes" };

async function createVm(name: string, o: VmOptions = {}): Promise<Obj> {
  return (await objects.createNamespacedCustomObject({ ...VM_API, body: vmBody(name, o) })) as Obj;
}
async function getVm(name: string): Promise<Obj> {
  return (await objects.getNamespacedCustomObject({ ...VM_API, name })) as Obj;
}
async function getVmi(name: string): Promise<Obj | undefined> {
  try {
    return (await objects.getNamespacedCustomObject({ ...VMI_API, name })) as Obj;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}
async function getDv(name: string): Promise<Obj> {
  return (await objects.getNamespacedCustomObject({ ...DV_API, name })) as Obj;
}
async function createDv(name: string, source: object, extra: { annotations?: Record<string, string>; storageClassName?: string } = {}): Promise<Obj> {
  return (await objects.createNamespacedCustomObject({
    ...DV_API,
    body: {
      apiVersion: "cdi.kubevirt.io/v1beta1",
      kind: "DataVolume",
      metadata: { name, namespace: NS, annotations: extra.annotations ?? {} },
      spec: { source, storage: { resources: { requests: { storage: "1Gi" } }, ...(extra.storageClassName ? { storageClassName: extra.storageClassName } : {}) } },
    },
  })) as Obj;
}

/** PUT on a KubeVirt subresource, as virtctl and the module's gateway do it. */
async function put(resource: "virtualmachines" | "virtualmachineinstances", name: string, sub: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${api.url}/apis/subresources.kubevirt.io/v1/namespaces/${NS}/${resource}/${name}/${sub}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const vmStatus = async (name: string) => (await getVm(name)).status?.printableStatus as string | undefined;
const vmiPhase = async (name: string) => (await getVmi(name))?.status?.phase as string | undefined;

async function runningVmi(name: string, timeoutMs = 5000): Promise<Obj> {
  return vi.waitFor(async () => {
    const vmi = await getVmi(name);
    return present(vmi?.status?.phase === "Running" && !vmi.metadata.deletionTimestamp && vmi, `VMI ${name} Running`);
  }, { ...WAIT, timeout: timeoutMs });
}
async function vmiGone(name: string, timeoutMs = 5000): Promise<void> {
  await expect.poll(() => getVmi(name), { message: `VMI ${name} gone`, timeout: timeoutMs }).toBeUndefined();
}
const condition = (obj: Obj | undefined, type: string) => (obj?.status?.conditions ?? []).find((c: { type: string }) => c.type === type);

// ---------------------------------------------------------------- KubeVirt

describe("KubeVirt: VM lifecycle per run strategy", () => {
  it("Always: creates an owned VMI from the template that goes Pending -> Scheduling -> Scheduled -> Running", async () => {
    const vm = await createVm("always-1", { runStrategy: "Always", grace: 1, annotations: { "sandbox.kubevirt.io/guest-agent": "true", team: "infra" } });
    const vmi = await runningVmi("always-1");
    expect(vmi.status.phaseTransitionTimestamps.map((p: { phase: string }) => p.phase)).toEqual(["Pending", "Scheduling", "Scheduled", "Running"]);
    expect(vmi.metadata.ownerReferences).toEqual([expect.objectContaining({ uid: vm.metadata.uid, kind: "VirtualMachine", controller: true })]);
    expect(vmi.metadata.labels).toMatchObject({ "kubevirt.io/domain": "always-1", "kubevirt.io/nodeName": "sandbox-node" });
    expect(vmi.metadata.annotations).toMatchObject({ team: "infra" });
    expect(vmi.status.nodeName).toBe("sandbox-node");
    expect(vmi.status.interfaces).toEqual([expect.objectContaining({ name: "default", mac: "02:00:00:aa:00:01", ipAddress: expect.stringMatching(/^10\.244\./) })]);
    expect(condition(vmi, "Ready")?.status).toBe("True");
    expect(condition(vmi, "AgentConnected")?.status).toBe("True");
    expect(vmi.status.guestOSInfo.name).toBe("Fedora Linux");
    const status = await vi.waitFor(async () => {
      const s = (await getVm("always-1")).status;
      return present(s?.ready && s, "VM ready");
    }, WAIT);
    expect(status).toMatchObject({ printableStatus: "Running", ready: true, created: true, runStrategy: "Always" });
    expect(condition({ status } as Obj, "AgentConnected")?.status).toBe("True");
    // start on Always: virt-api's answers
    expect(await put("virtualmachines", "always-1", "start")).toMatchObject({ status: 409, body: { reason: "Conflict", message: expect.stringContaining("VM is already running") } });
  });

  it("Halted: start sets runStrategy Always, stop sets Halted and the VMI is gone after the grace period", async () => {
    await createVm("halted-1", { runStrategy: "Halted", grace: 1 });
    // The controller writes the VM's status in the reconcile that would have created the VMI.
    await expect.poll(() => vmStatus("halted-1"), { message: "halted-1 reconciled" }).toBe("Stopped");
    expect(await getVmi("halted-1")).toBeUndefined();
    expect(await vmStatus("halted-1")).toBe("Stopped");
    expect(await put("virtualmachines", "halted-1", "stop", {})).toMatchObject({ status: 409, body: { message: expect.stringContaining("VM is not running") } });
    expect((await put("virtualmachines", "halted-1", "start", {})).status).toBe(202);
    expect((await getVm("halted-1")).spec.runStrategy).toBe("Always");
    await runningVmi("halted-1");

    const stoppedAt = Date.now();
    expect((await put("virtualmachines", "halted-1", "stop", {})).status).toBe(202);
    expect((await getVm("halted-1")).spec.runStrategy).toBe("Halted");
    // During the grace period: VM Stopping, VMI still Running with a deletionTimestamp.
    const stopping = await vi.waitFor(async () => present((await vmStatus("halted-1")) === "Stopping" && (await getVmi("halted-1")), "Stopping"), WAIT);
    expect(stopping?.status.phase).toBe("Running");
    expect(stopping?.metadata.deletionTimestamp).toBeTruthy();
    await vmiGone("halted-1", 4000);
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(900);
    await expect.poll(() => vmStatus("halted-1"), { message: "Stopped" }).toBe("Stopped");
    expect((await getVm("halted-1")).status.ready).toBeUndefined();
  });

  it("spec.running: start sets running true, stop sets running false, and runStrategy is never added", async () => {
    await createVm("running-1", { running: false, grace: 0 });
    expect((await put("virtualmachines", "running-1", "start")).status).toBe(202);
    const vm = await getVm("running-1");
    expect(vm.spec.running).toBe(true);
    expect(vm.spec.runStrategy).toBeUndefined();
    await runningVmi("running-1");
    expect((await put("virtualmachines", "running-1", "stop")).status).toBe(202);
    expect((await getVm("running-1")).spec).toMatchObject({ running: false });
    expect((await getVm("running-1")).spec.runStrategy).toBeUndefined();
    await vmiGone("running-1");
  });

  it("running and runStrategy together: 422 from start and a Failure condition, no VMI", async () => {
    await createVm("both-1", { running: true, runStrategy: "Always" });
    const res = await put("virtualmachines", "both-1", "start");
    expect(res.status).toBe(422);
    expect(res.body).toMatchObject({ reason: "Invalid", message: expect.stringContaining("mutually exclusive") });
    const failure = await vi.waitFor(async () => present(condition(await getVm("both-1"), "Failure"), "Failure condition"), WAIT);
    expect(failure).toMatchObject({ status: "True", message: expect.stringContaining("running and runstrategy are mutually exclusive") });
    expect(await getVmi("both-1")).toBeUndefined();
  });

  it("Manual: start and stop are state change requests the controller acts on; the strategy stays Manual", async () => {
    await createVm("manual-1", { runStrategy: "Manual", grace: 1 });
    await expect.poll(() => vmStatus("manual-1"), { message: "manual-1 reconciled" }).toBe("Stopped");
    expect(await getVmi("manual-1")).toBeUndefined();
    expect((await put("virtualmachines", "manual-1", "start")).status).toBe(202);
    const vmi = await runningVmi("manual-1");
    const status = await vi.waitFor(async () => {
      const s = (await getVm("manual-1")).status;
      return present(s?.printableStatus === "Running" && !s.stateChangeRequests && s, "start request consumed");
    }, WAIT);
    expect(status.runStrategy).toBe("Manual");
    expect((await put("virtualmachines", "manual-1", "stop")).status).toBe(202);
    // The request stays until the VMI is gone (one second of grace here).
    expect((await getVm("manual-1")).status.stateChangeRequests).toEqual([{ action: "Stop", uid: vmi.metadata.uid }]);
    await expect.poll(() => vmStatus("manual-1"), { message: "Stopping" }).toBe("Stopping");
    await vmiGone("manual-1", 4000);
    await expect.poll(async () => (await getVm("manual-1")).status?.stateChangeRequests, { message: "stop request consumed" }).toBeUndefined();
    expect((await getVm("manual-1")).spec.runStrategy).toBe("Manual");
    expect(await put("virtualmachines", "manual-1", "stop")).toMatchObject({ status: 409, body: { message: expect.stringContaining("VM is not running") } });
  });

  it("Always and Once refuse manual start requests; Halted and Once refuse restart", async () => {
    await createVm("once-1", { runStrategy: "Once", grace: 0 });
    await runningVmi("once-1");
    await createVm("always-2", { runStrategy: "Always", grace: 0 });
    await runningVmi("always-2");
    expect((await put("virtualmachines", "always-2", "stop", { gracePeriod: 0 })).status).toBe(202);
    await vmiGone("always-2");
    // Halted now; start is fine, restart is not
    expect(await put("virtualmachines", "always-2", "restart")).toMatchObject({ status: 409, body: { message: expect.stringContaining("RunStategy Halted does not support manual restart requests") } });
    expect(await put("virtualmachines", "once-1", "restart")).toMatchObject({ status: 409, body: { message: expect.stringContaining("RunStategy Once does not support manual restart requests") } });
    kubevirt.guestPowerOff(NS, "once-1");
    await expect.poll(() => vmiPhase("once-1"), { message: "Once VMI Succeeded" }).toBe("Succeeded");
    expect(await put("virtualmachines", "once-1", "start")).toMatchObject({ status: 409, body: { message: expect.stringContaining("Once does not support manual start requests") } });
  });

  it("restart replaces the VMI (Always) and a forced restart does not wait for the guest", async () => {
    await createVm("restart-1", { runStrategy: "Always", grace: 180 });
    const first = await runningVmi("restart-1");
    expect(await put("virtualmachines", "restart-1", "restart", { gracePeriodSeconds: 5 })).toMatchObject({ status: 400 });
    const started = Date.now();
    expect((await put("virtualmachines", "restart-1", "restart", { gracePeriodSeconds: 0 })).status).toBe(202);
    const second = await vi.waitFor(async () => {
      const vmi = await getVmi("restart-1");
      return present(vmi && vmi.metadata.uid !== first.metadata.uid && vmi.status?.phase === "Running" && vmi, "new VMI Running");
    }, WAIT);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(second.metadata.annotations?.["sandbox.kubevirt.io/boot-count"]).toBe("1");
  });
});

describe("KubeVirt: grace periods", () => {
  it("gracePeriod 0 stops a VM whose guest would get 180 s at once", async () => {
    await createVm("grace-1", { runStrategy: "Always", grace: 180 });
    await runningVmi("grace-1");
    const started = Date.now();
    expect((await put("virtualmachines", "grace-1", "stop", { gracePeriod: 0 })).status).toBe(202);
    await vmiGone("grace-1", 2000);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it("a graceful stop waits; a forced stop of the Halted VM cuts it short", async () => {
    await createVm("grace-2", { runStrategy: "Always", grace: 180 });
    await runningVmi("grace-2");
    expect((await put("virtualmachines", "grace-2", "stop")).status).toBe(202);
    // Not vacuous: a VM created after the stop runs only after several simulator steps, by when a stop that
    // ignored the grace period would have deleted grace-2's VMI.
    await createVm("grace-2-later", { runStrategy: "Always" });
    await runningVmi("grace-2-later");
    const vmi = await getVmi("grace-2");
    expect(vmi?.metadata.deletionTimestamp).toBeTruthy();
    expect(vmi?.status.phase).toBe("Running");
    expect(await vmStatus("grace-2")).toBe("Stopping");
    // Halted accepts a stop only with a shorter grace period (virt-api's rule)
    expect(await put("virtualmachines", "grace-2", "stop", { gracePeriod: 500 })).toMatchObject({ status: 409, body: { message: expect.stringContaining("shorter graceperiod") } });
    expect((await put("virtualmachines", "grace-2", "stop", { gracePeriod: 0 })).status).toBe(202);
    await vmiGone("grace-2", 2000);
    await expect.poll(() => vmStatus("grace-2"), { message: "Stopped" }).toBe("Stopped");
  });

  it("a guest that honours ACPI powers off sooner than the grace period", async () => {
    await createVm("acpi-1", { runStrategy: "Always", grace: 180, annotations: { "sandbox.kubevirt.io/acpi-shutdown-seconds": "1" } });
    await runningVmi("acpi-1");
    const started = Date.now();
    expect((await put("virtualmachines", "acpi-1", "stop")).status).toBe(202);
    // The final phase is observable before the object goes away.
    const phases = new Set<string>();
    await expect.poll(async () => {
      const vmi = await getVmi("acpi-1");
      if (vmi) phases.add(vmi.status.phase);
      return vmi === undefined;
    }, { message: "ACPI shutdown", timeout: 4000 }).toBe(true);
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(3000);
    expect(phases.has("Running")).toBe(true);
  });
});

describe("KubeVirt: guest power-off and reboots", () => {
  it("Always and spec.running: true start a new VMI after the guest powers off", async () => {
    for (const [name, opts] of [
      ["gpo-always", { runStrategy: "Always" }],
      ["gpo-running", { running: true }],
    ] as const) {
      await createVm(name, { ...opts, grace: 0 });
      const first = await runningVmi(name);
      kubevirt.guestPowerOff(NS, name);
      const second = await vi.waitFor(async () => {
        const vmi = await getVmi(name);
        return present(vmi && vmi.metadata.uid !== first.metadata.uid && vmi.status?.phase === "Running" && vmi, `${name} restarted`);
      }, WAIT);
      expect(second.metadata.uid).not.toBe(first.metadata.uid);
    }
  });

  it("RerunOnFailure, Manual and Once stay off after the guest powers off", async () => {
    await createVm("gpo-rerun", { runStrategy: "RerunOnFailure", grace: 0 });
    await createVm("gpo-manual", { runStrategy: "Manual", grace: 0 });
    await createVm("gpo-once", { runStrategy: "Once", grace: 0 });
    await runningVmi("gpo-rerun");
    await runningVmi("gpo-once");
    expect((await put("virtualmachines", "gpo-manual", "start")).status).toBe(202);
    await runningVmi("gpo-manual");
    for (const name of ["gpo-rerun", "gpo-manual", "gpo-once"]) kubevirt.guestPowerOff(NS, name);
    await vmiGone("gpo-rerun"); // RerunOnFailure cleans up a Succeeded VMI and does not rerun it
    for (const name of ["gpo-manual", "gpo-once"]) await expect.poll(() => vmiPhase(name), { message: `${name} Succeeded` }).toBe("Succeeded");
    // Stopped is written by the reconcile that saw the finished VMI and decided not to start another.
    for (const name of ["gpo-rerun", "gpo-manual", "gpo-once"]) await expect.poll(() => vmStatus(name), { message: `${name} reconciled after the power-off` }).toBe("Stopped");
    expect(await getVmi("gpo-rerun")).toBeUndefined();
    expect(await vmiPhase("gpo-manual")).toBe("Succeeded");
    // Manual: a start replaces the finished VMI (stop + start requests)
    expect((await put("virtualmachines", "gpo-manual", "start")).status).toBe(202);
    await runningVmi("gpo-manual");
    // RerunOnFailure: start after a clean power-off is allowed
    expect((await put("virtualmachines", "gpo-rerun", "start")).status).toBe(202);
    await runningVmi("gpo-rerun");
  });

  it("guestPowerOff and guestReboot refuse a VMI that is not running", async () => {
    expect(() => kubevirt.guestPowerOff(NS, "no-such-vm")).toThrow(/does not exist/);
  });

  it("guest reboot and reset boot the same VMI again; soft reboot needs the guest agent", async () => {
    await createVm("reboot-1", { runStrategy: "Always", grace: 0, annotations: { "sandbox.kubevirt.io/guest-agent": "true" } });
    await createVm("reboot-2", { runStrategy: "Always", grace: 0 });
    const vmi = await runningVmi("reboot-1");
    await runningVmi("reboot-2");
    expect(vmi.metadata.annotations?.["sandbox.kubevirt.io/boot-count"]).toBe("1");
    kubevirt.guestReboot(NS, "reboot-1");
    expect((await getVmi("reboot-1"))?.metadata.annotations?.["sandbox.kubevirt.io/boot-count"]).toBe("2");
    expect((await put("virtualmachineinstances", "reboot-1", "reset")).status).toBe(200);
    expect((await getVmi("reboot-1"))?.metadata.annotations?.["sandbox.kubevirt.io/boot-count"]).toBe("3");
    expect((await put("virtualmachineinstances", "reboot-1", "softreboot")).status).toBe(200);
    await expect.poll(async () => (await getVmi("reboot-1"))?.metadata.annotations?.["sandbox.kubevirt.io/boot-count"], { message: "soft reboot" }).toBe("4");
    expect((await getVmi("reboot-1"))?.metadata.uid).toBe(vmi.metadata.uid);
    expect(await put("virtualmachineinstances", "reboot-2", "softreboot")).toMatchObject({
      status: 409,
      body: { message: expect.stringContaining("VMI does not have guest agent connected") },
    });
    expect(await put("virtualmachineinstances", "nope", "reset")).toMatchObject({ status: 404 });
  });

  it("rebootPolicy Terminate ends the VMI on a guest reboot, so the next boot uses the current template", async () => {
    await createVm("terminate-1", { runStrategy: "Always", grace: 0 });
    const first = await runningVmi("terminate-1");
    await objects.patchNamespacedCustomObject(
      { ...VM_API, name: "terminate-1", body: [{ op: "add", path: "/spec/template/spec/domain/rebootPolicy", value: "Terminate" }] },
      jsonPatch,
    );
    await expect.poll(async () => condition(await getVm("terminate-1"), "RestartRequired")?.status, { message: "RestartRequired" }).toBe("True");
    // The running VMI still has the old spec: a reboot now stays in place.
    kubevirt.guestReboot(NS, "terminate-1");
    expect((await getVmi("terminate-1"))?.metadata.uid).toBe(first.metadata.uid);
    expect((await put("virtualmachines", "terminate-1", "restart", { gracePeriodSeconds: 0 })).status).toBe(202);
    const second = await vi.waitFor(async () => {
      const vmi = await getVmi("terminate-1");
      return present(vmi && vmi.metadata.uid !== first.metadata.uid && vmi.status?.phase === "Running" && vmi, "restarted with the new template");
    }, WAIT);
    expect(second.spec.domain.rebootPolicy).toBe("Terminate");
    kubevirt.guestReboot(NS, "terminate-1");
    await expect.poll(async () => {
      const vmi = await getVmi("terminate-1");
      return vmi !== undefined && vmi.metadata.uid !== second.metadata.uid && vmi.status?.phase === "Running";
    }, { message: "a guest reboot recreated the VMI" }).toBe(true);
  });
});

describe("KubeVirt: pause", () => {
  it("pause/unpause set the Paused condition and the VM's printableStatus", async () => {
    await createVm("pause-1", { runStrategy: "Always", grace: 0 });
    await runningVmi("pause-1");
    expect((await put("virtualmachineinstances", "pause-1", "pause")).status).toBe(200);
    expect(condition(await getVmi("pause-1"), "Paused")).toMatchObject({ status: "True", reason: "PausedByUser" });
    await expect.poll(() => vmStatus("pause-1"), { message: "VM Paused" }).toBe("Paused");
    expect(await put("virtualmachineinstances", "pause-1", "pause")).toMatchObject({ status: 409, body: { message: expect.stringContaining("VMI is already paused") } });
    expect(await put("virtualmachineinstances", "pause-1", "softreboot")).toMatchObject({ status: 409 });
    expect((await put("virtualmachineinstances", "pause-1", "unpause")).status).toBe(200);
    await expect.poll(() => vmStatus("pause-1"), { message: "VM Running again" }).toBe("Running");
    expect(condition(await getVm("pause-1"), "Paused")).toBeUndefined();
    expect(await put("virtualmachineinstances", "pause-1", "unpause")).toMatchObject({ status: 409, body: { message: expect.stringContaining("VMI is not paused") } });
  });

  it("start paused on a Halted VM boots into the Paused state", async () => {
    await createVm("pause-2", { runStrategy: "Halted", grace: 0 });
    expect((await put("virtualmachines", "pause-2", "start", { paused: true })).status).toBe(202);
    await runningVmi("pause-2");
    await expect.poll(() => vmStatus("pause-2"), { message: "VM Paused at start" }).toBe("Paused");
    expect((await getVm("pause-2")).spec.runStrategy).toBe("Always");
  });
});

describe("KubeVirt: boot recording", () => {
  it("records the lowest bootOrder device, a DataVolume CD-ROM included, and the firmware", async () => {
    await createDv("boot-iso", { blank: {} });
    await createVm("boot-1", {
      runStrategy: "Always",
      grace: 0,
      firmware: { bootloader: { efi: { secureBoot: false } } },
      disks: [
        { name: "root", disk: { bus: "virtio" }, bootOrder: 2 },
        { name: "cd", cdrom: { bus: "sata" }, bootOrder: 1 },
      ],
      volumes: [
        { name: "root", containerDisk: { image: "x" } },
        { name: "cd", dataVolume: { name: "boot-iso" } },
      ],
    });
    const vmi = await runningVmi("boot-1");
    expect(vmi.metadata.annotations).toMatchObject({
      "sandbox.kubevirt.io/booted-from": "cd",
      "sandbox.kubevirt.io/boot-count": "1",
      "sandbox.kubevirt.io/firmware": "uefi",
    });
  });

  it("boots the first disk without boot orders, and a template change applies at the next start", async () => {
    await createVm("boot-2", { runStrategy: "Always", grace: 0, disks: [{ name: "root", disk: {} }, { name: "data", disk: {} }], volumes: [{ name: "root", containerDisk: { image: "x" } }, { name: "data", emptyDisk: { capacity: "1Gi" } }] });
    const first = await runningVmi("boot-2");
    expect(first.metadata.annotations?.["sandbox.kubevirt.io/booted-from"]).toBe("root");
    expect(first.metadata.annotations?.["sandbox.kubevirt.io/firmware"]).toBe("bios");
    await objects.patchNamespacedCustomObject(
      { ...VM_API, name: "boot-2", body: [{ op: "add", path: "/spec/template/spec/domain/devices/disks/1/bootOrder", value: 1 }] },
      jsonPatch,
    );
    kubevirt.guestReboot(NS, "boot-2");
    expect((await getVmi("boot-2"))?.metadata.annotations?.["sandbox.kubevirt.io/booted-from"]).toBe("root");
    expect((await put("virtualmachines", "boot-2", "restart")).status).toBe(202);
    const second = await vi.waitFor(async () => {
      const vmi = await getVmi("boot-2");
      return present(vmi && vmi.metadata.uid !== first.metadata.uid && vmi.status?.phase === "Running" && vmi, "restarted");
    }, WAIT);
    expect(second.metadata.annotations?.["sandbox.kubevirt.io/booted-from"]).toBe("data");
  });

  it("duplicate boot orders fail the start like KubeVirt's webhook, and the VM stays Stopped", async () => {
    await createVm("boot-dup", {
      runStrategy: "Always",
      disks: [
        { name: "root", disk: {}, bootOrder: 1 },
        { name: "data", disk: {}, bootOrder: 1 },
      ],
      volumes: [{ name: "root", containerDisk: { image: "x" } }, { name: "data", emptyDisk: { capacity: "1Gi" } }],
    });
    const failure = await vi.waitFor(async () => present(condition(await getVm("boot-dup"), "Failure"), "Failure condition"), WAIT);
    expect(failure).toMatchObject({ status: "True", reason: "FailedCreate", message: expect.stringContaining("Boot order for spec.domain.devices.disks[1].bootOrder already set for a different device.") });
    expect(await vmStatus("boot-dup")).toBe("Stopped");
    expect(await getVmi("boot-dup")).toBeUndefined();
    // Fixing the template lets it start and clears the condition.
    await objects.patchNamespacedCustomObject(
      { ...VM_API, name: "boot-dup", body: [{ op: "replace", path: "/spec/template/spec/domain/devices/disks/1/bootOrder", value: 2 }] },
      jsonPatch,
    );
    await runningVmi("boot-dup");
    await expect.poll(async () => condition(await getVm("boot-dup"), "Failure"), { message: "Failure cleared" }).toBeUndefined();
  });
});

describe("KubeVirt: DataVolumes and volumes", () => {
  it("holds the start until the DataVolume is imported (Provisioning, no VMI), then starts", async () => {
    await createDv("wait-dv", { http: { url: `${imageUrl}/slow/${CHUNK * 40}` } });
    await createVm("wait-1", { runStrategy: "Always", grace: 0, volumes: [{ name: "root", dataVolume: { name: "wait-dv" } }] });
    await expect.poll(() => vmStatus("wait-1"), { message: "Provisioning" }).toBe("Provisioning");
    await expect.poll(async () => (await getDv("wait-dv")).status?.phase, { message: "importing" }).toBe("ImportInProgress");
    expect(await getVmi("wait-1")).toBeUndefined();
    await expect.poll(async () => (await getDv("wait-dv")).status?.phase, { message: "imported", timeout: 8000 }).toBe("Succeeded");
    await runningVmi("wait-1");
  });

  it("a failed DataVolume shows DataVolumeError", async () => {
    await createDv("bad-dv", { http: { url: `${imageUrl}/missing` } });
    await createVm("dverr-1", { runStrategy: "Always", volumes: [{ name: "root", persistentVolumeClaim: { claimName: "bad-dv" } }] });
    await expect.poll(() => vmStatus("dverr-1"), { message: "DataVolumeError" }).toBe("DataVolumeError");
    expect(await getVmi("dverr-1")).toBeUndefined();
  });

  it("creates DataVolumes from dataVolumeTemplates, owned by the VM", async () => {
    const vm = await createVm("dvt-1", {
      runStrategy: "Always",
      grace: 0,
      volumes: [{ name: "root", dataVolume: { name: "dvt-1-root" } }],
      dataVolumeTemplates: [{ metadata: { name: "dvt-1-root" }, spec: { source: { blank: {} }, storage: { resources: { requests: { storage: "1Gi" } } } } }],
    });
    const dv = await vi.waitFor(() => getDv("dvt-1-root"), WAIT);
    expect(dv.metadata.ownerReferences).toEqual([expect.objectContaining({ uid: vm.metadata.uid, controller: true })]);
    await runningVmi("dvt-1");
  });

  it("a wait-for-first-consumer DataVolume binds when the VMI consumes it", async () => {
    await createDv("wffc-dv", { http: { url: `${imageUrl}/image/${CHUNK * 4}` } }, { storageClassName: "wffc" });
    await expect.poll(async () => (await getDv("wffc-dv")).status?.phase, { message: "WaitForFirstConsumer" }).toBe("WaitForFirstConsumer");
    await createVm("wffc-1", { runStrategy: "Halted", grace: 0, volumes: [{ name: "root", dataVolume: { name: "wffc-dv" } }] });
    // A Halted VM is no consumer: once the controller has reconciled it (Stopped), the DataVolume still waits.
    await expect.poll(() => vmStatus("wffc-1"), { message: "wffc-1 reconciled" }).toBe("Stopped");
    expect((await getDv("wffc-dv")).status.phase).toBe("WaitForFirstConsumer");
    expect((await put("virtualmachines", "wffc-1", "start")).status).toBe(202);
    await runningVmi("wffc-1");
    expect((await getDv("wffc-dv")).status.phase).toBe("Succeeded");
    // With the immediate-binding annotation the same storage class imports at once.
    await createDv("wffc-immediate", { blank: {} }, { storageClassName: "wffc", annotations: { "cdi.kubevirt.io/storage.bind.immediate.requested": "true" } });
    await expect.poll(async () => (await getDv("wffc-immediate")).status?.phase, { message: "immediate bind" }).toBe("Succeeded");
  });

  it("addvolume hot-plugs into the template and the running VMI; removevolume takes it out", async () => {
    await createDv("hp-dv", { blank: {} });
    await createVm("hotplug-1", { runStrategy: "Always", grace: 0 });
    await runningVmi("hotplug-1");
    const add = { name: "hp", disk: { disk: { bus: "scsi" } }, volumeSource: { dataVolume: { name: "hp-dv" } } };
    expect((await put("virtualmachines", "hotplug-1", "addvolume", add)).status).toBe(202);
    expect((await getVm("hotplug-1")).spec.template.spec.volumes).toContainEqual({ name: "hp", dataVolume: { name: "hp-dv", hotpluggable: true } });
    await expect.poll(async () => (await getVmi("hotplug-1"))?.spec.volumes.some((v: { name: string }) => v.name === "hp"), { message: "hot-plugged" }).toBeTruthy();
    expect(await put("virtualmachines", "hotplug-1", "addvolume", add)).toMatchObject({ status: 409, body: { message: expect.stringContaining("already exists") } });
    expect(await put("virtualmachines", "hotplug-1", "addvolume", { name: "x" })).toMatchObject({ status: 400, body: { message: "AddVolumeOptions requires disk to not be nil" } });
    expect(await put("virtualmachines", "hotplug-1", "removevolume", { name: "root" })).toMatchObject({ status: 409, body: { message: expect.stringContaining("not hotpluggable") } });
    expect((await put("virtualmachines", "hotplug-1", "removevolume", { name: "hp" })).status).toBe(202);
    await expect.poll(async () => !(await getVmi("hotplug-1"))?.spec.volumes.some((v: { name: string }) => v.name === "hp"), { message: "unplugged" }).toBeTruthy();
    expect(condition(await getVm("hotplug-1"), "RestartRequired")).toBeUndefined();
  });

  it("rejects malformed subresource bodies with 400 and unknown VMs with 404", async () => {
    const res = await fetch(`${api.url}/apis/subresources.kubevirt.io/v1/namespaces/${NS}/virtualmachines/always-1/stop`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ gracePeriod: "soon" }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ kind: "Status", reason: "BadRequest", message: expect.stringContaining("Can not unmarshal Request body") });
    expect((await put("virtualmachines", "no-such-vm", "start")).status).toBe(404);
  });

  it("deleting the VM garbage-collects its VMI", async () => {
    await createVm("gc-1", { runStrategy: "Always", grace: 0 });
    await runningVmi("gc-1");
    await objects.deleteNamespacedCustomObject({ ...VM_API, name: "gc-1" });
    await vmiGone("gc-1");
  });
});

// ---------------------------------------------------------------- CDI

describe("CDI: DataVolume imports", () => {
  it("imports over http with rising progress, a bound PVC and CDI's conditions", async () => {
    const size = CHUNK * 30;
    await createDv("import-1", { http: { url: `${imageUrl}/slow/${size}` } });
    const progress: string[] = [];
    await expect.poll(async () => {
      const status = (await getDv("import-1")).status;
      if (status?.progress && progress.at(-1) !== status.progress) progress.push(status.progress);
      return status?.phase;
    }, { message: "import-1 Succeeded", timeout: 8000 }).toBe("Succeeded");
    const percents = progress.filter(p => /%$/.test(p)).map(p => parseFloat(p));
    expect(percents.length).toBeGreaterThanOrEqual(4);
    expect([...percents].sort((a, b) => a - b)).toEqual(percents);
    expect(percents.some(p => p > 0 && p < 100)).toBe(true);
    expect(progress.at(-1)).toBe("100.0%");
    const dv = await getDv("import-1");
    expect(condition(dv, "Ready")).toMatchObject({ status: "True" });
    expect(condition(dv, "Bound")).toMatchObject({ status: "True", reason: "Bound" });
    expect(condition(dv, "Running")).toMatchObject({ status: "False", reason: "Completed" });
    expect(dv.status.restartCount).toBe(0);
    const pvc = await core.readNamespacedPersistentVolumeClaim({ name: "import-1", namespace: NS });
    expect(pvc.status?.phase).toBe("Bound");
    expect(pvc.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "DataVolume", uid: dv.metadata.uid });
    expect(seen.filter(r => r.path === `/slow/${size}`)[0].headers["user-agent"]).toBe("cdi-golang-importer");
  });

  it("fails with CDI's message on a 404", async () => {
    await createDv("import-404", { http: { url: `${imageUrl}/missing` } });
    const dv = await vi.waitFor(async () => {
      const d = await getDv("import-404");
      return present(d.status?.phase === "Failed" && d, "Failed");
    }, WAIT);
    expect(condition(dv, "Running")).toMatchObject({
      status: "False",
      reason: "Error",
      message: "Unable to connect to http data source: expected status code 200, got 404. Status: 404 Not Found",
    });
    expect(condition(dv, "Ready")?.status).toBe("False");
  });

  it("uses the secret for basic auth, extra headers, redirects and reports N/A without Content-Length", async () => {
    await createDv("import-auth", { http: { url: `${imageUrl}/auth/${CHUNK}`, secretRef: "media-creds", extraHeaders: ["X-Media-Token: abc"] } });
    // The importer waits for its secret like a pod waits for a missing volume source.
    const waiting = await vi.waitFor(async () => {
      const dv = await getDv("import-auth");
      return present(condition(dv, "Running")?.reason === "CreateContainerConfigError" && dv, "waiting for secret");
    }, WAIT);
    expect(condition(waiting, "Running")?.message).toBe('secret "media-creds" not found');
    await core.createNamespacedSecret({
      namespace: NS,
      body: { metadata: { name: "media-creds" }, data: { accessKeyId: Buffer.from("importer").toString("base64"), secretKey: Buffer.from("s3cret").toString("base64") } },
    });
    await expect.poll(async () => (await getDv("import-auth")).status?.phase, { message: "authenticated import" }).toBe("Succeeded");

    await createDv("import-redirect", { http: { url: `${imageUrl}/redirect/${CHUNK}` } });
    await expect.poll(async () => (await getDv("import-redirect")).status?.phase, { message: "redirected import" }).toBe("Succeeded");
    await createDv("import-nolength", { http: { url: `${imageUrl}/nolength/${CHUNK * 2}` } });
    await expect.poll(async () => (await getDv("import-nolength")).status?.phase, { message: "import without length" }).toBe("Succeeded");
  });

  it("verifies https with the certConfigMap's CA and fails without it", async () => {
    await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: "media-ca" }, data: { "ca.pem": caPem } } });
    await createDv("import-tls", { http: { url: `${secureUrl}/image/${CHUNK}`, certConfigMap: "media-ca" } });
    await createDv("import-tls-untrusted", { http: { url: `${secureUrl}/image/${CHUNK}` } });
    await expect.poll(async () => (await getDv("import-tls")).status?.phase, { message: "https import" }).toBe("Succeeded");
    const failed = await vi.waitFor(async () => {
      const d = await getDv("import-tls-untrusted");
      return present(d.status?.phase === "Failed" && d, "untrusted https fails");
    }, WAIT);
    expect(condition(failed, "Running")?.message).toMatch(/^Unable to connect to http data source: HTTP request errored: .*(certificate|self-signed|issuer)/i);
  });

  it("imports 50 DataVolumes in parallel", async () => {
    const names = Array.from({ length: 50 }, (_, i) => `par-${i}`);
    await Promise.all(names.map(name => createDv(name, { http: { url: `${imageUrl}/slow/${CHUNK * 6}` } })));
    await expect.poll(async () => {
      const list = (await objects.listNamespacedCustomObject({ ...DV_API })) as { items: Obj[] };
      const ours = list.items.filter(d => d.metadata.name.startsWith("par-"));
      return ours.length === 50 && ours.every(d => d.status?.phase === "Succeeded");
    }, { message: "50 imports", timeout: 15000 }).toBe(true);
    expect(seen.filter(r => r.path === `/slow/${CHUNK * 6}`).length).toBe(50);
  });

  it("deleting a DataVolume aborts its download", async () => {
    await createDv("import-abort", { http: { url: `${imageUrl}/hang/${CHUNK * 100}` } });
    await expect.poll(async () => (await getDv("import-abort")).status?.phase, { message: "downloading" }).toBe("ImportInProgress");
    await expect.poll(() => seen.some(r => r.path === `/hang/${CHUNK * 100}`), { message: "request seen" }).toBe(true);
    await objects.deleteNamespacedCustomObject({ ...DV_API, name: "import-abort" });
    await expect.poll(() => closedEarly.has(`/hang/${CHUNK * 100}`), { message: "download aborted" }).toBe(true);
    await expect.poll(async () => {
      try {
        await core.readNamespacedPersistentVolumeClaim({ name: "import-abort", namespace: NS });
        return false;
      } catch {
        return true;
      }
    }, { message: "PVC garbage-collected" }).toBe(true);
  });
});

// ---------------------------------------------------------------- restart (last: it replaces the simulators)

describe("restart of the simulators", () => {
  it("picks up unfinished imports (restartCount) and running VMs, and serves subresources again", async () => {
    await createDv("restart-dv", { http: { url: `${imageUrl}/slow/${CHUNK * 40}` } });
    await expect.poll(async () => (await getDv("restart-dv")).status?.phase, { message: "importing" }).toBe("ImportInProgress");
    await createVm("restart-vm", { runStrategy: "Always", grace: 0 });
    const vmi = await runningVmi("restart-vm");
    kubevirt.stop();
    await cdi.stop();
    expect((await put("virtualmachines", "restart-vm", "stop")).status).toBe(503);
    kubevirt = startKubeVirtSimulator(api, { stepDelayMs: STEP_MS });
    cdi = startCdiSimulator(api, { progressIntervalMs: 40, stepDelayMs: STEP_MS });
    const dv = await vi.waitFor(async () => {
      const d = await getDv("restart-dv");
      return present(d.status?.phase === "Succeeded" && d, "import finished after restart");
    }, { ...WAIT, timeout: 8000 });
    expect(dv.status.restartCount).toBe(1);
    expect((await getVmi("restart-vm"))?.metadata.uid).toBe(vmi.metadata.uid);
    expect((await put("virtualmachines", "restart-vm", "stop", { gracePeriod: 0 })).status).toBe(202);
    await vmiGone("restart-vm");
  });
});

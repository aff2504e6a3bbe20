// Virtual media semantics through the Redfish app over the in-memory KubeVirt + CDI behind the driver seam:
// what InsertMedia / EjectMedia create, patch and delete, the drive and Task views of each import phase,
// credentials, what the module does not own, tenancy, and malformed requests. CDI's real download, boots
// from the CD and restarts stay end to end in media-sandbox.test.ts / media-e2e.test.ts / media-restart.test.ts.
import { Log } from "pepr";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createRedfishApp } from "../../redfish/app";
import { CDI_API, KubeVirtApiUnavailable } from "../../redfish/kubevirt/failures";
import { CD_VOLUME, startMediaController } from "../../redfish/media";
import { chassisDefinitions } from "../../redfish/settings";
import { FakeKubeVirt, PATCH_TEST_FAILED } from "./fake-kubevirt";
import { AUTH, acceptedTask as taskOf, testConfig, vm } from "./fixtures";

const NS = "tenant1-vms";
const IMAGE = "http://images.example.org/first.iso";
const cdUri = (vmName: string) => `/redfish/v1/Systems/${NS}.${vmName}/VirtualMedia/Cd`;
const insertUri = (vmName: string) => `${cdUri(vmName)}/Actions/VirtualMedia.InsertMedia`;
const ejectUri = (vmName: string) => `${cdUri(vmName)}/Actions/VirtualMedia.EjectMedia`;
const stops: (() => void)[] = [];
afterEach(() => stops.splice(0).forEach(stop => stop()));

function setup() {
  const config = testConfig({ datavolume: { storageSize: "1Gi", sizeMarginPercent: 10, importTimeoutSeconds: 600 } });
  const fake = new FakeKubeVirt(chassisDefinitions(config));
  stops.push(startMediaController(fake.cache, fake));
  const app = createRedfishApp({ cache: fake.cache, config: () => config, driver: fake, mediaFirstResultWaitMs: 0 });
  const request = (path: string, init: { method?: string; body?: unknown; user?: keyof typeof AUTH } = {}) => {
    const headers: Record<string, string> = { Authorization: AUTH[init.user ?? "alice"] };
    let body: string | undefined;
    if (init.body !== undefined) {
      body = typeof init.body === "string" ? init.body : JSON.stringify(init.body);
      headers["Content-Type"] = "application/json";
    }
    return Promise.resolve(app.request(path, { method: init.method ?? (body === undefined ? "GET" : "POST"), headers, body }, { incoming: { socket: { remoteAddress: "192.0.2.7" } } }));
  };
  const json = async (path: string, user?: keyof typeof AUTH) => {
    const res = await request(path, { user });
    expect(res.status, path).toBe(200);
    return res.json() as Promise<any>;
  };
  const addVm = (name: string) => fake.addVm({ ...vm(NS, name), status: {} });
  const mediaDataVolumes = (vmName: string) => fake.dataVolumes(NS).filter(dv => dv.metadata.labels?.["kubevirt-infra.io/media-for"] === vmName);
  const template = (name: string) => (fake.vm(NS, name)!.spec as any).template.spec;
  return { fake, request, json, addVm, mediaDataVolumes, template };
}

describe("virtual media semantics (fake KubeVirt + CDI)", () => {
  it("insert creates our DataVolume and the CD-ROM drive; Inserted once imported; same URL is a no-op; another replaces; eject removes both", async () => {
    const t = setup();
    t.addVm("media-1");
    const { monitor, task } = await taskOf(await t.request(insertUri("media-1"), { body: { Image: IMAGE } }));
    expect(JSON.parse(task.Payload.JsonBody)).toEqual({ Image: IMAGE });
    const [dv1] = t.mediaDataVolumes("media-1");
    expect(dv1.metadata.labels).toMatchObject({ "app.kubernetes.io/managed-by": "kubevirt-infra", "kubevirt-infra.io/media-for": "media-1" });
    expect(dv1.metadata.annotations).toMatchObject({ "cdi.kubevirt.io/storage.bind.immediate.requested": "true" });
    expect(dv1.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: "VirtualMachine", name: "media-1", uid: t.fake.vm(NS, "media-1")!.metadata.uid })]);
    expect((dv1.spec as any).source.http.url).toBe(IMAGE);
    expect((dv1.spec as any).storage.resources.requests.storage).toBe("1127Mi");
    expect(t.template("media-1").domain.devices.disks).toContainEqual({ name: CD_VOLUME, cdrom: { bus: "sata", readonly: true } });
    expect(t.template("media-1").volumes).toContainEqual({ name: CD_VOLUME, dataVolume: { name: dv1.metadata.name } });
    expect(await t.json(cdUri("media-1"))).toMatchObject({ Image: IMAGE, Inserted: false, ConnectedVia: "URI" });
    expect((await t.request(monitor)).status).toBe(202);

    t.fake.setImport(NS, dv1.metadata.name!, "ImportInProgress", { progress: "42.10%" });
    expect(await t.json(task["@odata.id"])).toMatchObject({ TaskState: "Running", PercentComplete: 42 });
    t.fake.setImport(NS, dv1.metadata.name!, "Succeeded", { progress: "100.0%" });
    expect((await t.json(cdUri("media-1"))).Inserted).toBe(true);
    expect((await t.request(monitor)).status).toBe(204);
    expect(await t.json(task["@odata.id"])).toMatchObject({ TaskState: "Completed", TaskStatus: "OK", PercentComplete: 100 });

    const writes = t.fake.calls.length;
    expect((await t.request(insertUri("media-1"), { body: { Image: IMAGE } })).status).toBe(204);
    expect(t.fake.calls.slice(writes).filter(c => !c.method.startsWith("read"))).toEqual([]);

    const second = "http://images.example.org/second.iso";
    await taskOf(await t.request(insertUri("media-1"), { body: { Image: second } }));
    const after = t.mediaDataVolumes("media-1");
    expect(after.map(d => (d.spec as any).source.http.url)).toEqual([second]);
    expect(t.template("media-1").volumes.filter((v: any) => v.name === CD_VOLUME)).toEqual([{ name: CD_VOLUME, dataVolume: { name: after[0].metadata.name } }]);

    expect((await t.request(ejectUri("media-1"), { body: {} })).status).toBe(204);
    expect(t.mediaDataVolumes("media-1")).toEqual([]);
    expect(t.template("media-1").volumes.map((v: any) => v.name)).toEqual(["rootdisk"]);
    expect(t.template("media-1").domain.devices.disks.map((d: any) => d.name)).toEqual(["rootdisk"]);
    expect(await t.json(cdUri("media-1"))).toMatchObject({ Image: null, Inserted: false, ConnectedVia: "NotConnected" });
    expect((await t.request(ejectUri("media-1"), { method: "POST" })).status).toBe(204);
  });

  it("a failed import is a Task Exception with a generic reason, Inserted false, Health Warning; the same URL again is a new import", async () => {
    const t = setup();
    t.addVm("broken-1");
    const { monitor, task } = await taskOf(await t.request(insertUri("broken-1"), { body: { Image: IMAGE } }));
    const [dv] = t.mediaDataVolumes("broken-1");
    const reason = "Unable to connect to http data source: expected status code 200, got 404. Status: 404 Not Found";
    t.fake.setImport(NS, dv.metadata.name!, "ImportInProgress", { conditions: [{ type: "Running", status: "False", reason: "Error", message: reason }] });
    expect(await t.json(task["@odata.id"])).toMatchObject({ TaskState: "Exception", TaskStatus: "Critical" });
    expect(await t.json(cdUri("broken-1"))).toMatchObject({ Image: IMAGE, Inserted: false, Status: { Health: "Warning" } });
    const res = await t.request(monitor);
    expect(res.status).toBe(400);
    // CDI's reason (what the target answered) goes to the log and an Event, not to the tenant: media-policy.test.ts.
    expect(((await res.json()) as any).error["@Message.ExtendedInfo"][0].Resolution).toContain("The image could not be downloaded.");

    expect((await t.request(insertUri("broken-1"), { body: { Image: IMAGE } })).status).toBe(202);
    const dvs = t.mediaDataVolumes("broken-1");
    expect(dvs).toHaveLength(1);
    expect(dvs[0].metadata.name).not.toBe(dv.metadata.name);
  });

  it("UserName/Password go into a Secret owned by the DataVolume (CDI's keys), never into a response or a log", async () => {
    const t = setup();
    t.addVm("auth-1");
    const password = "pa55-Secret-for-the-image-server!";
    const logged: unknown[] = [];
    const spies = (["debug", "info", "warn", "error"] as const).map(level =>
      vi.spyOn(Log, level).mockImplementation(((...args: unknown[]) => void logged.push(args)) as never),
    );
    try {
      const res = await t.request(insertUri("auth-1"), { body: { Image: IMAGE, UserName: "imageuser", Password: password } });
      expect(res.status).toBe(202);
      expect(await res.text()).not.toContain(password);
      const [dv] = t.mediaDataVolumes("auth-1");
      const secretName = (dv.spec as any).source.http.secretRef;
      const [secret] = t.fake.secrets(NS).filter(s => s.metadata.name === secretName);
      expect(secret.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: "DataVolume", name: dv.metadata.name, uid: dv.metadata.uid })]);
      expect(Buffer.from((secret as any).data.accessKeyId, "base64").toString()).toBe("imageuser");
      expect(Buffer.from((secret as any).data.secretKey, "base64").toString()).toBe(password);
      expect(await (await t.request(cdUri("auth-1"))).text()).not.toContain(password);
      expect(await (await t.request("/redfish/v1/TaskService/Tasks/" + encodeURIComponent(`${NS}.${dv.metadata.name}`))).text()).not.toContain(password);
      expect((await t.request(ejectUri("auth-1"), { method: "POST" })).status).toBe(204);
      expect(t.fake.secrets(NS)).toEqual([]);
    } finally {
      spies.forEach(spy => spy.mockRestore());
    }
    expect(logged.length).toBeGreaterThan(0);
    expect(JSON.stringify(logged)).not.toContain(password);
  });

  it("never touches a drive or DataVolume it did not create", async () => {
    const t = setup();
    t.addVm("foreign-1");
    t.fake.mutate("VirtualMachine", NS, "foreign-1", obj => {
      const spec = (obj.spec as any).template.spec;
      spec.domain.devices.disks.push({ name: CD_VOLUME, cdrom: { bus: "sata" } });
      spec.volumes.push({ name: CD_VOLUME, containerDisk: { image: "example.org/tools:1" } });
    });
    expect((await t.request(insertUri("foreign-1"), { body: { Image: IMAGE } })).status).toBe(409);
    expect(t.fake.calls.filter(c => c.method === "createDataVolume")).toEqual([]);
    expect((await t.request(ejectUri("foreign-1"), { method: "POST" })).status).toBe(204);
    expect(t.template("foreign-1").volumes).toContainEqual({ name: CD_VOLUME, containerDisk: { image: "example.org/tools:1" } });

    t.addVm("own-dv-1");
    const owner = t.fake.vm(NS, "own-dv-1")!;
    await t.fake.createDataVolume({
      apiVersion: "cdi.kubevirt.io/v1beta1",
      kind: "DataVolume",
      metadata: { name: "own-dv-1-root", namespace: NS, ownerReferences: [{ apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", name: "own-dv-1", uid: owner.metadata.uid!, controller: true }] },
    });
    await taskOf(await t.request(insertUri("own-dv-1"), { body: { Image: IMAGE } }));
    expect((await t.request(ejectUri("own-dv-1"), { method: "POST" })).status).toBe(204);
    expect(t.fake.dataVolumes(NS).map(d => d.metadata.name)).toEqual(["own-dv-1-root"]);
  });

  it("a change to the VM by another writer during an insert is kept, and the insert still lands", async () => {
    const t = setup();
    t.addVm("busy-1");
    t.fake.failNext("attachCdrom", PATCH_TEST_FAILED); // the cached VM was older than the stored one
    await taskOf(await t.request(insertUri("busy-1"), { body: { Image: IMAGE } }));
    expect(t.fake.calls.filter(c => c.method === "attachCdrom")).toHaveLength(2);
    expect(t.fake.calls.filter(c => c.method === "readVm")).toHaveLength(1);
    expect(t.mediaDataVolumes("busy-1")).toHaveLength(1);
  });

  it("CDI not served: InsertMedia is 503 naming the CDI API; the drive still reads", async () => {
    const t = setup();
    t.addVm("nocdi-1");
    t.fake.failNext("createDataVolume", new KubeVirtApiUnavailable(CDI_API, "404 page not found"));
    const res = await t.request(insertUri("nocdi-1"), { body: { Image: IMAGE } });
    expect(res.status).toBe(503);
    expect(((await res.json()) as any).error.message).toContain("cdi.kubevirt.io/v1beta1");
    expect(t.fake.calls.filter(c => c.method === "attachCdrom")).toEqual([]);
    expect(await t.json(cdUri("nocdi-1"))).toMatchObject({ Image: null, Inserted: false });
  });

  it("another tenant gets 404 for the drive, its actions, the task and the task monitor", async () => {
    const t = setup();
    t.addVm("tenant-1");
    const { monitor, task } = await taskOf(await t.request(insertUri("tenant-1"), { body: { Image: IMAGE } }));
    for (const path of [cdUri("tenant-1"), `/redfish/v1/Systems/${NS}.tenant-1/VirtualMedia`, monitor, task["@odata.id"]]) {
      expect((await t.request(path, { user: "bob" })).status, path).toBe(404);
      expect((await t.request(path, { user: "carol" })).status, path).not.toBe(404);
    }
    expect((await t.request(insertUri("tenant-1"), { user: "bob", body: { Image: "http://evil.example.org/x.iso" } })).status).toBe(404);
    expect((await t.request(ejectUri("tenant-1"), { user: "bob", method: "POST" })).status).toBe(404);
    expect((await t.json("/redfish/v1/TaskService/Tasks", "bob")).Members).toEqual([]);
    expect((await t.json("/redfish/v1/TaskService/Tasks", "alice")).Members).toContainEqual({ "@odata.id": task["@odata.id"] });
    expect(t.mediaDataVolumes("tenant-1")).toHaveLength(1);
  });

  it("fuzzing: every mutated request is answered without a 5xx and the drive stays consistent", async () => {
    const t = setup();
    t.addVm("fuzz-1");
    const base = `/redfish/v1/Systems/${NS}.fuzz-1/VirtualMedia`;
    const paths = [
      base,
      `${base}/Cd`,
      `${base}/Cd/Actions/VirtualMedia.InsertMedia`,
      `${base}/Cd/Actions/VirtualMedia.EjectMedia`,
      `/redfish/v1/Managers/${NS}.fuzz-1/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`,
      "/redfish/v1/TaskService/TaskMonitors/x",
      `/redfish/v1/TaskService/TaskMonitors/${NS}.fuzz-1-cd-abcdef`,
      `/redfish/v1/TaskService/Tasks/${NS}.fuzz-1-cd-abcdef`,
    ];
    const bodies = [
      undefined,
      "",
      "{",
      "null",
      "[]",
      '"str"',
      "{}",
      JSON.stringify({ Image: IMAGE }),
      JSON.stringify({ Image: IMAGE, Inserted: "true" }),
      JSON.stringify({ Image: null }),
      JSON.stringify({ Image: "" }),
      JSON.stringify({ Image: ["http://x/y.iso"] }),
      JSON.stringify({ Image: `http://${"a".repeat(70_000)}` }),
      JSON.stringify({ Image: "http://x/$(reboot).iso" }),
      JSON.stringify({ Image: "javascript:alert(1)" }),
      JSON.stringify({ Image: IMAGE, UserName: {}, Password: [] }),
      JSON.stringify({ Image: IMAGE, UserName: "u", Password: "p".repeat(5000) }),
      '{"Image":"http://x/y.iso","constructor":{"prototype":{"x":1}}}',
      "\u0000\u0001",
      '{"a":' + "[".repeat(3000) + "]".repeat(3000) + "}",
    ];
    for (const path of paths) {
      for (const method of ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"]) {
        for (const body of method === "GET" || method === "HEAD" ? [undefined] : bodies) {
          const res = await t.request(path, { method, body });
          expect(res.status, `${method} ${path} ${String(body).slice(0, 80)}`).toBeLessThan(500);
        }
      }
    }
    const dvs = t.mediaDataVolumes("fuzz-1");
    expect(dvs.length).toBeLessThanOrEqual(1);
    const volume = t.template("fuzz-1").volumes.find((v: any) => v.name === CD_VOLUME);
    expect(dvs.map(d => d.metadata.name)).toEqual(volume ? [volume.dataVolume.name] : []);
  });
});

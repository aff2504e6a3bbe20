// Virtual media end to end in-process: the Redfish app over the sandbox API server with the KubeVirt and CDI
// simulators (CDI really downloads from the local image server).
import { Log } from "pepr";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CD_VOLUME } from "../../redfish/media";
import { cdUri, ejectUri, insertUri, NS, startMediaSandbox, VMI_KEY, VM_KEY, type MediaSandbox } from "./media-helpers";

let sb: MediaSandbox;

beforeAll(async () => {
  sb = await startMediaSandbox();
});
afterAll(async () => {
  await sb?.stop();
});

function templateOf(name: string): any {
  return (sb.api.store.get(VM_KEY, NS, name)!.spec as any).template.spec;
}

async function taskOf(res: Response): Promise<{ monitor: string; task: any }> {
  expect(res.status).toBe(202);
  const monitor = res.headers.get("Location")!;
  expect(monitor).toMatch(/^\/redfish\/v1\/TaskService\/TaskMonitors\//);
  return { monitor, task: await res.json() };
}

describe("the Ironic virtual-media sequence", () => {
  it("ForceOff, Eject, Insert, Boot Cd Once, On: the VMI boots from the CD", async () => {
    sb.createVm("ironic-1", { runStrategy: "Always" });
    await sb.waitFor(() => sb.api.store.get(VMI_KEY, NS, "ironic-1"), "the VM to run");
    const system = `/redfish/v1/Systems/${NS}.ironic-1`;

    expect((await sb.request(`${system}/Actions/ComputerSystem.Reset`, { body: { ResetType: "ForceOff" } })).status).toBeLessThan(300);
    await sb.waitFor(async () => (await sb.json(system)).PowerState === "Off", "PowerState Off");

    expect((await sb.request(ejectUri("ironic-1"), { method: "POST" })).status).toBe(204);

    const image = `${sb.iso.url}/images/ironic.iso`;
    const started = Date.now();
    const { monitor, task } = await taskOf(await sb.request(insertUri("ironic-1"), { body: { Image: image } }));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(task["@odata.type"]).toMatch(/^#Task\.v1_\d+_\d+\.Task$/);
    expect(task.TaskMonitor).toBe(monitor);
    expect(JSON.parse(task.Payload.JsonBody)).toEqual({ Image: image });

    // The drive shows the image at once; Inserted only once the import is done.
    const cd = await sb.json(cdUri("ironic-1"));
    expect(cd.Image).toBe(image);
    expect(cd.ConnectedVia).toBe("URI");

    expect((await sb.request(system, { method: "PATCH", body: { Boot: { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" } } })).status).toBe(204);
    expect((await sb.request(`${system}/Actions/ComputerSystem.Reset`, { body: { ResetType: "On" } })).status).toBeLessThan(300);

    const vmi = await sb.waitFor(() => {
      const v = sb.api.store.get(VMI_KEY, NS, "ironic-1");
      return v?.metadata.annotations?.["sandbox.kubevirt.io/booted-from"] ? v : undefined;
    }, "the VMI to boot");
    expect(vmi.metadata.annotations!["sandbox.kubevirt.io/booted-from"]).toBe(CD_VOLUME);
    expect(sb.iso.downloads.get("/images/ironic.iso")).toBe(1);

    await sb.waitFor(async () => (await sb.json(cdUri("ironic-1"))).Inserted === true, "Inserted true");
    const finished = await sb.request(monitor);
    expect(finished.status).toBe(204);
    const done = await sb.json(task["@odata.id"]);
    expect(done).toMatchObject({ TaskState: "Completed", TaskStatus: "OK", PercentComplete: 100 });
  });
});

describe("insert, re-insert, replace, eject", () => {
  it("re-insert of the same URL is a no-op, a different URL replaces, eject detaches and deletes", async () => {
    sb.createVm("media-1");
    const first = `${sb.iso.url}/images/first.iso`;
    await taskOf(await sb.request(insertUri("media-1"), { body: { Image: first } }));
    const [dv1] = sb.mediaDataVolumes("media-1");
    expect(dv1).toBeDefined();
    expect(dv1.metadata.labels).toMatchObject({ "app.kubernetes.io/managed-by": "kubevirt-infra", "kubevirt-infra.io/media-for": "media-1" });
    expect(dv1.metadata.annotations).toMatchObject({ "cdi.kubevirt.io/storage.bind.immediate.requested": "true" });
    const vm = sb.api.store.get(VM_KEY, NS, "media-1")!;
    expect(dv1.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: "VirtualMachine", name: "media-1", uid: vm.metadata.uid })]);
    expect((dv1.spec as any).source.http.url).toBe(first);
    expect((dv1.spec as any).storage.resources.requests.storage).toBe("1127Mi");
    expect(templateOf("media-1").domain.devices.disks).toContainEqual({ name: CD_VOLUME, cdrom: { bus: "sata", readonly: true } });
    expect(templateOf("media-1").volumes).toContainEqual({ name: CD_VOLUME, dataVolume: { name: dv1.metadata.name } });

    await sb.waitFor(async () => (await sb.json(cdUri("media-1"))).Inserted === true, "first image imported");
    const same = await sb.request(insertUri("media-1"), { body: { Image: first } });
    expect(same.status).toBe(204);
    expect(sb.mediaDataVolumes("media-1").map(d => d.metadata.name)).toEqual([dv1.metadata.name]);

    const second = `${sb.iso.url}/images/second.iso`;
    await taskOf(await sb.request(insertUri("media-1"), { body: { Image: second } }));
    const after = sb.mediaDataVolumes("media-1");
    expect(after).toHaveLength(1);
    expect(after[0].metadata.name).not.toBe(dv1.metadata.name);
    expect((after[0].spec as any).source.http.url).toBe(second);
    const cd = await sb.json(cdUri("media-1"));
    expect(cd.Image).toBe(second);
    expect(templateOf("media-1").volumes.filter((v: any) => v.name === CD_VOLUME)).toEqual([{ name: CD_VOLUME, dataVolume: { name: after[0].metadata.name } }]);

    expect((await sb.request(ejectUri("media-1"), { body: {} })).status).toBe(204);
    expect(sb.mediaDataVolumes("media-1")).toEqual([]);
    expect(templateOf("media-1").volumes.map((v: any) => v.name)).toEqual(["rootdisk"]);
    expect(templateOf("media-1").domain.devices.disks.map((d: any) => d.name)).toEqual(["rootdisk"]);
    const empty = await sb.json(cdUri("media-1"));
    expect(empty).toMatchObject({ Image: null, Inserted: false, ConnectedVia: "NotConnected" });
    // Eject of an empty drive succeeds.
    expect((await sb.request(ejectUri("media-1"), { method: "POST" })).status).toBe(204);
  });
});

describe("imports that take time or fail", () => {
  it("a slow image shows rising PercentComplete; On meanwhile is PoweringOn and boots from the CD once imported", async () => {
    sb.createVm("slow-1");
    const system = `/redfish/v1/Systems/${NS}.slow-1`;
    const { monitor, task } = await taskOf(await sb.request(insertUri("slow-1"), { body: { Image: `${sb.iso.url}/slow/slow.iso` } }));
    expect((await sb.request(system, { method: "PATCH", body: { Boot: { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" } } })).status).toBe(204);
    expect((await sb.request(`${system}/Actions/ComputerSystem.Reset`, { body: { ResetType: "On" } })).status).toBeLessThan(300);
    expect((await sb.json(system)).PowerState).toBe("PoweringOn");

    const seen: number[] = [];
    const states = new Set<string>();
    await sb.waitFor(async () => {
      const res = await sb.request(monitor);
      if (res.status === 202) {
        const body = (await res.json()) as any;
        states.add(body.TaskState);
        if (typeof body.PercentComplete === "number" && body.PercentComplete !== seen[seen.length - 1]) seen.push(body.PercentComplete);
        // While the import runs the VM has not started, and the drive is not inserted yet.
        if (body.TaskState === "Running") {
          expect(sb.api.store.get(VMI_KEY, NS, "slow-1")).toBeUndefined();
          expect((await sb.json(cdUri("slow-1"))).Inserted).toBe(false);
          expect((await sb.json(system)).PowerState).toBe("PoweringOn");
        }
        return false;
      }
      expect(res.status).toBe(204);
      return true;
    }, "the slow import", 15_000);
    expect(states.has("Running")).toBe(true);
    const rising = seen.filter(p => p > 0 && p < 100);
    expect(rising.length).toBeGreaterThanOrEqual(3);
    expect([...rising].sort((a, b) => a - b)).toEqual(rising);
    expect((await sb.json(task["@odata.id"])).PercentComplete).toBe(100);

    const vmi = await sb.waitFor(() => {
      const v = sb.api.store.get(VMI_KEY, NS, "slow-1");
      return v?.metadata.annotations?.["sandbox.kubevirt.io/booted-from"] ? v : undefined;
    }, "the VMI to boot after the import");
    expect(vmi.metadata.annotations!["sandbox.kubevirt.io/booted-from"]).toBe(CD_VOLUME);
  });

  it("a 404 image ends in a Task Exception with CDI's reason, Inserted false, and the VM does not boot from it", async () => {
    sb.createVm("broken-1");
    const system = `/redfish/v1/Systems/${NS}.broken-1`;
    const image = `${sb.iso.url}/missing/nothing.iso`;
    const { monitor, task } = await taskOf(await sb.request(insertUri("broken-1"), { body: { Image: image } }));
    expect((await sb.request(`${system}/Actions/ComputerSystem.Reset`, { body: { ResetType: "On" } })).status).toBeLessThan(300);

    const failed = await sb.waitFor(async () => {
      const t = await sb.json(task["@odata.id"]);
      return t.TaskState === "Exception" ? t : undefined;
    }, "the task to fail");
    expect(failed.TaskStatus).toBe("Critical");
    expect(failed.Messages[0].Resolution).toContain("expected status code 200, got 404");
    const cd = await sb.json(cdUri("broken-1"));
    expect(cd).toMatchObject({ Image: image, Inserted: false, Status: { Health: "Warning" } });
    const res = await sb.request(monitor);
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error["@Message.ExtendedInfo"][0].Resolution).toContain("got 404");

    // KubeVirt does not start a VM whose DataVolume failed: no VMI, ever, from the broken media.
    await new Promise(r => setTimeout(r, 300));
    expect(sb.api.store.get(VMI_KEY, NS, "broken-1")).toBeUndefined();

    // The same URL again is a new attempt (the failed import is replaced), not a no-op.
    const retry = await sb.request(insertUri("broken-1"), { body: { Image: image } });
    expect(retry.status).toBe(202);
    const dvs = sb.mediaDataVolumes("broken-1");
    expect(dvs).toHaveLength(1);
    expect(dvs[0].metadata.name).not.toBe(failed.Id.split(".")[1]);

    // Eject: the drive goes, the VM starts without it (from its disk).
    expect((await sb.request(ejectUri("broken-1"), { method: "POST" })).status).toBe(204);
    const vmi = await sb.waitFor(() => {
      const v = sb.api.store.get(VMI_KEY, NS, "broken-1");
      return v?.metadata.annotations?.["sandbox.kubevirt.io/booted-from"] ? v : undefined;
    }, "the VM to start from its disk");
    expect(vmi.metadata.annotations!["sandbox.kubevirt.io/booted-from"]).toBe("rootdisk");
    expect(sb.mediaDataVolumes("broken-1")).toEqual([]);
  });
});

describe("credentials and what the module does not own", () => {
  it("UserName/Password go into a Secret owned by the DataVolume (CDI's keys), never into a response", async () => {
    sb.createVm("auth-1");
    const password = "pa55-Secret-for-the-image-server!";
    const logged: unknown[] = [];
    const spies = (["debug", "info", "warn", "error"] as const).map(level =>
      vi.spyOn(Log, level).mockImplementation(((...args: unknown[]) => void logged.push(args)) as never),
    );
    const res = await sb.request(insertUri("auth-1"), { body: { Image: `${sb.iso.url}/images/auth.iso`, UserName: "imageuser", Password: password } });
    const text = await res.text();
    expect(res.status).toBe(202);
    expect(text).not.toContain(password);
    const [dv] = sb.mediaDataVolumes("auth-1");
    const secretName = (dv.spec as any).source.http.secretRef;
    const secret = sb.api.store.get("secrets", NS, secretName)!;
    expect(secret.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: "DataVolume", name: dv.metadata.name, uid: dv.metadata.uid })]);
    expect(Buffer.from((secret as any).data.accessKeyId, "base64").toString()).toBe("imageuser");
    expect(Buffer.from((secret as any).data.secretKey, "base64").toString()).toBe(password);
    await sb.waitFor(async () => (await sb.json(cdUri("auth-1"))).Inserted === true, "the import with credentials");
    const cd = await sb.request(cdUri("auth-1"));
    expect(await cd.text()).not.toContain(password);
    const tasks = await sb.request("/redfish/v1/TaskService/Tasks/" + encodeURIComponent(`${NS}.${dv.metadata.name}`));
    expect(await tasks.text()).not.toContain(password);

    expect((await sb.request(ejectUri("auth-1"), { method: "POST" })).status).toBe(204);
    expect(sb.api.store.get("secrets", NS, secretName)).toBeUndefined();
    spies.forEach(spy => spy.mockRestore());
    expect(logged.length).toBeGreaterThan(0);
    expect(JSON.stringify(logged)).not.toContain(password);
  });

  it("never touches a volume it did not create: a foreign drive of the same name, the VM's own DataVolume disks", async () => {
    sb.createVm("foreign-1");
    const vm = sb.api.store.get(VM_KEY, NS, "foreign-1")!;
    const spec = structuredClone(vm.spec) as any;
    spec.template.spec.domain.devices.disks.push({ name: CD_VOLUME, cdrom: { bus: "sata" } });
    spec.template.spec.volumes.push({ name: CD_VOLUME, containerDisk: { image: "example.org/tools:1" } });
    sb.api.store.update(VM_KEY, { ...vm, spec });
    await sb.waitFor(() => (sb.watcher.cache.getVm(NS, "foreign-1")?.vm.spec as any)?.template.spec.volumes.length === 2, "the cache to see the drive");

    const insert = await sb.request(insertUri("foreign-1"), { body: { Image: `${sb.iso.url}/images/x.iso` } });
    expect(insert.status).toBe(409);
    expect(sb.mediaDataVolumes("foreign-1")).toEqual([]);
    expect((await sb.request(ejectUri("foreign-1"), { method: "POST" })).status).toBe(204);
    expect((sb.api.store.get(VM_KEY, NS, "foreign-1")!.spec as any).template.spec.volumes).toContainEqual({ name: CD_VOLUME, containerDisk: { image: "example.org/tools:1" } });
    expect((await sb.json(cdUri("foreign-1"))).Image).toBeNull();
  });

  it("eject leaves the VM's other DataVolumes (its root disk) alone", async () => {
    sb.createVm("own-dv-1");
    const vm = sb.api.store.get(VM_KEY, NS, "own-dv-1")!;
    sb.api.store.create("datavolumes.cdi.kubevirt.io", {
      apiVersion: "cdi.kubevirt.io/v1beta1",
      kind: "DataVolume",
      metadata: {
        name: "own-dv-1-root",
        namespace: NS,
        ownerReferences: [{ apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", name: "own-dv-1", uid: vm.metadata.uid!, controller: true }],
      },
      spec: { source: { blank: {} }, storage: { resources: { requests: { storage: "1Gi" } } } },
    });
    await taskOf(await sb.request(insertUri("own-dv-1"), { body: { Image: `${sb.iso.url}/images/own.iso` } }));
    expect((await sb.request(ejectUri("own-dv-1"), { method: "POST" })).status).toBe(204);
    expect(sb.api.store.get("datavolumes.cdi.kubevirt.io", NS, "own-dv-1-root")).toBeDefined();
    expect(sb.mediaDataVolumes("own-dv-1")).toEqual([]);
  });
});

describe("tenancy", () => {
  it("another tenant gets 404 for the drive, its actions, the task and the task monitor", async () => {
    sb.createVm("tenant-1");
    const { monitor, task } = await taskOf(await sb.request(insertUri("tenant-1"), { body: { Image: `${sb.iso.url}/images/t.iso` } }));
    for (const path of [cdUri("tenant-1"), `/redfish/v1/Systems/${NS}.tenant-1/VirtualMedia`, monitor, task["@odata.id"]]) {
      expect((await sb.request(path, { user: "bob" })).status, path).toBe(404);
      expect((await sb.request(path, { user: "carol" })).status, path).not.toBe(404);
    }
    expect((await sb.request(insertUri("tenant-1"), { user: "bob", body: { Image: `${sb.iso.url}/images/evil.iso` } })).status).toBe(404);
    expect((await sb.request(ejectUri("tenant-1"), { user: "bob", method: "POST" })).status).toBe(404);
    const bobTasks = await sb.json("/redfish/v1/TaskService/Tasks", "bob");
    expect(bobTasks.Members).toEqual([]);
    const aliceTasks = await sb.json("/redfish/v1/TaskService/Tasks", "alice");
    expect(aliceTasks.Members).toContainEqual({ "@odata.id": task["@odata.id"] });
    expect(sb.mediaDataVolumes("tenant-1")).toHaveLength(1);
  });
});

describe("fuzzing the virtual-media endpoints", () => {
  it("answers every mutated request without a 5xx and leaves the drive consistent", async () => {
    sb.createVm("fuzz-1");
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
    const image = `${sb.iso.url}/images/fuzz.iso`;
    const bodies = [
      undefined,
      "",
      "{",
      "null",
      "[]",
      '"str"',
      "{}",
      JSON.stringify({ Image: image }),
      JSON.stringify({ Image: image, Inserted: "true" }),
      JSON.stringify({ Image: null }),
      JSON.stringify({ Image: "" }),
      JSON.stringify({ Image: ["http://x/y.iso"] }),
      JSON.stringify({ Image: `http://${"a".repeat(70_000)}` }),
      JSON.stringify({ Image: "http://x/$(reboot).iso" }),
      JSON.stringify({ Image: "javascript:alert(1)" }),
      JSON.stringify({ Image: image, UserName: {}, Password: [] }),
      JSON.stringify({ Image: image, UserName: "u", Password: "p".repeat(5000) }),
      JSON.stringify({ Image: image, __proto__: { Inserted: false } }),
      '{"Image":"http://x/y.iso","constructor":{"prototype":{"x":1}}}',
      "\u0000\u0001",
      '{"a":' + "[".repeat(3000) + "]".repeat(3000) + "}",
    ];
    let cases = 0;
    for (const path of paths) {
      for (const method of ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD"]) {
        for (const body of method === "GET" || method === "HEAD" ? [undefined] : bodies) {
          const res = await sb.request(path, { method, body, headers: body === undefined ? {} : { "Content-Type": "application/json" } });
          cases++;
          expect(res.status, `${method} ${path} ${String(body).slice(0, 80)}`).toBeLessThan(500);
        }
      }
    }
    console.log(`virtual-media fuzz: ${cases} requests, no 5xx`);
    const dvs = sb.mediaDataVolumes("fuzz-1");
    expect(dvs.length).toBeLessThanOrEqual(1);
    const volume = templateOf("fuzz-1").volumes.find((v: any) => v.name === CD_VOLUME);
    expect(dvs.map(d => d.metadata.name)).toEqual(volume ? [volume.dataVolume.name] : []);
  });
});

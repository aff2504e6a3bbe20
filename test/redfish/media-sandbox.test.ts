// Virtual media end to end in-process: the Redfish app over the sandbox API server with the KubeVirt and CDI
// simulators (CDI really downloads from the local image server). What InsertMedia/EjectMedia write, credentials,
// ownership, tenancy and fuzzing run against the fake driver in media-driver.test.ts.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createRedfishApp } from "../../redfish/app";
import { CD_VOLUME } from "../../redfish/media";
import { AUTH, acceptedTask as taskOf } from "./fixtures";
import { cdUri, ejectUri, insertUri, NS, startMediaSandbox, VMI_KEY, type MediaSandbox } from "./media-helpers";
import { present } from "../helpers/present";

/** vi.waitFor's options in this file (expect.poll's come from vitest.config.ts). */
const WAIT = { timeout: 10_000, interval: 20 };

let sb: MediaSandbox;

beforeAll(async () => {
  sb = await startMediaSandbox();
});
afterAll(async () => {
  await sb?.stop();
});

describe("the Ironic virtual-media sequence", () => {
  it("ForceOff, Eject, Insert, Boot Cd Once, On: the VMI boots from the CD", async () => {
    sb.createVm("ironic-1", { runStrategy: "Always" });
    await expect.poll(() => sb.api.store.get(VMI_KEY, NS, "ironic-1"), { message: "the VM to run" }).toBeTruthy();
    const system = `/redfish/v1/Systems/${NS}.ironic-1`;

    expect((await sb.request(`${system}/Actions/ComputerSystem.Reset`, { body: { ResetType: "ForceOff" } })).status).toBeLessThan(300);
    await expect.poll(async () => (await sb.json(system)).PowerState, { message: "PowerState Off" }).toBe("Off");

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

    const vmi = await vi.waitFor(() => {
      const v = sb.api.store.get(VMI_KEY, NS, "ironic-1");
      return present(v?.metadata.annotations?.["sandbox.kubevirt.io/booted-from"] ? v : undefined, "the VMI to boot");
    }, WAIT);
    expect(vmi.metadata.annotations!["sandbox.kubevirt.io/booted-from"]).toBe(CD_VOLUME);
    expect(sb.iso.downloads.get("/images/ironic.iso")).toBe(1);

    await expect.poll(async () => (await sb.json(cdUri("ironic-1"))).Inserted, { message: "Inserted true" }).toBe(true);
    const finished = await sb.request(monitor);
    expect(finished.status).toBe(204);
    const done = await sb.json(task["@odata.id"]);
    expect(done).toMatchObject({ TaskState: "Completed", TaskStatus: "OK", PercentComplete: 100 });
  });
});

/**
 * The same service answering InsertMedia at once (no wait for the import's first result): how an import that
 * fails later than InsertMedia waits (a slow importer start, a server that stalls) reaches the client.
 */
function requestNoWait(path: string, init: { method?: string; body?: unknown } = {}): Promise<Response> {
  const app = createRedfishApp({ cache: sb.watcher.cache, config: () => sb.config, mediaFirstResultWaitMs: 0 });
  const body = init.body === undefined ? undefined : JSON.stringify(init.body);
  const headers: Record<string, string> = { Authorization: AUTH.alice, ...(body ? { "Content-Type": "application/json" } : {}) };
  return Promise.resolve(app.request(path, { method: init.method ?? (body ? "POST" : "GET"), headers, body }, { incoming: { socket: { remoteAddress: "192.0.2.7" } } }));
}

/** The Warning Event the media controller records for a failed import of the VM's drive (CDI's reason). */
function importFailedEvent(vmName: string): Promise<unknown> {
  return vi.waitFor(
    () =>
      present(
        sb.api.store.list("events", NS).find(e => (e as any).reason === "VirtualMediaImportFailed" && (e as any).involvedObject?.name === vmName),
        `the import-failed Event of ${vmName}`,
      ),
    WAIT,
  );
}

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
    // What the monitor and the system showed on each poll while the import ran: checked once it is done.
    const whileRunning: { vmi: boolean; inserted: boolean; powerState: string }[] = [];
    const monitorStatuses = new Set<number>();
    await expect
      .poll(
        async () => {
          const res = await sb.request(monitor);
          monitorStatuses.add(res.status);
          if (res.status === 202) {
            const body = (await res.json()) as any;
            states.add(body.TaskState);
            if (typeof body.PercentComplete === "number" && body.PercentComplete !== seen[seen.length - 1]) seen.push(body.PercentComplete);
            if (body.TaskState === "Running") {
              whileRunning.push({
                vmi: sb.api.store.get(VMI_KEY, NS, "slow-1") !== undefined,
                inserted: (await sb.json(cdUri("slow-1"))).Inserted,
                powerState: (await sb.json(system)).PowerState,
              });
            }
          }
          return res.status;
        },
        { message: "the slow import", timeout: 15_000 },
      )
      .toBe(204);
    expect([...monitorStatuses].sort()).toEqual([202, 204]);
    // While the import ran the VM had not started, and the drive was not inserted yet.
    expect(whileRunning.length).toBeGreaterThan(0);
    expect(whileRunning.filter(s => s.vmi || s.inserted !== false || s.powerState !== "PoweringOn")).toEqual([]);
    expect(states.has("Running")).toBe(true);
    const rising = seen.filter(p => p > 0 && p < 100);
    expect(rising.length).toBeGreaterThanOrEqual(3);
    expect([...rising].sort((a, b) => a - b)).toEqual(rising);
    expect((await sb.json(task["@odata.id"])).PercentComplete).toBe(100);

    const vmi = await vi.waitFor(() => {
      const v = sb.api.store.get(VMI_KEY, NS, "slow-1");
      return present(v?.metadata.annotations?.["sandbox.kubevirt.io/booted-from"] ? v : undefined, "the VMI to boot after the import");
    }, WAIT);
    expect(vmi.metadata.annotations!["sandbox.kubevirt.io/booted-from"]).toBe(CD_VOLUME);
  });

  it("a 404 image that fails after the reply ends in a Task Exception with a generic reason (CDI's in an Event), Inserted false, and the VM does not boot from it", async () => {
    sb.createVm("broken-1");
    const system = `/redfish/v1/Systems/${NS}.broken-1`;
    const image = `${sb.iso.url}/missing/nothing.iso`;
    const { monitor, task } = await taskOf(await requestNoWait(insertUri("broken-1"), { body: { Image: image } }));
    expect((await sb.request(`${system}/Actions/ComputerSystem.Reset`, { body: { ResetType: "On" } })).status).toBeLessThan(300);

    const failed = await vi.waitFor(async () => {
      const t = await sb.json(task["@odata.id"]);
      return present(t.TaskState === "Exception" ? t : undefined, "the task to fail");
    }, WAIT);
    expect(failed.TaskStatus).toBe("Critical");
    expect(failed.Messages[0].Resolution).toContain("The image could not be downloaded.");
    // CDI's reason is in a Warning Event on the VM (for the platform team), never in the tenant's Task.
    const event = await importFailedEvent("broken-1");
    expect((event as any).message).toContain("got 404");
    const cd = await sb.json(cdUri("broken-1"));
    expect(cd).toMatchObject({ Image: image, Inserted: false, Status: { Health: "Warning" } });
    const res = await sb.request(monitor);
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error["@Message.ExtendedInfo"][0].Resolution).toContain("The image could not be downloaded.");

    // KubeVirt does not start a VM whose DataVolume failed, and a new start from it is refused.
    expect(sb.api.store.get(VMI_KEY, NS, "broken-1")).toBeUndefined();
    expect((await sb.request(`${system}/Actions/ComputerSystem.Reset`, { body: { ResetType: "On" } })).status).toBe(409);

    // The same URL again is a new attempt (the failed import is replaced), not a no-op.
    const retry = await requestNoWait(insertUri("broken-1"), { body: { Image: image } });
    expect(retry.status).toBe(202);
    const dvs = sb.mediaDataVolumes("broken-1");
    expect(dvs).toHaveLength(1);
    expect(dvs[0].metadata.name).not.toBe(failed.Id.split(".")[1]);

    // Eject: the drive goes, the VM starts without it (from its disk).
    expect((await sb.request(ejectUri("broken-1"), { method: "POST" })).status).toBe(204);
    const vmi = await vi.waitFor(() => {
      const v = sb.api.store.get(VMI_KEY, NS, "broken-1");
      return present(v?.metadata.annotations?.["sandbox.kubevirt.io/booted-from"] ? v : undefined, "the VM to start from its disk");
    }, WAIT);
    expect(vmi.metadata.annotations!["sandbox.kubevirt.io/booted-from"]).toBe("rootdisk");
    expect(sb.mediaDataVolumes("broken-1")).toEqual([]);
  });

  it("Ironic's deploy with an image that fails after the reply: Reset On answers an error naming the image within 60 s; after Eject + ForceOff no DataVolume remains", async () => {
    sb.createVm("broken-2");
    const system = `/redfish/v1/Systems/${NS}.broken-2`;
    const image = `${sb.iso.url}/missing/deploy.iso`;
    const started = Date.now();
    const { task } = await taskOf(await requestNoWait(insertUri("broken-2"), { body: { Image: image } }));
    // Ironic: boot device cdrom, then power on; it polls nothing in between but the power state.
    expect((await sb.request(system, { method: "PATCH", body: { Boot: { BootSourceOverrideTarget: "Cd", BootSourceOverrideEnabled: "Once" } } })).status).toBeLessThan(300);
    await expect.poll(async () => (await sb.json(task["@odata.id"])).TaskState, { message: "the import to fail", timeout: 55_000 }).toBe("Exception");
    const on = await sb.request(`${system}/Actions/ComputerSystem.Reset`, { body: { ResetType: "On" } });
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(on.status).toBe(409);
    const error = ((await on.json()) as any).error;
    expect(error.message).toContain(image);
    expect(error.message).toContain("could not be downloaded");
    expect(error.message).not.toMatch(/404|Not Found/);
    // Not PoweringOn: the start cannot happen.
    expect((await sb.json(system)).PowerState).toBe("Off");

    // Ironic does not eject a drive that reads Inserted: false; its power off clears the failed import.
    expect((await sb.json(cdUri("broken-2"))).Inserted).toBe(false);
    expect((await sb.request(`${system}/Actions/ComputerSystem.Reset`, { body: { ResetType: "ForceOff" } })).status).toBeLessThan(300);
    await expect.poll(() => sb.mediaDataVolumes("broken-2").length, { message: "the failed DataVolume to be deleted" }).toBe(0);
    expect(await sb.json(cdUri("broken-2"))).toMatchObject({ Image: null, Inserted: false });
    expect((await sb.request(ejectUri("broken-2"), { method: "POST" })).status).toBe(204);
    expect(sb.mediaDataVolumes("broken-2")).toEqual([]);
  });

  it("InsertMedia of a 404 image fails at once: 400 naming the image with the generic reason, CDI's in an Event, the drive left empty", async () => {
    sb.createVm("broken-3");
    const image = `${sb.iso.url}/missing/early.iso`;
    const started = Date.now();
    const insert = await sb.request(insertUri("broken-3"), { body: { Image: image } });
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(insert.status).toBe(400);
    const error = ((await insert.json()) as any).error;
    expect(error.message).toContain(image);
    expect(error.message).toContain("The image could not be downloaded.");
    expect(JSON.stringify(error)).not.toMatch(/404|Not Found/);
    expect(await sb.json(cdUri("broken-3"))).toMatchObject({ Image: null, Inserted: false });
    expect(sb.mediaDataVolumes("broken-3").filter(dv => !dv.metadata.deletionTimestamp)).toEqual([]);
    const event = await importFailedEvent("broken-3");
    expect((event as any).message).toContain("got 404");
    // Nothing blocks the VM: it starts from its disk.
    expect((await sb.request(`/redfish/v1/Systems/${NS}.broken-3/Actions/ComputerSystem.Reset`, { body: { ResetType: "On" } })).status).toBeLessThan(300);
  });
});

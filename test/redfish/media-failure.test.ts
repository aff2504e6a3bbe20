// A failed image import as Ironic sees it (issue #17 item 2), over the in-memory KubeVirt + CDI: a start from
// the failed drive is refused at once naming the image, PowerState never stays PoweringOn for it, and ForceOff
// or Eject leave no DataVolume and an empty drive whatever state the import was in.
import { afterEach, describe, expect, it, vi } from "vitest";
import { createRedfishApp } from "../../redfish/app";
import { CD_VOLUME, startMediaController } from "../../redfish/media";
import { chassisDefinitions } from "../../redfish/settings";
import { FakeKubeVirt } from "./fake-kubevirt";
import { AUTH, acceptedTask as taskOf, testConfig, vm } from "./fixtures";

const NS = "tenant1-vms";
const IMAGE = "http://images.example.org/missing.iso";
const system = (name: string) => `/redfish/v1/Systems/${NS}.${name}`;
const cdUri = (name: string) => `${system(name)}/VirtualMedia/Cd`;
const CDI_404 = "Unable to connect to http data source: expected status code 200, got 404. Status: 404 Not Found";
const stops: (() => void)[] = [];
afterEach(() => stops.splice(0).forEach(stop => stop()));

async function withFailedImport(name: string, opts: { runStrategy?: string } = {}) {
  const config = testConfig();
  const fake = new FakeKubeVirt(chassisDefinitions(config));
  stops.push(startMediaController(fake.cache, fake));
  const app = createRedfishApp({ cache: fake.cache, config: () => config, driver: fake, mediaFirstResultWaitMs: 0 });
  const request = (path: string, body?: unknown) =>
    Promise.resolve(
      app.request(
        path,
        {
          method: body === undefined ? "GET" : path.endsWith("EjectMedia") || path.includes("/Actions/") ? "POST" : "PATCH",
          headers: { Authorization: AUTH.alice, "Content-Type": "application/json" },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        },
        { incoming: { socket: { remoteAddress: "192.0.2.7" } } },
      ),
    );
  fake.addVm({ ...vm(NS, name, { runStrategy: opts.runStrategy ?? "Halted" }), status: {} });
  const { task } = await taskOf(await request(`${cdUri(name)}/Actions/VirtualMedia.InsertMedia`, { Image: IMAGE }));
  const [dv] = fake.dataVolumes(NS);
  fake.setImport(NS, dv.metadata.name!, "ImportInProgress", { conditions: [{ type: "Running", status: "False", reason: "Error", message: CDI_404 }] });
  const json = async (path: string) => (await request(path)).json() as Promise<any>;
  expect((await json(task["@odata.id"])).TaskState).toBe("Exception");
  return { fake, request, json };
}

describe("a failed image import, as Ironic sees it", () => {
  it.each(["On", "PushPowerButton", "ForceRestart", "GracefulRestart"])("Reset %s from the failed drive: 409 naming the image, nothing written", async resetType => {
    const t = await withFailedImport("vm-1");
    t.fake.calls.length = 0;
    const res = await t.request(`${system("vm-1")}/Actions/ComputerSystem.Reset`, { ResetType: resetType });
    expect(res.status).toBe(409);
    const { error } = (await res.json()) as any;
    expect(error.message).toContain(IMAGE);
    expect(error.message).toContain("The image could not be downloaded.");
    expect(JSON.stringify(error)).not.toMatch(/404|Not Found/);
    expect(t.fake.calls).toEqual([]);
  });

  it("PowerState reads Off, not PoweringOn, for a VM that would start but cannot (runStrategy Always, failed drive)", async () => {
    const t = await withFailedImport("vm-2", { runStrategy: "Always" });
    expect((await t.json(system("vm-2"))).PowerState).toBe("Off");
  });

  it.each(["ForceOff", "GracefulShutdown"])("%s clears a drive holding a failed import: no DataVolume, empty drive", async resetType => {
    const t = await withFailedImport("vm-3");
    expect((await t.json(cdUri("vm-3"))).Inserted).toBe(false);
    expect((await t.request(`${system("vm-3")}/Actions/ComputerSystem.Reset`, { ResetType: resetType })).status).toBeLessThan(300);
    expect(t.fake.dataVolumes(NS)).toEqual([]);
    const template = (t.fake.vm(NS, "vm-3")!.spec as any).template.spec;
    expect(template.volumes.some((v: any) => v.name === CD_VOLUME)).toBe(false);
    expect(await t.json(cdUri("vm-3"))).toMatchObject({ Image: null, Inserted: false });
  });

  it("Eject of a failed import leaves no DataVolume and an empty drive; then On starts the VM", async () => {
    const t = await withFailedImport("vm-4");
    expect((await t.request(`${cdUri("vm-4")}/Actions/VirtualMedia.EjectMedia`, {})).status).toBe(204);
    expect(t.fake.dataVolumes(NS)).toEqual([]);
    expect((await t.request(`${system("vm-4")}/Actions/ComputerSystem.Reset`, { ResetType: "On" })).status).toBeLessThan(300);
  });
});

describe("InsertMedia waits for the import's first result (Ironic does not follow the Task)", () => {
  function setup(firstResultWaitMs: number) {
    const config = testConfig();
    const fake = new FakeKubeVirt(chassisDefinitions(config));
    stops.push(startMediaController(fake.cache, fake));
    const app = createRedfishApp({ cache: fake.cache, config: () => config, driver: fake, mediaFirstResultWaitMs: firstResultWaitMs });
    const insert = (name: string, image: string) =>
      Promise.resolve(
        app.request(
          `${cdUri(name)}/Actions/VirtualMedia.InsertMedia`,
          { method: "POST", headers: { Authorization: AUTH.alice, "Content-Type": "application/json" }, body: JSON.stringify({ Image: image }) },
          { incoming: { socket: { remoteAddress: "192.0.2.7" } } },
        ),
      );
    /** The import CDI started for the pending insert (the request is waiting on it). */
    const startedImport = () => vi.waitFor(() => {
      const [dv] = fake.dataVolumes(NS);
      expect(dv).toBeDefined();
      return dv.metadata.name!;
    });
    return { fake, insert, startedImport };
  }

  it("an import that fails at once (CDI's 404) fails the InsertMedia: 400 naming the image, the generic reason only", async () => {
    const t = setup(20_000);
    t.fake.addVm({ ...vm(NS, "early"), status: {} });
    const started = Date.now();
    const reply = t.insert("early", IMAGE);
    const dv = await t.startedImport();
    t.fake.setImport(NS, dv, "ImportInProgress", { progress: "N/A", conditions: [{ type: "Running", status: "False", reason: "Error", message: CDI_404 }] });
    const res = await reply;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as any;
    expect(error.message).toContain(IMAGE);
    expect(error.message).toContain("The image could not be downloaded.");
    expect(JSON.stringify(error)).not.toMatch(/404|Not Found/);
    expect(error["@Message.ExtendedInfo"][0].RelatedProperties).toEqual(["#/Image"]);
    // Nothing stays inserted: Ironic, reading Inserted false, would never eject it.
    expect(t.fake.dataVolumes(NS)).toEqual([]);
    expect(((t.fake.vm(NS, "early")!.spec as any).template.spec.volumes as { name: string }[]).map(v => v.name)).not.toContain(CD_VOLUME);
  });

  it("an import moving bytes answers 202 with its Task at once; one that never reports answers 202 at the deadline", async () => {
    const t = setup(20_000);
    t.fake.addVm({ ...vm(NS, "moving"), status: {} });
    const reply = t.insert("moving", "http://images.example.org/good.iso");
    t.fake.setImport(NS, await t.startedImport(), "ImportInProgress", { progress: "3.50%", conditions: [{ type: "Running", status: "True", reason: "Pod is running" }] });
    const { task } = await taskOf(await reply);
    expect(task).toMatchObject({ TaskState: "Running", PercentComplete: 3 });

    const quiet = setup(300);
    quiet.fake.addVm({ ...vm(NS, "quiet"), status: {} });
    const started = Date.now();
    const res = await quiet.insert("quiet", "http://images.example.org/slow.iso");
    expect(res.status).toBe(202);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });
});

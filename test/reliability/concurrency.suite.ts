// Reliability: concurrent requests through the real watcher over HTTPS. 50 InsertMedia on 50 VMs at once, and
// 20 conflicting requests (inserts of different images, ejects, boot overrides, power) on one VM at once:
// every request answered (no 5xx, no dropped connection), no lost update, exactly one DataVolume per drive.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  attachedDataVolume,
  httpSourceUrl,
  mediaDataVolumes,
  RELIABILITY_NAMESPACE,
  RELIABILITY_USER,
  startReliabilityCluster,
  vmObject,
  VM_KEY,
  type RedfishClient,
  type RedfishResponse,
  type SuiteCluster,
} from "./support";

const NS = RELIABILITY_NAMESPACE;
const OPS = RELIABILITY_USER;

let c: SuiteCluster;
let rf: RedfishClient;

beforeAll(async () => {
  ({ c, rf } = await startReliabilityCluster({ sizeBytes: 1024 * 1024, slowChunkIntervalMs: 20 }));
});
afterAll(async () => {
  rf?.close();
  await c?.stop();
});

const systemUri = (name: string) => `/redfish/v1/Systems/${NS}.${name}`;
const cdUri = (name: string) => `${systemUri(name)}/VirtualMedia/Cd`;
const cd = async (name: string) => (await rf.request("GET", cdUri(name), { user: OPS })).body as { Inserted?: boolean; Image?: string | null };

async function createVms(names: string[]): Promise<void> {
  for (const name of names) c.api.store.create(VM_KEY, vmObject(NS, name));
  await expect
    .poll(
      async () => {
        const members = ((await rf.request("GET", "/redfish/v1/Systems", { user: OPS })).body?.Members ?? []) as { "@odata.id": string }[];
        const ids = new Set(members.map(m => m["@odata.id"]));
        return names.filter(n => !ids.has(systemUri(n)));
      },
      { message: "VMs not in Redfish yet" },
    )
    .toEqual([]);
}

/** Our DataVolumes of the VM (not being deleted) and the one its drive uses. */
function drive(name: string): { dataVolumes: string[]; attached: string | undefined } {
  return {
    dataVolumes: mediaDataVolumes(c, NS, name).filter(dv => !dv.metadata.deletionTimestamp).map(dv => dv.metadata.name!),
    attached: attachedDataVolume(c.api.store.get(VM_KEY, NS, name)),
  };
}

describe("concurrent requests", () => {
  it("50 InsertMedia on 50 VMs at once: all accepted, all imported, exactly one DataVolume each", async () => {
    const names = Array.from({ length: 50 }, (_, i) => `many-${i}`);
    await createVms(names);
    const image = (name: string) => `${c.isoServer.url}/images/${name}.iso`;
    const started = Date.now();
    const replyMs: number[] = [];
    const replies = await Promise.all(
      names.map(name =>
        rf
          .request("POST", `${cdUri(name)}/Actions/VirtualMedia.InsertMedia`, { user: OPS, body: { Image: image(name) } })
          .then(res => (replyMs.push(Date.now() - started), res))
          .catch((e: Error) => e),
      ),
    );
    replyMs.sort((a, b) => a - b);
    const statuses = replies.map(r => (r instanceof Error ? r.message : r.status));
    expect(statuses.filter(s => s !== 202), JSON.stringify(statuses)).toEqual([]);

    await expect.poll(async () => (await Promise.all(names.map(cd))).every(m => m.Inserted === true), { message: "every drive Inserted", timeout: 120_000, interval: 500 }).toBe(true);
    for (const name of names) {
      const state = drive(name);
      expect(state.dataVolumes, name).toHaveLength(1);
      expect(state.attached, name).toBe(state.dataVolumes[0]);
      expect(httpSourceUrl(mediaDataVolumes(c, NS, name)[0]), name).toBe(image(name));
      expect((await cd(name)).Image, name).toBe(image(name));
    }
    console.log(`50 concurrent InsertMedia: replies p50 ${replyMs[24]} ms, slowest ${replyMs[49]} ms; all imported after ${Date.now() - started} ms`);
  });

  it("20 identical InsertMedia on one VM at once: one DataVolume, every request answered", async () => {
    await createVms(["same"]);
    const image = `${c.isoServer.url}/images/same.iso`;
    const replies = await Promise.all(
      Array.from({ length: 20 }, () => rf.request("POST", `${cdUri("same")}/Actions/VirtualMedia.InsertMedia`, { user: OPS, body: { Image: image } }).catch((e: Error) => e)),
    );
    const statuses = replies.map(r => (r instanceof Error ? r.message : r.status));
    // The first is accepted (202), the others see the same image already inserting (no-op) or a conflict.
    expect(statuses.filter(s => typeof s !== "number" || s >= 500 || ![202, 204, 409].includes(s)), JSON.stringify(statuses)).toEqual([]);
    expect(statuses.filter(s => s === 202 || s === 204).length).toBeGreaterThan(0);
    await expect.poll(async () => (await cd("same")).Inserted, { message: "Inserted", timeout: 60_000, interval: 250 }).toBe(true);
    expect(drive("same").dataVolumes).toHaveLength(1);
  });

  it("20 conflicting requests on one VM at once: all answered, no lost update, at most one DataVolume", async () => {
    await createVms(["hot"]);
    const images = ["a", "b", "c", "d"].map(x => `${c.isoServer.url}/images/hot-${x}.iso`);
    type Op = { kind: "insert"; image: string } | { kind: "eject" } | { kind: "boot"; target: string; enabled: string } | { kind: "power"; resetType: string };
    const ops: Op[] = [
      ...images.flatMap(image => [{ kind: "insert", image } as Op, { kind: "insert", image } as Op]),
      ...Array.from({ length: 4 }, () => ({ kind: "eject" }) as Op),
      { kind: "boot", target: "Cd", enabled: "Once" },
      { kind: "boot", target: "Pxe", enabled: "Continuous" },
      { kind: "boot", target: "Hdd", enabled: "Once" },
      { kind: "boot", target: "None", enabled: "Disabled" },
      { kind: "power", resetType: "On" },
      { kind: "power", resetType: "ForceOff" },
      { kind: "power", resetType: "On" },
      { kind: "power", resetType: "ForceOff" },
    ];
    // A fixed interleaving (no randomness in tests): media, boot and power requests alternate.
    const order = [0, 8, 12, 16, 1, 9, 13, 17, 2, 10, 14, 18, 3, 11, 15, 19, 4, 5, 6, 7].map(i => ops[i]);
    expect(new Set(order).size).toBe(20);

    const send = (op: Op): Promise<RedfishResponse> => {
      switch (op.kind) {
        case "insert":
          return rf.request("POST", `${cdUri("hot")}/Actions/VirtualMedia.InsertMedia`, { user: OPS, body: { Image: op.image } });
        case "eject":
          return rf.request("POST", `${cdUri("hot")}/Actions/VirtualMedia.EjectMedia`, { user: OPS, body: {} });
        case "boot":
          return rf.request("PATCH", systemUri("hot"), { user: OPS, body: { Boot: { BootSourceOverrideTarget: op.target, BootSourceOverrideEnabled: op.enabled } } });
        case "power":
          return rf.request("POST", `${systemUri("hot")}/Actions/ComputerSystem.Reset`, { user: OPS, body: { ResetType: op.resetType } });
      }
    };
    const results = await Promise.all(
      order.map(async op => {
        try {
          const res = await send(op);
          return { op, status: res.status, text: res.text, at: process.hrtime.bigint() };
        } catch (e) {
          return { op, status: 0, text: (e as Error).message, at: process.hrtime.bigint() };
        }
      }),
    );
    // Every request answered, none with a server error; a refusal is a 4xx with a Redfish error body.
    const bad = results.filter(r => r.status === 0 || r.status >= 500);
    expect(bad.map(r => `${JSON.stringify(r.op)} -> ${r.status} ${r.text.slice(0, 200)}`)).toEqual([]);
    for (const r of results.filter(r => r.status >= 400)) expect(JSON.parse(r.text).error?.code, r.text).toBeTruthy();

    // The media outcome is that of the last media request that succeeded (the drive is serialized per VM).
    const mediaDone = results.filter(r => (r.op.kind === "insert" || r.op.kind === "eject") && r.status < 300).sort((a, b) => (a.at < b.at ? -1 : 1));
    expect(mediaDone.length).toBeGreaterThan(0);
    const last = mediaDone.at(-1)!.op;
    const expectedImage = last.kind === "insert" ? last.image : null;
    await expect
      .poll(
        async () => {
          const m = await cd("hot");
          const state = drive("hot");
          const settled = expectedImage === null ? state.dataVolumes.length === 0 : state.dataVolumes.length === 1 && m.Inserted === true;
          return settled && m.Image === expectedImage;
        },
        { message: `the drive to settle on ${expectedImage}`, timeout: 60_000, interval: 250 },
      )
      .toBe(true);
    const state = drive("hot");
    expect(state.attached).toBe(state.dataVolumes[0]);
    if (expectedImage) expect(httpSourceUrl(mediaDataVolumes(c, NS, "hot")[0])).toBe(expectedImage);

    // Boot order stays valid: no two devices share a bootOrder (KubeVirt would refuse the VMI).
    const template = (c.api.store.get(VM_KEY, NS, "hot")!.spec as { template: { spec: { domain: { devices: { disks?: { bootOrder?: number }[]; interfaces?: { bootOrder?: number }[] } } } } }).template.spec.domain.devices;
    const orders = [...(template.disks ?? []), ...(template.interfaces ?? [])].map(d => d.bootOrder).filter((o): o is number => o !== undefined);
    const described = [...(template.disks ?? []), ...(template.interfaces ?? [])].map(d => `${(d as { name?: string }).name}:${d.bootOrder ?? "-"}`).join(", ");
    expect(new Set(orders).size, `boot orders ${described} after ${results.map(r => `${JSON.stringify(r.op)}:${r.status}`).join(" ")}`).toBe(orders.length);
    // Power settles on On or Off (no request left half-done).
    await expect.poll(async () => (await rf.request("GET", systemUri("hot"), { user: OPS })).body?.PowerState, { message: "PowerState to settle", timeout: 30_000, interval: 250 }).toBeOneOf(["On", "Off"]);
    console.log(`20 conflicting requests: ${results.map(r => `${r.op.kind}:${r.status}`).join(" ")}`);
  });
});

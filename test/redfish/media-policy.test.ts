// InsertMedia's checks before anything is created (issue #12 item 1): the image URL policy refuses every internal
// destination with a 400 naming the rule and creates nothing; the normalised URL is what the DataVolume gets;
// tenants see a generic reason for a failed import while the log and a Warning Event carry CDI's; inserts are
// rate-limited per user. Over the in-memory KubeVirt + CDI behind the driver seam, with the DEFAULT policy.
import { Log } from "pepr";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createRedfishApp } from "../../redfish/app";
import { IMPORT_FAILED_EVENT_REASON, startMediaController } from "../../redfish/media/controller";
import { chassisDefinitions } from "../../redfish/settings";
import { FakeKubeVirt } from "./fake-kubevirt";
import { AUTH, acceptedTask as taskOf, testConfig, vm } from "./fixtures";

const NS = "tenant1-vms";
const insertUri = (vmName: string) => `/redfish/v1/Systems/${NS}.${vmName}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia`;
const stops: (() => void)[] = [];
afterEach(() => {
  stops.splice(0).forEach(stop => stop());
  vi.restoreAllMocks();
});

function setup(imageUrlPolicy: Record<string, unknown> = {}) {
  const config = testConfig({ redfish: { imageUrlPolicy } });
  const fake = new FakeKubeVirt(chassisDefinitions(config));
  stops.push(startMediaController(fake.cache, fake));
  const clock = { now: Date.parse("2026-01-01T00:00:00Z") };
  const app = createRedfishApp({ cache: fake.cache, config: () => config, driver: fake, now: () => clock.now, mediaFirstResultWaitMs: 0 });
  const insert = (vmName: string, image: string, user: keyof typeof AUTH = "alice") =>
    Promise.resolve(
      app.request(
        insertUri(vmName),
        { method: "POST", headers: { Authorization: AUTH[user], "Content-Type": "application/json" }, body: JSON.stringify({ Image: image }) },
        { incoming: { socket: { remoteAddress: "192.0.2.7" } } },
      ),
    );
  const json = async (path: string) => (await app.request(path, { headers: { Authorization: AUTH.alice } }, { incoming: { socket: { remoteAddress: "192.0.2.7" } } })).json() as Promise<any>;
  fake.addVm({ ...vm(NS, "vm-1"), status: {} });
  return { fake, clock, insert, json };
}

describe("InsertMedia and the image URL policy (default policy)", () => {
  const refused: [string, string][] = [
    ["http://2130706433/boot.iso", "non-canonical-ipv4"],
    ["http://0x7f000001/boot.iso", "non-canonical-ipv4"],
    ["http://017700000001/boot.iso", "non-canonical-ipv4"],
    ["http://127.1/boot.iso", "non-canonical-ipv4"],
    ["http://127.0.0.1:8080/boot.iso", "loopback"],
    ["http://[::ffff:127.0.0.1]/boot.iso", "ipv4-mapped"],
    ["http://[::1]/boot.iso", "loopback"],
    ["http://169.254.169.254/latest/meta-data/", "link-local"],
    ["http://[fd00:ec2::254]/latest/meta-data/", "unique-local"],
    ["http://metadata.google.internal/computeMetadata/v1/", "metadata-name"],
    ["https://kubernetes.default.svc/api", "cluster-name"],
    ["http://registry.kube-system.svc.cluster.local:5000/x.iso", "cluster-name"],
    ["http://10.0.0.1/boot.iso", "private"],
    ["http://172.16.5.4/boot.iso", "private"],
    ["http://192.168.1.1/boot.iso", "private"],
    ["http://100.64.0.1/boot.iso", "cgnat"],
  ];

  it("refuses every internal destination and spelling with a 400 naming the rule, before anything is created", async () => {
    const t = setup();
    for (const [image, rule] of refused) {
      t.clock.now += 60_000; // the rate limit is not what is tested here
      const res = await t.insert("vm-1", image);
      expect(res.status, image).toBe(400);
      const body = (await res.json()) as any;
      expect(body.error.code, image).toBe("Base.1.18.1.ActionParameterValueError");
      expect(body.error.message, image).toContain(`(rule ${rule})`);
      expect(body.error["@Message.ExtendedInfo"][0].Resolution, image).toContain(`rule ${rule}`);
    }
    expect(t.fake.calls.filter(c => c.method !== "readVm")).toEqual([]);
    expect(t.fake.dataVolumes(NS)).toEqual([]);
  });

  it("stores the normalised URL the policy checked, not the raw string", async () => {
    const t = setup({ allowHosts: ["images.example.org"] });
    const res = await t.insert("vm-1", "HTTP://Images.Example.ORG:80/iso/../boot.iso");
    expect(res.status).toBe(202);
    const [dv] = t.fake.dataVolumes(NS);
    expect((dv.spec as any).source.http.url).toBe("http://images.example.org/boot.iso");
  });

  it("lets a lab allow loopback explicitly", async () => {
    const t = setup({ allowCidrs: ["127.0.0.1/32"] });
    expect((await t.insert("vm-1", "http://127.0.0.1:8080/boot.iso")).status).toBe(202);
  });

  it("rate-limits inserts per user (429 with Retry-After), refused ones included; other users are not affected", async () => {
    const t = setup();
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) statuses.push((await t.insert("vm-1", `http://10.0.0.${i + 1}/x.iso`)).status);
    expect(statuses).toEqual(Array(60).fill(400));
    const limited = await t.insert("vm-1", "http://10.0.0.99/x.iso");
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("Retry-After"))).toBeGreaterThanOrEqual(1);
    // carol is a different user with her own budget.
    expect((await t.insert("vm-1", "http://10.0.0.1/x.iso", "carol")).status).toBe(400);
    t.clock.now += 1_000;
    expect((await t.insert("vm-1", "http://10.0.0.1/x.iso")).status).toBe(400);
    expect((await t.insert("vm-1", "http://10.0.0.1/x.iso")).status).toBe(429);
  });

  it("a failed import: the tenant's Task says only that the image could not be downloaded; the log and a Warning Event say why", async () => {
    const warn = vi.spyOn(Log, "warn");
    const t = setup({ allowHosts: ["images.example.org"] });
    const image = "http://images.example.org/missing.iso?X-Amz-Signature=s3cr3t";
    const { task } = await taskOf(await t.insert("vm-1", image));
    const [dv] = t.fake.dataVolumes(NS);
    const cdiReason = "Unable to connect to http data source: expected status code 200, got 404. Status: 404 Not Found";
    t.fake.setImport(NS, dv.metadata.name!, "ImportInProgress", { conditions: [{ type: "Running", status: "False", reason: "Error", message: cdiReason }] });

    const failed = await t.json(task["@odata.id"]);
    expect(failed).toMatchObject({ TaskState: "Exception", TaskStatus: "Critical" });
    expect(failed.Messages[0].Resolution).toContain("The image could not be downloaded.");
    expect(JSON.stringify(failed)).not.toMatch(/404|Not Found|connect/);

    await vi.waitFor(() => expect(t.fake.events).toHaveLength(1));
    expect(t.fake.events[0]).toMatchObject({ involved: `VirtualMachine/${NS}/vm-1`, reason: IMPORT_FAILED_EVENT_REASON });
    expect(t.fake.events[0].message).toContain("got 404");
    expect(t.fake.events[0].message).toContain("http://images.example.org/missing.iso");
    const logged = warn.mock.calls.find(([, msg]) => msg === "virtual media: image import failed");
    expect(logged?.[0]).toMatchObject({ reason: cdiReason, image: "http://images.example.org/missing.iso" });
    // The query of a pre-signed URL is a credential: neither the log nor the Event carry it.
    expect(JSON.stringify(warn.mock.calls) + t.fake.events[0].message).not.toContain("s3cr3t");
  });
});

// Virtual media without a cluster: InsertMedia/EjectMedia validation through the app, the drive model,
// the DataVolume / Secret / VM patch planning, and the settings.
import { describe, expect, it } from "vitest";
import { MODULE_MANAGED_LABEL } from "../../capabilities/datavolume-policy/scope";
import { applyJsonPatch, type Json } from "../../sandbox/apiserver/patch";
import type { KubeObject } from "../../redfish/cache/types";
import {
  CD_VOLUME,
  MANAGED_BY_LABEL,
  driveSlot,
  importPhase,
  mediaDataVolumeName,
  mediaView,
  vmNameOfMediaDataVolume,
} from "../../redfish/media/model";
import { attachOps, credentialsSecret, detachOps, mediaDataVolume } from "../../redfish/media/plan";
import { checkImage, parseInsertMedia } from "../../redfish/media/request";
import { mediaSettings, storageRequest } from "../../redfish/media/settings";
import { unreferencedMediaDataVolumes } from "../../redfish/media/controller";
import { AUTH, dataVolume, revise, testConfig, testService, vm } from "./fixtures";

const INSERT = "/redfish/v1/Systems/tenant1-vms.vm-b/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia";
const EJECT = "/redfish/v1/Systems/tenant1-vms.vm-b/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia";

async function post(path: string, body: string | undefined, auth = AUTH.alice) {
  const svc = testService();
  const res = await svc.request(path, { method: "POST", headers: { Authorization: auth, "Content-Type": "application/json" }, body });
  const text = await res.text();
  return { status: res.status, text, body: text ? (JSON.parse(text) as any) : undefined };
}

function messageOf(body: any): { MessageId: string; MessageArgs: string[] } {
  return body.error["@Message.ExtendedInfo"][0];
}

describe("InsertMedia validation (nothing is written for a refused request)", () => {
  const cases: [string, unknown, string, string?][] = [
    ["no Image", {}, "ActionParameterMissing"],
    ["Image of the wrong type", { Image: 42 }, "ActionParameterValueTypeError"],
    ["an unknown parameter", { Image: "http://h/x.iso", Foo: 1 }, "ActionParameterUnknown"],
    ["ftp", { Image: "ftp://example.org/x.iso" }, "ActionParameterValueFormatError"],
    ["file", { Image: "file:///etc/passwd" }, "ActionParameterValueFormatError"],
    ["a relative URL", { Image: "/images/x.iso" }, "ActionParameterValueFormatError"],
    ["shell metacharacters", { Image: "http://h/x.iso; rm -rf /" }, "ActionParameterValueFormatError"],
    ["a quote", { Image: 'http://h/x".iso' }, "ActionParameterValueFormatError"],
    ["a backtick", { Image: "http://h/`id`.iso" }, "ActionParameterValueFormatError"],
    ["a newline", { Image: "http://h/x.iso\nX-Injected: 1" }, "ActionParameterValueFormatError"],
    ["a NUL", { Image: "http://h/x\u0000.iso" }, "ActionParameterValueFormatError"],
    ["non-ASCII", { Image: "http://h/ü.iso" }, "ActionParameterValueFormatError"],
    ["a backslash", { Image: "http:\\\\h\\x.iso" }, "ActionParameterValueFormatError"],
    ["credentials in the URL", { Image: "http://user:pw@h/x.iso" }, "ActionParameterValueFormatError"],
    ["no host", { Image: "http:///x.iso" }, "ActionParameterValueFormatError"],
    ["an overlong URL", { Image: `http://h/${"a".repeat(2100)}.iso` }, "ActionParameterValueFormatError"],
    ["Inserted false", { Image: "http://h/x.iso", Inserted: false }, "ActionParameterValueNotInList", "Inserted"],
    ["WriteProtected false", { Image: "http://h/x.iso", WriteProtected: false }, "ActionParameterValueNotInList", "WriteProtected"],
    ["Inserted as a string", { Image: "http://h/x.iso", Inserted: "yes" }, "ActionParameterValueTypeError", "Inserted"],
    ["TransferProtocolType NFS", { Image: "http://h/x.iso", TransferProtocolType: "NFS" }, "ActionParameterValueNotInList", "TransferProtocolType"],
    ["TransferProtocolType not matching the URL", { Image: "http://h/x.iso", TransferProtocolType: "HTTPS" }, "ActionParameterValueNotInList", "TransferProtocolType"],
    ["TransferMethod Copy", { Image: "http://h/x.iso", TransferMethod: "Copy" }, "ActionParameterValueNotInList", "TransferMethod"],
    ["MediaType Floppy", { Image: "http://h/x.iso", MediaType: "Floppy" }, "ActionParameterValueNotInList", "MediaType"],
    ["UserName without Password", { Image: "http://h/x.iso", UserName: "u" }, "ActionParameterMissing", "Password"],
    ["Password without UserName", { Image: "http://h/x.iso", Password: "p" }, "ActionParameterMissing", "UserName"],
    ["a UserName with ':'", { Image: "http://h/x.iso", UserName: "a:b", Password: "p" }, "ActionParameterValueFormatError", "UserName"],
    ["a Password with a control character", { Image: "http://h/x.iso", UserName: "u", Password: "p\u0007w" }, "ActionParameterValueFormatError", "Password"],
  ];
  it("does not echo credentials given in the URL", async () => {
    const res = await post(INSERT, JSON.stringify({ Image: "http://user:s3cret-pw@h/x.iso" }));
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).not.toContain("s3cret-pw");
    expect(messageOf(res.body).MessageArgs[0]).toBe("http://h/x.iso");
  });
  for (const [what, body, messageKey, parameter] of cases) {
    it(`refuses ${what} with 400 ${messageKey}`, async () => {
      const res = await post(INSERT, JSON.stringify(body));
      expect(res.status).toBe(400);
      const message = messageOf(res.body);
      expect(message.MessageId).toBe(`Base.1.18.1.${messageKey}`);
      if (parameter) expect(message.MessageArgs.join(" ")).toContain(parameter);
    });
  }

  it("refuses malformed JSON and never echoes a password", async () => {
    expect((await post(INSERT, "{not json")).status).toBe(400);
    const secret = "Very-Secret-\u0001-password";
    const res = await post(INSERT, JSON.stringify({ Image: "http://h/x.iso", UserName: "u", Password: secret }));
    expect(res.status).toBe(400);
    expect(res.text).not.toContain("Very-Secret");
    const wrongType = await post(INSERT, JSON.stringify({ Image: "http://h/x.iso", UserName: "u", Password: ["Very-Secret-list"] }));
    expect(wrongType.status).toBe(400);
    expect(wrongType.text).not.toContain("Very-Secret");
  });

  it("answers 404 for systems of other chassis before looking at the body, and 412 on a stale If-Match", async () => {
    expect((await post(INSERT, JSON.stringify({ Image: "ftp://x" }), AUTH.bob)).status).toBe(404);
    const svc = testService();
    const res = await svc.request(INSERT, {
      method: "POST",
      headers: { Authorization: AUTH.alice, "Content-Type": "application/json", "If-Match": '"stale"' },
      body: JSON.stringify({ Image: "http://h/x.iso" }),
    });
    expect(res.status).toBe(412);
  });

  it("EjectMedia takes no body, {} or null, and refuses parameters", async () => {
    expect(messageOf((await post(EJECT, JSON.stringify({ Image: "x" }))).body).MessageId).toBe("Base.1.18.1.ActionParameterUnknown");
    expect((await post(EJECT, "[1]")).status).toBe(400);
    expect((await post(EJECT, "{")).status).toBe(400);
  });

  it("accepts what sushy and redfishtool send", () => {
    expect(parseInsertMedia({ Image: "http://10.0.0.1:8080/boot.iso" })).toEqual({ image: "http://10.0.0.1:8080/boot.iso", protocol: "HTTP" });
    expect(
      parseInsertMedia({
        Image: "https://images.example.org/rhcos-4.16-x86_64-live.x86_64.iso?token=a%20b&x=1",
        Inserted: true,
        WriteProtected: true,
        TransferProtocolType: "HTTPS",
        TransferMethod: "Stream",
        UserName: "user",
        Password: "pa ss",
        "@Redfish.OperationApplyTime": "Immediate",
      }),
    ).toEqual({
      image: "https://images.example.org/rhcos-4.16-x86_64-live.x86_64.iso?token=a%20b&x=1",
      protocol: "HTTPS",
      credentials: { username: "user", password: "pa ss" },
    });
    expect(checkImage("http://[fd00::1]:8080/a.iso")).toBe("HTTP");
  });
});

describe("the VirtualMedia resources", () => {
  it("serve the collection and the Cd drive under the System and its Manager, linked from both", async () => {
    const svc = testService();
    const get = async (path: string) => {
      const res = await svc.request(path, { headers: { Authorization: AUTH.alice } });
      expect(res.status, path).toBe(200);
      return (await res.json()) as any;
    };
    const system = await get("/redfish/v1/Systems/tenant1-vms.vm-b");
    expect(system.VirtualMedia).toEqual({ "@odata.id": "/redfish/v1/Systems/tenant1-vms.vm-b/VirtualMedia" });
    const manager = await get("/redfish/v1/Managers/tenant1-vms.vm-b");
    expect(manager.VirtualMedia).toEqual({ "@odata.id": "/redfish/v1/Managers/tenant1-vms.vm-b/VirtualMedia" });
    for (const base of ["/redfish/v1/Systems/tenant1-vms.vm-b", "/redfish/v1/Managers/tenant1-vms.vm-b"]) {
      const coll = await get(`${base}/VirtualMedia`);
      expect(coll).toMatchObject({ "@odata.type": "#VirtualMediaCollection.VirtualMediaCollection", Members: [{ "@odata.id": `${base}/VirtualMedia/Cd` }] });
      const cd = await get(`${base}/VirtualMedia/Cd`);
      expect(cd).toMatchObject({
        "@odata.id": `${base}/VirtualMedia/Cd`,
        "@odata.type": "#VirtualMedia.v1_6_0.VirtualMedia",
        Id: "Cd",
        MediaTypes: ["CD", "DVD"],
        Image: null,
        Inserted: false,
        WriteProtected: true,
        ConnectedVia: "NotConnected",
        Actions: {
          "#VirtualMedia.InsertMedia": { target: `${base}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia` },
          "#VirtualMedia.EjectMedia": { target: `${base}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia` },
        },
      });
    }
    const metadata = await (await svc.request("/redfish/v1/$metadata")).text();
    expect(metadata).toContain("VirtualMedia_v1.xml");
    expect(metadata).toContain("VirtualMediaCollection_v1.xml");
  });

  it("are 404 for other tenants and 405 with Allow for wrong methods", async () => {
    const svc = testService();
    expect((await svc.request("/redfish/v1/Systems/tenant1-vms.vm-b/VirtualMedia/Cd", { headers: { Authorization: AUTH.bob } })).status).toBe(404);
    const patch = await svc.request("/redfish/v1/Systems/tenant1-vms.vm-b/VirtualMedia/Cd", { method: "PATCH", headers: { Authorization: AUTH.alice, "Content-Type": "application/json" }, body: "{}" });
    expect(patch.status).toBe(405);
    expect(patch.headers.get("Allow")).toBe("GET, HEAD");
    expect((await svc.request("/redfish/v1/Systems/tenant1-vms.vm-b/VirtualMedia/Floppy", { headers: { Authorization: AUTH.alice } })).status).toBe(404);
  });
});

// ---- model, plan, settings ----

function vmWithDrive(dvName: string, extra: (spec: any) => void = () => undefined): KubeObject {
  return revise(vm("ns", "vm-1"), copy => {
    const spec = (copy.spec as any).template.spec;
    spec.domain.devices.disks.push({ name: CD_VOLUME, cdrom: { bus: "sata" }, bootOrder: 2 });
    spec.volumes.push({ name: CD_VOLUME, dataVolume: { name: dvName } });
    extra(spec);
  });
}

function ourDataVolume(owner: KubeObject, name: string, status: Record<string, unknown> = { phase: "Succeeded", progress: "100.0%" }): KubeObject {
  const dv = mediaDataVolume(
    { namespace: "ns", name: owner.metadata.name!, uid: owner.metadata.uid! },
    name,
    { image: `http://h/${name}.iso`, protocol: "HTTP" },
    mediaSettings(testConfig().datavolume),
  );
  return { ...dv, metadata: { ...dv.metadata, uid: `uid-${name}`, resourceVersion: "1" }, status };
}

describe("the drive model", () => {
  it("names DataVolumes <vm>-cd-<suffix> and reads the VM back from the name", () => {
    expect(mediaDataVolumeName("vm-1", "abc123")).toBe("vm-1-cd-abc123");
    expect(vmNameOfMediaDataVolume("vm-1-cd-abc123")).toBe("vm-1");
    expect(vmNameOfMediaDataVolume("a-cd-xyz123-cd-abc123")).toBe("a-cd-xyz123");
    expect(vmNameOfMediaDataVolume("rootdisk")).toBeUndefined();
    expect(() => mediaDataVolumeName("vm-1", "../x")).toThrow();
  });

  it("uses the same managed-by label as the datavolume-policy exemption", () => {
    expect(MANAGED_BY_LABEL).toEqual(MODULE_MANAGED_LABEL);
  });

  it("tells our drive from a foreign one", () => {
    expect(driveSlot(vm("ns", "vm-1"))).toEqual({ kind: "empty" });
    expect(driveSlot(vmWithDrive("vm-1-cd-abc123"))).toEqual({ kind: "attached", dataVolumeName: "vm-1-cd-abc123" });
    expect(driveSlot(vmWithDrive("someone-elses-dv")).kind).toBe("foreign");
    expect(driveSlot(vmWithDrive("other-vm-cd-abc123")).kind).toBe("foreign");
    const diskNotCdrom = vmWithDrive("vm-1-cd-abc123", spec => (spec.domain.devices.disks.at(-1).cdrom = undefined));
    expect(driveSlot(diskNotCdrom).kind).toBe("foreign");
    const emptyTray = vmWithDrive("vm-1-cd-abc123", spec => spec.volumes.pop());
    expect(driveSlot(emptyTray)).toEqual({ kind: "empty" });
  });

  it("is Inserted only when the attached DataVolume of ours has Succeeded", () => {
    const owner = vmWithDrive("vm-1-cd-abc123");
    const rec = (dvs: KubeObject[]) => ({ vm: owner, dataVolumes: dvs });
    expect(mediaView(rec([]))).toEqual({ inserted: false });
    const importing = ourDataVolume(owner, "vm-1-cd-abc123", { phase: "ImportInProgress", progress: "42.00%" });
    expect(mediaView(rec([importing]))).toMatchObject({ image: "http://h/vm-1-cd-abc123.iso", inserted: false, import: "importing" });
    expect(mediaView(rec([ourDataVolume(owner, "vm-1-cd-abc123")]))).toMatchObject({ inserted: true, import: "ready" });
    const failed = ourDataVolume(owner, "vm-1-cd-abc123", { phase: "Failed" });
    expect(mediaView(rec([failed]))).toMatchObject({ inserted: false, import: "failed" });
    // A DataVolume of the right name that is not ours (no labels / another owner) is not media.
    const foreign = { ...dataVolume("ns", "vm-1-cd-abc123", owner) };
    expect(mediaView(rec([foreign]))).toEqual({ inserted: false });
    const otherOwner = ourDataVolume(vm("ns", "vm-1"), "vm-1-cd-abc123");
    expect(mediaView(rec([otherOwner]))).toEqual({ inserted: false });
  });

  it("counts an importer that exited with an error as failed (KubeVirt will not start from it)", () => {
    const dv = ourDataVolume(vm("ns", "vm-1"), "vm-1-cd-abc123", {
      phase: "ImportInProgress",
      conditions: [{ type: "Running", status: "False", reason: "Error", message: "Unable to connect to http data source" }],
    });
    expect(importPhase(dv)).toBe("failed");
  });

  it("finds our DataVolumes the drive does not use (the controller's cleanup set)", () => {
    const owner = vmWithDrive("vm-1-cd-inuse1");
    const dvs = [ourDataVolume(owner, "vm-1-cd-inuse1"), ourDataVolume(owner, "vm-1-cd-stale1"), dataVolume("ns", "vm-1-root", owner)];
    expect(unreferencedMediaDataVolumes(owner, dvs)).toEqual(["vm-1-cd-stale1"]);
    const deleting = { ...dvs[1], metadata: { ...dvs[1].metadata, deletionTimestamp: "2025-01-01T00:00:00Z" } };
    expect(unreferencedMediaDataVolumes(owner, [dvs[0], deleting])).toEqual([]);
  });
});

describe("insert and eject planning", () => {
  const settings = mediaSettings(testConfig({ datavolume: { storageSize: "10Gi", sizeMarginPercent: 10, storageClassName: "fast", certConfigMap: "corp-ca" } }).datavolume);
  const owner = { namespace: "ns", name: "vm-1", uid: "uid-vm-1" };

  it("builds the DataVolume: http source as data, owned by the VM, labelled, sized, bound at once", () => {
    const dv = mediaDataVolume(owner, "vm-1-cd-abc123", { image: "https://h/x.iso", protocol: "HTTPS", credentials: { username: "u", password: "p" } }, settings);
    expect(dv).toEqual({
      apiVersion: "cdi.kubevirt.io/v1beta1",
      kind: "DataVolume",
      metadata: {
        name: "vm-1-cd-abc123",
        namespace: "ns",
        labels: { "app.kubernetes.io/managed-by": "kubevirt-infra", "kubevirt-infra.io/media-for": "vm-1", "kubevirt-infra.io/media-drive": "cd" },
        annotations: { "cdi.kubevirt.io/storage.bind.immediate.requested": "true", "cdi.kubevirt.io/storage.deleteAfterCompletion": "false" },
        ownerReferences: [{ apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", name: "vm-1", uid: "uid-vm-1" }],
      },
      spec: {
        source: { http: { url: "https://h/x.iso", secretRef: "vm-1-cd-abc123-auth", certConfigMap: "corp-ca" } },
        storage: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "11264Mi" } }, storageClassName: "fast" },
      },
    });
    // The CA bundle is for https only; no credentials → no secretRef.
    const plain = mediaDataVolume(owner, "vm-1-cd-abc123", { image: "http://h/x.iso", protocol: "HTTP" }, settings);
    expect((plain.spec as any).source.http).toEqual({ url: "http://h/x.iso" });
  });

  it("puts credentials into a Secret with CDI's keys, owned by the DataVolume", () => {
    const secret = credentialsSecret(owner, { name: "vm-1-cd-abc123", uid: "uid-dv" }, { username: "user", password: "pässword" });
    expect(secret.metadata.name).toBe("vm-1-cd-abc123-auth");
    expect(secret.metadata.ownerReferences).toEqual([{ apiVersion: "cdi.kubevirt.io/v1beta1", kind: "DataVolume", name: "vm-1-cd-abc123", uid: "uid-dv" }]);
    expect(Buffer.from((secret as any).data.accessKeyId, "base64").toString()).toBe("user");
    expect(Buffer.from((secret as any).data.secretKey, "base64").toString()).toBe("pässword");
  });

  const apply = (obj: KubeObject, ops: unknown) => applyJsonPatch(obj as unknown as Json, ops) as unknown as KubeObject;

  it("attaches a new SATA CD-ROM at the end, guarded by the resourceVersion", () => {
    const before = vm("ns", "vm-1");
    const ops = attachOps(before, "vm-1-cd-abc123");
    expect(ops[0]).toEqual({ op: "test", path: "/metadata/resourceVersion", value: before.metadata.resourceVersion });
    const after = (apply(before, ops).spec as any).template.spec;
    expect(after.domain.devices.disks).toEqual([
      { name: "rootdisk", disk: { bus: "virtio" }, bootOrder: 1 },
      { name: CD_VOLUME, cdrom: { bus: "sata", readonly: true } },
    ]);
    expect(after.volumes.at(-1)).toEqual({ name: CD_VOLUME, dataVolume: { name: "vm-1-cd-abc123" } });
    expect(() => applyJsonPatch({ ...(before as any), metadata: { ...before.metadata, resourceVersion: "999999" } }, ops)).toThrow();
  });

  it("replaces by switching the volume only; the disk keeps its bootOrder", () => {
    const before = vmWithDrive("vm-1-cd-old111");
    const after = (apply(before, attachOps(before, "vm-1-cd-new222")).spec as any).template.spec;
    expect(after.domain.devices.disks.filter((d: any) => d.name === CD_VOLUME)).toEqual([{ name: CD_VOLUME, cdrom: { bus: "sata" }, bootOrder: 2 }]);
    expect(after.volumes.filter((v: any) => v.name === CD_VOLUME)).toEqual([{ name: CD_VOLUME, dataVolume: { name: "vm-1-cd-new222" } }]);
  });

  it("fills an empty CD-ROM tray of the drive's name, keeping the disk as it is", () => {
    const tray = vmWithDrive("vm-1-cd-abc123", spec => spec.volumes.pop());
    const after = (apply(tray, attachOps(tray, "vm-1-cd-new222")).spec as any).template.spec;
    expect(after.domain.devices.disks.filter((d: any) => d.name === CD_VOLUME)).toEqual([{ name: CD_VOLUME, cdrom: { bus: "sata" }, bootOrder: 2 }]);
    expect(after.volumes.filter((v: any) => v.name === CD_VOLUME)).toEqual([{ name: CD_VOLUME, dataVolume: { name: "vm-1-cd-new222" } }]);
  });

  it("attaches to a template without disks or volumes", () => {
    const bare = revise(vm("ns", "vm-1"), copy => {
      delete (copy.spec as any).template.spec.volumes;
      delete (copy.spec as any).template.spec.domain.devices;
    });
    const after = (apply(bare, attachOps(bare, "vm-1-cd-abc123")).spec as any).template.spec;
    expect(after.domain.devices.disks).toEqual([{ name: CD_VOLUME, cdrom: { bus: "sata", readonly: true } }]);
    expect(after.volumes).toEqual([{ name: CD_VOLUME, dataVolume: { name: "vm-1-cd-abc123" } }]);
  });

  it("detaches only the drive and leaves every other disk and volume as it was", () => {
    const before = vmWithDrive("vm-1-cd-abc123", spec => {
      spec.domain.devices.disks.push({ name: "data", disk: {} });
      spec.volumes.push({ name: "data", dataVolume: { name: "vm-1-data" } });
    });
    const after = (apply(before, detachOps(before)).spec as any).template.spec;
    expect(after.domain.devices.disks.map((d: any) => d.name)).toEqual(["rootdisk", "data"]);
    expect(after.volumes).toEqual([
      { name: "rootdisk", containerDisk: { image: "quay.io/containerdisks/fedora:40" } },
      { name: "data", dataVolume: { name: "vm-1-data" } },
    ]);
    expect(detachOps(vm("ns", "vm-1"))).toEqual([]);
  });

  it("sizes the volume from datavolume.storageSize plus the margin, rounded up to MiB", () => {
    expect(storageRequest("10Gi", 10)).toBe("11264Mi");
    expect(storageRequest("1Gi", 0)).toBe("1024Mi");
    expect(storageRequest("500M", 10)).toBe("525Mi");
    expect(mediaSettings(testConfig().datavolume)).toEqual({ storageRequest: "11264Mi", accessModes: ["ReadWriteOnce"], importTimeoutSeconds: 3600 });
  });
});

// Reliability: the watcher process is killed (SIGKILL, no graceful shutdown) in the middle of an InsertMedia
// or of a power sequence, and started again. The state must be consistent afterwards: media attached or
// cleanly absent, never an orphaned DataVolume, and an accepted power-on still honoured.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { POWER_ON_REQUESTED_ANNOTATION } from "../../redfish/power/vm-model";
import type { KubeObject } from "../../sandbox/apiserver/types";
import {
  attachedDataVolume,
  DV_KEY,
  httpSourceUrl,
  mediaDataVolumes,
  MEDIA_FOR_LABEL,
  RELIABILITY_NAMESPACE,
  RELIABILITY_USER,
  startReliabilityCluster,
  vmObject,
  VMI_KEY,
  VM_KEY,
  type RedfishClient,
  type SuiteCluster,
} from "./support";

const NS = RELIABILITY_NAMESPACE;
const OPS = RELIABILITY_USER;

let c: SuiteCluster;
let rf: RedfishClient;

beforeAll(async () => {
  // /slow/ images take 64 chunks x 100 ms: an import is still running when the watcher dies.
  ({ c, rf } = await startReliabilityCluster({ sizeBytes: 4 * 1024 * 1024, slowChunkIntervalMs: 100 }));
});
afterAll(async () => {
  rf?.close();
  await c?.stop();
});

const systemUri = (name: string) => `/redfish/v1/Systems/${NS}.${name}`;
const cdUri = (name: string) => `${systemUri(name)}/VirtualMedia/Cd`;
const insert = (name: string, image: string) => rf.request("POST", `${cdUri(name)}/Actions/VirtualMedia.InsertMedia`, { user: OPS, body: { Image: image } });
const cd = async (name: string) => (await rf.request("GET", cdUri(name), { user: OPS })).body as { Inserted?: boolean; Image?: string | null };
const powerState = async (name: string) => (await rf.request("GET", systemUri(name), { user: OPS })).body?.PowerState as string | undefined;

async function createVm(name: string, o: Parameters<typeof vmObject>[2] = {}): Promise<void> {
  c.api.store.create(VM_KEY, vmObject(NS, name, o));
  await expect.poll(async () => (await rf.request("GET", systemUri(name), { user: OPS })).status, { message: `${name} in Redfish` }).toBe(200);
}

/** Media state is consistent: every DataVolume of ours for the VM is the one its drive uses (at most one). */
function mediaConsistent(name: string): { dataVolumes: string[]; attached: string | undefined; consistent: boolean } {
  const dataVolumes = mediaDataVolumes(c, NS, name).filter(dv => !dv.metadata.deletionTimestamp).map(dv => dv.metadata.name!);
  const attached = attachedDataVolume(c.api.store.get(VM_KEY, NS, name));
  const consistent = dataVolumes.length <= 1 && (attached === undefined ? dataVolumes.length === 0 : dataVolumes[0] === attached);
  return { dataVolumes, attached, consistent };
}

/** Kills the watcher synchronously when the store commits the first write matching `when` (nothing after it runs). */
function killWatcherOn(key: string, when: (ev: { type: string; object: KubeObject }) => boolean): { killed: Promise<void> } {
  let fire!: () => void;
  const killed = new Promise<void>(resolve => (fire = resolve));
  const unwatch = c.api.store.watch(key, NS, ev => {
    if (!when(ev)) return;
    unwatch();
    c.watcher!.child.kill("SIGKILL");
    fire();
  });
  return { killed };
}

async function restartWatcherAfterCrash(): Promise<void> {
  await c.stopModule(["watcher"]);
  await c.startModule(["watcher"]);
  await c.waitForRedfish();
}

describe("watcher killed during InsertMedia", () => {
  it("during the import: the import completes, the media is attached, one DataVolume, the Task completes", async () => {
    await createVm("m-import");
    const image = `${c.isoServer.url}/slow/m-import.iso`;
    const accepted = await insert("m-import", image);
    expect(accepted.status, accepted.text).toBe(202);
    const taskUri = accepted.body["@odata.id"] as string;
    await expect.poll(() => (mediaDataVolumes(c, NS, "m-import")[0]?.status as { phase?: string } | undefined)?.phase, { message: "the import to run" }).toBe("ImportInProgress");

    await c.crashAndRestartWatcher();

    await expect.poll(async () => (await cd("m-import")).Inserted, { message: "Inserted after the restart", timeout: 60_000, interval: 250 }).toBe(true);
    const state = mediaConsistent("m-import");
    expect(state.consistent, JSON.stringify(state)).toBe(true);
    expect(state.dataVolumes).toHaveLength(1);
    const [dv] = mediaDataVolumes(c, NS, "m-import");
    expect(httpSourceUrl(dv)).toBe(image);
    expect(dv.metadata.ownerReferences?.[0]).toMatchObject({ kind: "VirtualMachine", name: "m-import" });
    expect((await cd("m-import")).Image).toBe(image);
    const task = await rf.request("GET", taskUri, { user: OPS });
    expect(task.status, task.text).toBe(200);
    expect(task.body.TaskState).toBe("Completed");
  });

  it("between creating the DataVolume and attaching it: the orphan is removed, the drive is cleanly empty, a retry converges", async () => {
    await createVm("m-orphan");
    const image = `${c.isoServer.url}/images/m-orphan.iso`;
    const { killed } = killWatcherOn(DV_KEY, ev => ev.type === "ADDED" && ev.object.metadata.labels?.[MEDIA_FOR_LABEL] === "m-orphan");
    const reply = insert("m-orphan", image).catch((e: Error) => e); // the process dies before it can answer
    await killed;
    expect(await reply).toBeInstanceOf(Error);
    expect(mediaConsistent("m-orphan")).toMatchObject({ attached: undefined, dataVolumes: [expect.any(String)] }); // the orphan exists

    await restartWatcherAfterCrash();

    await expect.poll(() => mediaConsistent("m-orphan").dataVolumes.length, { message: "the orphaned DataVolume to be deleted" }).toBe(0);
    expect(mediaConsistent("m-orphan")).toMatchObject({ consistent: true, attached: undefined });
    expect(await cd("m-orphan")).toMatchObject({ Inserted: false, Image: null });

    const retry = await insert("m-orphan", image);
    expect(retry.status, retry.text).toBe(202);
    await expect.poll(async () => (await cd("m-orphan")).Inserted, { message: "Inserted after the retry", timeout: 60_000, interval: 250 }).toBe(true);
    expect(mediaConsistent("m-orphan")).toMatchObject({ consistent: true, dataVolumes: [expect.any(String)] });
  });

  it("right after attaching, before the reply: the media stays attached and finishes importing", async () => {
    await createVm("m-attached");
    const image = `${c.isoServer.url}/slow/m-attached.iso`;
    const { killed } = killWatcherOn(VM_KEY, ev => ev.object.metadata.name === "m-attached" && attachedDataVolume(ev.object) !== undefined);
    const reply = insert("m-attached", image).catch((e: Error) => e);
    await killed;
    await reply;
    await restartWatcherAfterCrash();
    await expect.poll(async () => (await cd("m-attached")).Inserted, { message: "Inserted after the restart", timeout: 60_000, interval: 250 }).toBe(true);
    expect(mediaConsistent("m-attached")).toMatchObject({ consistent: true, dataVolumes: [expect.any(String)] });
    expect((await cd("m-attached")).Image).toBe(image);
  });
});

describe("watcher killed during a power sequence", () => {
  it("an On deferred while the VM powers off is still honoured by the restarted watcher", async () => {
    // The guest takes 10 s to honour the ACPI power button: the watcher dies and comes back meanwhile.
    await createVm("p-deferred", { acpiShutdownSeconds: 10 });
    expect((await rf.request("POST", `${systemUri("p-deferred")}/Actions/ComputerSystem.Reset`, { user: OPS, body: { ResetType: "On" } })).status).toBe(204);
    await expect.poll(() => powerState("p-deferred"), { message: "p-deferred On" }).toBe("On");
    const firstVmi = c.api.store.get(VMI_KEY, NS, "p-deferred")!.metadata.uid;

    expect((await rf.request("POST", `${systemUri("p-deferred")}/Actions/ComputerSystem.Reset`, { user: OPS, body: { ResetType: "GracefulShutdown" } })).status).toBe(204);
    // The System reads On until the guest is off (Ironic counts PoweringOff as off): wait for the stop itself.
    await expect.poll(() => c.api.store.get(VMI_KEY, NS, "p-deferred")?.metadata.deletionTimestamp, { message: "p-deferred shutting down" }).toBeDefined();
    expect(await powerState("p-deferred")).toBe("On");
    const deferred = await rf.request("POST", `${systemUri("p-deferred")}/Actions/ComputerSystem.Reset`, { user: OPS, body: { ResetType: "On" } });
    expect(deferred.status, deferred.text).toBe(202);
    expect(c.api.store.get(VM_KEY, NS, "p-deferred")!.metadata.annotations?.[POWER_ON_REQUESTED_ANNOTATION]).toBeDefined();

    await c.crashAndRestartWatcher();
    expect(c.api.store.get(VMI_KEY, NS, "p-deferred")?.metadata.uid).toBe(firstVmi); // still powering off

    await expect
      .poll(
        () => {
          const vmi = c.api.store.get(VMI_KEY, NS, "p-deferred");
          return vmi !== undefined && vmi.metadata.uid !== firstVmi && (vmi.status as { phase?: string } | undefined)?.phase === "Running";
        },
        { message: "a new VMI running after the power-off", timeout: 40_000, interval: 250 },
      )
      .toBe(true);
    await expect.poll(() => powerState("p-deferred"), { message: "p-deferred On again" }).toBe("On");
    await expect.poll(() => c.api.store.get(VM_KEY, NS, "p-deferred")!.metadata.annotations?.[POWER_ON_REQUESTED_ANNOTATION], { message: "the power-on request cleared" }).toBeUndefined();
  });
});

// InsertMedia / EjectMedia against the cluster. Per VM, one change at a time (lock.ts); every VM patch is
// guarded by the resourceVersion it was computed from and recomputed from a fresh read when someone else
// changed the VM meanwhile. Order of writes, so that a crash at any point leaves no broken VM:
//   insert: create DataVolume (+ its Secret) → patch the VM to refer to it → delete the DataVolume it replaced
//   eject:  patch the VM to drop the drive → delete the DataVolume
// A crash leaves at most an unreferenced DataVolume of ours, which the media controller deletes. Nothing waits
// for the whole import: the reply carries a Task derived from the DataVolume. It does wait (outside the lock, at
// most FIRST_RESULT_WAIT_MS) for the import's first result, so that an image that fails at once (404, 403, DNS,
// connection refused) fails the InsertMedia itself: Ironic never follows the Task.
import { randomBytes } from "node:crypto";
import { Log } from "../platform";
import type { ClusterCache, KubeObject, VmRecord } from "../cache/types";
import { CACHE_WAIT_MS, waitForCache } from "../cache/wait";
import { BASE_REGISTRY, MessageId, RedfishError, notFound } from "../errors";
import { KubeApiError, clusterDriver, type KubeVirtDriver, type NewObject } from "../kubevirt/driver";
import { isWriteConflict, redfishFailure } from "../kubevirt/failures";
import { NeedsFreshRead, retryOnConflict } from "../kubevirt/retry";
import { withVmLock } from "./lock";
import { conditionOf, statusOf } from "../kubevirt/objects";
import { IMPORT_FAILED_REASON, percentOf } from "../tasks/derive";
import { MAX_VM_NAME_LENGTH, driveSlot, imageUrlOf, importPhase, isMediaDataVolumeOf, mediaDataVolumeName } from "./model";
import { credentialsSecret, mediaDataVolume, type OwnerVm } from "./plan";
import type { InsertRequest } from "./request";
import type { MediaSettings } from "./settings";

export interface MediaServiceDeps {
  cache: ClusterCache;
  /** Where the writes go (default: the cluster, through the gateway). */
  driver?: KubeVirtDriver;
  settings: () => MediaSettings | undefined;
  /** How long a request waits for the watch cache to show its own writes (read-your-writes for the next request). */
  cacheWaitMs?: number;
  /** How long InsertMedia waits at most for the import's first result (default FIRST_RESULT_WAIT_MS). */
  firstResultWaitMs?: number;
}

export type InsertOutcome =
  /** The image is already imported and attached: nothing to do (204). */
  | { kind: "unchanged" }
  /** The same image is still importing: no write, the existing Task (202). */
  | { kind: "importing"; dataVolume: Readonly<KubeObject> }
  /** A new import started (202). */
  | { kind: "started"; dataVolume: Readonly<KubeObject> };

const MAX_ATTEMPTS = 5;
/**
 * InsertMedia's wait for the first result of an import: well inside Ironic's 60 s read timeout, long enough for
 * CDI to bind the volume and start the importer pod on a healthy cluster. A start that takes longer answers
 * 202 as before, and a failure after that blocks the power-on instead (409 naming the image, power/index.ts).
 */
export const FIRST_RESULT_WAIT_MS = 25_000;
/**
 * An importer that has been running this long without failing got past what fails at once (the first response
 * or a connection error); some servers send no Content-Length, so no progress ever shows.
 */
const IMPORTER_SETTLED_MS = 3000;

/** What an import did first, as InsertMedia waits for it. */
type FirstResult = "failed" | "transferring" | "settled" | "gone" | "no-result-yet";

function vmKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function randomSuffix(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return [...randomBytes(6)].map(b => alphabet[b % alphabet.length]).join("");
}

function foreignDrive(namespace: string, name: string, reason: string): RedfishError {
  return new RedfishError(
    409,
    `${BASE_REGISTRY}.ResourceInUse`,
    `VirtualMachine ${namespace}/${name} cannot take virtual media: ${reason}. The module does not touch volumes it did not create.`,
  );
}

/** The InsertMedia error of an image whose import failed at once: what the Task says, as a tenant may read it. */
function importFailedAtOnce(namespace: string, name: string, image: string): RedfishError {
  return new RedfishError(400, MessageId.GeneralError, `VirtualMedia.InsertMedia on ${namespace}.${name}: the image ${image} could not be imported. ${IMPORT_FAILED_REASON}`, [], {
    resolution: "Nothing was inserted. Check that the image URL is reachable from the cluster (CDI's importer pods), then insert the media again.",
    relatedProperties: ["#/Image"],
  });
}

function ownerOf(vm: KubeObject): OwnerVm {
  const { namespace, name, uid } = vm.metadata;
  if (!namespace || !name || !uid) throw new Error("VirtualMachine without namespace, name or uid");
  return { namespace, name, uid };
}

export class MediaService {
  private readonly cacheWaitMs: number;
  private readonly driver: KubeVirtDriver;

  constructor(private readonly deps: MediaServiceDeps) {
    this.cacheWaitMs = deps.cacheWaitMs ?? CACHE_WAIT_MS;
    this.driver = deps.driver ?? clusterDriver;
  }

  /**
   * InsertMedia on the VM of `rec`. Throws RedfishError, also when the new import fails at once: 400 naming the
   * image with the generic reason, and the drive is left empty. (A failure after the reply is kept in the drive:
   * Reset On answers 409 naming the image, and EjectMedia, ForceOff or GracefulShutdown clear it.)
   */
  async insert(rec: VmRecord, request: InsertRequest): Promise<InsertOutcome> {
    const { namespace, name } = rec.vm.metadata as { namespace: string; name: string };
    const outcome = await withVmLock(vmKey(namespace, name), async () => {
      try {
        return await this.insertLocked(namespace, name, request);
      } catch (e) {
        throw redfishFailure(e, { namespace, name }, "the virtual media change");
      }
    });
    if (outcome.kind !== "started") return outcome;
    const first = await this.firstResult(namespace, name, outcome.dataVolume.metadata.name!);
    if (first === "failed") {
      await this.withdrawFailedImport(namespace, name, outcome.dataVolume.metadata.name!);
      throw importFailedAtOnce(namespace, name, request.image);
    }
    const current = this.deps.cache.getVm(namespace, name)?.dataVolumes.find(dv => dv.metadata.name === outcome.dataVolume.metadata.name);
    return current ? { kind: "started", dataVolume: current } : outcome;
  }

  /**
   * An InsertMedia that answers an error leaves the drive empty, as a BMC that cannot mount an image does: Ironic
   * fails the deploy and, the drive reading Inserted false, never ejects it. Only the import this request started
   * is withdrawn (another insert may have replaced it meanwhile). A failure here is logged: the error answer
   * stands, and the next Eject, ForceOff or GracefulShutdown clears a failed drive anyway.
   */
  private async withdrawFailedImport(namespace: string, name: string, dataVolumeName: string): Promise<void> {
    try {
      await withVmLock(vmKey(namespace, name), async () => {
        const vm = this.cachedVm(namespace, name);
        const slot = vm ? driveSlot(vm) : undefined;
        if (slot?.kind === "attached" && slot.dataVolumeName === dataVolumeName) await this.ejectLocked(namespace, name);
      });
    } catch (e) {
      Log.warn({ namespace, name, dataVolume: dataVolumeName, err: e instanceof Error ? e.message : String(e) }, "virtual media: failed import not withdrawn yet");
    }
  }

  /** Waits (from the cache) until the import failed, moves bytes, or its importer has run a while; bounded. */
  private firstResult(namespace: string, name: string, dataVolumeName: string): Promise<FirstResult> {
    const waitMs = this.deps.firstResultWaitMs ?? FIRST_RESULT_WAIT_MS;
    if (waitMs <= 0) return Promise.resolve("no-result-yet");
    return new Promise(resolve => {
      let settledTimer: NodeJS.Timeout | undefined;
      const finish = (result: FirstResult) => {
        clearTimeout(deadline);
        clearTimeout(settledTimer);
        unsubscribe();
        resolve(result);
      };
      const look = () => {
        const dv = this.deps.cache.getVm(namespace, name)?.dataVolumes.find(d => d.metadata.name === dataVolumeName);
        if (!dv || dv.metadata.deletionTimestamp) return finish("gone");
        const phase = importPhase(dv);
        if (phase === "failed") return finish("failed");
        if (phase === "ready" || (percentOf(statusOf(dv).progress) ?? 0) > 0) return finish("transferring");
        if (!settledTimer && conditionOf(dv, "Running")?.status === "True") {
          settledTimer = setTimeout(() => finish("settled"), Math.min(IMPORTER_SETTLED_MS, waitMs));
        }
      };
      const deadline = setTimeout(() => finish("no-result-yet"), waitMs);
      const unsubscribe = this.deps.cache.onChange(ev => {
        if (ev.namespace === namespace) look();
      });
      look();
    });
  }

  /** EjectMedia on the VM of `rec` (an empty drive is success). Throws RedfishError. */
  eject(rec: VmRecord): Promise<void> {
    const { namespace, name } = rec.vm.metadata as { namespace: string; name: string };
    return withVmLock(vmKey(namespace, name), async () => {
      try {
        await this.ejectLocked(namespace, name);
      } catch (e) {
        throw redfishFailure(e, { namespace, name }, "the virtual media change");
      }
    });
  }

  private async freshVm(namespace: string, name: string): Promise<KubeObject> {
    const vm = await this.driver.readVm(namespace, name);
    if (!vm) throw notFound("ComputerSystem", `${namespace}.${name}`);
    return vm;
  }

  private cachedVm(namespace: string, name: string): KubeObject | undefined {
    return this.deps.cache.getVm(namespace, name)?.vm as KubeObject | undefined;
  }

  /** Our DataVolumes of the VM the cache knows, except `keep`: what an insert replaces or an eject removes. */
  private ownedDataVolumes(vm: KubeObject, keep?: string): Readonly<KubeObject>[] {
    const rec = this.deps.cache.getVm(vm.metadata.namespace!, vm.metadata.name!);
    return (rec?.dataVolumes ?? []).filter(dv => isMediaDataVolumeOf(dv, vm) && dv.metadata.name !== keep);
  }

  private async insertLocked(namespace: string, name: string, request: InsertRequest): Promise<InsertOutcome> {
    const settings = this.deps.settings();
    if (!settings) {
      throw new RedfishError(503, MessageId.ServiceTemporarilyUnavailable, "The module configuration is not loaded yet. Retry the request.", ["5"], {
        headers: { "Retry-After": "5" },
      });
    }
    if (name.length > MAX_VM_NAME_LENGTH) throw foreignDrive(namespace, name, `its name is longer than ${MAX_VM_NAME_LENGTH} characters`);

    let created: { dataVolume: KubeObject; uid: string } | undefined;
    // The first attempt plans from the cache (current: the lock holder waited for its own writes to show);
    // the patch's resourceVersion test catches anything newer, and a decision to write nothing is confirmed
    // by a fresh read, so a lagging cache can cost a retry but never a wrong answer.
    let step: { done: InsertOutcome } | { attachedTo: KubeObject; dataVolume: KubeObject };
    try {
      step = await retryOnConflict<KubeObject, typeof step>({
        initial: this.cachedVm(namespace, name),
        readFresh: () => this.freshVm(namespace, name),
        isConflict: isWriteConflict,
        maxAttempts: MAX_ATTEMPTS,
        attempt: async (current, fresh) => {
          const slot = driveSlot(current);
          if (slot.kind === "foreign") {
            if (!fresh) throw new NeedsFreshRead();
            throw foreignDrive(namespace, name, slot.reason);
          }
          if (created && created.dataVolume.metadata.ownerReferences?.[0]?.uid !== current.metadata.uid) {
            // The VM was deleted and re-created meanwhile: the DataVolume belongs to the old one (and goes with it).
            created = undefined;
          }
          const attached = slot.kind === "attached" ? this.ownedDataVolumes(current).find(dv => dv.metadata.name === slot.dataVolumeName) : undefined;
          if (attached && !attached.metadata.deletionTimestamp && imageUrlOf(attached) === request.image && importPhase(attached) !== "failed") {
            if (!fresh) throw new NeedsFreshRead();
            if (created) await this.deleteQuietly(namespace, created.dataVolume.metadata.name!, "the image is already in the drive");
            // A failed import of the same URL is not kept: inserting it again means "try again".
            return { done: importPhase(attached) === "ready" ? { kind: "unchanged" } : { kind: "importing", dataVolume: attached } };
          }
          created ??= await this.createImport(ownerOf(current), request, settings);
          await this.driver.attachCdrom(current, created.dataVolume.metadata.name!);
          return { attachedTo: current, dataVolume: created.dataVolume };
        },
      });
    } catch (e) {
      if (created) await this.deleteQuietly(namespace, created.dataVolume.metadata.name!, "insert failed");
      throw e;
    }
    if ("done" in step) return step.done;

    const newName = step.dataVolume.metadata.name!;
    const replaced = this.ownedDataVolumes(step.attachedTo, newName);
    for (const dv of replaced) await this.deleteQuietly(namespace, dv.metadata.name!, "replaced by a new insert");
    await waitForCache(
      this.deps.cache,
      namespace,
      name,
      rec => {
        if (!rec) return false;
        const slot = driveSlot(rec.vm);
        const names = new Set(rec.dataVolumes.map(dv => dv.metadata.name));
        return slot.kind === "attached" && slot.dataVolumeName === newName && names.has(newName) && !replaced.some(dv => names.has(dv.metadata.name));
      },
      this.cacheWaitMs,
    );
    const fromCache = this.deps.cache.getVm(namespace, name)?.dataVolumes.find(dv => dv.metadata.name === newName);
    Log.info({ namespace, name, dataVolume: newName, replaced: replaced.map(dv => dv.metadata.name) }, "virtual media inserted; import started");
    return { kind: "started", dataVolume: fromCache ?? step.dataVolume };
  }

  /** Creates the DataVolume (a fresh name; another on a name clash) and the credentials Secret it owns. */
  private async createImport(vm: OwnerVm, request: InsertRequest, settings: MediaSettings): Promise<{ dataVolume: KubeObject; uid: string }> {
    for (let attempt = 1; ; attempt++) {
      const dataVolume = mediaDataVolume(vm, mediaDataVolumeName(vm.name, randomSuffix()), request, settings);
      let uid: string;
      try {
        uid = (await this.driver.createDataVolume(dataVolume as NewObject)).metadata.uid;
      } catch (e) {
        if (e instanceof KubeApiError && e.status === 409 && attempt < MAX_ATTEMPTS) continue;
        throw e;
      }
      const withUid: KubeObject = { ...dataVolume, metadata: { ...dataVolume.metadata, uid } };
      if (request.credentials) {
        try {
          const secret = credentialsSecret(vm, { name: dataVolume.metadata.name!, uid }, request.credentials);
          await this.driver.createSecret(secret as NewObject);
        } catch (e) {
          await this.deleteQuietly(vm.namespace, dataVolume.metadata.name!, "its credentials Secret could not be created");
          throw e;
        }
      }
      return { dataVolume: withUid, uid };
    }
  }

  private async ejectLocked(namespace: string, name: string): Promise<void> {
    // As for insert: plan from the cache, confirm "nothing to detach" with a fresh read.
    const { vm, detached } = await retryOnConflict({
      initial: this.cachedVm(namespace, name),
      readFresh: () => this.freshVm(namespace, name),
      isConflict: isWriteConflict,
      maxAttempts: MAX_ATTEMPTS,
      attempt: async (current, fresh) => {
        // Only our drive is ever removed; a foreign disk of the same name is not virtual media.
        if (driveSlot(current).kind !== "attached") {
          if (!fresh) throw new NeedsFreshRead();
          return { vm: current, detached: false };
        }
        await this.driver.detachCdrom(current);
        return { vm: current, detached: true };
      },
    });
    const ours = this.ownedDataVolumes(vm);
    for (const dv of ours) await this.deleteQuietly(namespace, dv.metadata.name!, "ejected");
    await waitForCache(
      this.deps.cache,
      namespace,
      name,
      rec => !rec || (driveSlot(rec.vm).kind !== "attached" && !rec.dataVolumes.some(dv => ours.some(o => o.metadata.name === dv.metadata.name))),
      this.cacheWaitMs,
    );
    if (detached || ours.length > 0) {
      Log.info({ namespace, name, dataVolumes: ours.map(dv => dv.metadata.name) }, "virtual media ejected");
    }
  }

  /** Deletes one of our DataVolumes; a failure is logged, the media controller retries unreferenced ones. */
  private async deleteQuietly(namespace: string, name: string, why: string): Promise<void> {
    try {
      await this.driver.deleteDataVolume(namespace, name);
    } catch (e) {
      Log.warn({ namespace, dataVolume: name, why, err: e instanceof Error ? e.message : String(e) }, "virtual media: DataVolume not deleted yet");
    }
  }
}

// A VM record read from the API server instead of the cache: only for re-planning after a write planned from a
// cache entry conflicted (the entry was older than the VM), never for ordinary reads.
import type { VmRecord } from "../cache/types";
import { notFound } from "../errors";
import type { KubeVirtDriver } from "./driver";
import { isWriteConflict } from "./failures";
import { retryOnConflict } from "./retry";

/** The VM and its VMI as stored now, with the cached DataVolumes; a VM that is gone is the system's 404. */
export async function readFreshRecord(driver: KubeVirtDriver, rec: VmRecord): Promise<VmRecord> {
  const namespace = rec.vm.metadata.namespace!;
  const name = rec.vm.metadata.name!;
  const vm = await driver.readVm(namespace, name);
  if (!vm) throw notFound("ComputerSystem", `${namespace}.${name}`);
  const vmi = await driver.readVmi(namespace, name);
  return { vm, ...(vmi ? { vmi } : {}), dataVolumes: rec.dataVolumes };
}

/**
 * Runs `attempt` on the record (from the cache); when its write conflicts (the entry was older than the VM),
 * runs it once more on a fresh read. The power and boot writes go through here.
 */
export function withFreshRecordOnConflict<T>(driver: KubeVirtDriver, rec: VmRecord, attempt: (rec: VmRecord) => Promise<T>): Promise<T> {
  return retryOnConflict({
    initial: rec,
    readFresh: () => readFreshRecord(driver, rec),
    isConflict: isWriteConflict,
    maxAttempts: 2,
    attempt,
  });
}

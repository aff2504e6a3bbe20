// A VM record read from the API server instead of the cache: only for the retry after a patch built from a
// cache entry failed its `test` ops (the entry was older than the VM), never for ordinary reads.
import { readVirtualMachine, readVirtualMachineInstance } from "../../capabilities/common/gateway";
import type { KubeObject, VmRecord } from "../cache/types";

export async function freshRecord(rec: VmRecord): Promise<VmRecord | undefined> {
  const namespace = rec.vm.metadata.namespace!;
  const name = rec.vm.metadata.name!;
  const vm = (await readVirtualMachine(namespace, name)) as KubeObject | undefined;
  if (!vm) return undefined;
  const vmi = (await readVirtualMachineInstance(namespace, name)) as KubeObject | undefined;
  return { vm, ...(vmi ? { vmi } : {}), dataVolumes: rec.dataVolumes };
}

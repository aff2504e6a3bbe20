// How KubeVirt looks at the DataVolumes a VM or VMI uses (pkg/storage/types: HasDataVolumeErrors,
// HasDataVolumeProvisioning), and when they allow the VMI to be created and to leave Pending.
import type { KubeObject, ObjectStore } from "../../apiserver/types";
import { DV, conditionsOf, findCondition, isRecord, serves } from "../common";
import { claimReferences, type VmiSpec } from "./model";

export interface VolumeState {
  /** First DataVolume error in KubeVirt's words (VM printableStatus DataVolumeError). */
  error?: string;
  /** A DataVolume is being populated (VM printableStatus Provisioning). */
  provisioning: boolean;
  /** A DataVolume waits for its first consumer (VM printableStatus WaitingForVolumeBinding when set to start). */
  waitingForConsumer: boolean;
  /** volumes[].dataVolume names with no DataVolume. */
  missing: string[];
  /**
   * virt-controller may create the VMI: every DataVolume is Succeeded, PendingPopulation, or waiting for its first
   * consumer (the VMI is that consumer). Hotpluggable volumes never hold a start back (they attach later).
   */
  readyForVmi: boolean;
  /** The launcher may start: every (non-hotpluggable) DataVolume is Succeeded. */
  populated: boolean;
}

function dvPhase(dv: KubeObject): string {
  return isRecord(dv.status) && typeof dv.status.phase === "string" ? dv.status.phase : "";
}

export function dataVolumeError(dv: KubeObject): string | undefined {
  const name = dv.metadata.name;
  if (dvPhase(dv) === "Failed") return `DataVolume ${name} is in Failed phase`;
  const running = findCondition(conditionsOf(dv), "Running");
  if (running?.status === "False" && running.reason === "Error")
    return `DataVolume ${name} importer has stopped running due to an error: ${running.message ?? ""}`;
  return undefined;
}

export function volumeState(store: ObjectStore, namespace: string, spec: VmiSpec): VolumeState {
  const state: VolumeState = { provisioning: false, waitingForConsumer: false, missing: [], readyForVmi: true, populated: true };
  const dvServed = serves(store, DV);
  for (const ref of claimReferences(spec)) {
    const dv = dvServed ? store.get(DV, namespace, ref.claim) : undefined;
    if (!dv) {
      if (ref.isDataVolume) {
        state.missing.push(ref.claim);
        if (!ref.hotpluggable) state.readyForVmi = state.populated = false;
      }
      continue;
    }
    const phase = dvPhase(dv);
    const error = dataVolumeError(dv);
    const bound = findCondition(conditionsOf(dv), "Bound")?.status === "True";
    if (error) state.error ??= error;
    if (phase === "WaitForFirstConsumer" && !bound) state.waitingForConsumer = true;
    else if (phase !== "Succeeded" && phase !== "PendingPopulation") state.provisioning = true;
    if (ref.hotpluggable) continue;
    if (phase !== "Succeeded") state.populated = false;
    if (error || !["Succeeded", "PendingPopulation", "WaitForFirstConsumer"].includes(phase)) state.readyForVmi = false;
  }
  return state;
}

// The read-only view of the cluster that Redfish request handlers use. Built from Pepr Watch callbacks
// (capabilities/redfish.ts); handlers never call the Kubernetes API for reads.

import type { KubeObject } from "../../capabilities/common/kube-types";

/** Any Kubernetes object as received from a watch (VirtualMachine, VirtualMachineInstance, DataVolume). */
export type { KubeObject };

/**
 * One VirtualMachine with what belongs to it. Objects are frozen (deeply) when stored: handlers must
 * treat them as read-only (copy before modifying, e.g. to build a patch).
 */
export interface VmRecord {
  readonly vm: Readonly<KubeObject>;
  /** The VM's VirtualMachineInstance (same namespace and name), when one exists. */
  readonly vmi?: Readonly<KubeObject>;
  /** DataVolumes the VM references (dataVolumeTemplates, volumes) or owns (ownerReferences). */
  readonly dataVolumes: readonly Readonly<KubeObject>[];
}

export type CachedKind = "VirtualMachine" | "VirtualMachineInstance" | "DataVolume";

export interface CacheChangeEvent {
  kind: CachedKind;
  namespace: string;
  name: string;
}

export interface ClusterCache {
  getVm(namespace: string, name: string): VmRecord | undefined;
  /** VMs of one namespace, sorted by name. */
  listVms(namespace: string): VmRecord[];
  /** VMs of one configured chassis (its namespace + optional vmSelector), sorted by name. */
  listVmsInChassis(chassis: string): VmRecord[];
  /** Names of the configured chassis that contain this VM (empty when none, or when the VM is unknown). */
  chassisOf(namespace: string, name: string): readonly string[];
  /** Called after every applied change (synchronously, after the indexes are updated). Returns unsubscribe. */
  onChange(fn: (ev: CacheChangeEvent) => void): () => void;
  /** True once the initial list of every kind has arrived. */
  synced(): boolean;
}

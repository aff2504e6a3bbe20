// VirtualMachine / VirtualMachineInstance shapes for the power and boot tests (unit and sandbox).
import type { KubeObject, VmRecord } from "../../redfish/cache/types";

export interface VmShape {
  namespace?: string;
  name?: string;
  uid?: string;
  runStrategy?: string;
  running?: boolean;
  annotations?: Record<string, string>;
  deletionTimestamp?: string;
  disks?: Record<string, unknown>[];
  interfaces?: Record<string, unknown>[];
  volumes?: Record<string, unknown>[];
  firmware?: Record<string, unknown>;
  terminationGracePeriodSeconds?: number;
  templateAnnotations?: Record<string, string>;
  status?: Record<string, unknown>;
}

export const ROOT_DISK = { name: "rootdisk", disk: { bus: "virtio" } };
export const CDROM = { name: "cdrom", cdrom: { bus: "sata" } };

/** Typed with apiVersion/kind present, so it also fits the sandbox store's object type. */
export type VmObject = KubeObject & { apiVersion: string; kind: string };

export function makeVm(s: VmShape = {}): VmObject {
  const name = s.name ?? "vm1";
  const disks = s.disks ?? [ROOT_DISK];
  const volumes =
    s.volumes ??
    disks.map(d => ({ name: d.name as string, containerDisk: { image: `quay.io/example/${String(d.name)}:latest` } }));
  return {
    apiVersion: "kubevirt.io/v1",
    kind: "VirtualMachine",
    metadata: {
      name,
      namespace: s.namespace ?? "tenant1",
      uid: s.uid ?? `uid-vm-${name}`,
      resourceVersion: "1",
      ...(s.annotations ? { annotations: s.annotations } : {}),
      ...(s.deletionTimestamp ? { deletionTimestamp: s.deletionTimestamp } : {}),
    },
    spec: {
      ...(s.running !== undefined ? { running: s.running } : {}),
      ...(s.runStrategy !== undefined ? { runStrategy: s.runStrategy } : {}),
      template: {
        ...(s.templateAnnotations ? { metadata: { annotations: s.templateAnnotations } } : {}),
        spec: {
          ...(s.terminationGracePeriodSeconds !== undefined ? { terminationGracePeriodSeconds: s.terminationGracePeriodSeconds } : {}),
          domain: {
            ...(s.firmware ? { firmware: s.firmware } : {}),
            resources: { requests: { memory: "128Mi" } },
            devices: { disks, ...(s.interfaces ? { interfaces: s.interfaces } : {}) },
          },
          ...(s.interfaces ? { networks: s.interfaces.map(i => ({ name: i.name, pod: {} })) } : {}),
          volumes,
        },
      },
    },
    ...(s.status ? { status: s.status } : {}),
  };
}

export interface VmiShape {
  uid?: string;
  phase?: string;
  conditions?: { type: string; status: string }[];
  deletionTimestamp?: string;
  /** The VMI spec (defaults to the VM's template spec, as virt-controller copies it). */
  spec?: Record<string, unknown>;
}

export function makeVmi(vm: KubeObject, s: VmiShape = {}): KubeObject {
  const template = (vm.spec as { template?: { spec?: Record<string, unknown> } }).template?.spec ?? {};
  return {
    apiVersion: "kubevirt.io/v1",
    kind: "VirtualMachineInstance",
    metadata: {
      name: vm.metadata.name,
      namespace: vm.metadata.namespace,
      uid: s.uid ?? `uid-vmi-${vm.metadata.name}`,
      ...(s.deletionTimestamp ? { deletionTimestamp: s.deletionTimestamp } : {}),
    },
    spec: structuredClone(s.spec ?? template),
    status: { phase: s.phase ?? "Running", ...(s.conditions ? { conditions: s.conditions } : {}) },
  };
}

export function rec(vm: KubeObject, vmi?: KubeObject): VmRecord {
  return { vm, ...(vmi ? { vmi } : {}), dataVolumes: [] };
}

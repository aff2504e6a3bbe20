// virt-controller's VirtualMachine controller: turns runStrategy (or spec.running) and stateChangeRequests into
// a VMI that is created or deleted, creates DataVolumes from dataVolumeTemplates, holds a start back until the
// VM's DataVolumes are ready, hot-plugs volumes into the running VMI, and writes the VM status. Everything is
// read fresh from the store on each reconcile, so a restart of the simulator picks up any state.
import type { KubeObject, ObjectStore } from "../../apiserver/types";
import { DV, VM, VMI, isRecord, serves, splitKey, statusOf, writeStatus } from "../common";
import { bootOrderCauses } from "./boot";
import {
  ANNOTATION,
  FIRMWARE_UUID_NAMESPACE,
  VMI_FINALIZER,
  changeRequestsOf,
  hasStartRequest,
  hasStopRequestFor,
  isFinal,
  isHotpluggableVolume,
  isOwnedBy,
  parseVmSpec,
  phaseOf,
  restartRelevantHash,
  runStrategyOf,
  uuidV5,
  type RunStrategy,
  type StateChangeRequest,
  type VmSpec,
} from "./model";
import { nextVmStatus, type VmStatusInput } from "./vm-status";
import { volumeState } from "./volumes";

type Failure = { reason: string; message: string };

/** KubeVirt's isTrimFirstChangeRequestNeeded, applied until the first request is one still to act on. */
export function trimChangeRequests(requests: StateChangeRequest[], vmi: KubeObject | undefined): StateChangeRequest[] {
  const remaining = [...requests];
  while (remaining.length > 0) {
    const first = remaining[0];
    const done =
      first.action === "Stop"
        ? !vmi || first.uid === undefined || first.uid !== vmi.metadata.uid
        : !!vmi && !vmi.metadata.deletionTimestamp && !isFinal(phaseOf(vmi));
    if (!done) break;
    remaining.shift();
  }
  return remaining;
}

function asRecord(v: unknown): Record<string, unknown> {
  return isRecord(v) ? v : {};
}

/**
 * The VMI spec virt-controller derives from the template: KubeVirt's defaults that matter to observers (a pod
 * network interface when none is declared, a disk for every volume, the 180 s grace period, a firmware UUID
 * derived from the VM name) applied to a copy, so template changes only reach the next VMI.
 */
export function vmiSpecFromTemplate(vmName: string, templateSpec: unknown): Record<string, unknown> {
  const spec = structuredClone(asRecord(templateSpec));
  const domain = (spec.domain = asRecord(spec.domain));
  const devices = (domain.devices = asRecord(domain.devices));
  if (devices.interfaces === undefined && spec.networks === undefined && devices.autoattachPodInterface !== false) {
    devices.interfaces = [{ name: "default", masquerade: {} }];
    spec.networks = [{ name: "default", pod: {} }];
  }
  const disks = Array.isArray(devices.disks) ? devices.disks : [];
  const volumes = Array.isArray(spec.volumes) ? spec.volumes : [];
  for (const volume of volumes) {
    const name = asRecord(volume).name;
    if (typeof name === "string" && !disks.some(d => asRecord(d).name === name)) disks.push({ name, disk: {} });
  }
  if (disks.length > 0 || devices.disks !== undefined) devices.disks = disks;
  spec.terminationGracePeriodSeconds ??= 180;
  const firmware = (domain.firmware = asRecord(domain.firmware));
  firmware.uuid ??= uuidV5(vmName, FIRMWARE_UUID_NAMESPACE);
  return spec;
}

export class VmController {
  constructor(private readonly store: ObjectStore) {}

  reconcile(key: string): void {
    const { namespace, name } = splitKey(key);
    const vm = this.store.get(VM, namespace, name);
    if (!vm) return; // the API server garbage-collects the VMI through its ownerReference

    if (vm.metadata.deletionTimestamp) {
      const vmi = this.ownedVmi(vm);
      if (vmi && !vmi.metadata.deletionTimestamp) this.store.delete(VMI, namespace, name);
      this.writeVmStatus({ vm, vmi: this.ownedVmi(vm), requests: changeRequestsOf(vm), startPending: false });
      return;
    }

    const parsed = parseVmSpec(vm);
    if (!parsed.ok) {
      const failure = { reason: "FailedCreate", message: `invalid VirtualMachine spec: ${parsed.message}` };
      this.writeVmStatus({ vm, vmi: this.ownedVmi(vm), requests: changeRequestsOf(vm), startPending: false, failure });
      return;
    }
    const run = runStrategyOf(parsed.value);
    if ("error" in run) {
      const failure = { reason: "FailedCreate", message: `Error fetching RunStrategy: ${run.error}` };
      this.writeVmStatus({ vm, vmi: this.ownedVmi(vm), requests: changeRequestsOf(vm), startPending: false, failure });
      return;
    }

    const spec = parsed.value;
    const strategy = run.strategy;
    this.ensureTemplateDataVolumes(vm, spec);
    const volumes = volumeState(this.store, namespace, spec.template.spec);
    let vmi = this.ownedVmi(vm);
    let requests = trimChangeRequests(changeRequestsOf(vm), vmi);
    let failure: Failure | undefined;
    let startPending = false;

    const start = (): void => {
      startPending = true;
      // A VMI of that name that is not ours (a previous VM's, still terminating) blocks the create until gone.
      if (this.store.get(VMI, namespace, name) || !volumes.readyForVmi) return;
      const causes = bootOrderCauses(spec.template.spec, "spec");
      if (causes.length > 0) {
        startPending = false;
        failure = {
          reason: "FailedCreate",
          message: `failure while starting VMI: admission webhook "virtualmachineinstances-create-validator.kubevirt.io" denied the request: ${causes.join(", ")}`,
        };
        return;
      }
      const paused = requests.find(r => r.action === "Start")?.data?.paused === "true";
      this.store.create(VMI, this.newVmi(vm, paused));
    };
    const stop = (target: KubeObject): void => {
      if (!target.metadata.deletionTimestamp) this.store.delete(VMI, namespace, name);
    };

    switch (strategy) {
      case "Always":
        if (!vmi) start();
        else if (hasStopRequestFor(requests, vmi) || isFinal(phaseOf(vmi))) stop(vmi);
        break;
      case "RerunOnFailure":
        if (vmi) {
          const phase = phaseOf(vmi);
          if (!vmi.metadata.deletionTimestamp && (hasStopRequestFor(requests, vmi) || isFinal(phase))) {
            stop(vmi);
            if (phase === "Failed") requests = [...requests, { action: "Start" }];
          }
        } else if (hasStartRequest(requests) || statusOf(vm).runStrategy !== strategy) {
          // Started on creation and when switched to RerunOnFailure; afterwards only by a start request.
          start();
        }
        break;
      case "Manual":
        if (vmi) {
          if (hasStopRequestFor(requests, vmi)) stop(vmi);
        } else if (hasStartRequest(requests)) start();
        break;
      case "Halted":
        if (vmi) stop(vmi);
        else if (hasStartRequest(requests)) this.setRunning(vm);
        break;
      case "Once":
        if (!vmi) start();
        break;
    }

    vmi = this.ownedVmi(vm);
    requests = trimChangeRequests(requests, vmi);
    if (vmi && !vmi.metadata.deletionTimestamp && !isFinal(phaseOf(vmi))) this.syncHotplugVolumes(vm, vmi);
    // status.runStrategy records the strategy acted on; a start still held back has not been acted on yet.
    const observed = startPending && !vmi ? (statusOf(vm).runStrategy as RunStrategy | undefined) : strategy;
    const current = this.ownedVmi(vm);
    const alive = !!current && !isFinal(phaseOf(current));
    this.writeVmStatus({
      vm,
      vmi: current,
      strategy,
      observedStrategy: observed,
      requests,
      failure,
      volumes,
      startPending: startPending && !vmi,
      // Only a live VMI can need a restart; hashing every stopped VM's template on each event is wasted work.
      templateHash: alive ? restartRelevantHash(asRecord(asRecord(vm.spec).template).spec) : undefined,
    });
  }

  private ownedVmi(vm: KubeObject): KubeObject | undefined {
    const vmi = this.store.get(VMI, vm.metadata.namespace, vm.metadata.name!);
    return vmi && isOwnedBy(vmi, vm) ? vmi : undefined;
  }

  private writeVmStatus(input: VmStatusInput): void {
    writeStatus(this.store, VM, input.vm.metadata.namespace!, input.vm.metadata.name!, current => nextVmStatus({ ...input, vm: current }));
  }

  /** A start request on a Halted VM (start paused): virt-controller switches it to Always / running: true. */
  private setRunning(vm: KubeObject): void {
    this.store.mutate(VM, vm.metadata.namespace, vm.metadata.name!, current => {
      const spec = asRecord(current.spec);
      if (spec.runStrategy !== undefined && spec.runStrategy !== null) spec.runStrategy = "Always";
      else spec.running = true;
      return { ...current, spec };
    });
  }

  private newVmi(vm: KubeObject, startPaused: boolean): KubeObject {
    const template = asRecord(asRecord(vm.spec).template);
    const templateMeta = asRecord(template.metadata);
    const spec = vmiSpecFromTemplate(vm.metadata.name!, template.spec);
    if (startPaused) spec.startStrategy = "Paused";
    const labels = isRecord(templateMeta.labels) ? (templateMeta.labels as Record<string, string>) : {};
    const annotations = isRecord(templateMeta.annotations) ? (templateMeta.annotations as Record<string, string>) : {};
    return {
      apiVersion: "kubevirt.io/v1",
      kind: "VirtualMachineInstance",
      metadata: {
        name: vm.metadata.name,
        namespace: vm.metadata.namespace,
        labels: { ...labels },
        annotations: {
          ...annotations,
          [ANNOTATION.vmGeneration]: String(vm.metadata.generation ?? 1),
          [ANNOTATION.templateHash]: restartRelevantHash(template.spec),
        },
        ownerReferences: [
          { apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", name: vm.metadata.name!, uid: vm.metadata.uid!, controller: true, blockOwnerDeletion: true },
        ],
        finalizers: [VMI_FINALIZER],
      },
      spec,
    };
  }

  /** DataVolumes from spec.dataVolumeTemplates, owned by the VM (KubeVirt creates them whatever the run state). */
  private ensureTemplateDataVolumes(vm: KubeObject, spec: VmSpec): void {
    if (!spec.dataVolumeTemplates?.length || !serves(this.store, DV)) return;
    for (const template of spec.dataVolumeTemplates) {
      if (this.store.get(DV, vm.metadata.namespace, template.metadata.name)) continue;
      this.store.create(DV, {
        apiVersion: "cdi.kubevirt.io/v1beta1",
        kind: "DataVolume",
        metadata: {
          name: template.metadata.name,
          namespace: vm.metadata.namespace,
          labels: { ...(template.metadata.labels ?? {}) },
          annotations: { ...(template.metadata.annotations ?? {}) },
          ownerReferences: [
            { apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", name: vm.metadata.name!, uid: vm.metadata.uid!, controller: true, blockOwnerDeletion: true },
          ],
        },
        spec: structuredClone(template.spec),
      });
    }
  }

  /** Hotpluggable volumes follow the template into the running VMI (added and removed); nothing else does. */
  private syncHotplugVolumes(vm: KubeObject, vmi: KubeObject): void {
    const template = asRecord(asRecord(asRecord(vm.spec).template).spec);
    const templateVolumes = (Array.isArray(template.volumes) ? template.volumes : []).filter(isHotpluggableVolume) as Record<string, unknown>[];
    const templateDisks = asRecord(asRecord(template.domain).devices).disks;
    const wanted = new Map(templateVolumes.map(v => [v.name as string, v]));
    this.store.mutate(VMI, vmi.metadata.namespace, vmi.metadata.name!, current => {
      const spec = asRecord(current.spec);
      const devices = asRecord(asRecord(spec.domain).devices);
      const volumes = (Array.isArray(spec.volumes) ? spec.volumes : []) as Record<string, unknown>[];
      const disks = (Array.isArray(devices.disks) ? devices.disks : []) as Record<string, unknown>[];
      const unplug = new Set(volumes.filter(v => isHotpluggableVolume(v) && !wanted.has(v.name as string)).map(v => v.name as string));
      const plug = [...wanted.values()].filter(v => !volumes.some(existing => existing.name === v.name));
      if (unplug.size === 0 && plug.length === 0) return undefined;
      const nextVolumes = [...volumes.filter(v => !unplug.has(v.name as string)), ...plug.map(v => structuredClone(v))];
      const nextDisks = disks.filter(d => !unplug.has(d.name as string));
      for (const v of plug) {
        const disk = (Array.isArray(templateDisks) ? templateDisks : []).find(d => asRecord(d).name === v.name);
        nextDisks.push(structuredClone(disk ? asRecord(disk) : { name: v.name, disk: { bus: "scsi" } }));
      }
      spec.volumes = nextVolumes;
      const domain = (spec.domain = asRecord(spec.domain));
      domain.devices = { ...devices, disks: nextDisks };
      return { ...current, spec };
    });
  }
}

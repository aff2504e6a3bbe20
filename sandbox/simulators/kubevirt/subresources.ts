// virt-api's subresources (pkg/virt-api/rest/lifecycle.go, volumes.go) with KubeVirt's semantics per run
// strategy, its error messages and HTTP codes: VM start/stop/restart/addvolume/removevolume record what the
// controllers act on; VMI pause/unpause/softreboot/reset go to the "virt-handler" (VmiHandler).
// Deviation: where virt-api answers 500 for "stop/start already underway", this answers 409 (never a 5xx for
// a client's request).
import { z } from "zod";
import type { KubeObject, ObjectStore, SubresourceRequest } from "../../apiserver/types";
import { type HandlerResult, VM, VMI, accepted, httpErrors, isRecord, statusOf } from "../common";
import { changeRequestsOf, conditionIsTrue, isFinal, phaseOf, rawRunFields, runStrategyOf, type RunStrategy, type StateChangeRequest } from "./model";
import { hasGuestAgent, type VmiHandler } from "./vmi-handler";

const dryRun = z.array(z.string()).nullish();
// Go's JSON decoding ignores unknown fields (kind/apiVersion of the options objects among them).
const startOptions = z.looseObject({ paused: z.boolean().nullish(), dryRun });
const stopOptions = z.looseObject({ gracePeriod: z.number().int().nullish(), dryRun });
const restartOptions = z.looseObject({ gracePeriodSeconds: z.number().int().nullish(), dryRun });
const pauseOptions = z.looseObject({ dryRun });
const hotplugSource = z.looseObject({
  dataVolume: z.looseObject({ name: z.string().min(1), hotpluggable: z.boolean().nullish() }).nullish(),
  persistentVolumeClaim: z.looseObject({ claimName: z.string().min(1), hotpluggable: z.boolean().nullish() }).nullish(),
});
const addVolumeOptions = z.looseObject({
  name: z.string().nullish(),
  disk: z.looseObject({}).nullish(),
  volumeSource: hotplugSource.nullish(),
  dryRun,
});
const removeVolumeOptions = z.looseObject({ name: z.string().nullish(), dryRun });

/** The body as virt-api's decodeBody sees it: absent means empty options, anything malformed is a 400. */
function decode<T>(schema: z.ZodType<T>, body: unknown): { ok: true; value: T } | { ok: false; result: HandlerResult } {
  let raw = body;
  if (raw instanceof Uint8Array) raw = Buffer.from(raw).toString("utf8");
  if (typeof raw === "string") {
    if (raw.trim() === "") raw = undefined;
    else {
      try {
        raw = JSON.parse(raw);
      } catch (err) {
        return { ok: false, result: httpErrors.badRequest(`Can not unmarshal Request body to struct, error: ${(err as Error).message}`) };
      }
    }
  }
  const parsed = schema.safeParse(raw ?? {});
  if (parsed.success) return { ok: true, value: parsed.data };
  const why = parsed.error.issues.map(i => `${i.path.join(".") || "body"}: ${i.message}`).join("; ");
  return { ok: false, result: httpErrors.badRequest(`Can not unmarshal Request body to struct, error: ${why}`) };
}

function isDryRun(options: { dryRun?: string[] | null }): boolean {
  return options.dryRun?.[0] === "All";
}

type Decided = { strategy: RunStrategy } | { result: HandlerResult };

export class KubeVirtSubresources {
  constructor(
    private readonly store: ObjectStore,
    private readonly handler: VmiHandler,
  ) {}

  private strategyOf(vm: KubeObject): Decided {
    const run = runStrategyOf(rawRunFields(vm));
    if ("error" in run) return { result: httpErrors.invalid("VirtualMachine", vm.metadata.name!, run.field, run.error) };
    return run;
  }

  /**
   * getChangeRequestJson: requests are added only to an empty list, except that a lone stop request replaces
   * whatever is pending (it is the most recent intent).
   */
  private addChangeRequests(vm: KubeObject, changes: StateChangeRequest[]): HandlerResult | undefined {
    const current = changeRequestsOf(vm);
    const replace = changes.length === 1 && changes[0].action === "Stop";
    if (current.length > 0 && !replace) return httpErrors.conflict("virtualmachine", vm.metadata.name!, "unable to complete request: stop/start already underway");
    this.store.mutate(
      VM,
      vm.metadata.namespace,
      vm.metadata.name!,
      obj => {
        const status: Record<string, unknown> = { ...statusOf(obj), stateChangeRequests: changes };
        delete status.startFailure;
        return { ...obj, status };
      },
      this.store.resourceType(VM).hasStatus ? { subresource: "status" } : undefined,
    );
    return undefined;
  }

  /** getRunningPatch: runStrategy Always/Halted, or spec.running when the VM uses the deprecated field. */
  private setRunning(vm: KubeObject, running: boolean): void {
    this.store.mutate(VM, vm.metadata.namespace, vm.metadata.name!, obj => {
      const spec = isRecord(obj.spec) ? { ...obj.spec } : {};
      if (spec.runStrategy !== undefined && spec.runStrategy !== null) spec.runStrategy = running ? "Always" : "Halted";
      else spec.running = running;
      return { ...obj, spec };
    });
  }

  async start(req: SubresourceRequest): Promise<HandlerResult> {
    const options = decode(startOptions, req.body);
    if (!options.ok) return options.result;
    const vm = this.store.get(VM, req.namespace, req.name);
    if (!vm) return httpErrors.notFound("virtualmachine", req.name);
    const vmi = this.store.get(VMI, req.namespace, req.name);
    const phase = vmi ? phaseOf(vmi) : "";
    if (vmi && !isFinal(phase) && phase !== "Unknown" && phase !== "") return httpErrors.conflict("virtualmachine", req.name, "VM is already running");
    const decided = this.strategyOf(vm);
    if ("result" in decided) return decided.result;
    const paused = options.value.paused === true;
    const dry = isDryRun(options.value);
    const startRequest: StateChangeRequest = paused ? { action: "Start", data: { paused: "true" } } : { action: "Start" };

    switch (decided.strategy) {
      case "Halted":
        if (dry) return accepted;
        if (paused) return this.addChangeRequests(vm, [startRequest]) ?? accepted;
        this.setRunning(vm, true);
        return accepted;
      case "RerunOnFailure":
      case "Manual": {
        if (decided.strategy === "RerunOnFailure" && phase === "Failed")
          return httpErrors.conflict("virtualmachine", req.name, "RerunOnFailure does not support starting VM from failed state");
        const needsRestart = !!vmi && (decided.strategy === "Manual" ? isFinal(phase) : phase === "Succeeded");
        const changes: StateChangeRequest[] = needsRestart ? [{ action: "Stop", uid: vmi!.metadata.uid }, startRequest] : [startRequest];
        if (dry) return accepted;
        return this.addChangeRequests(vm, changes) ?? accepted;
      }
      default:
        return httpErrors.conflict("virtualmachine", req.name, `${decided.strategy} does not support manual start requests`);
    }
  }

  async stop(req: SubresourceRequest): Promise<HandlerResult> {
    const options = decode(stopOptions, req.body);
    if (!options.ok) return options.result;
    const gracePeriod = options.value.gracePeriod ?? undefined;
    if (gracePeriod !== undefined && gracePeriod < 0) return httpErrors.badRequest("gracePeriod has to be greater or equal to 0");
    const vm = this.store.get(VM, req.namespace, req.name);
    if (!vm) return httpErrors.notFound("virtualmachine", req.name);
    const decided = this.strategyOf(vm);
    if ("result" in decided) return decided.result;
    const vmi = this.store.get(VMI, req.namespace, req.name);
    const running = !!vmi && !isFinal(phaseOf(vmi));
    const currentGrace = vmi && isRecord(vmi.spec) && typeof vmi.spec.terminationGracePeriodSeconds === "number" ? vmi.spec.terminationGracePeriodSeconds : undefined;

    let act: () => HandlerResult | undefined;
    switch (decided.strategy) {
      case "Halted":
        if (!running) return httpErrors.conflict("virtualmachine", req.name, "VM is not running");
        // Halted VMs accept a stop only to cut a shutdown in progress short (e.g. a forced power-off).
        if (gracePeriod === undefined || (currentGrace !== undefined && gracePeriod >= currentGrace))
          return httpErrors.conflict("virtualmachine", req.name, "Halted only supports manual stop requests with a shorter graceperiod");
        act = () => this.addChangeRequests(vm, [{ action: "Stop", uid: vmi!.metadata.uid }]);
        break;
      case "RerunOnFailure":
      case "Manual":
        if (!running) return httpErrors.conflict("virtualmachine", req.name, "VM is not running");
        act = () => this.addChangeRequests(vm, [{ action: "Stop", uid: vmi!.metadata.uid }]);
        break;
      default:
        act = () => {
          this.setRunning(vm, false);
          return undefined;
        };
    }
    if (isDryRun(options.value)) return accepted;
    // The VMI's grace period is what the guest gets; a stop with gracePeriod shortens it first (0 = destroy now).
    if (running && gracePeriod !== undefined) this.setVmiGrace(vmi!, gracePeriod);
    return act() ?? accepted;
  }

  async restart(req: SubresourceRequest): Promise<HandlerResult> {
    const options = decode(restartOptions, req.body);
    if (!options.ok) return options.result;
    const grace = options.value.gracePeriodSeconds ?? undefined;
    if (grace !== undefined && grace > 0) return httpErrors.badRequest("For force restart, only gracePeriod=0 is supported for now");
    if (grace !== undefined && grace < 0) return httpErrors.badRequest("gracePeriod has to be greater or equal to 0");
    const vm = this.store.get(VM, req.namespace, req.name);
    if (!vm) return httpErrors.notFound("virtualmachine", req.name);
    const decided = this.strategyOf(vm);
    if ("result" in decided) return decided.result;
    if (decided.strategy === "Halted" || decided.strategy === "Once")
      return httpErrors.conflict("virtualmachine", req.name, `RunStategy ${decided.strategy} does not support manual restart requests`);
    const vmi = this.store.get(VMI, req.namespace, req.name);
    if (!vmi) return httpErrors.conflict("virtualmachine", req.name, "VM is not running: Halted");
    if (isDryRun(options.value)) return accepted;
    const refused = this.addChangeRequests(vm, [{ action: "Stop", uid: vmi.metadata.uid }, { action: "Start" }]);
    if (refused) return refused;
    // A forced restart kills the launcher at once instead of waiting for the guest.
    if (grace === 0 && !isFinal(phaseOf(vmi))) this.setVmiGrace(vmi, 0);
    return accepted;
  }

  private setVmiGrace(vmi: KubeObject, seconds: number): void {
    this.store.mutate(VMI, vmi.metadata.namespace, vmi.metadata.name!, obj => ({
      ...obj,
      spec: { ...(isRecord(obj.spec) ? obj.spec : {}), terminationGracePeriodSeconds: seconds },
    }));
  }

  async addVolume(req: SubresourceRequest): Promise<HandlerResult> {
    const options = decode(addVolumeOptions, req.body);
    if (!options.ok) return options.result;
    const { name, disk, volumeSource } = options.value;
    if (!name) return httpErrors.badRequest("AddVolumeOptions requires name to be set");
    if (!disk) return httpErrors.badRequest("AddVolumeOptions requires disk to not be nil");
    if (!volumeSource || (!volumeSource.dataVolume && !volumeSource.persistentVolumeClaim))
      return httpErrors.badRequest("AddVolumeOptions requires VolumeSource to not be nil");
    const vm = this.store.get(VM, req.namespace, req.name);
    if (!vm) return httpErrors.notFound("virtualmachine", req.name);
    const sourceName = volumeSource.dataVolume?.name ?? volumeSource.persistentVolumeClaim?.claimName;
    const volumes = templateVolumes(vm);
    if (volumes.some(v => v.name === name)) return httpErrors.conflict("virtualmachine", req.name, `Unable to add volume [${name}] because volume with that name already exists`);
    if (volumes.some(v => volumeSourceName(v) === sourceName))
      return httpErrors.conflict("virtualmachine", req.name, `Unable to add volume source [${sourceName}] because it already exists`);
    if (isDryRun(options.value)) return accepted;
    const volume: Record<string, unknown> = { name };
    if (volumeSource.dataVolume) volume.dataVolume = { ...volumeSource.dataVolume, hotpluggable: true };
    else volume.persistentVolumeClaim = { ...volumeSource.persistentVolumeClaim, hotpluggable: true };
    this.editTemplate(vm, spec => {
      spec.volumes = [...templateVolumesOf(spec), volume];
      const devices = devicesOf(spec);
      devices.disks = [...(Array.isArray(devices.disks) ? devices.disks : []), { ...disk, name }];
    });
    return accepted;
  }

  async removeVolume(req: SubresourceRequest): Promise<HandlerResult> {
    const options = decode(removeVolumeOptions, req.body);
    if (!options.ok) return options.result;
    const name = options.value.name;
    if (!name) return httpErrors.badRequest("RemoveVolumeOptions requires name to be set");
    const vm = this.store.get(VM, req.namespace, req.name);
    if (!vm) return httpErrors.notFound("virtualmachine", req.name);
    const volume = templateVolumes(vm).find(v => v.name === name || volumeSourceName(v) === name);
    if (!volume) return httpErrors.conflict("virtualmachine", req.name, `Unable to remove volume [${name}] because it does not exist`);
    if (!isHotpluggable(volume)) return httpErrors.conflict("virtualmachine", req.name, `Unable to remove volume [${volume.name}] because it is not hotpluggable`);
    if (isDryRun(options.value)) return accepted;
    this.editTemplate(vm, spec => {
      spec.volumes = templateVolumesOf(spec).filter(v => v.name !== volume.name);
      const devices = devicesOf(spec);
      if (Array.isArray(devices.disks)) devices.disks = devices.disks.filter(d => !(isRecord(d) && d.name === volume.name));
    });
    return accepted;
  }

  private editTemplate(vm: KubeObject, edit: (templateSpec: Record<string, unknown>) => void): void {
    this.store.mutate(VM, vm.metadata.namespace, vm.metadata.name!, obj => {
      const spec = isRecord(obj.spec) ? obj.spec : (obj.spec = {});
      const template = isRecord(spec.template) ? spec.template : (spec.template = {});
      const templateSpec = isRecord(template.spec) ? template.spec : (template.spec = {});
      edit(templateSpec);
      return obj;
    });
  }

  // ---- VMI subresources: validated like virt-api, then performed by the simulated virt-handler ----

  private runningVmi(req: SubresourceRequest): { vmi: KubeObject } | { result: HandlerResult } {
    const vmi = this.store.get(VMI, req.namespace, req.name);
    if (!vmi) return { result: httpErrors.notFound("virtualmachineinstance", req.name) };
    return { vmi };
  }

  async pause(req: SubresourceRequest): Promise<HandlerResult> {
    const options = decode(pauseOptions, req.body);
    if (!options.ok) return options.result;
    const found = this.runningVmi(req);
    if ("result" in found) return found.result;
    const { vmi } = found;
    if (phaseOf(vmi) !== "Running") return httpErrors.conflict("virtualmachineinstance", req.name, "VM is not running");
    if (conditionIsTrue(vmi, "Paused")) return httpErrors.conflict("virtualmachineinstance", req.name, "VMI is already paused");
    if (!isDryRun(options.value)) this.handler.pause(req.namespace, req.name);
    return { status: 200 };
  }

  async unpause(req: SubresourceRequest): Promise<HandlerResult> {
    const options = decode(pauseOptions, req.body);
    if (!options.ok) return options.result;
    const found = this.runningVmi(req);
    if ("result" in found) return found.result;
    const { vmi } = found;
    if (phaseOf(vmi) !== "Running") return httpErrors.conflict("virtualmachineinstance", req.name, "VMI is not running");
    if (!conditionIsTrue(vmi, "Paused")) return httpErrors.conflict("virtualmachineinstance", req.name, "VMI is not paused");
    if (!isDryRun(options.value)) this.handler.unpause(req.namespace, req.name);
    return { status: 200 };
  }

  async softReboot(req: SubresourceRequest): Promise<HandlerResult> {
    const found = this.runningVmi(req);
    if ("result" in found) return found.result;
    const { vmi } = found;
    if (phaseOf(vmi) !== "Running") return httpErrors.conflict("virtualmachineinstance", req.name, "VM is not running");
    if (conditionIsTrue(vmi, "Paused")) return httpErrors.conflict("virtualmachineinstance", req.name, "VMI is paused");
    if (!hasGuestAgent(vmi) || !conditionIsTrue(vmi, "AgentConnected"))
      return httpErrors.conflict("virtualmachineinstance", req.name, "VMI does not have guest agent connected");
    this.handler.softReboot(req.namespace, req.name, vmi.metadata.uid);
    return { status: 200 };
  }

  async reset(req: SubresourceRequest): Promise<HandlerResult> {
    const found = this.runningVmi(req);
    if ("result" in found) return found.result;
    const phase = phaseOf(found.vmi);
    if (phase !== "Running")
      return httpErrors.badRequest(
        `Failed to reset non-running VMI with phase ${phase}: Unable to connect to VirtualMachineInstance because phase is ${phase} instead of Running`,
      );
    this.handler.reset(req.namespace, req.name);
    return { status: 200 };
  }
}

function templateVolumesOf(templateSpec: Record<string, unknown>): Record<string, unknown>[] {
  return (Array.isArray(templateSpec.volumes) ? templateSpec.volumes : []).filter(isRecord);
}

function templateVolumes(vm: KubeObject): Record<string, unknown>[] {
  const spec = isRecord(vm.spec) ? vm.spec : {};
  const template = isRecord(spec.template) ? spec.template : {};
  return templateVolumesOf(isRecord(template.spec) ? template.spec : {});
}

function devicesOf(templateSpec: Record<string, unknown>): Record<string, unknown> {
  const domain = isRecord(templateSpec.domain) ? templateSpec.domain : (templateSpec.domain = {});
  return isRecord(domain.devices) ? domain.devices : (domain.devices = {});
}

function volumeSourceName(volume: Record<string, unknown>): string | undefined {
  if (isRecord(volume.dataVolume) && typeof volume.dataVolume.name === "string") return volume.dataVolume.name;
  if (isRecord(volume.persistentVolumeClaim) && typeof volume.persistentVolumeClaim.claimName === "string") return volume.persistentVolumeClaim.claimName;
  return undefined;
}

function isHotpluggable(volume: Record<string, unknown>): boolean {
  return (isRecord(volume.dataVolume) && volume.dataVolume.hotpluggable === true) || (isRecord(volume.persistentVolumeClaim) && volume.persistentVolumeClaim.hotpluggable === true);
}

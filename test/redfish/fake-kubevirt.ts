// An in-memory KubeVirt + CDI behind the KubeVirtDriver seam, for Redfish semantics tests without the sandbox.
// A small model, not a simulator: the driver calls change objects the way virt-api and kube-apiserver do (JSON
// patches with real `test` semantics, virt-api's start/stop/restart rules and refusals), and `settle()` does what
// virt-controller does next (create / delete VMIs, drop handled state-change requests). Every change goes into a
// real WatchCache, so the code under test reads exactly what it would read in the watcher. Errors are thrown as
// the gateway throws them for the REAL API server's bodies (e.g. a failed `test` op is 422 Invalid without causes).
import { KubeApiError } from "../../capabilities/common/gateway";
import { WatchCache, type ChassisDefinition } from "../../redfish/cache/store";
import type { CachedKind, KubeObject, VmRecord } from "../../redfish/cache/types";
import type { CreatedObject, GuestAction, JsonPatchOp, KubeVirtDriver, NewObject } from "../../redfish/kubevirt/driver";
import { attachOps, detachOps } from "../../redfish/media/plan";
import { hasStartRequest, runFieldOf, runStrategyOf, stateChangeRequestsOf, vmiIsFinal } from "../../redfish/power/vm-model";
import { applyJsonPatch, type Json } from "../../sandbox/apiserver/patch";

export type DriverMethod = keyof KubeVirtDriver;

export interface DriverCall {
  method: DriverMethod;
  namespace: string;
  name: string;
  /** Options, patch ops or the guest action, as passed. */
  detail?: unknown;
}

/** kube-apiserver's body for a JSON patch that does not apply, as the gateway reports it. */
export const PATCH_TEST_FAILED = new KubeApiError(422, "Invalid", "the server rejected our request due to an error in our request");
/** What a kube-apiserver answers where an API group is not served: 404 text/plain, no Status body. */
export const PAGE_NOT_FOUND = new KubeApiError(404, "404 page not found", "404 page not found");

const notFound = (resource: string, name: string) => new KubeApiError(404, "NotFound", `${resource} "${name}" not found`);
const conflict = (message: string) => new KubeApiError(409, "Conflict", message);

type Kind = CachedKind | "Secret";

export class FakeKubeVirt implements KubeVirtDriver {
  readonly cache: WatchCache;
  readonly calls: DriverCall[] = [];
  /** Warning Events recorded through the driver. */
  readonly events: { involved: string; reason: string; message: string; eventName: string }[] = [];
  private readonly objects = new Map<string, KubeObject>();
  private readonly failures: { method: DriverMethod; error: unknown }[] = [];
  private resourceVersion = 100;
  private uids = 0;

  constructor(chassis: readonly ChassisDefinition[] = []) {
    this.cache = new WatchCache(chassis);
    for (const kind of ["VirtualMachine", "VirtualMachineInstance", "DataVolume"] as const) this.cache.applyList(kind, []);
  }

  // ---- test setup and inspection ----

  /** Stores a VM (and, with `running`, a VMI created from its template, as after a start). */
  addVm(vm: KubeObject, opts: { running?: boolean } = {}): void {
    this.put("VirtualMachine", structuredClone(vm));
    if (opts.running) this.createVmi(this.vm(vm.metadata.namespace!, vm.metadata.name!)!);
  }

  vm(namespace: string, name: string): KubeObject | undefined {
    return this.get("VirtualMachine", namespace, name);
  }

  vmi(namespace: string, name: string): KubeObject | undefined {
    return this.get("VirtualMachineInstance", namespace, name);
  }

  dataVolumes(namespace: string): KubeObject[] {
    return this.list("DataVolume", namespace);
  }

  secrets(namespace: string): KubeObject[] {
    return this.list("Secret", namespace);
  }

  record(namespace: string, name: string): VmRecord {
    const rec = this.cache.getVm(namespace, name);
    if (!rec) throw new Error(`VM ${namespace}/${name} is not in the cache`);
    return rec;
  }

  /** The next call of `method` fails with `error` (once). */
  failNext(method: DriverMethod, error: unknown): void {
    this.failures.push({ method, error });
  }

  /** Changes a stored object behind the back of the code under test (another client's write). */
  mutate(kind: Kind, namespace: string, name: string, change: (obj: KubeObject) => void): void {
    const obj = this.get(kind, namespace, name);
    if (!obj) throw new Error(`${kind} ${namespace}/${name} does not exist`);
    change(obj);
    this.put(kind, obj);
  }

  /** CDI's status for an import: Succeeded, Failed, ImportInProgress with a progress, ... */
  setImport(namespace: string, name: string, phase: string, extra: Record<string, unknown> = {}): void {
    this.mutate("DataVolume", namespace, name, dv => (dv.status = { phase, ...extra }));
  }

  /** virt-controller's next steps until nothing changes: VMIs deleted, created and marked running or paused. */
  settle(): void {
    for (let round = 0; round < 5; round++) {
      let changed = false;
      for (const vm of this.list("VirtualMachine")) changed = this.syncVm(vm) || changed;
      if (!changed) return;
    }
  }

  // ---- KubeVirtDriver ----

  async readVm(namespace: string, name: string): Promise<KubeObject | undefined> {
    this.call("readVm", namespace, name);
    return this.vm(namespace, name);
  }

  async readVmi(namespace: string, name: string): Promise<KubeObject | undefined> {
    this.call("readVmi", namespace, name);
    return this.vmi(namespace, name);
  }

  async patchVm(namespace: string, name: string, ops: JsonPatchOp[]): Promise<string | undefined> {
    this.call("patchVm", namespace, name, ops);
    return this.applyPatch(namespace, name, ops);
  }

  /** kube-apiserver's JSON patch of a VM: all ops or none; one that does not apply is its real 422. The new resourceVersion. */
  private applyPatch(namespace: string, name: string, ops: JsonPatchOp[]): string | undefined {
    const vm = this.vm(namespace, name);
    if (!vm) throw notFound("virtualmachines.kubevirt.io", name);
    let patched: Json;
    try {
      patched = applyJsonPatch(vm as unknown as Json, ops);
    } catch {
      throw PATCH_TEST_FAILED;
    }
    return this.put("VirtualMachine", patched as unknown as KubeObject);
  }

  async attachCdrom(vm: Readonly<KubeObject>, dataVolumeName: string): Promise<void> {
    this.call("attachCdrom", vm.metadata.namespace!, vm.metadata.name!, dataVolumeName);
    this.applyPatch(vm.metadata.namespace!, vm.metadata.name!, attachOps(vm, dataVolumeName));
  }

  async detachCdrom(vm: Readonly<KubeObject>): Promise<void> {
    this.call("detachCdrom", vm.metadata.namespace!, vm.metadata.name!);
    this.applyPatch(vm.metadata.namespace!, vm.metadata.name!, detachOps(vm));
  }

  async startVm(namespace: string, name: string): Promise<void> {
    this.call("startVm", namespace, name);
    const vm = this.requireVm(namespace, name);
    const vmi = this.activeVmi(namespace, name);
    if (vmi) throw conflict(`VM is already running`);
    const run = runFieldOf(vm);
    if (runStrategyOf(vm) === "Halted") return this.setRunStrategy(vm, "Always");
    if (run.field === "runStrategy" && run.value === "Always") throw conflict("Always does not support manual start requests");
    this.addStateChange(vm, [{ action: "Start" }]);
  }

  async stopVm(namespace: string, name: string, opts: { gracePeriod?: number } = {}): Promise<void> {
    this.call("stopVm", namespace, name, opts);
    const vm = this.requireVm(namespace, name);
    const vmi = this.activeVmi(namespace, name);
    if (!vmi && runStrategyOf(vm) === "Halted") throw conflict("VM is not running");
    if (vmi && opts.gracePeriod !== undefined) {
      this.mutate("VirtualMachineInstance", namespace, name, o => ((o.spec as Record<string, unknown>).terminationGracePeriodSeconds = opts.gracePeriod));
    }
    if (runStrategyOf(vm) === "Manual") return this.addStateChange(vm, [{ action: "Stop", uid: vmi?.metadata.uid }]);
    this.setRunStrategy(vm, "Halted");
  }

  async restartVm(namespace: string, name: string, opts: { gracePeriodSeconds?: number } = {}): Promise<void> {
    this.call("restartVm", namespace, name, opts);
    const vm = this.requireVm(namespace, name);
    const vmi = this.activeVmi(namespace, name);
    if (!vmi) throw conflict("VM is not running");
    if (runStrategyOf(vm) === "Halted" || runStrategyOf(vm) === "Once") throw conflict(`runStrategy ${runStrategyOf(vm)} does not support manual restart requests`);
    this.addStateChange(vm, [{ action: "Stop", uid: vmi.metadata.uid }, { action: "Start" }]);
  }

  async guestAction(namespace: string, name: string, action: GuestAction): Promise<void> {
    this.call("guestAction", namespace, name, action);
    const vmi = this.activeVmi(namespace, name);
    if (!vmi) throw notFound("virtualmachineinstances.kubevirt.io", name);
    const paused = (vmi.status as { conditions?: { type: string }[] }).conditions?.some(c => c.type === "Paused") ?? false;
    if (action === "pause" && paused) throw conflict("VMI is already paused");
    if (action === "unpause" && !paused) throw conflict("VMI is not paused");
    this.mutate("VirtualMachineInstance", namespace, name, o => {
      const status = o.status as { conditions?: { type: string; status: string }[]; guestBoots?: number };
      const others = (status.conditions ?? []).filter(c => c.type !== "Paused");
      if (action === "pause") status.conditions = [...others, { type: "Paused", status: "True" }];
      if (action === "unpause") status.conditions = others;
      if (action === "softreboot" || action === "reset") status.guestBoots = (status.guestBoots ?? 1) + 1;
    });
  }

  async createDataVolume(dataVolume: NewObject): Promise<CreatedObject> {
    this.call("createDataVolume", dataVolume.metadata.namespace, dataVolume.metadata.name);
    return this.create("DataVolume", { ...structuredClone(dataVolume), status: { phase: "ImportScheduled", progress: "N/A" } });
  }

  async deleteDataVolume(namespace: string, name: string): Promise<void> {
    this.call("deleteDataVolume", namespace, name);
    const dv = this.get("DataVolume", namespace, name);
    if (!dv) throw notFound("datavolumes.cdi.kubevirt.io", name);
    this.remove("DataVolume", namespace, name);
    // Garbage collection of what the DataVolume owns (a real cluster does it a little later).
    for (const secret of this.secrets(namespace)) {
      if (secret.metadata.ownerReferences?.some(r => r.uid === dv.metadata.uid)) this.remove("Secret", namespace, secret.metadata.name!);
    }
  }

  async createSecret(secret: NewObject): Promise<CreatedObject> {
    this.call("createSecret", secret.metadata.namespace, secret.metadata.name);
    return this.create("Secret", structuredClone(secret));
  }

  async warningEvent(involved: Readonly<KubeObject>, reason: string, message: string, eventName: string): Promise<void> {
    if (this.events.some(e => e.eventName === eventName)) return; // AlreadyExists, as the API server answers
    this.events.push({ involved: `${involved.kind}/${involved.metadata.namespace}/${involved.metadata.name}`, reason, message, eventName });
  }

  // ---- the model ----

  private call(method: DriverMethod, namespace: string, name: string, detail?: unknown): void {
    this.calls.push({ method, namespace, name, ...(detail !== undefined ? { detail } : {}) });
    const i = this.failures.findIndex(f => f.method === method);
    if (i >= 0) throw this.failures.splice(i, 1)[0].error;
  }

  private key(kind: Kind, namespace: string, name: string): string {
    return `${kind}/${namespace}/${name}`;
  }

  private get(kind: Kind, namespace: string, name: string): KubeObject | undefined {
    const obj = this.objects.get(this.key(kind, namespace, name));
    return obj ? structuredClone(obj) : undefined;
  }

  private list(kind: Kind, namespace?: string): KubeObject[] {
    return [...this.objects.entries()]
      .filter(([key, obj]) => key.startsWith(`${kind}/`) && (namespace === undefined || obj.metadata.namespace === namespace))
      .map(([, obj]) => structuredClone(obj));
  }

  private put(kind: Kind, obj: KubeObject): string {
    const key = this.key(kind, obj.metadata.namespace!, obj.metadata.name!);
    const existed = this.objects.has(key);
    obj.metadata.uid ??= `fake-uid-${++this.uids}`;
    obj.metadata.resourceVersion = String(++this.resourceVersion);
    this.objects.set(key, structuredClone(obj));
    if (kind !== "Secret") this.cache.apply(kind, existed ? "MODIFIED" : "ADDED", structuredClone(obj));
    return obj.metadata.resourceVersion;
  }

  private remove(kind: Kind, namespace: string, name: string): void {
    const key = this.key(kind, namespace, name);
    const obj = this.objects.get(key);
    if (!obj) return;
    this.objects.delete(key);
    if (kind !== "Secret") this.cache.apply(kind, "DELETED", structuredClone(obj));
  }

  private create(kind: Kind, obj: NewObject): CreatedObject {
    const { namespace, name } = obj.metadata;
    if (this.objects.has(this.key(kind, namespace, name))) {
      throw new KubeApiError(409, "AlreadyExists", `${kind.toLowerCase()}s "${name}" already exists`);
    }
    this.put(kind, obj);
    const stored = this.objects.get(this.key(kind, namespace, name))!;
    return { metadata: { name, namespace, uid: stored.metadata.uid!, resourceVersion: stored.metadata.resourceVersion } };
  }

  private requireVm(namespace: string, name: string): KubeObject {
    const vm = this.vm(namespace, name);
    if (!vm) throw notFound("virtualmachines.kubevirt.io", name);
    return vm;
  }

  private activeVmi(namespace: string, name: string): KubeObject | undefined {
    const vmi = this.vmi(namespace, name);
    return vmi && !vmiIsFinal(vmi) ? vmi : undefined;
  }

  /** virt-api's way: a VM on spec.running keeps that field where it can express the strategy. */
  private setRunStrategy(vm: KubeObject, strategy: "Always" | "Halted"): void {
    const spec = vm.spec as Record<string, unknown>;
    if (runFieldOf(vm).field === "running") spec.running = strategy === "Always";
    else spec.runStrategy = strategy;
    this.put("VirtualMachine", vm);
  }

  private addStateChange(vm: KubeObject, requests: { action: string; uid?: string }[]): void {
    const status = (vm.status ??= {}) as Record<string, unknown>;
    status.stateChangeRequests = [...stateChangeRequestsOf(vm), ...requests];
    this.put("VirtualMachine", vm);
  }

  /** The DataVolumes the VM's template uses are all imported (KubeVirt starts no VMI before that). */
  private volumesReady(vm: KubeObject): boolean {
    const volumes = ((vm.spec as { template?: { spec?: { volumes?: { dataVolume?: { name?: string } }[] } } }).template?.spec?.volumes ?? []);
    return volumes.every(v => {
      const dvName = v.dataVolume?.name;
      if (!dvName) return true;
      return (this.get("DataVolume", vm.metadata.namespace!, dvName)?.status as { phase?: string } | undefined)?.phase === "Succeeded";
    });
  }

  private createVmi(vm: KubeObject): void {
    const template = (vm.spec as { template?: { spec?: unknown } }).template?.spec ?? {};
    this.remove("VirtualMachineInstance", vm.metadata.namespace!, vm.metadata.name!);
    this.put("VirtualMachineInstance", {
      apiVersion: "kubevirt.io/v1",
      kind: "VirtualMachineInstance",
      metadata: {
        name: vm.metadata.name,
        namespace: vm.metadata.namespace,
        ownerReferences: [{ apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", name: vm.metadata.name!, uid: vm.metadata.uid!, controller: true }],
      },
      spec: structuredClone(template),
      status: { phase: "Running", conditions: [{ type: "Ready", status: "True" }], guestBoots: 1 },
    });
  }

  /** One virt-controller pass over a VM (syncRunStrategy, simplified); true when it changed something. */
  private syncVm(vm: KubeObject): boolean {
    const { namespace, name } = vm.metadata as { namespace: string; name: string };
    const vmi = this.activeVmi(namespace, name);
    const requests = stateChangeRequestsOf(vm);
    const strategy = runStrategyOf(vm);
    const first = requests[0];
    if (vmi && (strategy === "Halted" || (first?.action === "Stop" && (first.uid === undefined || first.uid === vmi.metadata.uid)))) {
      this.remove("VirtualMachineInstance", namespace, name);
      if (first?.action === "Stop") this.setRequests(vm, requests.slice(1));
      return true;
    }
    if (vmi) return false;
    const wantsVmi = hasStartRequest(vm) || strategy === "Always" || (strategy === "RerunOnFailure" && (vm.status as { runStrategy?: string } | undefined)?.runStrategy !== "RerunOnFailure");
    if (!wantsVmi || !this.volumesReady(vm)) return this.observe(vm, strategy);
    this.createVmi(vm);
    const fresh = this.vm(namespace, name)!;
    this.setRequests(fresh, stateChangeRequestsOf(fresh).filter(r => r.action !== "Start"));
    return true;
  }

  private setRequests(vm: KubeObject, requests: { action: string; uid?: string }[]): void {
    const status = (vm.status ??= {}) as Record<string, unknown>;
    if (requests.length) status.stateChangeRequests = requests;
    else delete status.stateChangeRequests;
    status.runStrategy = runStrategyOf(vm);
    this.put("VirtualMachine", vm);
  }

  /** status.runStrategy: the strategy virt-controller last acted on. */
  private observe(vm: KubeObject, strategy: string): boolean {
    const status = (vm.status ??= {}) as Record<string, unknown>;
    if (status.runStrategy === strategy) return false;
    status.runStrategy = strategy;
    this.put("VirtualMachine", vm);
    return true;
  }
}

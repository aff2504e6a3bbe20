// Small shared pieces of the KubeVirt and CDI simulators: store keys, conditions, status writes that respect
// each type's status subresource, metav1.Status error bodies, and a keyed reconcile queue.
import { Log } from "pepr";
import { ApiError, type KubeObject, type ObjectStore } from "../apiserver/types";

export const VM = "virtualmachines.kubevirt.io";
export const VMI = "virtualmachineinstances.kubevirt.io";
export const DV = "datavolumes.cdi.kubevirt.io";
export const PVC = "persistentvolumeclaims";
export const SECRET = "secrets";
export const CONFIGMAP = "configmaps";

export type ConditionStatus = "True" | "False" | "Unknown";
export interface Condition {
  type: string;
  status: ConditionStatus;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  lastProbeTime?: string | null;
  lastHeartbeatTime?: string;
}

export function nowIso(): string {
  return new Date().toISOString();
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function objectKey(ns: string | undefined, name: string): string {
  return `${ns ?? ""}/${name}`;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf("/");
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export function statusOf(obj: KubeObject): Record<string, unknown> {
  return isRecord(obj.status) ? obj.status : {};
}

export function conditionsOf(obj: KubeObject): Condition[] {
  const conditions = statusOf(obj).conditions;
  return Array.isArray(conditions) ? (conditions.filter(c => isRecord(c) && typeof c.type === "string") as Condition[]) : [];
}

export function findCondition(conditions: Condition[], type: string): Condition | undefined {
  return conditions.find(c => c.type === type);
}

/**
 * Sets a condition the way Kubernetes controllers do: lastTransitionTime moves only when the status changes,
 * so an unchanged condition never rewrites the object (which would re-trigger every watcher).
 */
export function setCondition(conditions: Condition[], next: Omit<Condition, "lastTransitionTime">): Condition[] {
  const existing = findCondition(conditions, next.type);
  const transition = !existing || existing.status !== next.status ? nowIso() : existing.lastTransitionTime;
  const merged: Condition = { ...next, lastTransitionTime: transition };
  if (!existing) return [...conditions, merged];
  return conditions.map(c => (c.type === next.type ? merged : c));
}

export function removeCondition(conditions: Condition[], type: string): Condition[] {
  return conditions.filter(c => c.type !== type);
}

export function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Whether the API server serves this resource (the simulators degrade gracefully when a kind is missing). */
export function serves(store: ObjectStore, key: string): boolean {
  try {
    store.resourceType(key);
    return true;
  } catch {
    return false;
  }
}

/**
 * Replaces an object's status through the status subresource when the type has one (VM, DataVolume, PVC), or
 * as a plain update when it has none (KubeVirt's VMI CRD has no status subresource). Returns undefined when
 * the object is gone. `change` gets the current object and returns the new status, or undefined for no change.
 */
export function writeStatus(
  store: ObjectStore,
  key: string,
  namespace: string,
  name: string,
  change: (obj: KubeObject) => Record<string, unknown> | undefined,
): KubeObject | undefined {
  const hasStatus = store.resourceType(key).hasStatus;
  return store.mutate(
    key,
    namespace,
    name,
    obj => {
      const status = change(obj);
      if (status === undefined || sameJson(status, obj.status)) return undefined;
      return { ...obj, status };
    },
    hasStatus ? { subresource: "status" } : undefined,
  );
}

/** metav1.Status failure body, as virt-api writes it for a StatusError. */
export interface FailureStatus {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure";
  message: string;
  reason: string;
  code: number;
  details?: { name?: string; group?: string; kind?: string };
}

export interface HandlerResult {
  status: number;
  body?: unknown;
}

function failure(code: number, reason: string, message: string, details?: FailureStatus["details"]): HandlerResult {
  const body: FailureStatus = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
  if (details) body.details = details;
  return { status: code, body };
}

/** KubeVirt names its resources in errors by the singular: `virtualmachine.kubevirt.io "vm-1"`. */
export type KubevirtResource = "virtualmachine" | "virtualmachineinstance";

export const httpErrors = {
  notFound: (resource: KubevirtResource, name: string) =>
    failure(404, "NotFound", `${resource}.kubevirt.io "${name}" not found`, { name, group: "kubevirt.io", kind: resource }),
  conflict: (resource: KubevirtResource, name: string, why: string) =>
    failure(409, "Conflict", `Operation cannot be fulfilled on ${resource}.kubevirt.io "${name}": ${why}`, {
      name,
      group: "kubevirt.io",
      kind: resource,
    }),
  badRequest: (message: string) => failure(400, "BadRequest", message),
  invalid: (kind: string, name: string, field: string, why: string) =>
    failure(422, "Invalid", `${kind}.kubevirt.io "${name}" is invalid: ${field}: Invalid value: ${why}`, {
      name,
      group: "kubevirt.io",
      kind,
    }),
  unavailable: (message: string) => failure(503, "ServiceUnavailable", message),
  internal: (message: string) => failure(500, "InternalError", `Internal error occurred: ${message}`),
  /** An error the store raised (it carries the HTTP code and reason the API server would answer). */
  fromApiError: (err: ApiError) => failure(err.code, err.reason, err.message),
};

export const accepted: HandlerResult = { status: 202 };

/**
 * Coalescing work queue like client-go's: a key enqueued many times before it runs is reconciled once;
 * reconciles run outside watch callbacks (whose store writes would otherwise nest), one at a time, and an
 * exception is logged, never thrown into the store. Delayed keys keep only their earliest deadline.
 */
export class ReconcileQueue {
  private readonly pending = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private scheduled: NodeJS.Immediate | undefined;
  private stopped = false;

  constructor(
    private readonly name: string,
    private readonly reconcile: (key: string) => void,
  ) {}

  add(key: string): void {
    if (this.stopped) return;
    this.pending.add(key);
    this.scheduled ??= setImmediate(() => this.drain());
  }

  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    if (delayMs <= 0) return this.add(key);
    const at = Date.now() + delayMs;
    const existing = this.timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, delayMs);
    this.timers.set(key, { at, timer });
  }

  stop(): void {
    this.stopped = true;
    if (this.scheduled) clearImmediate(this.scheduled);
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.pending.clear();
  }

  private drain(): void {
    this.scheduled = undefined;
    const keys = [...this.pending];
    this.pending.clear();
    for (const key of keys) {
      if (this.stopped) return;
      try {
        this.reconcile(key);
      } catch (err) {
        Log.error({ err: String(err instanceof Error ? (err.stack ?? err.message) : err), key }, `${this.name}: reconcile failed`);
        // Like a controller's rate-limited requeue: a transient failure heals without hammering the store.
        this.addAfter(key, 1000);
      }
    }
  }
}

/** Runs a watch callback body, logging instead of throwing into the store's commit path. */
export function guarded(what: string, fn: () => void): void {
  try {
    fn();
  } catch (err) {
    Log.error({ err: String(err instanceof Error ? err.message : err) }, `${what} failed`);
  }
}

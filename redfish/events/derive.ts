// Redfish events derived from the watch cache: the service keeps, per system, a snapshot of what clients see
// (PowerState, Health, the rendered ComputerSystem and Cd bodies, the states of the system's Tasks) and turns
// the difference between two snapshots into Event records. Pure: no clocks, no I/O.
import { createHash } from "node:crypto";
import type { VmRecord } from "../cache/types";
import { reportedPowerState } from "../power";
import { systemIdOf, systemUri, type TaskView } from "../resources/context";
import { health } from "../resources/hardware";
import { renderCd, systemVirtualMediaUri, CD_ID } from "../resources/virtual-media";
import { renderSystem } from "../resources/systems";

export const RESOURCE_EVENT_REGISTRY = "ResourceEvent.1.3.0";
export const TASK_EVENT_REGISTRY = "TaskEvent.1.0.3";

/** DSP0266 EventTypes this service emits (EventDestination.EventTypes filters on them). */
export const EVENT_TYPES = ["StatusChange", "ResourceUpdated", "ResourceAdded", "ResourceRemoved", "Other"] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** Resource types whose events a subscription can ask for (EventDestination.ResourceTypes). */
export const RESOURCE_TYPES = ["ComputerSystem", "VirtualMedia", "Task"] as const;
export type EventResourceType = (typeof RESOURCE_TYPES)[number];
export const REGISTRY_PREFIXES = ["ResourceEvent", "TaskEvent"] as const;

/** Message templates (verbatim) of the ResourceEvent 1.3.0 and TaskEvent 1.0.3 registries that this service emits. */
const MESSAGES = {
  ResourceChanged: { registry: RESOURCE_EVENT_REGISTRY, text: "One or more resource properties have changed.", severity: "OK" },
  ResourceCreated: { registry: RESOURCE_EVENT_REGISTRY, text: "The resource has been created successfully.", severity: "OK" },
  ResourceRemoved: { registry: RESOURCE_EVENT_REGISTRY, text: "The resource has been removed successfully.", severity: "OK" },
  ResourcePoweredOn: { registry: RESOURCE_EVENT_REGISTRY, text: "The resource `%1` has powered on.", severity: "OK" },
  ResourcePoweredOff: { registry: RESOURCE_EVENT_REGISTRY, text: "The resource `%1` has powered off.", severity: "OK" },
  ResourcePoweringOn: { registry: RESOURCE_EVENT_REGISTRY, text: "The resource `%1` is powering on.", severity: "OK" },
  ResourcePoweringOff: { registry: RESOURCE_EVENT_REGISTRY, text: "The resource `%1` is powering off.", severity: "OK" },
  ResourcePaused: { registry: RESOURCE_EVENT_REGISTRY, text: "The resource `%1` has been paused.", severity: "OK" },
  ResourceStatusChangedOK: { registry: RESOURCE_EVENT_REGISTRY, text: "The health of resource '%1' has changed to %2.", severity: "OK" },
  ResourceStatusChangedWarning: { registry: RESOURCE_EVENT_REGISTRY, text: "The health of resource `%1` has changed to %2.", severity: "Warning" },
  TaskStarted: { registry: TASK_EVENT_REGISTRY, text: "The task with Id '%1' has started.", severity: "OK" },
  TaskCompletedOK: { registry: TASK_EVENT_REGISTRY, text: "The task with Id '%1' has completed.", severity: "OK" },
  TaskAborted: { registry: TASK_EVENT_REGISTRY, text: "The task with Id '%1' has completed with errors.", severity: "Critical" },
  TaskCancelled: { registry: TASK_EVENT_REGISTRY, text: "Work on the task with Id '%1' has been halted prior to completion due to an explicit request.", severity: "Warning" },
} as const;
export type EventMessageKey = keyof typeof MESSAGES;

/** One derived event, before it gets an id and a timestamp. */
export interface DerivedEvent {
  messageKey: EventMessageKey;
  messageArgs: string[];
  eventType: EventType;
  resourceType: EventResourceType;
  /** The resource the event is about. */
  origin: string;
  /** The system the event belongs to: who may see that system may see the event. */
  namespace: string;
  vmName: string;
}

export function messageIdOf(key: EventMessageKey): string {
  return `${MESSAGES[key].registry}.${key}`;
}
export function messageTextOf(key: EventMessageKey, args: readonly string[]): string {
  return MESSAGES[key].text.replace(/%(\d+)/g, (whole, n: string) => args[Number(n) - 1] ?? whole);
}
export function severityOf(key: EventMessageKey): "OK" | "Warning" | "Critical" {
  return MESSAGES[key].severity;
}
export function registryPrefixOf(key: EventMessageKey): string {
  return MESSAGES[key].registry.split(".")[0];
}

/** What clients of one system see, reduced to what events are derived from. */
export interface SystemSnapshot {
  id: string;
  powerState: string;
  health: string;
  /** Digest of the ComputerSystem body as served (without per-principal chassis links): compared, never read, so
   * 10,000 systems cost 10,000 short strings rather than 10,000 rendered bodies. */
  system: string;
  /** Digest of the Cd VirtualMedia body. */
  media: string;
  /** Task id → TaskState. */
  tasks: ReadonlyMap<string, string>;
}

function digest(body: unknown): string {
  return createHash("sha1").update(JSON.stringify(body)).digest("base64");
}

export function snapshotOf(rec: VmRecord, tasks: readonly TaskView[]): SystemSnapshot {
  const id = systemIdOf(rec);
  const visible = { id, rec, chassis: [] };
  return {
    id,
    // What the System's PowerState shows (a graceful shutdown reads On until the guest is off), so that an event
    // never announces a state a GET does not show.
    powerState: reportedPowerState(rec),
    health: health(rec.vm),
    system: digest(renderSystem(visible)),
    media: digest(renderCd(visible, `${systemVirtualMediaUri(id)}/${CD_ID}`)),
    tasks: new Map(tasks.map(t => [t.id, String(t.body.TaskState ?? "")])),
  };
}

const POWER_MESSAGES: Partial<Record<string, EventMessageKey>> = {
  On: "ResourcePoweredOn",
  Off: "ResourcePoweredOff",
  PoweringOn: "ResourcePoweringOn",
  PoweringOff: "ResourcePoweringOff",
  Paused: "ResourcePaused",
};

const TASK_MESSAGES: Partial<Record<string, EventMessageKey>> = {
  Running: "TaskStarted",
  Completed: "TaskCompletedOK",
  Exception: "TaskAborted",
  Cancelled: "TaskCancelled",
};

const taskUri = (id: string) => `/redfish/v1/TaskService/Tasks/${encodeURIComponent(id)}`;

/**
 * The events between two snapshots of one system (`before` undefined: the system appeared; `after` undefined:
 * it went away). Order: the specific events first, then ResourceChanged.
 */
export function diffSnapshots(namespace: string, vmName: string, before: SystemSnapshot | undefined, after: SystemSnapshot | undefined): DerivedEvent[] {
  const events: DerivedEvent[] = [];
  const snapshot = (after ?? before)!;
  const systemOrigin = systemUri(snapshot.id);
  const push = (messageKey: EventMessageKey, eventType: EventType, resourceType: EventResourceType, origin: string, messageArgs: string[] = []) =>
    events.push({ messageKey, messageArgs, eventType, resourceType, origin, namespace, vmName });

  if (!before && !after) return events;
  if (!before) {
    push("ResourceCreated", "ResourceAdded", "ComputerSystem", systemOrigin);
    return events;
  }
  if (!after) {
    push("ResourceRemoved", "ResourceRemoved", "ComputerSystem", systemOrigin);
    return events;
  }
  if (before.powerState !== after.powerState) {
    const key = POWER_MESSAGES[after.powerState];
    if (key) push(key, "StatusChange", "ComputerSystem", systemOrigin, [systemOrigin]);
  }
  if (before.health !== after.health) {
    push(after.health === "OK" ? "ResourceStatusChangedOK" : "ResourceStatusChangedWarning", "StatusChange", "ComputerSystem", systemOrigin, [systemOrigin, after.health]);
  }
  for (const [id, state] of after.tasks) {
    if (before.tasks.get(id) === state) continue;
    const key = TASK_MESSAGES[state];
    if (key) push(key, "StatusChange", "Task", taskUri(id), [id]);
  }
  if (before.system !== after.system) push("ResourceChanged", "ResourceUpdated", "ComputerSystem", systemOrigin);
  if (before.media !== after.media) push("ResourceChanged", "ResourceUpdated", "VirtualMedia", `${systemVirtualMediaUri(after.id)}/${CD_ID}`);
  return events;
}

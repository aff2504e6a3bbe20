// Typed read access to VirtualMachine / VirtualMachineInstance / DataVolume objects. The watch cache stores
// whatever the API server sent, so every accessor checks the shape it reads instead of trusting a cast; the
// Redfish modules (power, boot, media, tasks, hardware) read objects only through these.
import type { KubeObject } from "../cache/types";

export type JsonObject = Record<string, unknown>;

/** `v` when it is a JSON object (not null, not an array). */
export function asObject(v: unknown): JsonObject | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as JsonObject) : undefined;
}

/** The value at `path` below `root` (undefined as soon as a step is not an object). */
export function valueAt(root: unknown, ...path: string[]): unknown {
  let value = root;
  for (const key of path) value = asObject(value)?.[key];
  return value;
}

/** `v` when it is an array, else an empty list. */
export function listOf(v: unknown): readonly unknown[] {
  return Array.isArray(v) ? v : [];
}

/** The entry of a named list (disks, volumes, interfaces) with this name. */
export function namedEntry(list: unknown, name: string): JsonObject | undefined {
  return listOf(list).map(asObject).find(e => e?.name === name);
}

export function specOf(obj: Readonly<KubeObject> | undefined): JsonObject {
  return asObject(obj?.spec) ?? {};
}

export function statusOf(obj: Readonly<KubeObject> | undefined): JsonObject {
  return asObject(obj?.status) ?? {};
}

export function annotationOf(obj: Readonly<KubeObject>, key: string): string | undefined {
  const value = obj.metadata.annotations?.[key];
  return typeof value === "string" ? value : undefined;
}

/** A `status.conditions` entry of this type. */
export function conditionOf(obj: Readonly<KubeObject>, type: string): JsonObject | undefined {
  return listOf(statusOf(obj).conditions)
    .map(asObject)
    .find(c => c?.type === type);
}

export function hasCondition(obj: Readonly<KubeObject>, type: string): boolean {
  return conditionOf(obj, type)?.status === "True";
}

/** `spec.template.spec` of a VM: what its next VMI is created from. */
export function templateSpecOf(vm: { spec?: unknown }): JsonObject | undefined {
  return asObject(valueAt(vm.spec, "template", "spec"));
}

/** `spec` of a VMI: what the running guest was created from. */
export function vmiSpecOf(vmi: Readonly<KubeObject> | undefined): JsonObject | undefined {
  return asObject(vmi?.spec);
}

/** The `domain.devices` object of a VMI spec or VM template spec. */
export function devicesOf(podSpec: JsonObject | undefined): JsonObject | undefined {
  return asObject(valueAt(podSpec, "domain", "devices"));
}

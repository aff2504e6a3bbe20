// State the module keeps on a VM as a JSON annotation (boot override, pending Bios settings): read back through a
// schema, and an unreadable value counts as none instead of failing every view of the system.
import type { z } from "zod";
import { parseJsonAs } from "../../capabilities/common/json";
import { Log } from "../platform";
import type { KubeObject } from "../cache/types";

// Views read these on every GET: warn once per VM, key and value, not per request (bounded).
const warnedUnreadable = new Set<string>();

/** The annotation's JSON value as `schema` reads it; undefined when absent or unreadable (logged once). */
export function annotationJson<S extends z.ZodType>(vm: Readonly<KubeObject>, key: string, schema: S): z.output<S> | undefined {
  const raw = vm.metadata.annotations?.[key];
  if (typeof raw !== "string") return undefined;
  const value = parseJsonAs(schema, raw);
  if (value !== undefined) return value;
  const seen = `${vm.metadata.uid}\n${key}\n${raw}`;
  if (!warnedUnreadable.has(seen)) {
    if (warnedUnreadable.size > 1000) warnedUnreadable.clear();
    warnedUnreadable.add(seen);
    Log.warn({ namespace: vm.metadata.namespace, name: vm.metadata.name }, `ignoring unreadable ${key} annotation`);
  }
  return undefined;
}

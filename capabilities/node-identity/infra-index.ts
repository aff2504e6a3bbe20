// What node-identity knows about the infra cluster's VMs: a snapshot (built by the watcher from its watch
// of the infra cluster, shipped to admission pods through the Pepr Store) and an index over it, so that
// discovery and verification are map lookups. Plain module.
import { z } from "zod";
import { sameUUID } from "./identity";

export interface InfraVm {
  namespace: string;
  name: string;
  /** spec.template.spec.domain.firmware.uuid (what the guest reports as its SMBIOS system UUID). */
  firmwareUUID?: string;
  /** The guest hostname when the VM/VMI sets spec.hostname. */
  hostname?: string;
}

export interface InfraSnapshot {
  /** Namespaces whose VMs were listed completely: a VM absent from the snapshot in one of them does not exist. */
  namespaces: string[];
  vms: InfraVm[];
  /** When the watcher last confirmed the data (ISO 8601), for diagnostics. */
  syncedAt: string;
}

function vmKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

function addTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

export class VmIndex {
  readonly namespaces: ReadonlySet<string>;
  readonly size: number;
  readonly syncedAt: string;
  #byKey = new Map<string, InfraVm>();
  #byUUID = new Map<string, InfraVm[]>();
  #byHostname = new Map<string, InfraVm[]>();
  #byName = new Map<string, InfraVm[]>();

  constructor(snapshot: InfraSnapshot) {
    this.namespaces = new Set(snapshot.namespaces);
    this.syncedAt = snapshot.syncedAt;
    for (const vm of snapshot.vms) {
      this.#byKey.set(vmKey(vm.namespace, vm.name), vm);
      if (vm.firmwareUUID) addTo(this.#byUUID, vm.firmwareUUID.trim().toLowerCase(), vm);
      if (vm.hostname) addTo(this.#byHostname, vm.hostname, vm);
      addTo(this.#byName, vm.name, vm);
    }
    this.size = this.#byKey.size;
  }

  covers(namespace: string): boolean {
    return this.namespaces.has(namespace);
  }

  get(namespace: string, name: string): InfraVm | undefined {
    return this.#byKey.get(vmKey(namespace, name));
  }

  byFirmwareUUID(uuid: string): readonly InfraVm[] {
    return this.#byUUID.get(uuid.trim().toLowerCase()) ?? [];
  }

  byHostname(hostname: string): readonly InfraVm[] {
    return this.#byHostname.get(hostname) ?? [];
  }

  byName(name: string): readonly InfraVm[] {
    return this.#byName.get(name) ?? [];
  }
}

/** True unless both UUIDs are known and differ. */
export function uuidCompatible(systemUUID: string | undefined, vm: InfraVm): boolean {
  return !systemUUID || !vm.firmwareUUID || sameUUID(systemUUID, vm.firmwareUUID);
}

// Store encoding: one key, compact tuples (the PeprStore is a single object shared by every capability).
export const INFRA_SNAPSHOT_STORE_KEY = "infra-snapshot";

const StoredSnapshotSchema = z.object({
  v: z.literal(1),
  syncedAt: z.string(),
  namespaces: z.array(z.string()),
  vms: z.array(z.tuple([z.string().min(1), z.string().min(1), z.string(), z.string()])),
});

export function encodeSnapshot(snapshot: InfraSnapshot): string {
  const vms = [...snapshot.vms]
    .sort((a, b) => vmKey(a.namespace, a.name).localeCompare(vmKey(b.namespace, b.name)))
    .map(vm => [vm.namespace, vm.name, vm.firmwareUUID ?? "", vm.hostname ?? ""]);
  return JSON.stringify({ v: 1, syncedAt: snapshot.syncedAt, namespaces: [...snapshot.namespaces].sort(), vms });
}

/** Parses what the watcher published; throws on anything malformed (the Store is shared, mutable input). */
export function decodeSnapshot(text: string): InfraSnapshot {
  const stored = StoredSnapshotSchema.parse(JSON.parse(text));
  return {
    syncedAt: stored.syncedAt,
    namespaces: stored.namespaces,
    vms: stored.vms.map(([namespace, name, firmwareUUID, hostname]) => ({
      namespace,
      name,
      ...(firmwareUUID ? { firmwareUUID } : {}),
      ...(hostname ? { hostname } : {}),
    })),
  };
}

/** Equality of content, ignoring syncedAt (so that a re-list that changed nothing publishes nothing). */
export function sameContent(a: InfraSnapshot, b: InfraSnapshot): boolean {
  return encodeSnapshot({ ...a, syncedAt: "" }) === encodeSnapshot({ ...b, syncedAt: "" });
}

// Boot devices of a VM template (or VMI spec) and the boot-order arithmetic behind Redfish boot override.
// KubeVirt boots the devices that carry a `bootOrder`, lowest first, and rejects duplicate values; a device
// without one is not bootable once any device has one. Nothing here knows a disk by its name.

import { asObject, devicesOf } from "../kubevirt/objects";

export { devicesOf, templateSpecOf } from "../kubevirt/objects";

export type OverrideTarget = "Pxe" | "Cd" | "Hdd";

export interface BootDevice {
  /** "disk/<name>" or "interface/<name>": unique within a VM (names are unique per list). */
  key: string;
  list: "disks" | "interfaces";
  name: string;
  /** Position in its list (implicit disks count on from the end of the declared ones). */
  index: number;
  /** A volume without a disk entry: KubeVirt gives it a default disk; setting its order writes that entry. */
  implicit?: boolean;
  media: "cdrom" | "disk" | "lun" | "nic";
  bootOrder?: number;
}

/** bootOrder per device key; null = no bootOrder. */
export type BootOrders = Record<string, number | null>;

function validBootOrder(v: unknown): number | undefined {
  return typeof v === "number" && Number.isInteger(v) && v > 0 ? v : undefined;
}

export function bootDevicesOf(podSpec: Record<string, unknown> | undefined): BootDevice[] {
  const devices = devicesOf(podSpec);
  const out: BootDevice[] = [];
  const disks = Array.isArray(devices?.disks) ? devices.disks : [];
  disks.forEach((raw, index) => {
    const disk = asObject(raw);
    if (!disk || typeof disk.name !== "string") return;
    const media = disk.cdrom !== undefined ? "cdrom" : disk.lun !== undefined ? "lun" : "disk";
    out.push({ key: `disk/${disk.name}`, list: "disks", name: disk.name, index, media, bootOrder: validBootOrder(disk.bootOrder) });
  });
  // KubeVirt's SetDefaultVolumeDisk: every volume without a disk (or filesystem) of its name gets `disk: {}`.
  const declared = new Set(out.map(d => d.name));
  const filesystems = Array.isArray(devices?.filesystems) ? devices.filesystems : [];
  for (const fs of filesystems) if (typeof asObject(fs)?.name === "string") declared.add(asObject(fs)!.name as string);
  const volumes = Array.isArray(podSpec?.volumes) ? podSpec.volumes : [];
  let nextIndex = disks.length;
  for (const raw of volumes) {
    const name = asObject(raw)?.name;
    if (typeof name !== "string" || declared.has(name)) continue;
    declared.add(name);
    out.push({ key: `disk/${name}`, list: "disks", name, index: nextIndex++, media: "disk", implicit: true });
  }
  const interfaces = Array.isArray(devices?.interfaces) ? devices.interfaces : [];
  interfaces.forEach((raw, index) => {
    const iface = asObject(raw);
    if (!iface || typeof iface.name !== "string") return;
    out.push({
      key: `interface/${iface.name}`,
      list: "interfaces",
      name: iface.name,
      index,
      media: "nic",
      bootOrder: validBootOrder(iface.bootOrder),
    });
  });
  return out;
}

/**
 * The virtual CD drive (VirtualMedia/Cd) as a boot device while it is empty: a physical BMC's virtual drive
 * exists with or without media. It has no template entry until InsertMedia adds one (media/plan.ts attachOps),
 * so orders written for it wait in the override record until then.
 */
export function emptyVirtualDrive(devices: BootDevice[], driveName: string): BootDevice {
  const disks = devices.filter(d => d.list === "disks").length;
  return { key: `disk/${driveName}`, list: "disks", name: driveName, index: disks, media: "cdrom" };
}

export function ordersOf(devices: BootDevice[]): BootOrders {
  return Object.fromEntries(devices.map(d => [d.key, d.bootOrder ?? null]));
}

export function withOrders(devices: BootDevice[], orders: BootOrders): BootDevice[] {
  return devices.map(d => {
    const order = d.key in orders ? orders[d.key] : (d.bootOrder ?? null);
    return { ...d, bootOrder: order ?? undefined };
  });
}

/** Lowest bootOrder first; devices without one after those, in list order (disks before interfaces). */
function byBootPreference(a: BootDevice, b: BootDevice): number {
  const ao = a.bootOrder ?? Number.MAX_SAFE_INTEGER;
  const bo = b.bootOrder ?? Number.MAX_SAFE_INTEGER;
  if (ao !== bo) return ao - bo;
  if (a.list !== b.list) return a.list === "disks" ? -1 : 1;
  return a.index - b.index;
}

function candidatesFor(devices: BootDevice[], target: OverrideTarget): BootDevice[] {
  switch (target) {
    case "Cd":
      return devices.filter(d => d.media === "cdrom");
    case "Hdd":
      return devices.filter(d => d.media === "disk" || d.media === "lun");
    case "Pxe":
      return devices.filter(d => d.media === "nic");
  }
}

/**
 * The device a target boots: among the matching devices, the one the VM already prefers (lowest bootOrder),
 * else the first in its list. `preferredCdrom` (the virtual-media drive) wins for Cd when present.
 */
export function targetDevice(devices: BootDevice[], target: OverrideTarget, preferredCdrom?: string): BootDevice | undefined {
  const candidates = candidatesFor(devices, target);
  if (target === "Cd" && preferredCdrom) {
    const preferred = candidates.find(d => d.name === preferredCdrom);
    if (preferred) return preferred;
  }
  return [...candidates].sort(byBootPreference)[0];
}

/**
 * Boot orders that put `target` first. The devices that were bootable keep their relative order behind it,
 * renumbered 2..n (no duplicates, whatever values they had). When no device had a bootOrder (KubeVirt's
 * default: boot from the disks), the disks become the fallback, in list order, so a failed boot from the
 * target still falls through to the disks as on a physical machine.
 * Returns undefined when the VM has no device for the target.
 */
export function overrideOrders(devices: BootDevice[], target: OverrideTarget, preferredCdrom?: string): BootOrders | undefined {
  const first = targetDevice(devices, target, preferredCdrom);
  if (!first) return undefined;
  const explicit = devices.filter(d => d.bootOrder !== undefined);
  const rest = (explicit.length > 0 ? explicit.sort(byBootPreference) : devices.filter(d => d.list === "disks")).filter(
    d => d.key !== first.key,
  );
  const orders: BootOrders = Object.fromEntries(devices.map(d => [d.key, null]));
  orders[first.key] = 1;
  rest.forEach((d, i) => (orders[d.key] = i + 2));
  return orders;
}

/**
 * The orders to restore: saved values for the devices that existed when the override was made; devices added
 * since keep theirs unless that would duplicate a restored value.
 */
export function restoredOrders(devices: BootDevice[], original: BootOrders): BootOrders {
  const orders: BootOrders = {};
  const taken = new Set<number>();
  for (const d of devices) {
    if (d.key in original) {
      orders[d.key] = original[d.key];
      if (original[d.key] !== null) taken.add(original[d.key] as number);
    }
  }
  for (const d of devices) {
    if (d.key in original) continue;
    const keep = d.bootOrder !== undefined && !taken.has(d.bootOrder);
    orders[d.key] = keep ? (d.bootOrder as number) : null;
    if (keep) taken.add(d.bootOrder as number);
  }
  return orders;
}

/** Whether the devices carry these orders (devices absent from `orders` are not compared). */
export function matchesOrders(devices: BootDevice[], orders: BootOrders): boolean {
  return devices.every(d => !(d.key in orders) || (d.bootOrder ?? null) === orders[d.key]);
}

/**
 * A copy of a `disks` or `interfaces` list with the given orders applied (bootOrder set or removed); the rest
 * of every entry is kept as is. `implicitDisks` (volumes without a disk entry) that get an order are appended
 * as the default disk KubeVirt would have given them.
 */
export function applyOrdersToList(
  list: unknown[],
  kind: "disk" | "interface",
  orders: BootOrders,
  implicitDisks: readonly string[] = [],
): unknown[] {
  const added = implicitDisks
    .filter(name => typeof orders[`disk/${name}`] === "number")
    .map(name => ({ name, disk: {}, bootOrder: orders[`disk/${name}`] }));
  const updated = list.map(raw => {
    const entry = asObject(raw);
    if (!entry || typeof entry.name !== "string") return raw;
    const key = `${kind}/${entry.name}`;
    if (!(key in orders)) return raw;
    const copy: Record<string, unknown> = structuredClone(entry);
    const order = orders[key];
    if (order === null) delete copy.bootOrder;
    else copy.bootOrder = order;
    return copy;
  });
  return kind === "disk" ? [...updated, ...added] : updated;
}

// What a VMI boots from, as libvirt decides it from KubeVirt's domain: the bootable device (disk with a volume,
// or interface) with the lowest bootOrder; without any bootOrder, the first disk. Plus KubeVirt's admission
// rules for bootOrder, which the sandbox has no webhook for, so the VM controller applies them at start.
import type { VmiSpec } from "./model";

/**
 * KubeVirt's ValidateVirtualMachineInstanceSpec causes for boot order, in its words, disks first and then
 * interfaces sharing one set of used values. `path` is the spec's field path ("spec.template.spec").
 */
export function bootOrderCauses(spec: VmiSpec, path: string): string[] {
  const causes: string[] = [];
  const used = new Set<number>();
  const check = (kind: "disks" | "interfaces", index: number, order: number | null | undefined): void => {
    if (order === undefined || order === null) return;
    const field = `${path}.domain.devices.${kind}[${index}]`;
    if (order < 1) {
      causes.push(`${field}.bootOrder: ${field} must have a boot order > 0, if supplied`);
      return;
    }
    if (used.has(order)) causes.push(`${field}.bootOrder: Boot order for ${field}.bootOrder already set for a different device.`);
    used.add(order);
  };
  (spec.domain?.devices?.disks ?? []).forEach((d, i) => check("disks", i, d.bootOrder));
  (spec.domain?.devices?.interfaces ?? []).forEach((iface, i) => check("interfaces", i, iface.bootOrder));
  return causes;
}

/**
 * The name of the device the guest boots from, or undefined when nothing is bootable. A disk without a volume
 * (an empty CD-ROM tray) cannot boot, so the next device in order is used, like firmware skipping it.
 */
export function bootDevice(spec: VmiSpec): string | undefined {
  const volumes = new Set((spec.volumes ?? []).map(v => v.name));
  const allDisks = spec.domain?.devices?.disks ?? [];
  const interfaces = spec.domain?.devices?.interfaces ?? [];
  const hasOrder = (d: { bootOrder?: number | null }): d is { bootOrder: number } => typeof d.bootOrder === "number" && d.bootOrder > 0;
  // With any per-device boot order, libvirt boots only ordered devices; otherwise the first disk (<boot dev='hd'>).
  if ([...allDisks, ...interfaces].some(hasOrder)) {
    const ordered = [...allDisks.filter(d => volumes.has(d.name)), ...interfaces]
      .filter((d): d is typeof d & { bootOrder: number } => hasOrder(d))
      .sort((a, b) => a.bootOrder - b.bootOrder);
    return ordered[0]?.name;
  }
  return allDisks.find(d => volumes.has(d.name))?.name;
}

export function firmwareOf(spec: VmiSpec): "uefi" | "bios" {
  return spec.domain?.firmware?.bootloader?.efi !== undefined && spec.domain.firmware.bootloader.efi !== null ? "uefi" : "bios";
}

// The VM whose inventory the inspection tests check (sushy in the conformance suite, Ironic in test/ironic):
// what Ironic must find is written next to it.
import { demoVirtualMachine } from "../../sandbox/demo";
import type { KubeObject } from "../../sandbox/apiserver/types";

export const INSPECTED_MACS = ["02:00:00:00:15:01", "02:00:00:00:15:02"];

/** What Ironic's redfish inspection must set on the node for this VM. */
export const INSPECTED_PROPERTIES = {
  cpus: 8, // 2 sockets x 2 cores x 2 threads
  memory_mb: 6144,
  local_gb: 29, // the smallest disk of at least 4 GiB (30 GiB), minus 1 as Ironic does
  cpu_arch: "x86_64",
};

/** A VM with the hardware an inspection must report: 2 sockets x 2 cores x 2 threads, 6 GiB, a 30 GiB root disk, two NICs. */
export function inspectedVirtualMachine(namespace: string, name: string): KubeObject {
  const vm = demoVirtualMachine(namespace, name, "5e1d0000-0000-4000-8000-0000000015ec", INSPECTED_MACS[0]);
  const spec = vm.spec as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  spec.dataVolumeTemplates = [
    { metadata: { name: `${name}-root` }, spec: { source: { blank: {} }, storage: { resources: { requests: { storage: "30Gi" } } } } },
  ];
  const template = spec.template.spec;
  template.domain.cpu = { sockets: 2, cores: 2, threads: 2 };
  template.domain.memory = { guest: "6Gi" };
  template.domain.resources = { requests: { memory: "6Gi" } };
  template.domain.firmware.bootloader = { efi: { secureBoot: true } };
  template.domain.features = { smm: { enabled: true } };
  template.domain.devices.disks = [
    { name: "rootdisk", disk: { bus: "virtio" } },
    { name: "scratch", disk: { bus: "virtio" } },
  ];
  template.domain.devices.interfaces.push({ name: "provisioning", bridge: {}, macAddress: INSPECTED_MACS[1] });
  template.networks.push({ name: "provisioning", multus: { networkName: "provisioning" } });
  template.volumes = [
    { name: "rootdisk", dataVolume: { name: `${name}-root` } },
    // below Ironic's 4 GiB floor: not the local disk
    { name: "scratch", emptyDisk: { capacity: "2Gi" } },
  ];
  return vm;
}

// The demo data of `npm start`, fixed so the README, docs and checks can rely on it:
//   chassis tenant1 = namespace tenant1-vms, chassis tenant2 = namespace tenant2-vms, VMs vm-1 and vm-2 in
//   each (stopped); users admin/admin123 (both chassis) and tenant1/tenant1-pass (tenant1 only);
//   Nodes worker-0 and worker-1 mapped to tenant1-vms/vm-1 and vm-2; DataVolume policy enforced in tenant1-vms.
import type { ApiServer } from "./apiserver";
import type { KubeObject } from "./apiserver/types";
import { ensureNamespace } from "./cluster";

export const DEMO_TENANTS = ["tenant1", "tenant2"] as const;
export const DEMO_VMS = ["vm-1", "vm-2"] as const;

/** Stable firmware UUIDs, so Nodes can be matched by systemUUID. */
export function demoFirmwareUuid(tenantIndex: number, vmIndex: number): string {
  return `5e1d0000-0000-4000-8000-0000000${tenantIndex}000${vmIndex}`;
}

export function demoVirtualMachine(namespace: string, name: string, firmwareUuid: string, mac: string): KubeObject {
  return {
    apiVersion: "kubevirt.io/v1",
    kind: "VirtualMachine",
    metadata: { name, namespace, labels: { "app.kubernetes.io/part-of": "kubevirt-infra-demo" } },
    spec: {
      runStrategy: "Halted",
      template: {
        metadata: { labels: { "kubevirt.io/domain": name } },
        spec: {
          // A real guest's default: long enough that only a forced power-off is fast.
          terminationGracePeriodSeconds: 180,
          domain: {
            firmware: { uuid: firmwareUuid, serial: `demo-${namespace}-${name}`, bootloader: { efi: { secureBoot: false } } },
            cpu: { cores: 2, sockets: 1, threads: 1 },
            memory: { guest: "4Gi" },
            resources: { requests: { memory: "4Gi" } },
            devices: {
              disks: [{ name: "rootdisk", disk: { bus: "virtio" } }],
              interfaces: [{ name: "default", masquerade: {}, macAddress: mac }],
            },
          },
          networks: [{ name: "default", pod: {} }],
          volumes: [{ name: "rootdisk", containerDisk: { image: "quay.io/containerdisks/fedora:latest" } }],
        },
      },
    },
  };
}

export const demoConfig = {
  role: "both",
  chassis: [
    { name: "tenant1", namespace: "tenant1-vms", description: "Tenant 1 virtual machines" },
    { name: "tenant2", namespace: "tenant2-vms", description: "Tenant 2 virtual machines" },
  ],
  redfish: {
    enabled: true,
    tls: { enabled: true, secretName: "kubevirt-infra-redfish-tls" },
    // Lab opt-out: the demo's image server listens on loopback, which the default policy refuses.
    imageUrlPolicy: { allowCidrs: ["127.0.0.1/32"] },
  },
  datavolume: { storageSize: "1Gi" },
  infra: { namespace: "tenant1-vms", labels: "csi-driver/cluster=tenant1" },
  nodeMapping: [
    { nodeName: "worker-0", vmName: "vm-1", vmNamespace: "tenant1-vms" },
    { nodeName: "worker-1", vmName: "vm-2", vmNamespace: "tenant1-vms" },
  ],
  nodeIdentity: { enabled: true },
  datavolumePolicy: { enabled: true, mode: "enforce", namespaces: ["tenant1-vms"], csiNamePrefix: "pvc-" },
};

export const demoUsers = [
  { username: "admin", password: "admin123", chassis: ["tenant1", "tenant2"] },
  { username: "tenant1", password: "tenant1-pass", chassis: ["tenant1"] },
];

export function seedDemo(api: ApiServer, _opts: { isoUrl: string }): void {
  DEMO_TENANTS.forEach((tenant, t) => {
    const namespace = `${tenant}-vms`;
    ensureNamespace(api, namespace, { "kubevirt-infra.io/chassis": tenant });
    DEMO_VMS.forEach((vm, v) => {
      if (api.store.get("virtualmachines.kubevirt.io", namespace, vm)) return;
      const mac = `02:00:00:00:0${t + 1}:0${v + 1}`;
      api.store.create("virtualmachines.kubevirt.io", demoVirtualMachine(namespace, vm, demoFirmwareUuid(t + 1, v + 1), mac));
    });
  });
  ["worker-0", "worker-1"].forEach((name, i) => {
    if (api.store.get("nodes", undefined, name)) return;
    api.store.create("nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name, labels: { "kubernetes.io/hostname": name } },
      spec: {},
      status: { nodeInfo: { systemUUID: demoFirmwareUuid(1, i + 1) } },
    });
  });
}

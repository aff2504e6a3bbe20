// Realistic KubeVirt objects, a parsed module configuration and request helpers for the Redfish tests.
import { expect } from "vitest";
import { moduleConfigSchema, type ModuleConfig } from "../../capabilities/config/schema";
import { createRedfishService, type RedfishApp, type RedfishAppOptions, type RedfishService } from "../../redfish/app";
import { WatchCache } from "../../redfish/cache/store";
import type { KubeObject } from "../../redfish/cache/types";
import { chassisDefinitions } from "../../redfish/settings";

let rv = 1000;
const nextRv = () => String(++rv);
let uidCounter = 0;
const nextUid = () => `00000000-0000-4000-8000-${String(++uidCounter).padStart(12, "0")}`;

export interface VmOptions {
  labels?: Record<string, string>;
  runStrategy?: string;
  running?: boolean;
  printableStatus?: string;
  cpu?: { cores?: number; sockets?: number; threads?: number; model?: string };
  memory?: { guest?: string; request?: string };
  interfaces?: { name: string; macAddress?: string }[];
  firmwareUuid?: string;
  dataVolumeTemplates?: string[];
}

/** A VirtualMachine as virt-controller leaves it (status, firmware, disks, NICs). */
export function vm(namespace: string, name: string, o: VmOptions = {}): KubeObject {
  const interfaces = o.interfaces ?? [{ name: "default", macAddress: "02:00:00:aa:bb:01" }];
  return {
    apiVersion: "kubevirt.io/v1",
    kind: "VirtualMachine",
    metadata: {
      name,
      namespace,
      uid: nextUid(),
      resourceVersion: nextRv(),
      generation: 1,
      creationTimestamp: "2024-05-01T10:00:00Z",
      labels: { "kubevirt.io/vm": name, ...o.labels },
    },
    spec: {
      ...(o.running !== undefined ? { running: o.running } : { runStrategy: o.runStrategy ?? "Halted" }),
      ...(o.dataVolumeTemplates
        ? {
            dataVolumeTemplates: o.dataVolumeTemplates.map(dv => ({
              metadata: { name: dv },
              spec: { source: { blank: {} }, storage: { resources: { requests: { storage: "10Gi" } } } },
            })),
          }
        : {}),
      template: {
        metadata: { labels: { "kubevirt.io/vm": name } },
        spec: {
          domain: {
            ...(o.cpu ? { cpu: o.cpu } : {}),
            ...(o.memory?.guest ? { memory: { guest: o.memory.guest } } : {}),
            resources: { requests: { memory: o.memory?.request ?? "2Gi" } },
            firmware: { uuid: o.firmwareUuid ?? "5d307ca9-b3ef-428c-8861-06e72d69f223", serial: `serial-${name}` },
            machine: { type: "q35" },
            devices: {
              disks: [{ name: "rootdisk", disk: { bus: "virtio" }, bootOrder: 1 }],
              interfaces: interfaces.map(i => ({ name: i.name, masquerade: {}, ...(i.macAddress ? { macAddress: i.macAddress } : {}) })),
            },
          },
          networks: interfaces.map(i => ({ name: i.name, pod: {} })),
          volumes: [
            o.dataVolumeTemplates?.[0]
              ? { name: "rootdisk", dataVolume: { name: o.dataVolumeTemplates[0] } }
              : { name: "rootdisk", containerDisk: { image: "quay.io/containerdisks/fedora:40" } },
          ],
        },
      },
    },
    status: {
      printableStatus: o.printableStatus ?? "Stopped",
      ready: false,
      created: false,
    },
  };
}

/** A running VMI for a VM (phase Running, guest-reported interfaces). */
export function runningVmi(vmObj: KubeObject, o: { ip?: string } = {}): KubeObject {
  const name = vmObj.metadata.name!;
  const namespace = vmObj.metadata.namespace!;
  const spec = (
    vmObj.spec as {
      template: {
        spec: {
          domain: {
            cpu?: { cores?: number; sockets?: number; threads?: number };
            devices: { interfaces: { name: string; macAddress?: string }[] };
          };
        };
      };
    }
  ).template.spec;
  return {
    apiVersion: "kubevirt.io/v1",
    kind: "VirtualMachineInstance",
    metadata: {
      name,
      namespace,
      uid: nextUid(),
      resourceVersion: nextRv(),
      ownerReferences: [{ apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", name, uid: vmObj.metadata.uid!, controller: true }],
    },
    spec: structuredClone(spec),
    status: {
      phase: "Running",
      conditions: [{ type: "Ready", status: "True" }],
      interfaces: spec.domain.devices.interfaces.map((i, n) => ({
        name: i.name,
        mac: i.macAddress ?? `02:00:00:ff:00:0${n}`,
        ipAddress: o.ip ?? "10.0.2.2",
        ipAddresses: [o.ip ?? "10.0.2.2", "fd10:0:2::2"],
      })),
      currentCPUTopology: {
        cores: spec.domain.cpu?.cores ?? 1,
        sockets: spec.domain.cpu?.sockets ?? 1,
        threads: spec.domain.cpu?.threads ?? 1,
      },
    },
  };
}

export function dataVolume(namespace: string, name: string, ownerVm?: KubeObject): KubeObject {
  return {
    apiVersion: "cdi.kubevirt.io/v1beta1",
    kind: "DataVolume",
    metadata: {
      name,
      namespace,
      uid: nextUid(),
      resourceVersion: nextRv(),
      ...(ownerVm
        ? { ownerReferences: [{ apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", name: ownerVm.metadata.name!, uid: ownerVm.metadata.uid!, controller: true }] }
        : {}),
    },
    spec: { source: { blank: {} }, storage: { resources: { requests: { storage: "10Gi" } } } },
    status: { phase: "Succeeded", progress: "100.0%" },
  };
}

/** A new revision of an object (what a watch MODIFIED event carries). */
export function revise<T extends KubeObject>(obj: T, change: (copy: T) => void): T {
  const copy = structuredClone(obj);
  copy.metadata.resourceVersion = nextRv();
  change(copy);
  return copy;
}

export const PASSWORDS = {
  alice: "alice-Secret-1!",
  bob: "bob-Secret-2!",
  carol: "carol-Secret-3!",
};

/** bcrypt(cost 4) of PASSWORDS.alice, made with bcryptjs (fast enough for tests, real format). */
export const ALICE_HASH = "$2b$04$/SneIGhpt2jSwRfqiPMbyOeKf0sBna1VgrQW/NUV0ok9aq8OvHquC";

/**
 * Two tenants: alice sees chassis tenant1 (namespace tenant1-vms), bob sees tenant2 (tenant2-vms, only
 * VMs labelled redfish=true), carol sees both.
 */
/**
 * The image URL policy of the tests' lab: the local image server on loopback and the made-up image hosts of the
 * fake-driver tests (never resolved). Explicit, as a lab's config must be: the default refuses all of them.
 */
export const LAB_IMAGE_URL_POLICY = {
  allowCidrs: ["127.0.0.1/32"],
  allowHosts: ["h", "x", "images.example", "images.example.org", "evil.example.org"],
};

export function testConfig(overrides: Record<string, unknown> = {}): ModuleConfig {
  const { redfish, ...rest } = overrides;
  return moduleConfigSchema.parse({
    chassis: [
      { name: "tenant1", namespace: "tenant1-vms", description: "Tenant 1 VMs" },
      { name: "tenant2", namespace: "tenant2-vms", vmSelector: { matchLabels: { redfish: "true" } } },
    ],
    authentication: {
      users: [
        { username: "alice", passwordHash: ALICE_HASH, chassis: ["tenant1"] },
        { username: "bob", password: PASSWORDS.bob, chassis: ["tenant2"] },
        { username: "carol", password: PASSWORDS.carol, chassis: ["tenant1", "tenant2"] },
      ],
      sessionTimeoutSeconds: 600,
      lockout: { maxFailures: 3, baseDelaySeconds: 2, maxDelaySeconds: 60 },
    },
    ...rest,
    redfish: { imageUrlPolicy: LAB_IMAGE_URL_POLICY, ...(redfish as Record<string, unknown> | undefined) },
  });
}

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}

export const AUTH = {
  alice: basic("alice", PASSWORDS.alice),
  bob: basic("bob", PASSWORDS.bob),
  carol: basic("carol", PASSWORDS.carol),
};

export interface TestService {
  app: RedfishApp;
  /** What the server answers before the app (redfish/replays.ts). */
  replay: RedfishService["replay"];
  cache: WatchCache;
  config: { current: ModuleConfig | undefined };
  clock: { now: number };
  /** app.request with a socket address (as @hono/node-server passes it). */
  request(path: string, init?: RequestInit & { address?: string }): Promise<Response>;
}

/**
 * A Redfish app over a cache fed like the watcher feeds it: tenant1-vms has vm-a (running) and vm-b (off),
 * tenant2-vms has vm-c (labelled redfish=true) and hidden (not labelled), other-vms has vm-x (no chassis).
 */
export function testService(options: Partial<RedfishAppOptions> = {}): TestService {
  const config = { current: testConfig() as ModuleConfig | undefined };
  const clock = { now: Date.parse("2025-01-01T00:00:00Z") };
  const cache = new WatchCache(chassisDefinitions(config.current));
  const vmA = vm("tenant1-vms", "vm-a", { runStrategy: "Always", printableStatus: "Running", cpu: { cores: 2, sockets: 2, threads: 2 }, memory: { guest: "4Gi" } });
  cache.applyList("VirtualMachine", [
    vmA,
    vm("tenant1-vms", "vm-b", { interfaces: [{ name: "nic0", macAddress: "02:00:00:aa:bb:02" }, { name: "nic1", macAddress: "02:00:00:aa:bb:03" }] }),
    vm("tenant2-vms", "vm-c", { labels: { redfish: "true" } }),
    vm("tenant2-vms", "hidden"),
    vm("other-vms", "vm-x"),
  ]);
  cache.applyList("VirtualMachineInstance", [runningVmi(vmA)]);
  cache.applyList("DataVolume", []);
  const { app, replay } = createRedfishService({
    cache,
    config: () => config.current,
    now: () => clock.now,
    // A login the back-off holds back waits on the test clock, not in real time.
    sleep: async ms => {
      clock.now += ms;
    },
    installationId: () => "test-install",
    ...options,
  });
  return {
    app,
    replay,
    cache,
    config,
    clock,
    request: (path, init = {}) => {
      const { address = "192.0.2.10", ...rest } = init;
      return Promise.resolve(app.request(path, rest, { incoming: { socket: { remoteAddress: address } } }));
    },
  };
}

/** A 202 with a Task and its TaskMonitor (Location), as InsertMedia answers: the monitor and the Task body. */
export async function acceptedTask(res: Response): Promise<{ monitor: string; task: any }> {
  expect(res.status).toBe(202);
  const monitor = res.headers.get("Location")!;
  expect(monitor).toMatch(/^\/redfish\/v1\/TaskService\/TaskMonitors\//);
  return { monitor, task: await res.json() };
}

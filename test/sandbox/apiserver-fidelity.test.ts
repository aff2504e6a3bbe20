// The sandbox API server against what a real kube-apiserver 1.26 (+ KubeVirt, CDI and Pepr CRDs) answered
// (issue 16): each test here failed against the old sandbox, which accepted invalid objects, kept unknown
// fields, deleted dependents inside the DELETE, resumed watches across restarts, kept watches open forever,
// always served KubeVirt's subresource API and enforced no RBAC.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  VersionApi,
  Watch,
  setHeaderOptions,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import { PATCH_NOT_APPLICABLE_STATUS } from "../helpers/kube-status";

interface Status {
  code?: number;
  reason?: string;
  message?: string;
  details?: Record<string, unknown>;
}

/** The metav1.Status body of a failed client-node call. */
async function failure(p: Promise<unknown>): Promise<Status> {
  try {
    await p;
  } catch (err) {
    const body = (err as { body?: unknown }).body;
    return (typeof body === "string" ? JSON.parse(body) : body) as Status;
  }
  throw new Error("the call succeeded");
}

const VM = { group: "kubevirt.io", version: "v1", plural: "virtualmachines" };
const DV = { group: "cdi.kubevirt.io", version: "v1beta1", plural: "datavolumes" };
const STORE = { group: "pepr.dev", version: "v1", plural: "peprstores" };
const TEMPLATE = { spec: { domain: { devices: {} } } };

let api: ApiServer;
let dir: string;
let kc: KubeConfig;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let namespaces = 0;

async function clientsFor(server: ApiServer, token?: string): Promise<KubeConfig> {
  const file = path.join(dir, `kubeconfig-${namespaces++}`);
  await server.writeKubeconfig(file, token ? { token } : {});
  const config = new KubeConfig();
  config.loadFromFile(file);
  return config;
}

async function freshNamespace(): Promise<string> {
  const name = `fid-${namespaces++}`;
  await core.createNamespace({ body: { metadata: { name } } });
  return name;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "apiserver-fidelity-"));
  api = await startApiServer({ gcDelayMs: 300 });
  kc = await clientsFor(api);
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
});

afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("custom resources follow the real CRD schemas", () => {
  it("refuses a VM with cpu.cores a string, a DataVolume without spec and a PeprStore with a number, with kube's 422", async () => {
    const ns = await freshNamespace();
    const vm = await failure(
      custom.createNamespacedCustomObject({
        ...VM,
        namespace: ns,
        body: { apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", metadata: { name: "two" }, spec: { template: { spec: { domain: { cpu: { cores: "two" }, devices: {} } } } } },
      }),
    );
    expect(vm).toMatchObject({ code: 422, reason: "Invalid", details: { name: "two", group: "kubevirt.io", kind: "VirtualMachine" } });
    expect(vm.message).toBe(
      'VirtualMachine.kubevirt.io "two" is invalid: spec.template.spec.domain.cpu.cores: Invalid value: "string": spec.template.spec.domain.cpu.cores in body must be of type integer: "string"',
    );

    const dv = await failure(custom.createNamespacedCustomObject({ ...DV, namespace: ns, body: { apiVersion: "cdi.kubevirt.io/v1beta1", kind: "DataVolume", metadata: { name: "nospec" } } }));
    expect(dv).toMatchObject({ code: 422, reason: "Invalid" });
    expect(dv.message).toBe('DataVolume.cdi.kubevirt.io "nospec" is invalid: spec: Required value');

    const store = await failure(
      custom.createNamespacedCustomObject({ ...STORE, namespace: ns, body: { apiVersion: "pepr.dev/v1", kind: "PeprStore", metadata: { name: "s" }, data: { key: 1 } } }),
    );
    expect(store).toMatchObject({ code: 422, reason: "Invalid" });
    expect(store.message).toBe('PeprStore.pepr.dev "s" is invalid: data.key: Invalid value: "integer": data.key in body must be of type string: "integer"');
  });

  it("prunes unknown fields (kept under x-kubernetes-preserve-unknown-fields) and applies schema defaults", async () => {
    const ns = await freshNamespace();
    const store = (await custom.createNamespacedCustomObject({
      ...STORE,
      namespace: ns,
      body: { apiVersion: "pepr.dev/v1", kind: "PeprStore", metadata: { name: "s" }, data: { a: "1" }, unknownTopLevel: { x: 1 } },
    })) as Record<string, unknown>;
    expect(store.data).toEqual({ a: "1" });
    expect(store).not.toHaveProperty("unknownTopLevel");

    const vm = (await custom.createNamespacedCustomObject({
      ...VM,
      namespace: ns,
      body: {
        apiVersion: "kubevirt.io/v1",
        kind: "VirtualMachine",
        metadata: { name: "v" },
        spec: {
          runStrategy: "Halted",
          notAField: true,
          // dataVolumeTemplates[].metadata preserves unknown fields in KubeVirt's schema.
          dataVolumeTemplates: [{ metadata: { name: "d", custom: "kept" }, spec: { source: { blank: {} }, storage: {} } }],
          template: { spec: { domain: { devices: { disks: [{ name: "root", unknownDiskField: 1 }] } }, volumes: [{ name: "cfg", configMap: {} }] } },
        },
      },
    })) as {
      spec: Record<string, unknown> & {
        dataVolumeTemplates: { metadata: Record<string, unknown> }[];
        template: { spec: { domain: { devices: { disks: object[] } }; volumes: object[] } };
      };
    };
    expect(vm.spec).not.toHaveProperty("notAField");
    expect(vm.spec.template.spec.domain.devices.disks).toEqual([{ name: "root" }]);
    expect(vm.spec.dataVolumeTemplates[0].metadata).toMatchObject({ name: "d", custom: "kept" });
    // The schema's `default: ''` for a ConfigMap volume's name.
    expect(vm.spec.template.spec.volumes).toEqual([{ name: "cfg", configMap: { name: "" } }]);
  });

  it("validates updates and patches too: a bad runStrategy is 422 Unsupported value", async () => {
    const ns = await freshNamespace();
    await custom.createNamespacedCustomObject({ ...VM, namespace: ns, body: { apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", metadata: { name: "v" }, spec: { runStrategy: "Halted", template: TEMPLATE } } });
    const patched = await failure(
      custom.patchNamespacedCustomObject({ ...VM, namespace: ns, name: "v", body: { spec: { template: { spec: { domain: { cpu: { cores: "x" } } } } } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch)),
    );
    expect(patched).toMatchObject({ code: 422, reason: "Invalid" });
    expect(patched.message).toContain("spec.template.spec.domain.cpu.cores in body must be of type integer");
  });
});

describe("core kinds are validated and defaulted like kube", () => {
  it("refuses an Event for another namespace, a ConfigMap key with a slash and a TLS Secret without tls.key", async () => {
    const ns = await freshNamespace();
    const event = await failure(
      core.createNamespacedEvent({ namespace: ns, body: { metadata: { name: "e" }, involvedObject: { kind: "ConfigMap", namespace: "elsewhere", name: "x" }, reason: "R", message: "m" } }),
    );
    expect(event).toMatchObject({ code: 422, reason: "Invalid" });
    expect(event.message).toBe('Event "e" is invalid: involvedObject.namespace: Invalid value: "elsewhere": does not match event.namespace');

    const cm = await failure(core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "c" }, data: { "bad key/x": "v" } } }));
    expect(cm).toMatchObject({ code: 422, reason: "Invalid" });
    expect(cm.message).toMatch(/^ConfigMap "c" is invalid: data\[bad key\/x\]: Invalid value: "bad key\/x": a valid config key must consist of alphanumeric characters/);

    const tls = await failure(
      core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: "t" }, type: "kubernetes.io/tls", data: { "tls.crt": Buffer.from("c").toString("base64") } } }),
    );
    expect(tls).toMatchObject({ code: 422, reason: "Invalid" });
    expect(tls.message).toBe('Secret "t" is invalid: data[tls.key]: Required value');
  });

  it("gives a new Node the not-ready taint and status defaults, and /version has kube's shape", async () => {
    const node = await core.createNode({ body: { metadata: { name: `fid-node-${namespaces++}` } } });
    expect(node.spec?.taints).toEqual([{ key: "node.kubernetes.io/not-ready", effect: "NoSchedule" }]);
    expect(node.status?.daemonEndpoints?.kubeletEndpoint?.Port).toBe(0);
    expect(node.status?.nodeInfo).toMatchObject({ architecture: "", kubeletVersion: "", operatingSystem: "" });
    await core.deleteNode({ name: node.metadata!.name! });

    const version = await kc.makeApiClient(VersionApi).getCode();
    expect(version).toMatchObject({ major: "1", minor: "26", compiler: "gc", gitTreeState: "clean" });
    expect(version.gitVersion).toMatch(/^v1\.26\.\d+$/);
    expect(version.goVersion).toMatch(/^go1\./);
    expect(version.platform).toMatch(/^linux\//);
  });

  it("answers a failed JSON-patch test with 422 Invalid, empty details and no causes", async () => {
    const ns = await freshNamespace();
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "c" }, data: { a: "1" } } });
    const failed = await failure(
      core.patchNamespacedConfigMap({ namespace: ns, name: "c", body: [{ op: "test", path: "/data/a", value: "2" }] }, setHeaderOptions("Content-Type", PatchStrategy.JsonPatch)),
    );
    expect(failed).toEqual(PATCH_NOT_APPLICABLE_STATUS);
  });
});

describe("garbage collection is asynchronous", () => {
  it("an owned Secret outlives its owner's DELETE until the collector runs", async () => {
    const ns = await freshNamespace();
    const owner = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "owner" } } });
    await core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "owned", ownerReferences: [{ apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: owner.metadata!.uid! }] } },
    });
    await core.deleteNamespacedConfigMap({ namespace: ns, name: "owner" });
    // Still there right after the DELETE answered...
    expect((await core.readNamespacedSecret({ namespace: ns, name: "owned" })).metadata?.name).toBe("owned");
    // ...and collected shortly after.
    await expect.poll(async () => (await failure(core.readNamespacedSecret({ namespace: ns, name: "owned" }))).code, { timeout: 5_000 }).toBe(404);
  });
});

/** Opens a client-node watch and records its events and how it ended. */
function recordWatch(config: KubeConfig, urlPath: string, query: Record<string, string | undefined>) {
  const events: { type: string; object: Record<string, unknown> }[] = [];
  let resolveEnd!: (err: unknown) => void;
  const ended = new Promise<unknown>(resolve => (resolveEnd = resolve));
  const started = new Watch(config).watch(urlPath, query, (type, object) => events.push({ type, object }), err => resolveEnd(err ?? null));
  return { events, ended, started };
}

describe("restarts and watch lifetimes", () => {
  it("ends a watch without timeoutSeconds after the configured --min-request-timeout (1-2x)", async () => {
    const short = await startApiServer({ minRequestTimeoutSeconds: 0.3 });
    try {
      const w = recordWatch(await clientsFor(short), "/api/v1/namespaces/default/configmaps", {});
      await w.started;
      const t0 = Date.now();
      await w.ended;
      const lasted = Date.now() - t0;
      expect(lasted).toBeGreaterThanOrEqual(250);
      expect(lasted).toBeLessThan(5_000);
    } finally {
      await short.close();
    }
  });

  it("after restart(): a resumed watch gets an in-stream 410 Expired, and CRD paths answer 503 while starting", async () => {
    const server = await startApiServer();
    try {
      const config = await clientsFor(server);
      const serverCore = config.makeApiClient(CoreV1Api);
      const serverCustom = config.makeApiClient(CustomObjectsApi);
      await serverCore.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "before" } } });
      const list = await serverCore.listNamespacedConfigMap({ namespace: "default" });
      await serverCore.createNamespacedConfigMap({ namespace: "default", body: { metadata: { name: "after-list" } } });

      await server.restart(0, 1_500);
      const starting = await failure(serverCustom.listNamespacedCustomObject({ ...VM, namespace: "default" }));
      expect(starting).toMatchObject({
        code: 503,
        reason: "ServiceUnavailable",
        message: "the request has been made before all known HTTP paths have been installed, please try again",
      });
      // Built-in kinds are served while CRD handlers are still being installed.
      expect((await serverCore.listNamespacedConfigMap({ namespace: "default" })).items.length).toBe(2);

      const resumed = recordWatch(config, "/api/v1/namespaces/default/configmaps", { resourceVersion: list.metadata!.resourceVersion });
      await resumed.ended;
      expect(resumed.events).toEqual([
        { type: "ERROR", object: expect.objectContaining({ kind: "Status", code: 410, reason: "Expired", message: expect.stringMatching(/^too old resource version: /) }) },
      ]);
      await expect.poll(async () => (await serverCustom.listNamespacedCustomObject({ ...VM, namespace: "default" }).then(() => 200, () => 503)), { timeout: 5_000 }).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe("a cluster without KubeVirt's API", () => {
  it("answers subresources.kubevirt.io with 404 text/plain and leaves it out of discovery", async () => {
    const bare = await startApiServer({ kubevirtApi: false });
    try {
      bare.registerSubresource("subresources.kubevirt.io", "v1", "virtualmachines", "start", async () => ({ status: 202 }));
      const res = await fetch(`${bare.url}/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/vm/start`, { method: "PUT", body: "{}" });
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
      expect(await res.text()).toBe("404 page not found\n");
      const groups = (await (await fetch(`${bare.url}/apis`)).json()) as { groups: { name: string }[] };
      expect(groups.groups.map(g => g.name)).not.toContain("subresources.kubevirt.io");
      expect(groups.groups.map(g => g.name)).toContain("kubevirt.io");
    } finally {
      await bare.close();
    }
  });
});

describe("RBAC for token users", () => {
  it("allows what the bound rules grant (resourceNames included), denies the rest with kube's 403, and 403s everything while starting", async () => {
    const user = { username: "system:serviceaccount:pepr-system:module", uid: "sa", groups: ["system:serviceaccounts", "system:authenticated"] };
    const server = await startApiServer({ tokens: [{ token: "sa-token", user }] });
    try {
      server.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "pepr-system" } });
      server.store.create("roles.rbac.authorization.k8s.io", {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        metadata: { name: "config", namespace: "pepr-system" },
        rules: [{ apiGroups: [""], resources: ["configmaps"], resourceNames: ["mine"], verbs: ["get"] }],
      });
      server.store.create("rolebindings.rbac.authorization.k8s.io", {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: "config", namespace: "pepr-system" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "config" },
        subjects: [{ kind: "ServiceAccount", name: "module", namespace: "pepr-system" }],
      });
      server.store.create("configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "mine", namespace: "pepr-system" } });
      server.store.create("configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "other", namespace: "pepr-system" } });
      const sa = (await clientsFor(server, "sa-token")).makeApiClient(CoreV1Api);

      expect((await sa.readNamespacedConfigMap({ namespace: "pepr-system", name: "mine" })).metadata?.name).toBe("mine");
      const other = await failure(sa.readNamespacedConfigMap({ namespace: "pepr-system", name: "other" }));
      expect(other).toMatchObject({ code: 403, reason: "Forbidden", details: { name: "other", kind: "configmaps" } });
      expect(other.message).toBe(
        'configmaps "other" is forbidden: User "system:serviceaccount:pepr-system:module" cannot get resource "configmaps" in API group "" in the namespace "pepr-system"',
      );
      const nodes = await failure(sa.listNode());
      expect(nodes.message).toBe('nodes is forbidden: User "system:serviceaccount:pepr-system:module" cannot list resource "nodes" in API group "" at the cluster scope');
      // Anonymous loopback requests stay cluster admin.
      expect((await fetch(`${server.url}/api/v1/nodes`)).status).toBe(200);

      await server.restart(0, 1_500);
      expect(await failure(sa.readNamespacedConfigMap({ namespace: "pepr-system", name: "mine" }))).toMatchObject({ code: 403 });
      await expect.poll(async () => sa.readNamespacedConfigMap({ namespace: "pepr-system", name: "mine" }).then(() => 200, () => 403), { timeout: 5_000 }).toBe(200);
    } finally {
      await server.close();
    }
  });
});

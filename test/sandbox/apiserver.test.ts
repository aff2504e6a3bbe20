// The sandbox API server driven by real clients (@kubernetes/client-node 1.4) over HTTP.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  Watch,
  makeInformer,
  setHeaderOptions,
  type KubernetesObject,
  type V1ConfigMap,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";

let api: ApiServer;
let dir: string;
let kc: KubeConfig;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let objects: KubernetesObjectApi;
const logs: string[] = [];

beforeAll(async () => {
  api = await startApiServer({ bookmarkIntervalMs: 100, watchHistory: 100, log: l => logs.push(l) });
  dir = mkdtempSync(path.join(tmpdir(), "apiserver-test-"));
  const kubeconfig = path.join(dir, "kubeconfig");
  await api.writeKubeconfig(kubeconfig);
  kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  objects = KubernetesObjectApi.makeApiClient(kc);
});

afterAll(async () => {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The metav1.Status body of a failed client-node call. */
async function failure(p: Promise<unknown>): Promise<{ code: number; reason?: string; message?: string; details?: Record<string, unknown> }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ApiException) {
      const body = typeof err.body === "string" ? JSON.parse(err.body) : err.body;
      expect(body.kind).toBe("Status");
      expect(body.code).toBe(err.code);
      return body;
    }
    throw err;
  }
  throw new Error("expected the call to fail");
}

let nsCounter = 0;
async function freshNamespace(labels?: Record<string, string>): Promise<string> {
  const name = `t${++nsCounter}-${Math.random().toString(36).slice(2, 7)}`;
  await core.createNamespace({ body: { metadata: { name, labels } } });
  return name;
}

interface Discovery {
  resources: { name: string; namespaced?: boolean; verbs?: string[] }[];
  groups: { name: string }[];
}
async function getJson<T = Discovery>(url: string): Promise<T> {
  return (await (await fetch(url)).json()) as T;
}


describe("CRUD", () => {
  it("creates, reads, lists, updates and deletes ConfigMaps with kube metadata", async () => {
    const ns = await freshNamespace();
    const created = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "one", labels: { app: "x" } }, data: { a: "1" } } });
    expect(created.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata?.creationTimestamp).toBeInstanceOf(Date);
    expect(Number(created.metadata?.resourceVersion)).toBeGreaterThan(0);
    expect(created.metadata?.namespace).toBe(ns);

    const read = await core.readNamespacedConfigMap({ namespace: ns, name: "one" });
    expect(read.data).toEqual({ a: "1" });

    const generated = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { generateName: "gen-" } } });
    expect(generated.metadata?.name).toMatch(/^gen-[a-z0-9]{5}$/);

    const list = await core.listNamespacedConfigMap({ namespace: ns });
    expect(list.items.map(i => i.metadata?.name).sort()).toEqual([generated.metadata!.name, "one"].sort());
    expect(Number(list.metadata?.resourceVersion)).toBeGreaterThanOrEqual(Number(generated.metadata?.resourceVersion));

    read.data = { a: "2" };
    const updated = await core.replaceNamespacedConfigMap({ namespace: ns, name: "one", body: read });
    expect(updated.data).toEqual({ a: "2" });
    expect(Number(updated.metadata?.resourceVersion)).toBeGreaterThan(Number(read.metadata?.resourceVersion));

    await core.deleteNamespacedConfigMap({ namespace: ns, name: "one" });
    const gone = await failure(core.readNamespacedConfigMap({ namespace: ns, name: "one" }));
    expect(gone).toMatchObject({ code: 404, reason: "NotFound", message: 'configmaps "one" not found', details: { name: "one", kind: "configmaps" } });
  });

  it("answers like kube for duplicates, stale updates, missing namespaces and invalid names", async () => {
    const ns = await freshNamespace();
    const first = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "dup" } } });
    expect(await failure(core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "dup" } } }))).toMatchObject({
      code: 409,
      reason: "AlreadyExists",
      message: 'configmaps "dup" already exists',
    });
    await core.replaceNamespacedConfigMap({ namespace: ns, name: "dup", body: { ...first, data: { v: "1" } } });
    const stale = await failure(core.replaceNamespacedConfigMap({ namespace: ns, name: "dup", body: { ...first, data: { v: "2" } } }));
    expect(stale).toMatchObject({
      code: 409,
      reason: "Conflict",
      message: 'Operation cannot be fulfilled on configmaps "dup": the object has been modified; please apply your changes to the latest version and try again',
    });
    expect(await failure(core.createNamespacedConfigMap({ namespace: "does-not-exist", body: { metadata: { name: "x" } } }))).toMatchObject({
      code: 404,
      reason: "NotFound",
      message: 'namespaces "does-not-exist" not found',
    });
    const bad = await failure(core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "Bad_Name" } } }));
    expect(bad.code).toBe(422);
    expect(bad.reason).toBe("Invalid");
    expect(bad.message).toContain('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"');
  });

  it("labels namespaces and deletes a namespace's objects with it", async () => {
    const ns = await freshNamespace({ team: "a" });
    const read = await core.readNamespace({ name: ns });
    expect(read.metadata?.labels).toEqual({ team: "a", "kubernetes.io/metadata.name": ns });
    expect(read.status?.phase).toBe("Active");
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "inside" } } });
    await core.deleteNamespace({ name: ns });
    expect((await failure(core.readNamespace({ name: ns }))).code).toBe(404);
    expect(api.store.get("configmaps", ns, "inside")).toBeUndefined();
  });
});

interface WatchHandle {
  events: { type: string; object: KubernetesObject & { code?: number; reason?: string } }[];
  done: Promise<unknown>;
  abort: () => void;
}

async function watch(p: string, query: Record<string, string | boolean | number>): Promise<WatchHandle> {
  const events: WatchHandle["events"] = [];
  let finish: (err: unknown) => void = () => undefined;
  const done = new Promise(resolve => (finish = resolve));
  const controller = await new Watch(kc).watch(p, query, (type, object) => events.push({ type, object }), err => finish(err));
  return { events, done, abort: () => controller.abort() };
}

describe("list and watch", () => {
  it("streams ADDED/MODIFIED/DELETED, replays from a resourceVersion and ends on timeoutSeconds", async () => {
    const ns = await freshNamespace();
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "pre" } } });
    const list = await core.listNamespacedConfigMap({ namespace: ns });
    const fromZero = await watch(`/api/v1/namespaces/${ns}/configmaps`, { resourceVersion: "0" });
    const fromList = await watch(`/api/v1/namespaces/${ns}/configmaps`, { resourceVersion: list.metadata!.resourceVersion! });
    await expect.poll(() => fromZero.events.length, { message: "events from resourceVersion 0" }).toBe(1);
    expect(fromZero.events[0]).toMatchObject({ type: "ADDED", object: { metadata: { name: "pre" } } });

    const cm = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "live" } } });
    await core.patchNamespacedConfigMap({ namespace: ns, name: "live", body: { data: { x: "1" } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    await core.deleteNamespacedConfigMap({ namespace: ns, name: "live" });
    const expected = ["ADDED", "MODIFIED", "DELETED"];
    await expect.poll(() => fromList.events.length, { message: "events from the list resourceVersion" }).toBe(3);
    expect(fromList.events.map(e => e.type)).toEqual(expected);
    expect(fromList.events.every(e => e.object.metadata?.name === "live")).toBe(true);
    const rvs = fromList.events.map(e => Number(e.object.metadata?.resourceVersion));
    expect(rvs[0]).toBe(Number(cm.metadata?.resourceVersion));
    expect([...rvs].sort((a, b) => a - b)).toEqual(rvs);
    await expect.poll(() => fromZero.events.length, { message: "events from resourceVersion 0" }).toBe(4);

    // Resume: a watch from the first event's RV replays exactly the later ones.
    const resumed = await watch(`/api/v1/namespaces/${ns}/configmaps`, { resourceVersion: String(rvs[0]), timeoutSeconds: 1 });
    const started = Date.now();
    await resumed.done;
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(resumed.events.map(e => e.type)).toEqual(["MODIFIED", "DELETED"]);
    fromZero.abort();
    fromList.abort();
  });

  it("sends 410 Gone as an ERROR event for a compacted resourceVersion, and bookmarks when asked", async () => {
    const ns = await freshNamespace();
    const first = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "churn" } } });
    // watchHistory is 100 in this suite: push the first event out of the window.
    for (let i = 0; i < 110; i++) {
      await core.patchNamespacedConfigMap({ namespace: ns, name: "churn", body: { data: { i: String(i) } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    }
    const old = await watch(`/api/v1/namespaces/${ns}/configmaps`, { resourceVersion: first.metadata!.resourceVersion! });
    await old.done;
    expect(old.events).toHaveLength(1);
    expect(old.events[0].type).toBe("ERROR");
    expect(old.events[0].object).toMatchObject({ kind: "Status", code: 410, reason: "Expired" });
    expect((old.events[0].object as { message?: string }).message).toMatch(/^too old resource version: \d+ \(\d+\)$/);

    const withBookmarks = await watch(`/api/v1/namespaces/${ns}/configmaps`, { resourceVersion: "0", allowWatchBookmarks: true });
    await expect.poll(() => withBookmarks.events.map(e => e.type), { message: "a BOOKMARK" }).toContain("BOOKMARK");
    const bookmark = withBookmarks.events.find(e => e.type === "BOOKMARK")!;
    expect(bookmark.object.kind).toBe("ConfigMap");
    expect(Number(bookmark.object.metadata?.resourceVersion)).toBeGreaterThan(Number(first.metadata?.resourceVersion));
    withBookmarks.abort();
  });

  it("applies label and field selectors to lists and watches (no longer matching -> DELETED)", async () => {
    const ns = await freshNamespace();
    for (const [name, labels] of [
      ["a", { tier: "web", env: "prod" }],
      ["b", { tier: "db", env: "prod" }],
      ["c", { tier: "web" }],
    ] as const) {
      await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name, labels } } });
    }
    const names = async (labelSelector?: string, fieldSelector?: string) =>
      (await core.listNamespacedConfigMap({ namespace: ns, labelSelector, fieldSelector })).items.map(i => i.metadata!.name).sort();
    expect(await names("tier=web")).toEqual(["a", "c"]);
    expect(await names("tier==web,env=prod")).toEqual(["a"]);
    expect(await names("tier!=web")).toEqual(["b"]);
    expect(await names("tier in (db, web),env")).toEqual(["a", "b"]);
    expect(await names("tier notin (web)")).toEqual(["b"]);
    expect(await names("!env")).toEqual(["c"]);
    expect(await names(undefined, "metadata.name=b")).toEqual(["b"]);
    expect(await names(undefined, `metadata.namespace=${ns},metadata.name!=b`)).toEqual(["a", "c"]);
    const page1 = await core.listNamespacedConfigMap({ namespace: ns, limit: 2 });
    expect(page1.items.map(i => i.metadata!.name)).toEqual(["a", "b"]);
    expect(page1.metadata?.remainingItemCount).toBe(1);
    const page2 = await core.listNamespacedConfigMap({ namespace: ns, limit: 2, _continue: page1.metadata!._continue });
    expect(page2.items.map(i => i.metadata!.name)).toEqual(["c"]);
    expect(page2.metadata?._continue).toBeUndefined();
    expect((await failure(core.listNamespacedConfigMap({ namespace: ns, labelSelector: "tier in web" }))).code).toBe(400);
    expect((await failure(core.listNamespacedConfigMap({ namespace: ns, fieldSelector: "spec.nope=1" }))).code).toBe(400);

    const w = await watch(`/api/v1/namespaces/${ns}/configmaps`, { resourceVersion: "0", labelSelector: "tier=web" });
    await expect.poll(() => w.events.length, { message: "watch events" }).toBe(2);
    await core.patchNamespacedConfigMap({ namespace: ns, name: "a", body: { metadata: { labels: { tier: "cache" } } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    await core.patchNamespacedConfigMap({ namespace: ns, name: "b", body: { metadata: { labels: { tier: "web" } } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    await expect.poll(() => w.events.length, { message: "watch events" }).toBe(4);
    expect(w.events.slice(2).map(e => [e.type, e.object.metadata?.name])).toEqual([
      ["DELETED", "a"],
      ["ADDED", "b"],
    ]);
    w.abort();
  });

  it("feeds client-node's informer (list, then watch from the list resourceVersion)", async () => {
    const ns = await freshNamespace();
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "existing" } } });
    const informer = makeInformer(kc, `/api/v1/namespaces/${ns}/configmaps`, () => core.listNamespacedConfigMap({ namespace: ns }));
    const seen: string[] = [];
    informer.on("add", (o: V1ConfigMap) => seen.push(`add:${o.metadata?.name}`));
    informer.on("update", (o: V1ConfigMap) => seen.push(`update:${o.metadata?.name}`));
    informer.on("delete", (o: V1ConfigMap) => seen.push(`delete:${o.metadata?.name}`));
    await informer.start();
    await expect.poll(() => seen, { message: "informer events" }).toContain("add:existing");
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "new" } } });
    await core.patchNamespacedConfigMap({ namespace: ns, name: "new", body: { data: { k: "v" } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    await core.deleteNamespacedConfigMap({ namespace: ns, name: "existing" });
    await expect.poll(() => seen.length, { message: "informer events" }).toBe(4);
    expect(seen).toEqual(["add:existing", "add:new", "update:new", "delete:existing"]);
    expect(informer.list().map(o => o.metadata?.name)).toEqual(["new"]);
    await informer.stop();
  });
});

const VM = { group: "kubevirt.io", version: "v1", plural: "virtualmachines" };
type Obj = KubernetesObject & { spec?: Record<string, unknown>; status?: Record<string, unknown>; data?: Record<string, string> };

/** The smallest VM template KubeVirt's CRD schema accepts (spec.template and its domain are required). */
const TEMPLATE = { spec: { domain: { devices: {} } } };

function vm(name: string, spec: Record<string, unknown> = { runStrategy: "Halted", template: TEMPLATE }): Obj {
  return { apiVersion: "kubevirt.io/v1", kind: "VirtualMachine", metadata: { name }, spec };
}

describe("patch", () => {
  it("applies RFC 6902 JSON patches including test, and rejects a failed test with 422", async () => {
    const ns = await freshNamespace();
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "jp", labels: { a: "1" } }, data: { k: "v" } } });
    const patched = await core.patchNamespacedConfigMap(
      {
        namespace: ns,
        name: "jp",
        body: [
          { op: "test", path: "/data/k", value: "v" },
          { op: "add", path: "/metadata/labels/pepr.dev~1cacheID", value: "1" },
          { op: "replace", path: "/data/k", value: "w" },
          { op: "copy", from: "/data/k", path: "/data/copy" },
          { op: "move", from: "/data/copy", path: "/data/moved" },
          { op: "remove", path: "/metadata/labels/a" },
        ],
      },
      setHeaderOptions("Content-Type", PatchStrategy.JsonPatch),
    );
    expect(patched.data).toEqual({ k: "w", moved: "w" });
    expect(patched.metadata?.labels).toEqual({ "pepr.dev/cacheID": "1" });
    const failed = await failure(
      core.patchNamespacedConfigMap({ namespace: ns, name: "jp", body: [{ op: "test", path: "/data/k", value: "nope" }] }, setHeaderOptions("Content-Type", PatchStrategy.JsonPatch)),
    );
    expect(failed).toMatchObject({ code: 422, reason: "Invalid" });
    const missing = await failure(
      core.patchNamespacedConfigMap({ namespace: ns, name: "jp", body: [{ op: "remove", path: "/data/absent" }] }, setHeaderOptions("Content-Type", PatchStrategy.JsonPatch)),
    );
    expect(missing.code).toBe(422);
    expect((await core.readNamespacedConfigMap({ namespace: ns, name: "jp" })).data).toEqual({ k: "w", moved: "w" });
  });

  it("applies merge patches (null deletes) and strategic merge patches on built-ins; 415 for SMP on CRD kinds", async () => {
    const ns = await freshNamespace();
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "mp" }, data: { a: "1", b: "2" } } });
    const merged = await core.patchNamespacedConfigMap({ namespace: ns, name: "mp", body: { data: { a: null, c: "3" } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    expect(merged.data).toEqual({ b: "2", c: "3" });

    await core.createNode({ body: { metadata: { name: `node-${ns}` } } });
    await core.patchNodeStatus(
      { name: `node-${ns}`, body: { status: { conditions: [{ type: "Ready", status: "False" }, { type: "MemoryPressure", status: "False" }] } } },
      setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
    );
    const node = await core.patchNodeStatus(
      { name: `node-${ns}`, body: { status: { conditions: [{ type: "Ready", status: "True" }] } } },
      setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch),
    );
    // Merged by the "type" key instead of replacing the list.
    expect(node.status?.conditions?.map(c => [c.type, c.status])).toEqual([
      ["Ready", "True"],
      ["MemoryPressure", "False"],
    ]);
    await core.deleteNode({ name: `node-${ns}` });

    await custom.createNamespacedCustomObject({ ...VM, namespace: ns, body: vm("smp") });
    const smp = await failure(
      custom.patchNamespacedCustomObject({ ...VM, namespace: ns, name: "smp", body: { spec: { runStrategy: "Always" } } }, setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch)),
    );
    expect(smp).toMatchObject({ code: 415, reason: "UnsupportedMediaType" });
  });

  it("server-side apply creates, merges, tracks managers, reports conflicts and honours force", async () => {
    const ns = await freshNamespace();
    const cm = (data: Record<string, string>): Obj => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "ssa", namespace: ns }, data });
    const created = await objects.patch(cm({ a: "1", b: "2" }), undefined, undefined, "alice", undefined, PatchStrategy.ServerSideApply);
    expect(created.data).toEqual({ a: "1", b: "2" });
    expect(created.metadata?.managedFields?.[0]).toMatchObject({ manager: "alice", operation: "Apply" });

    // Another manager may set other fields; a field owned by alice with a different value conflicts.
    await objects.patch(cm({ c: "3" }), undefined, undefined, "bob", undefined, PatchStrategy.ServerSideApply);
    const conflictBody = await failure(objects.patch(cm({ a: "changed" }), undefined, undefined, "bob", undefined, PatchStrategy.ServerSideApply));
    expect(conflictBody.code).toBe(409);
    expect(conflictBody.reason).toBe("Conflict");
    expect(conflictBody.message).toBe('Apply failed with 1 conflict: conflict with "alice" using v1: .data.a');
    const forced = await objects.patch(cm({ a: "changed", c: "3" }), undefined, undefined, "bob", true, PatchStrategy.ServerSideApply);
    expect(forced.data).toEqual({ a: "changed", b: "2", c: "3" });

    // alice no longer applies b: it is removed (she was its only owner); a now belongs to bob and stays.
    const shrunk = await objects.patch(cm({}), undefined, undefined, "alice", undefined, PatchStrategy.ServerSideApply);
    expect(shrunk.data).toEqual({ a: "changed", c: "3" });
    expect(await failure(objects.patch(cm({ a: "x" }), undefined, undefined, undefined, undefined, PatchStrategy.ServerSideApply))).toMatchObject({ code: 400 });
  });
});

describe("custom resources and the status subresource", () => {
  it("keeps status out of main-resource writes and everything but status out of /status writes", async () => {
    const ns = await freshNamespace();
    const created = (await custom.createNamespacedCustomObject({ ...VM, namespace: ns, body: { ...vm("iso"), status: { printableStatus: "Ignored" } } })) as Obj;
    // Like kube for CRDs with a status subresource: create cannot set status.
    expect(created.status).toBeUndefined();
    expect(created.metadata?.generation).toBe(1);

    const withStatus = (await custom.patchNamespacedCustomObjectStatus(
      { ...VM, namespace: ns, name: "iso", body: { status: { printableStatus: "Stopped" }, spec: { runStrategy: "Always" } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    )) as Obj;
    expect(withStatus.status).toEqual({ printableStatus: "Stopped" });
    expect(withStatus.spec).toEqual({ runStrategy: "Halted", template: TEMPLATE });
    expect(withStatus.metadata?.generation).toBe(1);

    const main = (await custom.replaceNamespacedCustomObject({
      ...VM,
      namespace: ns,
      name: "iso",
      body: { ...withStatus, spec: { runStrategy: "Always", template: TEMPLATE }, status: { printableStatus: "Overwritten" } },
    })) as Obj;
    expect(main.spec).toEqual({ runStrategy: "Always", template: TEMPLATE });
    expect(main.status).toEqual({ printableStatus: "Stopped" });
    expect(main.metadata?.generation).toBe(2);

    // A label change is not a spec change: generation stays.
    const labelled = (await custom.patchNamespacedCustomObject(
      { ...VM, namespace: ns, name: "iso", body: { metadata: { labels: { l: "1" } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    )) as Obj;
    expect(labelled.metadata?.generation).toBe(2);

    const listed = (await custom.listNamespacedCustomObject({ ...VM, namespace: ns })) as { kind: string; items: Obj[] };
    expect(listed.kind).toBe("VirtualMachineList");
    expect(listed.items.map(i => i.metadata?.name)).toEqual(["iso"]);
    expect((await failure(custom.getNamespacedCustomObjectStatus({ group: "kubevirt.io", version: "v1", plural: "virtualmachineinstances", namespace: ns, name: "iso" }))).code).toBe(404);
  });

  it("registers the kinds of a created CRD and serves them", async () => {
    const crd = {
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: "widgets.example.com" },
      spec: {
        group: "example.com",
        names: { kind: "Widget", plural: "widgets", singular: "widget", listKind: "WidgetList" },
        scope: "Cluster",
        versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
      },
    };
    const applied = (await objects.patch(crd, undefined, undefined, "test", undefined, PatchStrategy.ServerSideApply)) as Obj;
    expect((applied.status?.conditions as { type: string; status: string }[]).find(c => c.type === "Established")?.status).toBe("True");
    const widget = (await custom.createClusterCustomObject({ group: "example.com", version: "v1", plural: "widgets", body: { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w1" }, size: 3 } })) as Obj;
    expect(widget.metadata?.uid).toBeDefined();
    const discovery = await getJson(`${api.url}/apis/example.com/v1`);
    expect(discovery.resources.map(r => r.name)).toEqual(["widgets"]);
    await objects.delete(crd);
    expect((await fetch(`${api.url}/apis/example.com/v1/widgets`)).status).toBe(404);
  });

  it("serves discovery for the built-in groups, the pre-registered CRDs and KubeVirt's subresource API", async () => {
    const groups = await getJson(`${api.url}/apis`);
    const names = groups.groups.map(g => g.name);
    for (const g of ["apiextensions.k8s.io", "admissionregistration.k8s.io", "kubevirt.io", "cdi.kubevirt.io", "pepr.dev", "subresources.kubevirt.io"]) expect(names).toContain(g);
    const corev1 = await getJson(`${api.url}/api/v1`);
    expect(corev1.resources.map(r => r.name)).toEqual(expect.arrayContaining(["namespaces", "nodes", "nodes/status", "configmaps", "secrets", "serviceaccounts", "events", "persistentvolumeclaims"]));
    const kv = await getJson(`${api.url}/apis/kubevirt.io/v1`);
    expect(kv.resources).toEqual(expect.arrayContaining([expect.objectContaining({ name: "virtualmachines/status" }), expect.objectContaining({ name: "virtualmachineinstances", namespaced: true })]));
    expect(await getJson<object>(`${api.url}/version`)).toMatchObject({ major: "1" });
    expect(await (await fetch(`${api.url}/healthz`)).text()).toBe("ok");
  });
});

describe("deletion", () => {
  it("holds objects with finalizers (deletionTimestamp) until the last finalizer is removed", async () => {
    const ns = await freshNamespace();
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "held", finalizers: ["example.com/hold"] } } });
    const w = await watch(`/api/v1/namespaces/${ns}/configmaps`, { resourceVersion: "0" });
    await core.deleteNamespacedConfigMap({ namespace: ns, name: "held" });
    const held = await core.readNamespacedConfigMap({ namespace: ns, name: "held" });
    expect(held.metadata?.deletionTimestamp).toBeInstanceOf(Date);
    const noNew = await failure(
      core.patchNamespacedConfigMap({ namespace: ns, name: "held", body: { metadata: { finalizers: ["example.com/hold", "example.com/more"] } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch)),
    );
    expect(noNew.code).toBe(422);
    await core.patchNamespacedConfigMap({ namespace: ns, name: "held", body: [{ op: "remove", path: "/metadata/finalizers" }] }, setHeaderOptions("Content-Type", PatchStrategy.JsonPatch));
    expect((await failure(core.readNamespacedConfigMap({ namespace: ns, name: "held" }))).code).toBe(404);
    await expect.poll(() => w.events.length, { message: "watch events" }).toBe(3);
    expect(w.events.map(e => e.type)).toEqual(["ADDED", "MODIFIED", "DELETED"]);
    w.abort();
  });

  it("garbage-collects dependents by ownerReference (background, orphan and foreground propagation)", async () => {
    const ns = await freshNamespace();
    const owner = async (name: string) => core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name } } });
    const dependent = async (name: string, o: V1ConfigMap, extra: { finalizers?: string[] } = {}) =>
      core.createNamespacedConfigMap({
        namespace: ns,
        body: { metadata: { name, ...extra, ownerReferences: [{ apiVersion: "v1", kind: "ConfigMap", name: o.metadata!.name!, uid: o.metadata!.uid!, blockOwnerDeletion: true }] } },
      });
    const exists = (name: string) => api.store.get("configmaps", ns, name) !== undefined;

    const bg = await owner("bg");
    await dependent("bg-child", bg);
    await core.deleteNamespacedConfigMap({ namespace: ns, name: "bg" });
    // The garbage collector runs after the DELETE (asynchronously, like kube's).
    await expect.poll(() => exists("bg-child")).toBe(false);

    const orphaner = await owner("orphaner");
    await dependent("orphan-child", orphaner);
    await core.deleteNamespacedConfigMap({ namespace: ns, name: "orphaner", propagationPolicy: "Orphan" });
    await expect.poll(() => exists("orphaner")).toBe(false);
    expect(api.store.get("configmaps", ns, "orphan-child")?.metadata.ownerReferences).toBeUndefined();

    const fg = await owner("fg");
    await dependent("fg-child", fg, { finalizers: ["example.com/slow"] });
    await core.deleteNamespacedConfigMap({ namespace: ns, name: "fg", body: { propagationPolicy: "Foreground" } });
    // The owner waits (foregroundDeletion finalizer) for its dependent, which waits for its own finalizer.
    expect(api.store.get("configmaps", ns, "fg")?.metadata.finalizers).toEqual(["foregroundDeletion"]);
    await expect.poll(() => api.store.get("configmaps", ns, "fg-child")?.metadata.deletionTimestamp).toBeDefined();
    await core.patchNamespacedConfigMap({ namespace: ns, name: "fg-child", body: { metadata: { finalizers: null } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    expect(exists("fg-child")).toBe(false);
    await expect.poll(() => exists("fg")).toBe(false);
  });

  it("deletes collections by selector and honours preconditions", async () => {
    const ns = await freshNamespace();
    for (const name of ["x1", "x2", "y1"]) await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name, labels: { group: name[0] } } } });
    await core.deleteCollectionNamespacedConfigMap({ namespace: ns, labelSelector: "group=x" });
    expect(api.store.list("configmaps", ns).map(o => o.metadata.name)).toEqual(["y1"]);
    const pre = await failure(core.deleteNamespacedConfigMap({ namespace: ns, name: "y1", body: { preconditions: { uid: "not-the-uid" } } }));
    expect(pre.code).toBe(409);
  });
});

describe("authentication and robustness", () => {
  it("maps bearer tokens to users, rejects unknown tokens with 401 and treats anonymous loopback as system:admin", async () => {
    const secured = await startApiServer({ tokens: [{ token: "s3cret", user: { username: "alice", uid: "u1", groups: ["devs"] } }] });
    try {
      const unknown = await fetch(`${secured.url}/api/v1/namespaces`, { headers: { Authorization: "Bearer wrong" } });
      expect(unknown.status).toBe(401);
      expect(await unknown.json()).toMatchObject({ kind: "Status", code: 401, reason: "Unauthorized" });
      // A token user is authorized by RBAC: nothing until a binding grants it.
      const denied = await fetch(`${secured.url}/api/v1/namespaces`, { headers: { Authorization: "Bearer s3cret" } });
      expect(denied.status).toBe(403);
      secured.store.create("clusterrolebindings.rbac.authorization.k8s.io", {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: "devs-admin" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
        subjects: [{ kind: "Group", name: "devs" }],
      });
      const ok = await fetch(`${secured.url}/api/v1/namespaces`, { headers: { Authorization: "Bearer s3cret" } });
      expect(ok.status).toBe(200);
      const kubeconfig = path.join(dir, "token-kubeconfig");
      await secured.writeKubeconfig(kubeconfig, { token: "s3cret" });
      const tkc = new KubeConfig();
      tkc.loadFromFile(kubeconfig);
      expect((await tkc.makeApiClient(CoreV1Api).listNamespace()).items.length).toBeGreaterThan(0);
      expect((await fetch(`${secured.url}/api/v1/namespaces`)).status).toBe(200);
    } finally {
      await secured.close();
    }
  });

  it("rejects malformed and oversized bodies with 400/413 and unknown paths with 404, and keeps serving", async () => {
    const ns = await freshNamespace();
    const post = (body: string | Buffer, contentType = "application/json") =>
      fetch(`${api.url}/api/v1/namespaces/${ns}/configmaps`, { method: "POST", headers: { "Content-Type": contentType }, body });
    const malformed = await post("{not json");
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ kind: "Status", reason: "BadRequest" });
    expect((await post("[1,2]")).status).toBe(400);
    expect((await post(JSON.stringify({ kind: "Secret", apiVersion: "v1", metadata: { name: "x" } }))).status).toBe(400);
    expect((await post("x", "text/plain")).status).toBe(415);
    const big = await post(JSON.stringify({ metadata: { name: "big" }, data: { x: "a".repeat(4 * 1024 * 1024) } }));
    expect(big.status).toBe(413);
    expect((await fetch(`${api.url}/api/v1/nothings`)).status).toBe(404);
    expect((await fetch(`${api.url}/apis/nope.example/v1`)).status).toBe(404);
    expect((await fetch(`${api.url}/api/v1/namespaces/${ns}/configmaps?watch=true&resourceVersion=abc`)).status).toBe(400);
    const badPatch = await fetch(`${api.url}/api/v1/namespaces/${ns}/configmaps/none`, { method: "PATCH", headers: { "Content-Type": "application/merge-patch+json" }, body: "{" });
    expect(badPatch.status).toBe(400);
    expect((await fetch(`${api.url}/api/v1/namespaces/${ns}/configmaps/%zz`)).status).toBe(400);
    expect((await fetch(`${api.url}/api/v1/namespaces/${ns}/configmaps`, { method: "PUT", body: "{}" })).status).toBe(405);
    expect((await core.listNamespacedConfigMap({ namespace: ns })).items).toEqual([]);
  });
});

describe("KubeVirt subresources", () => {
  it("dispatches PUT .../virtualmachines/<name>/<sub> to the registered handler, 404 without object or handler", async () => {
    const ns = await freshNamespace();
    const calls: unknown[] = [];
    api.registerSubresource("subresources.kubevirt.io", "v1", "virtualmachines", "stop", async req => {
      calls.push(req);
      return { status: 202 };
    });
    await custom.createNamespacedCustomObject({ ...VM, namespace: ns, body: vm("vm1") });
    const url = (name: string, sub: string) => `${api.url}/apis/subresources.kubevirt.io/v1/namespaces/${ns}/virtualmachines/${name}/${sub}`;
    const ok = await fetch(url("vm1", "stop"), { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ gracePeriod: 0 }) });
    expect(ok.status).toBe(202);
    expect(calls).toEqual([{ namespace: ns, name: "vm1", body: { gracePeriod: 0 }, user: { username: "system:admin", groups: ["system:masters", "system:authenticated"] } }]);
    const missing = await fetch(url("nope", "stop"), { method: "PUT" });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ reason: "NotFound", message: 'virtualmachines.kubevirt.io "nope" not found' });
    expect((await fetch(url("vm1", "frobnicate"), { method: "PUT" })).status).toBe(404);
    const discovery = await getJson(`${api.url}/apis/subresources.kubevirt.io/v1`);
    expect(discovery.resources).toContainEqual(expect.objectContaining({ name: "virtualmachines/stop", verbs: ["update"] }));
  });
});

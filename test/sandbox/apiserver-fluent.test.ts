// kubernetes-fluent-client (what Pepr's Watch, Store and K8s() use) against the sandbox API server.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { K8s, kind } from "pepr";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/** Pepr's PeprStore kind (pepr registers its own class internally; the override addresses the same GVK). */
class PeprStore extends kind.GenericKind {
  data?: Record<string, string>;
}
const peprStore = { kindOverride: { group: "pepr.dev", version: "v1", kind: "PeprStore", plural: "peprstores" } };
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";

let api: ApiServer;
let dir: string;
const previousKubeconfig = process.env.KUBECONFIG;

beforeAll(async () => {
  api = await startApiServer();
  dir = mkdtempSync(path.join(tmpdir(), "fluent-test-"));
  const kubeconfig = path.join(dir, "kubeconfig");
  await api.writeKubeconfig(kubeconfig);
  process.env.KUBECONFIG = kubeconfig;
  api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "fluent" } });
});

afterAll(async () => {
  await api.close();
  if (previousKubeconfig === undefined) delete process.env.KUBECONFIG;
  else process.env.KUBECONFIG = previousKubeconfig;
  rmSync(dir, { recursive: true, force: true });
});


describe("kubernetes-fluent-client", () => {
  it("K8s().Watch receives ADDED, MODIFIED and DELETED (list, then watch from the list resourceVersion)", async () => {
    await K8s(kind.ConfigMap).Apply({ metadata: { name: "before", namespace: "fluent" }, data: { a: "1" } });
    const seen: string[] = [];
    const watcher = K8s(kind.ConfigMap).InNamespace("fluent").Watch((cm, phase) => {
      seen.push(`${phase}:${cm.metadata?.name}:${cm.data?.a ?? ""}`);
    });
    await watcher.start();
    try {
      await expect.poll(() => seen, { message: "watch events" }).toContain("ADDED:before:1");
      await K8s(kind.ConfigMap).Create({ metadata: { name: "live", namespace: "fluent" }, data: { a: "1" } });
      await K8s(kind.ConfigMap, { namespace: "fluent", name: "live" }).Patch([{ op: "replace", path: "/data/a", value: "2" }]);
      await K8s(kind.ConfigMap).InNamespace("fluent").Delete("live");
      await expect.poll(() => seen.length, { message: "watch events" }).toBeGreaterThanOrEqual(4);
      expect(seen).toEqual(["ADDED:before:1", "ADDED:live:1", "MODIFIED:live:2", "DELETED:live:2"]);
    } finally {
      watcher.close();
    }
  });

  it("single-object watches (fieldSelector metadata.name) and Pepr Store writes (SSA create, JSON patch) on peprstores", async () => {
    const seen: string[] = [];
    const watcher = K8s(PeprStore, { ...peprStore, name: "pepr-test-store", namespace: "fluent" }).Watch((store, phase) => {
      seen.push(`${phase}:${JSON.stringify(store.data)}`);
    });
    await watcher.start();
    try {
      await K8s(PeprStore, peprStore).Apply({ metadata: { name: "other", namespace: "fluent" }, data: { x: "y" } });
      await K8s(PeprStore, peprStore).Apply({
        metadata: { name: "pepr-test-store", namespace: "fluent", labels: { "pepr.dev-cacheID": "1" } },
        data: { __pepr_do_not_delete__: "k-thx-bye" },
      });
      await K8s(PeprStore, { ...peprStore, namespace: "fluent", name: "pepr-test-store" }).Patch([
        { op: "add", path: "/data/cap-v2-key", value: "value" },
        { op: "replace", path: "/metadata/labels/pepr.dev-cacheID", value: "2" },
      ]);
      await expect.poll(() => seen.length, { message: "watch events" }).toBeGreaterThanOrEqual(2);
      expect(seen).toEqual(['ADDED:{"__pepr_do_not_delete__":"k-thx-bye"}', 'MODIFIED:{"__pepr_do_not_delete__":"k-thx-bye","cap-v2-key":"value"}']);
      const stored = await K8s(PeprStore, peprStore).InNamespace("fluent").Get("pepr-test-store");
      expect(stored.metadata?.labels?.["pepr.dev-cacheID"]).toBe("2");
      // A patch that does not apply is a 422, which Pepr's store treats as "drop the cached operations".
      await expect(K8s(PeprStore, { ...peprStore, namespace: "fluent", name: "pepr-test-store" }).Patch([{ op: "remove", path: "/data/absent" }])).rejects.toMatchObject({ status: 422 });
    } finally {
      watcher.close();
    }
  });
});

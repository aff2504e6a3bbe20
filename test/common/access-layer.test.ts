// The access layer against the sandbox API server over HTTP: the one client (bounded, reused connections), the
// shared informer (list, watch, resume, 410 → re-list, restarts) and the keyed work queue.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { Informer } from "../../capabilities/common/informer";
import { KubeClient } from "../../capabilities/common/kube-client";
import type { KubeObject } from "../../sandbox/apiserver";
import { WorkQueue } from "../../capabilities/common/work-queue";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";

const CM = "configmaps";
const quietLog = { debug: () => undefined, info: () => undefined, warn: () => undefined };

let api: ApiServer;
let client: KubeClient;
let dir: string;

function configMap(namespace: string, name: string, value: string): KubeObject {
  return { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace }, data: { value } };
}

beforeAll(async () => {
  api = await startApiServer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "access-layer-"));
  const file = path.join(dir, "kubeconfig");
  await api.writeKubeconfig(file);
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  client = await KubeClient.fromKubeConfig(kc);
  for (const ns of ["a", "b"]) api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
});
afterAll(async () => {
  client?.close();
  await api?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("KubeClient", () => {
  it("reuses its keep-alive connections for sequential requests and maps API errors", async () => {
    for (let i = 0; i < 20; i++) await client.request({ method: "GET", path: "/api/v1/namespaces/a" });
    expect(client.openSockets()).toBe(1);
    await expect(client.request({ method: "GET", path: "/api/v1/namespaces/a/configmaps/missing" })).rejects.toMatchObject({ status: 404, reason: "NotFound" });
  });
});

describe("Informer", () => {
  it("lists, then follows adds, updates and deletes with a namespace index; survives 410, drops and restarts", async () => {
    api.store.create(CM, configMap("a", "one", "1"));
    const informer = new Informer(client, { kind: "ConfigMap", path: () => "/api/v1/configmaps" }, { log: quietLog, watchTimeoutSeconds: 1, pageSize: 2, backoff: { initialMs: 50, maxMs: 500 } });
    const seen: string[] = [];
    informer.addHandlers({
      onAdd: o => seen.push(`add ${o.metadata.namespace}/${o.metadata.name}`),
      onUpdate: o => seen.push(`update ${o.metadata.namespace}/${o.metadata.name}`),
      onDelete: o => seen.push(`delete ${o.metadata.namespace}/${o.metadata.name}`),
    });
    informer.start();
    try {
      await informer.waitForSync();
      expect(informer.hasSynced()).toBe(true);
      expect(seen).toContain("add a/one");

      api.store.create(CM, configMap("b", "two", "2"));
      api.store.mutate(CM, "a", "one", o => ({ ...o, data: { value: "changed" } }));
      await vi.waitFor(() => expect(seen).toEqual(expect.arrayContaining(["add b/two", "update a/one"])), { timeout: 10_000 });
      expect(informer.byIndex("namespace", "b").map(o => o.metadata.name)).toEqual(["two"]);
      expect(Object.isFrozen(informer.get("a", "one")!.data)).toBe(true);

      // Watches the server ends (timeoutSeconds: 1) are resumed, not re-listed.
      const listsBefore = informer.stats().lists;
      await vi.waitFor(() => expect(informer.stats().watches).toBeGreaterThan(3), { timeout: 15_000 });
      expect(informer.stats().lists).toBe(listsBefore);

      // 410 Gone in the stream: a re-list that reports what changed meanwhile, deletions included. The 410 goes to an
      // open watch: between a watch the server ended (every 1-2 s here) and its successor there is none to end.
      await vi.waitFor(() => expect(api.dropWatches({ expired: true })).toBe(1), { timeout: 10_000 });
      api.store.delete(CM, "b", "two");
      await vi.waitFor(() => expect(informer.stats().expired).toBeGreaterThan(0), { timeout: 10_000 });
      await vi.waitFor(() => expect(seen).toContain("delete b/two"), { timeout: 10_000 });

      // API server restarts: the informer comes back; the connections stay bounded.
      for (let i = 0; i < 5; i++) {
        await api.restart(100);
        api.store.create(CM, configMap("a", `after-restart-${i}`, "x"));
      }
      await vi.waitFor(() => expect(informer.get("a", "after-restart-4")).toBeDefined(), { timeout: 20_000 });
      expect(informer.byIndex("namespace", "a").length).toBe(6);
      expect(client.openSockets()).toBeLessThanOrEqual(3);
    } finally {
      await informer.stop();
    }
    expect(informer.stats().watching).toBe(false);
  }, 60_000);
});

describe("WorkQueue", () => {
  it("de-duplicates keys, never runs one key twice at once, and retries failures with growing back-off", async () => {
    vi.useFakeTimers();
    try {
      const runs: string[] = [];
      let failB = 2;
      let release: (() => void) | undefined;
      const errors: number[] = [];
      const queue: WorkQueue = new WorkQueue(
        async key => {
          runs.push(key);
          if (key === "a" && !release) await new Promise<void>(resolve => (release = resolve));
          if (key === "b" && failB-- > 0) throw new Error("transient");
          queue.forget(key);
        },
        { concurrency: 1, baseDelayMs: 100, maxDelayMs: 1_000, onError: (_key, _e, failures) => errors.push(failures) },
      );
      queue.add("a");
      queue.add("a"); // running: marked dirty, runs once more afterwards
      queue.add("a");
      queue.add("b"); // waits for the one worker, queued once
      queue.add("b");
      await vi.advanceTimersByTimeAsync(0);
      expect(runs).toEqual(["a"]);
      release!();
      await vi.advanceTimersByTimeAsync(0);
      expect(runs).toEqual(["a", "b", "a"]);
      expect(queue.numRequeues("b")).toBe(1);
      await vi.advanceTimersByTimeAsync(99);
      expect(runs.filter(k => k === "b")).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1); // 100 ms: second attempt, fails again
      expect(runs.filter(k => k === "b")).toHaveLength(2);
      await vi.advanceTimersByTimeAsync(199);
      expect(runs.filter(k => k === "b")).toHaveLength(2);
      await vi.advanceTimersByTimeAsync(1); // 200 ms: third attempt succeeds, back-off forgotten
      expect(runs.filter(k => k === "b")).toHaveLength(3);
      expect(queue.numRequeues("b")).toBe(0);
      expect(errors).toEqual([1, 2]);
      await queue.whenIdle();
      queue.shutDown();
    } finally {
      vi.useRealTimers();
    }
  });
});

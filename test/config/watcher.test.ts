// The module-config capability as the watcher pod runs it (PEPR_WATCH_MODE=true), against a minimal
// fake Kubernetes API server over HTTP: the informers' list and watch of the two named objects, events pushed
// into their watch streams, the Events it records and the PeprStore patch that carries the config to the
// admission pods.
import fs from "node:fs";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import YAML from "yaml";
import { present } from "../helpers/present";

interface SeenRequest {
  method: string;
  url: string;
  contentType: string;
  body: unknown;
}

const requests: SeenRequest[] = [];
let storePatchFailures = 1; // the PeprStore does not exist yet at the first attempt
let server: http2.Http2Server;
const sessions = new Set<http2.ServerHttp2Session>();
let tmpDir: string;

const initialConfigMap = {
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: { name: "kubevirt-infra-config", namespace: "pepr-system", uid: "cm-1", resourceVersion: "41" },
  data: {
    "config.yaml": YAML.stringify({
      chassis: [{ name: "tenant1", namespace: "tenant1-vms" }],
      infra: { namespace: "tenant1-vms", labels: "csi-driver/cluster=tenant1" },
      nodeIdentity: { enabled: true },
    }),
  },
};

function reply(res: http2.Http2ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function notFound(res: http2.Http2ServerResponse): void {
  reply(res, 404, { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404 });
}

/** vi.waitFor's options for awaited values here (expect.poll's come from vitest.config.ts). */
const WAIT = { timeout: 5000, interval: 20 };

const storePatches = () => requests.filter(r => r.method === "PATCH" && r.url.includes("/peprstores/"));
const events = () => requests.filter(r => r.method === "POST" && r.url === "/api/v1/namespaces/pepr-system/events").map(r => r.body as Record<string, any>);

/** Open watch responses, per collection: the test pushes events into them. */
const watchStreams: Record<"configmaps" | "secrets", http2.Http2ServerResponse[]> = { configmaps: [], secrets: [] };
let stopInformers: (() => Promise<void>) | undefined;

let capability: typeof import("../../capabilities/config");
let runtime: typeof import("../../capabilities/config/runtime");

beforeAll(async () => {
  // HTTP/2 with prior knowledge (h2c), as the module's client speaks to an http: server (the sandbox does too).
  server = http2.createServer((req, res) => {
    let raw = "";
    req.on("data", chunk => (raw += chunk));
    req.on("end", () => {
      const url = req.url ?? "";
      requests.push({ method: req.method ?? "", url, contentType: req.headers["content-type"] ?? "", body: raw ? JSON.parse(raw) : undefined });
      const collection = /^\/api\/v1\/namespaces\/pepr-system\/(configmaps|secrets)\?/.exec(url)?.[1] as "configmaps" | "secrets" | undefined;
      if (req.method === "GET" && collection) {
        const query = new URL(url, "http://x").searchParams;
        const expectedName = collection === "configmaps" ? "kubevirt-infra-config" : "kubevirt-infra-users";
        if (query.get("fieldSelector") !== `metadata.name=${expectedName}`) return reply(res, 400, { kind: "Status", code: 400, message: "unexpected selector" });
        if (query.get("watch") === "true") {
          res.writeHead(200, { "content-type": "application/json" });
          watchStreams[collection].push(res);
          return;
        }
        return reply(res, 200, { kind: "List", metadata: { resourceVersion: "41" }, items: collection === "configmaps" ? [initialConfigMap] : [] });
      }
      if (req.method === "POST" && url === "/api/v1/namespaces/pepr-system/events") return reply(res, 201, JSON.parse(raw));
      if (req.method === "PATCH" && url === "/apis/pepr.dev/v1/namespaces/pepr-system/peprstores/pepr-kubevirt-infra-store") {
        if (storePatchFailures > 0) {
          storePatchFailures--;
          return notFound(res);
        }
        return reply(res, 200, { apiVersion: "pepr.dev/v1", kind: "PeprStore", metadata: { name: "pepr-kubevirt-infra-store" } });
      }
      notFound(res);
    });
  });
  server.on("session", session => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), "config-watcher-"));
  const kubeconfig = path.join(tmpDir, "kubeconfig");
  fs.writeFileSync(
    kubeconfig,
    YAML.stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "fake", cluster: { server: `http://127.0.0.1:${port}`, "insecure-skip-tls-verify": true } }],
      users: [{ name: "test", user: { token: "test-token" } }],
      contexts: [{ name: "fake", context: { cluster: "fake", user: "test" } }],
      "current-context": "fake",
    }),
  );
  process.env.KUBECONFIG = kubeconfig;
  process.env.PEPR_WATCH_MODE = "true";
  delete process.env.PEPR_MODE;
  delete process.env.REDFISH_PORT;
  // Imported only now: the capability decides at import time which pod it is in.
  capability = await import("../../capabilities/config");
  runtime = await import("../../capabilities/config/runtime");
  const { SharedInformers } = await import("../../capabilities/common/informers");
  const { sharedKubeClient } = await import("../../capabilities/common/kube-client");
  const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined };
  const informers = new SharedInformers(await sharedKubeClient(), { log: quiet, config: { current: runtime.currentConfig, onChange: runtime.onConfigChange } });
  capability.startConfigWatch(informers);
  stopInformers = () => informers.stop();
});

afterAll(async () => {
  await stopInformers?.();
  for (const session of sessions) session.destroy(); // the Kubernetes client keeps its connection open
  await new Promise(resolve => server.close(resolve));
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

/** Sends one watch event to the informer of the ConfigMap or the Secret, over its open watch stream. */
async function pushWatchEvent(kind: "ConfigMap" | "Secret", type: "ADDED" | "MODIFIED" | "DELETED", obj: unknown): Promise<void> {
  const collection = kind === "ConfigMap" ? "configmaps" : "secrets";
  const stream = await vi.waitFor(() => present(watchStreams[collection][0], `the ${kind} watch`), WAIT);
  stream.write(`${JSON.stringify({ type, object: obj })}\n`);
}

function decodeStoreValue(patch: SeenRequest): Record<string, any> {
  const ops = patch.body as { op: string; path: string; value: string }[];
  expect(ops).toHaveLength(1);
  expect(ops[0]).toMatchObject({ op: "add", path: "/data/module-config-v2-config" });
  return JSON.parse(ops[0].value);
}

describe("module-config in the watcher pod", () => {
  it("watches the ConfigMap and the Secret in pepr-system, by name (one list+watch each, never all Secrets)", async () => {
    await expect.poll(() => [watchStreams.configmaps.length, watchStreams.secrets.length], { message: "both watches" }).toEqual([1, 1]);
    const reads = requests.filter(r => r.method === "GET" && /\/(configmaps|secrets)/.test(r.url)).map(r => r.url);
    expect(reads.every(url => url.startsWith("/api/v1/namespaces/pepr-system/"))).toBe(true);
    expect(reads.filter(url => url.includes("/secrets") && url.includes("watch=true"))).toHaveLength(1);
    expect(reads.filter(url => url.includes("/secrets") && !url.includes("watch=true"))).toHaveLength(1);
    for (const url of reads) expect(new URL(url, "http://x").searchParams.get("fieldSelector")).toMatch(/^metadata\.name=kubevirt-infra-(config|users)$/);
    expect(reads.filter(url => url.includes("watch=true")).every(url => /timeoutSeconds=\d+/.test(url))).toBe(true);
  });

  it("reads both objects at start, applies the config and publishes it once the PeprStore exists", async () => {
    const config = await vi.waitFor(() => present(runtime.currentConfig(), "the startup config"), WAIT);
    expect(config.chassis.map(c => c.name)).toEqual(["tenant1"]);
    expect(runtime.configStatus()).toMatchObject({ generation: 1, configMapResourceVersion: "41", source: "ConfigMap" });

    // First PATCH hit 404 (no PeprStore yet); the publisher retried.
    const patches = await vi.waitFor(() => present(storePatches().length >= 2 && storePatches(), "two PeprStore patches"), WAIT);
    expect(patches[0].contentType).toBe("application/json-patch+json");
    expect(patches[1].body).toEqual(patches[0].body);
    const value = decodeStoreValue(patches[1]);
    expect(value).toMatchObject({ format: 1, hash: runtime.configStatus().hash, configMapResourceVersion: "41" });
    expect(value.config.chassis).toEqual([{ name: "tenant1", namespace: "tenant1-vms", description: "" }]);

    const applied = await vi.waitFor(() => present(events().find(e => e.reason === "ConfigApplied"), "the ConfigApplied Event"), WAIT);
    expect(applied).toMatchObject({
      type: "Normal",
      involvedObject: { kind: "ConfigMap", name: "kubevirt-infra-config", namespace: "pepr-system", uid: "cm-1" },
    });
  });

  it("applies users from the Secret's base64 data without publishing them", async () => {
    const before = storePatches().length;
    await pushWatchEvent("Secret", "ADDED", {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "kubevirt-infra-users", namespace: "pepr-system", resourceVersion: "42" },
      data: { "users.yaml": Buffer.from("- {username: admin, password: Very-Secret-1, chassis: [tenant1]}\n").toString("base64") },
    });
    await expect.poll(() => runtime.currentConfig()?.authentication.users.length, { message: "the users" }).toBeGreaterThan(0);
    expect(runtime.currentConfig()?.authentication.users.map(u => u.username)).toEqual(["admin"]);
    expect(runtime.configStatus().generation).toBe(2);
    // The runtime publishes (or not) before it records the ConfigApplied Event of the change: once that Event is
    // here, a PATCH of the users would have been sent first.
    await expect.poll(() => events().filter(e => e.reason === "ConfigApplied" && e.message.includes("generation 2")).length, { message: "ConfigApplied for generation 2" }).toBe(1);
    expect(storePatches().length).toBe(before);
    expect(JSON.stringify(requests)).not.toContain("Very-Secret-1");
  });

  it("refuses a bad ConfigMap with a Warning Event naming the field and keeps the last good config", async () => {
    const good = runtime.currentConfig();
    const before = storePatches().length;
    await pushWatchEvent("ConfigMap", "MODIFIED", {
      ...initialConfigMap,
      metadata: { ...initialConfigMap.metadata, resourceVersion: "43" },
      data: { "config.yaml": "redfish:\n  port: 3000\n" },
    });
    const refused = await vi.waitFor(() => present(events().find(e => e.reason === "ConfigRefused"), "the ConfigRefused Event"), WAIT);
    expect(refused).toMatchObject({ type: "Warning", involvedObject: { kind: "ConfigMap", name: "kubevirt-infra-config" } });
    expect(refused.message).toContain("redfish.port: must not be 3000 (the Pepr watcher's own port)");
    expect(refused.message).toContain("the previous configuration stays in force");
    expect(runtime.currentConfig()).toBe(good);
    expect(storePatches().length).toBe(before);
  });

  it("publishes a good change at once (no 4 s Store batching)", async () => {
    const before = storePatches().length;
    const changedAt = Date.now();
    await pushWatchEvent("ConfigMap", "MODIFIED", {
      ...initialConfigMap,
      metadata: { ...initialConfigMap.metadata, resourceVersion: "44" },
      data: { "config.yaml": "role: infra\nchassis: [{name: tenant1, namespace: tenant1-vms}]\n" },
    });
    const patch = await vi.waitFor(() => present(storePatches()[before], "the new PeprStore patch"), { ...WAIT, timeout: 2000 });
    expect(Date.now() - changedAt).toBeLessThan(2000);
    const value = decodeStoreValue(patch);
    expect(value).toMatchObject({ configMapResourceVersion: "44", hash: runtime.configStatus().hash, config: { role: "infra" } });
    expect(runtime.currentConfig()?.role).toBe("infra");
  });

  it("a deleted ConfigMap switches every capability off, in the watcher and in the Store", async () => {
    const before = storePatches().length;
    await pushWatchEvent("ConfigMap", "DELETED", initialConfigMap);
    await expect.poll(() => runtime.currentConfig()?.chassis.length, { message: "the config switched off" }).toBe(0);
    const value = decodeStoreValue(await vi.waitFor(() => present(storePatches()[before], "the PeprStore patch"), { ...WAIT, timeout: 2000 }));
    expect(value.config.chassis).toEqual([]);
    expect(value.config.nodeIdentity.enabled).toBe(false);
  });
});

// KubeClient's transport against the sandbox API server (and two small local TLS servers): HTTP/2 streams over
// one TCP connection for hundreds of watches and the requests beside them, a second connection only at the
// server's max concurrent streams, reconnection after an API server restart, failures that are retriable, and
// the HTTP/1.1 fallback where ALPN does not offer h2. Connections are counted by the server.
import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import net, { type AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { Informer } from "../../capabilities/common/informer";
import { KubeApiError, KubeClient, type KubeClientOptions, type WatchEvent } from "../../capabilities/common/kube-client";
import { createSelfSignedServerCertificate, type PemPair } from "../../capabilities/common/tls";
import { startApiServer, type ApiServer, type KubeObject } from "../../sandbox/apiserver";
import { demoVirtualMachine } from "../../sandbox/demo";

const quietLog = { debug: () => undefined, info: () => undefined, warn: () => undefined };
let dir: string;
const cleanups: (() => unknown)[] = [];

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "kube-transport-"));
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function sandbox(opts: Parameters<typeof startApiServer>[0] = {}): Promise<ApiServer> {
  const api = await startApiServer(opts);
  cleanups.push(() => api.close());
  return api;
}

async function clientFor(api: ApiServer, opts: KubeClientOptions = {}): Promise<KubeClient> {
  const file = path.join(dir, `kubeconfig-${api.port}`);
  await api.writeKubeconfig(file);
  const kc = new KubeConfig();
  kc.loadFromFile(file);
  const client = await KubeClient.fromKubeConfig(kc, opts);
  cleanups.push(() => client.close());
  return client;
}

const namespace = (name: string): KubeObject => ({ apiVersion: "v1", kind: "Namespace", metadata: { name } });
const configMap = (ns: string, name: string): KubeObject => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: ns }, data: { k: "v" } });

/** Watches started with `client.watch`, each until stopped; the events per watch. */
function startWatches(client: KubeClient, paths: string[], timeoutSeconds = 300) {
  const aborts = paths.map(() => new AbortController());
  const events = paths.map(() => [] as WatchEvent[]);
  const done = paths.map((p, i) =>
    client.watch(p, { timeoutSeconds }, ev => events[i].push(ev), { signal: aborts[i].signal, idleMs: 60_000 }).then(
      () => "ended",
      (e: unknown) => e,
    ),
  );
  return { events, done, stop: () => aborts.forEach(a => a.abort()) };
}

/** A client of a local cleartext server (not the sandbox), which it starts listening; both are cleaned up. */
async function cleartextClient(server: net.Server, opts: KubeClientOptions = {}): Promise<KubeClient> {
  await new Promise<void>(resolve => server.listen(0, "127.0.0.1", () => resolve()));
  cleanups.push(() => new Promise(resolve => server.close(resolve)));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: "u" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x",
  });
  const client = await KubeClient.fromKubeConfig(kc, opts);
  cleanups.push(() => client.close());
  return client;
}

/** The most HTTP/2 connections the server saw while `work` ran (sampled every 10 ms). */
async function maxHttp2ConnectionsDuring(api: ApiServer, work: () => Promise<void>): Promise<number> {
  let max = api.connections().http2;
  const sampler = setInterval(() => (max = Math.max(max, api.connections().http2)), 10);
  try {
    await work();
  } finally {
    clearInterval(sampler);
  }
  return Math.max(max, api.connections().http2);
}

describe("KubeClient over HTTP/2 (h2c to the sandbox)", () => {
  it("carries 300 concurrent watches and the requests beside them on one TCP connection", async () => {
    const api = await sandbox({ http2MaxStreamsPerConnection: 1000 });
    const logged: string[] = [];
    const client = await clientFor(api, { log: { info: (_o, msg) => logged.push(msg) } });
    const namespaces = Array.from({ length: 300 }, (_, i) => `w-${i}`);
    for (const ns of namespaces) api.store.create("namespaces", namespace(ns));
    const watches = startWatches(client, namespaces.map(ns => `/api/v1/namespaces/${ns}/configmaps`));
    try {
      await vi.waitFor(() => expect(api.openWatches()).toEqual({ configmaps: 300 }), { timeout: 30_000 });
      expect(api.connections()).toEqual({ http1: 0, http2: 1, pending: 0 });
      expect(client.openSockets()).toBe(1);
      expect(client.protocol).toBe("h2");
      expect(logged.filter(m => m.includes("HTTP/2"))).toHaveLength(1);

      const answers = await Promise.all(namespaces.slice(0, 50).map(ns => client.request<KubeObject>({ method: "GET", path: `/api/v1/namespaces/${ns}` })));
      expect(answers.map(a => a.metadata.name)).toEqual(namespaces.slice(0, 50));
      await Promise.all(namespaces.map(ns => client.request({ method: "POST", path: `/api/v1/namespaces/${ns}/configmaps`, body: configMap(ns, "hello") })));
      await vi.waitFor(() => expect(watches.events.filter(evs => evs.some(e => e.type === "ADDED" && (e.object.metadata as { name: string }).name === "hello"))).toHaveLength(300), {
        timeout: 30_000,
      });
      expect(api.connections()).toEqual({ http1: 0, http2: 1, pending: 0 });
    } finally {
      watches.stop();
    }
    expect(await Promise.all(watches.done)).toEqual(namespaces.map(() => "ended"));
    await vi.waitFor(() => expect(api.openWatches()).toEqual({}));
    expect(logged.filter(m => m.includes("HTTP/2"))).toHaveLength(1);
  }, 120_000);

  it("opens a second connection only when the first carries the server's max concurrent streams", async () => {
    const api = await sandbox({ http2MaxStreamsPerConnection: 10 });
    const client = await clientFor(api);
    const first = startWatches(client, Array.from({ length: 15 }, () => "/api/v1/namespaces/default/configmaps"));
    try {
      await vi.waitFor(() => expect(api.openWatches()).toEqual({ configmaps: 15 }), { timeout: 15_000 });
      expect(api.connections().http2).toBe(2);
      expect(client.openSockets()).toBe(2);
      // 5 streams free on the second connection: a request and 4 more watches fit without a third.
      expect(await client.request<KubeObject>({ method: "GET", path: "/api/v1/namespaces/default" })).toMatchObject({ metadata: { name: "default" } });
      const more = startWatches(client, Array.from({ length: 4 }, () => "/api/v1/namespaces/default/configmaps"));
      try {
        await vi.waitFor(() => expect(api.openWatches()).toEqual({ configmaps: 19 }), { timeout: 15_000 });
        expect(api.connections().http2).toBe(2);
      } finally {
        more.stop();
      }
    } finally {
      first.stop();
    }
    await Promise.all(first.done);
  }, 60_000);

  it("reconnects after API server restarts: informers resume their watches, one or two connections throughout", async () => {
    const api = await sandbox({ http2MaxStreamsPerConnection: 1000 });
    const client = await clientFor(api);
    const namespaces = Array.from({ length: 100 }, (_, i) => `r-${i}`);
    for (const ns of namespaces) api.store.create("namespaces", namespace(ns));
    const informers = namespaces.map(
      ns => new Informer(client, { kind: `ConfigMap in ${ns}`, path: () => `/api/v1/namespaces/${ns}/configmaps` }, { log: quietLog, watchTimeoutSeconds: 60, backoff: { initialMs: 50, maxMs: 500 } }),
    );
    informers.forEach(i => i.start());
    cleanups.push(() => Promise.all(informers.map(i => i.stop())));
    await Promise.all(informers.map(i => i.waitForSync()));
    await vi.waitFor(() => expect(api.openWatches()).toEqual({ configmaps: 100 }), { timeout: 15_000 });

    const max = await maxHttp2ConnectionsDuring(api, async () => {
      for (let round = 0; round < 3; round++) {
        await api.restart(100);
        for (const ns of namespaces) api.store.create("configmaps", configMap(ns, `after-restart-${round}`));
        await vi.waitFor(() => expect(informers.every((informer, k) => informer.get(namespaces[k], `after-restart-${round}`))).toBe(true), { timeout: 30_000 });
        await vi.waitFor(() => expect(api.openWatches()).toEqual({ configmaps: 100 }), { timeout: 15_000 });
      }
    });
    expect(max).toBeGreaterThanOrEqual(1);
    expect(max).toBeLessThanOrEqual(2);
    await vi.waitFor(() => expect(api.connections()).toEqual({ http1: 0, http2: 1, pending: 0 }));
    expect(client.openSockets()).toBe(1);
  }, 120_000);

  it("fails a request in flight on a connection that dies with a retriable KubeApiError(0); timeouts still apply", async () => {
    const api = await sandbox();
    const client = await clientFor(api);
    api.store.create("virtualmachines.kubevirt.io", demoVirtualMachine("default", "vm", "5e1d0000-0000-4000-8000-000000000001", "02:00:00:00:01:00"));
    const held: (() => void)[] = [];
    api.registerSubresource("subresources.kubevirt.io", "v1", "virtualmachines", "hold", () => new Promise(resolve => held.push(() => resolve({ status: 202 }))));
    cleanups.push(() => held.forEach(release => release()));
    const hold = { method: "PUT" as const, path: "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/vm/hold", body: {} };

    // No answer within the request's timeout: the stream is cancelled, the connection stays.
    const timedOut = client.request({ ...hold, timeoutMs: 300 });
    await expect(timedOut).rejects.toMatchObject({ status: 0, reason: "NoResponse", message: expect.stringContaining("within 300 ms") });
    expect(client.openSockets()).toBe(1);

    // The connection dies under a request: status 0, which informers and work queues retry.
    const inFlight = client.request(hold).catch((e: unknown) => e);
    await vi.waitFor(() => expect(held).toHaveLength(2));
    await api.restart(50);
    const failure = await inFlight;
    expect(failure).toBeInstanceOf(KubeApiError);
    expect(failure).toMatchObject({ status: 0 });
    // The next request opens a new connection.
    expect(await client.request<KubeObject>({ method: "GET", path: "/api/v1/namespaces/default" })).toMatchObject({ metadata: { name: "default" } });
    await vi.waitFor(() => expect(api.connections()).toEqual({ http1: 0, http2: 1, pending: 0 }));

    // The server ends a watch after its timeoutSeconds.
    const started = Date.now();
    await client.watch("/api/v1/namespaces/default/configmaps", { timeoutSeconds: 1 }, () => undefined, { signal: new AbortController().signal, idleMs: 30_000 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  }, 60_000);

  it("falls back to HTTP/1.1 for a cleartext server that refuses the h2c preface (kubectl proxy)", async () => {
    const server = http.createServer((req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ kind: "Namespace", metadata: { name: "default" }, httpVersion: req.httpVersion }));
    });
    const logged: string[] = [];
    const client = await cleartextClient(server, { log: { info: (_o, msg) => logged.push(msg) } });
    for (let i = 0; i < 3; i++) expect(await client.request({ method: "GET", path: "/api/v1/namespaces/default" })).toMatchObject({ httpVersion: "1.1" });
    expect(client.protocol).toBe("http/1.1");
    expect(logged).toEqual([expect.stringContaining("HTTP/1.1")]);
  });

  it("reads the kubeconfig's credentials once for many requests, and again after a 401", async () => {
    const seen: (string | undefined)[] = [];
    let refuse = "";
    const server = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(req.headers.authorization === refuse ? 401 : 200, { "content-type": "application/json" });
      res.end(JSON.stringify({ kind: "Status" }));
    });
    await new Promise<void>(resolve => server.listen(0, "127.0.0.1", () => resolve()));
    cleanups.push(() => new Promise(resolve => server.close(resolve)));
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "c", server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
      users: [{ name: "u", token: "first" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    const client = await KubeClient.fromKubeConfig(kc, { forceHttp1: true });
    cleanups.push(() => client.close());
    const applied = vi.spyOn(kc, "applyToHTTPSOptions");
    await Promise.all(Array.from({ length: 20 }, () => client.request({ method: "GET", path: "/api/v1/namespaces/default" })));
    expect(applied).toHaveBeenCalledTimes(1);
    expect(seen).toEqual(Array(20).fill("Bearer first"));
    // The token is rotated in the kubeconfig and the server stops taking the old one: one 401, then the new token.
    kc.users[0] = { ...kc.users[0], token: "second" };
    refuse = "Bearer first";
    await expect(client.request({ method: "GET", path: "/api/v1/namespaces/default" })).rejects.toMatchObject({ status: 401 });
    await client.request({ method: "GET", path: "/api/v1/namespaces/default" });
    expect(seen.at(-1)).toBe("Bearer second");
    expect(applied).toHaveBeenCalledTimes(2);
  });

  it("does not give up HTTP/2 for a first connection that is closed without an answer (a busy or restarting server)", async () => {
    const server = net.createServer(socket => socket.destroy());
    const client = await cleartextClient(server);
    await expect(client.request({ method: "GET", path: "/api/v1/namespaces/default" })).rejects.toMatchObject({ status: 0 });
    expect(client.protocol).toBeUndefined();
  });

  it("speaks HTTP/1.1 to the sandbox when forced to, on the same port", async () => {
    const api = await sandbox();
    const client = await clientFor(api, { forceHttp1: true });
    for (let i = 0; i < 5; i++) await client.request({ method: "GET", path: "/api/v1/namespaces/default" });
    expect(client.protocol).toBe("http/1.1");
    expect(api.connections()).toEqual({ http1: 1, http2: 0, pending: 0 });
  });
});

describe("KubeClient.write: done when the API server accepted the write", () => {
  /** A server that sends the status and the start of the body at once, and the rest only when released. */
  function slowBodyServer(protocol: "h2" | "http/1.1") {
    const held: (() => void)[] = [];
    const status = { kind: "Status", status: "Failure", reason: "Invalid", message: "the test op failed", code: 422 };
    type Response = { writeHead(status: number, headers: Record<string, string>): unknown; write(chunk: string): unknown; end(chunk: string): unknown };
    const handler = (req: { url?: string }, res: Response) => {
      if (req.url?.endsWith("/refused")) {
        res.writeHead(422, { "content-type": "application/json" });
        res.write(JSON.stringify(status).slice(0, 10));
        held.push(() => res.end(JSON.stringify(status).slice(10)));
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"kind":"VirtualMachine",');
      held.push(() => res.end('"metadata":{"name":"vm"}}'));
    };
    const server = protocol === "h2" ? http2.createServer(handler) : http.createServer(handler);
    cleanups.push(() => held.splice(0).forEach(release => release()));
    return { server, held };
  }

  for (const protocol of ["h2", "http/1.1"] as const) {
    it(`resolves on a 2xx status before the body is in, reads a refusal's Status in full (${protocol})`, async () => {
      const { server, held } = slowBodyServer(protocol);
      const client = await cleartextClient(server, { forceHttp1: protocol === "http/1.1" });
      const patch = { method: "PATCH" as const, path: "/apis/kubevirt.io/v1/namespaces/ns/virtualmachines/vm", body: [], contentType: "application/json-patch+json" };

      await client.write(patch);
      expect(held).toHaveLength(1); // the body of the accepted write is still held by the server
      // `request` wants the object: it waits for the whole body.
      let answered = false;
      const answer = client.request(patch).then(obj => ((answered = true), obj));
      await vi.waitFor(() => expect(held).toHaveLength(2));
      expect(answered).toBe(false);
      held.splice(0).forEach(release => release());
      expect(await answer).toEqual({ kind: "VirtualMachine", metadata: { name: "vm" } });

      const refused = client.write({ ...patch, path: `${patch.path}/refused` }).catch((e: unknown) => e);
      await vi.waitFor(() => expect(held).toHaveLength(1));
      held.splice(0).forEach(release => release());
      expect(await refused).toMatchObject({ status: 422, reason: "Invalid", message: "the test op failed" });
      expect(client.protocol).toBe(protocol);
    });
  }
});

describe("KubeClient over plain HTTP: h2c prior knowledge", () => {
  it("does not fall back when the server is not there yet: the next attempt still tries HTTP/2", async () => {
    const api = await startApiServer();
    const port = api.port;
    const file = path.join(dir, "kubeconfig-down");
    await api.writeKubeconfig(file);
    await api.close();
    const kc = new KubeConfig();
    kc.loadFromFile(file);
    const client = await KubeClient.fromKubeConfig(kc, {});
    cleanups.push(() => client.close());
    await expect(client.request({ method: "GET", path: "/api/v1/namespaces/default" })).rejects.toMatchObject({ status: 0 });
    expect(client.protocol).toBeUndefined();
    const again = await startApiServer({ port });
    cleanups.push(() => again.close());
    await client.request({ method: "GET", path: "/api/v1/namespaces/default" });
    expect(client.protocol).toBe("h2");
  });
});

describe("KubeClient over TLS: ALPN", () => {
  let pair: PemPair;
  beforeAll(() => {
    pair = createSelfSignedServerCertificate({ commonName: "127.0.0.1", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] });
  });

  /** A kubeconfig for https://127.0.0.1:port that trusts `pair` and sends a bearer token. */
  async function tlsClient(port: number, logged: string[]): Promise<KubeClient> {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "c", server: `https://127.0.0.1:${port}`, caData: Buffer.from(pair.certPem).toString("base64") }],
      users: [{ name: "u", token: "t0k" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    const client = await KubeClient.fromKubeConfig(kc, { log: { info: (_o, msg) => logged.push(msg) } });
    cleanups.push(() => client.close());
    return client;
  }

  /** Answers like the API server for one namespace, and 401 without the bearer token. */
  const answer = (req: { headers: Record<string, unknown>; url?: string }, res: { writeHead(s: number, h: Record<string, string>): unknown; end(b: string): unknown }) => {
    const ok = req.headers.authorization === "Bearer t0k" && req.url === "/api/v1/namespaces/default";
    res.writeHead(ok ? 200 : 401, { "content-type": "application/json" });
    res.end(JSON.stringify(ok ? { kind: "Namespace", metadata: { name: "default" } } : { kind: "Status", code: 401, reason: "Unauthorized", message: "Unauthorized" }));
  };

  async function listen(server: https.Server | http2.Http2SecureServer): Promise<number> {
    await new Promise<void>(resolve => server.listen(0, "127.0.0.1", () => resolve()));
    cleanups.push(() => new Promise(resolve => server.close(resolve)));
    return (server.address() as AddressInfo).port;
  }

  it("falls back to HTTP/1.1 keep-alive where the server does not offer h2 (a proxy), and says so once", async () => {
    const server = https.createServer({ key: pair.keyPem, cert: pair.certPem, ALPNProtocols: ["http/1.1"] }, answer);
    let connections = 0;
    server.on("connection", () => connections++);
    const logged: string[] = [];
    const client = await tlsClient(await listen(server), logged);
    for (let i = 0; i < 3; i++) expect(await client.request({ method: "GET", path: "/api/v1/namespaces/default" })).toMatchObject({ metadata: { name: "default" } });
    await expect(client.request({ method: "GET", path: "/api/v1/namespaces/other" })).rejects.toMatchObject({ status: 401, reason: "Unauthorized" });
    expect(client.protocol).toBe("http/1.1");
    expect(logged).toEqual([expect.stringContaining("HTTP/1.1")]);
    // The ALPN probe's connection, then one keep-alive connection for the four requests.
    expect(connections).toBe(2);
    expect(client.openSockets()).toBe(1);
  });

  it("over the HTTP/1.1 fallback, gives every watch a connection of its own: more watches than request sockets all run", async () => {
    const server = https.createServer({ key: pair.keyPem, cert: pair.certPem, ALPNProtocols: ["http/1.1"] }, (req, res) => {
      if (!req.url?.includes("watch=true")) return answer(req, res);
      res.writeHead(200, { "content-type": "application/json" });
      res.write(`${JSON.stringify({ type: "ADDED", object: { metadata: { name: req.url.split("/")[4] } } })}\n`);
    });
    const client = await tlsClient(await listen(server), []);
    const watches = startWatches(client, Array.from({ length: 12 }, (_, i) => `/api/v1/namespaces/ns-${i}/configmaps`));
    try {
      await vi.waitFor(() => expect(watches.events.map(evs => evs.length)).toEqual(Array.from({ length: 12 }, () => 1)), { timeout: 15_000 });
      expect(watches.events.map(evs => (evs[0].object.metadata as { name: string }).name)).toEqual(Array.from({ length: 12 }, (_, i) => `ns-${i}`));
      expect(await client.request({ method: "GET", path: "/api/v1/namespaces/default" })).toMatchObject({ metadata: { name: "default" } });
      expect(client.protocol).toBe("http/1.1");
      expect(client.openSockets()).toBe(13);
    } finally {
      watches.stop();
    }
    expect(await Promise.all(watches.done)).toEqual(Array.from({ length: 12 }, () => "ended"));
  });

  it("negotiates h2 where the server offers it", async () => {
    const server = http2.createSecureServer({ key: pair.keyPem, cert: pair.certPem, allowHTTP1: true }, answer);
    const logged: string[] = [];
    const client = await tlsClient(await listen(server), logged);
    const answers = await Promise.all([0, 1, 2].map(() => client.request({ method: "GET", path: "/api/v1/namespaces/default" })));
    expect(answers).toEqual([0, 1, 2].map(() => expect.objectContaining({ metadata: { name: "default" } })));
    expect(client.protocol).toBe("h2");
    expect(client.openSockets()).toBe(1);
    expect(logged).toEqual([expect.stringContaining("HTTP/2")]);
  });
});

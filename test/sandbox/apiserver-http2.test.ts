// The sandbox API server's one port speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c): the same answers,
// watches, interruption hooks and connection counts for both, HTTP/2 settings like kube-apiserver's.
import http from "node:http";
import http2 from "node:http2";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it, vi } from "vitest";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";
import { DEFAULT_HTTP2_MAX_STREAMS } from "../../sandbox/apiserver/listener";
import { ReconcileQueue } from "../../sandbox/simulators/common";

let api: ApiServer | undefined;
const sessions: http2.ClientHttp2Session[] = [];

afterEach(async () => {
  for (const s of sessions.splice(0)) s.destroy();
  await api?.close();
  api = undefined;
});

function connect(server: ApiServer): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(server.url);
  sessions.push(session);
  session.on("error", () => undefined); // a GOAWAY or reset is asserted through events, not thrown
  return new Promise((resolve, reject) => {
    session.once("remoteSettings", () => resolve(session));
    session.once("error", reject);
  });
}

/** One HTTP/2 request: status, headers and the whole body. */
function h2Get(session: http2.ClientHttp2Session, path: string, headers: http2.OutgoingHttpHeaders = {}): Promise<{ status: number; contentType: string; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":path": path, ...headers });
    let status = 0;
    let contentType = "";
    let body = "";
    stream.setEncoding("utf8");
    stream.on("response", h => {
      status = Number(h[":status"]);
      contentType = String(h["content-type"] ?? "");
    });
    stream.on("data", chunk => (body += chunk));
    stream.on("end", () => resolve({ status, contentType, body }));
    stream.on("error", reject);
  });
}

function h1Get(server: ApiServer, path: string): Promise<{ status: number; httpVersion: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(`${server.url}${path}`, { agent: false }, res => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", chunk => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, httpVersion: res.httpVersion, body }));
      })
      .on("error", reject);
  });
}

/** A watch over an HTTP/2 stream: the events seen so far and whether the server ended the stream. */
function h2Watch(session: http2.ClientHttp2Session, path: string): { events: { type: string; object: Record<string, unknown> }[]; ended: Promise<void>; stream: http2.ClientHttp2Stream } {
  const events: { type: string; object: Record<string, unknown> }[] = [];
  const stream = session.request({ ":path": path });
  let buffered = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split("\n");
    buffered = lines.pop()!;
    for (const line of lines) if (line.trim()) events.push(JSON.parse(line));
  });
  const ended = new Promise<void>(resolve => stream.on("close", () => resolve()));
  return { events, ended, stream };
}

const configMap = (namespace: string, name: string) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace }, data: { k: "v" } });

describe("HTTP/1.1 and HTTP/2 on one port", () => {
  it("answers both protocols alike and counts their connections apart", async () => {
    api = await startApiServer();
    const h1 = await h1Get(api, "/api/v1/namespaces/default");
    const session = await connect(api);
    expect(session.remoteSettings.maxConcurrentStreams).toBe(DEFAULT_HTTP2_MAX_STREAMS);
    const h2 = await h2Get(session, "/api/v1/namespaces/default");
    expect(h1).toMatchObject({ status: 200, httpVersion: "1.1" });
    expect(h2.status).toBe(200);
    expect(JSON.parse(h2.body)).toEqual(JSON.parse(h1.body));
    // Errors keep their shape: Go's text/plain 404 for an API group that is not served, a Status for the rest.
    expect(await h2Get(session, "/apis/nope.example/v1")).toMatchObject({ status: 404, contentType: "text/plain; charset=utf-8", body: "404 page not found\n" });
    expect(JSON.parse((await h2Get(session, "/api/v1/namespaces/default/configmaps/none")).body)).toMatchObject({ kind: "Status", code: 404, reason: "NotFound" });
    await vi.waitFor(() => expect(api!.connections()).toEqual({ http1: 0, http2: 1, pending: 0 }));
    session.close();
    await vi.waitFor(() => expect(api!.connections().http2).toBe(0));
  });

  it("streams watches over HTTP/2: events, openWatches(), dropWatches() with a 410, GOAWAY on restart, 403 while starting", async () => {
    api = await startApiServer();
    api.addToken("t0k", { username: "alice", groups: ["system:authenticated"] });
    const session = await connect(api);
    const first = h2Watch(session, "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0");
    await vi.waitFor(() => expect(api!.openWatches()).toEqual({ configmaps: 1 }));
    api.store.create("configmaps", configMap("default", "one"));
    await vi.waitFor(() => expect(first.events).toContainEqual(expect.objectContaining({ type: "ADDED", object: expect.objectContaining({ metadata: expect.objectContaining({ name: "one" }) }) })));

    expect(api.dropWatches({ expired: true })).toBe(1);
    await first.ended;
    expect(first.events.at(-1)).toMatchObject({ type: "ERROR", object: { code: 410, reason: "Expired" } });
    expect(api.openWatches()).toEqual({});

    const second = h2Watch(session, "/api/v1/namespaces/default/configmaps?watch=true");
    await vi.waitFor(() => expect(api!.openWatches()).toEqual({ configmaps: 1 }));
    const goaway = new Promise<number>(resolve => session.once("goaway", code => resolve(code)));
    await api.restart(50, 2_000);
    expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    await second.ended;
    expect(api.connections()).toEqual({ http1: 0, http2: 0, pending: 0 });

    // Restarted and still starting: RBAC is not synced, a request with a token is refused over HTTP/2 too.
    const again = await connect(api);
    const refused = await h2Get(again, "/api/v1/namespaces/default/configmaps", { authorization: "Bearer t0k" });
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toMatchObject({ kind: "Status", code: 403, reason: "Forbidden" });
  });

  it("advertises --http2-max-streams-per-connection: a stream beyond it waits until one closes", async () => {
    api = await startApiServer({ http2MaxStreamsPerConnection: 2 });
    const session = await connect(api);
    expect(session.remoteSettings.maxConcurrentStreams).toBe(2);
    const open = [0, 1].map(() => h2Watch(session, "/api/v1/namespaces/default/configmaps?watch=true"));
    await vi.waitFor(() => expect(api!.openWatches()).toEqual({ configmaps: 2 }));
    const third = h2Watch(session, "/api/v1/namespaces/default/configmaps?watch=true");
    // A PING is answered after every frame sent before it: had the third HEADERS gone out, it would be served.
    await new Promise<void>((resolve, reject) => session.ping(e => (e ? reject(e) : resolve())));
    expect(api.openWatches()).toEqual({ configmaps: 2 });
    open[0].stream.close();
    await vi.waitFor(() => expect(api!.openWatches()).toEqual({ configmaps: 2 }));
    api.store.create("configmaps", configMap("default", "for-the-third"));
    await vi.waitFor(() => expect(third.events).toContainEqual(expect.objectContaining({ type: "ADDED" })));
    open[1].stream.close();
    third.stream.close();
    await vi.waitFor(() => expect(api!.openWatches()).toEqual({}));
  });

  it("sends a write's reply before the watch events it caused, as kube's watch cache does", async () => {
    api = await startApiServer({ port: 0 });
    const created = api.store.create("configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "cm", namespace: "default" }, data: { a: "1" } });
    const session = await connect(api);
    const arrivals: string[] = [];
    const watch = session.request({ ":path": `/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=${created.metadata.resourceVersion}` });
    watch.setEncoding("utf8");
    watch.on("data", (chunk: string) => {
      for (const line of chunk.split("\n").filter(Boolean)) arrivals.push(`event ${(JSON.parse(line) as { type: string }).type}`);
    });
    await vi.waitFor(() => expect(api!.openWatches()).toEqual({ configmaps: 1 }));
    const patch = session.request({ ":method": "PATCH", ":path": "/api/v1/namespaces/default/configmaps/cm", "content-type": "application/merge-patch+json" });
    let status = "";
    patch.on("response", h => (status = String(h[":status"])));
    patch.on("end", () => arrivals.push(`reply ${status}`)); // the whole reply, body and END_STREAM
    patch.resume();
    patch.end(JSON.stringify({ data: { a: "2" } }));
    await vi.waitFor(() => expect(arrivals).toEqual(["reply 200", "event MODIFIED"]));
    watch.close();
  });

  it("ends a write's reply with its body, before the controllers the write woke run", async () => {
    api = await startApiServer({ port: 0 });
    api.store.create("configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "cm", namespace: "default" }, data: { a: "1" } });
    // A controller that keeps the process busy for a while after each change, as the simulators do.
    const CONTROLLER_MS = 400;
    const reconciled: string[] = [];
    const controller = new ReconcileQueue("slow controller", key => {
      const until = performance.now() + CONTROLLER_MS;
      while (performance.now() < until);
      reconciled.push(key);
    });
    const stopWatch = api.store.watch("configmaps", "default", ev => controller.add(ev.object.metadata.name!));
    try {
      // The client runs on its own thread: this one is the API server and its controllers, as in the bench.
      const client = new Worker(
        `const http2 = require("node:http2");
        const { parentPort, workerData } = require("node:worker_threads");
        const session = http2.connect(workerData.url);
        const started = performance.now();
        const stream = session.request({ ":method": "PATCH", ":path": "/api/v1/namespaces/default/configmaps/cm", "content-type": "application/merge-patch+json" });
        let status = 0;
        stream.on("response", h => (status = h[":status"]));
        stream.resume();
        stream.on("end", () => {
          parentPort.postMessage({ status, ms: performance.now() - started });
          session.close();
        });
        stream.end(JSON.stringify({ data: { a: "2" } }));`,
        { eval: true, workerData: { url: api.url } },
      );
      const reply = await new Promise<{ status: number; ms: number }>((resolve, reject) => {
        client.once("message", resolve);
        client.once("error", reject);
      });
      await client.terminate();
      expect(reply.status).toBe(200);
      // The whole reply (END_STREAM included) left before the controller's turn: a stream ended one event-loop turn
      // after its body would have waited CONTROLLER_MS for it.
      expect(reply.ms).toBeLessThan(CONTROLLER_MS);
      await vi.waitFor(() => expect(reconciled).toEqual(["cm"]));
    } finally {
      stopWatch();
      controller.stop();
    }
  });
});

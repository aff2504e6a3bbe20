// The sandbox API server's interruption hooks used by the reliability suite: dropWatches() (optionally with
// an in-stream 410 Gone) and restart() on the same port with the store kept.
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type ApiServer } from "../../sandbox/apiserver";

let api: ApiServer;

beforeAll(async () => {
  api = await startApiServer();
  api.store.create("namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: "hooks" } });
});
afterAll(async () => api?.close());

/** Opens a raw watch and collects its lines until the server ends the stream. */
function openWatch(path: string): Promise<{ lines: string[]; ended: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${api.url}${path}`, res => {
      const lines: string[] = [];
      let buffer = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buffer += chunk;
        const parts = buffer.split("\n");
        buffer = parts.pop() ?? "";
        lines.push(...parts.filter(Boolean));
      });
      const ended = new Promise<void>(done => res.on("end", () => done()));
      resolve({ lines, ended });
    });
    req.on("error", reject);
  });
}

const configMap = (name: string) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace: "hooks" }, data: { a: "1" } });

describe("API server interruption hooks", () => {
  it("dropWatches() ends every open watch stream and reports how many", async () => {
    const a = await openWatch("/api/v1/namespaces/hooks/configmaps?watch=true");
    const b = await openWatch("/api/v1/configmaps?watch=true");
    api.store.create("configmaps", configMap("before-drop"));
    await expect.poll(() => [a.lines.length, b.lines.length], { message: "the ADDED line at both clients" }).toEqual([1, 1]);
    expect(api.dropWatches()).toBe(2);
    await Promise.all([a.ended, b.ended]);
    expect(a.lines.map(l => JSON.parse(l).type)).toEqual(["ADDED"]);
    expect(api.dropWatches()).toBe(0);
  });

  it("dropWatches({ expired: true }) sends kube's in-stream 410 Gone ERROR event before ending", async () => {
    const w = await openWatch("/api/v1/namespaces/hooks/configmaps?watch=true&resourceVersion=0");
    expect(api.dropWatches({ expired: true })).toBe(1);
    await w.ended;
    const last = JSON.parse(w.lines.at(-1)!);
    expect(last.type).toBe("ERROR");
    expect(last.object).toMatchObject({ kind: "Status", status: "Failure", code: 410, reason: "Expired" });
  });

  it("restart() ends watches, refuses connections while down, and serves the same store on the same port", async () => {
    // The response headers are sent in the same tick the watch registers: it is open once openWatch resolves.
    const w = await openWatch("/api/v1/namespaces/hooks/configmaps?watch=true");
    api.store.create("configmaps", configMap("kept"));
    const restarted = api.restart(300);
    await w.ended;
    // While down (it stopped listening in the tick it ended the watches): the port refuses connections, the
    // store still takes in-process writes (controllers, etcd).
    await expect(fetch(`${api.url}/api/v1/namespaces/hooks/configmaps`)).rejects.toThrow();
    api.store.create("configmaps", configMap("written-while-down"));
    await restarted;
    const list = (await (await fetch(`${api.url}/api/v1/namespaces/hooks/configmaps`)).json()) as { items: { metadata: { name: string } }[] };
    expect(list.items.map(i => i.metadata.name)).toEqual(expect.arrayContaining(["kept", "written-while-down"]));
  });
});

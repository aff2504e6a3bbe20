// The Redfish server over real sockets: HTTPS with a CA-signed or self-signed certificate, plain HTTP only
// when configured, the socket address as the back-off key, EADDRINUSE retried, and the listener following
// configuration changes.
import http from "node:http";
import https from "node:https";
import net, { type AddressInfo } from "node:net";
import { Log } from "pepr";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createCertificateAuthority, issueServerCertificate, type PemPair } from "../../capabilities/common/tls";
import { RedfishListener, startRedfishServer, type RedfishServer } from "../../redfish/server";
import { AUTH, basic, PASSWORDS, testConfig, testService } from "./fixtures";

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function call(url: string, opts: { ca?: string; insecure?: boolean; method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  const target = new URL(url);
  const client = target.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(
      target,
      {
        method: opts.method ?? "GET",
        headers: opts.headers,
        ...(target.protocol === "https:" ? { ca: opts.ca, rejectUnauthorized: !opts.insecure } : {}),
        agent: false,
      },
      res => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", chunk => (body += chunk));
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>(resolve => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise(resolve => probe.close(resolve));
  return port;
}

let ca: PemPair | undefined;
function certificates(): { ca: PemPair; server: PemPair } {
  ca ??= createCertificateAuthority("redfish-test-ca");
  return { ca, server: issueServerCertificate(ca, { commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"] }) };
}

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  while (cleanup.length) await cleanup.pop()!();
});

function serve(server: RedfishServer): RedfishServer {
  cleanup.push(() => server.close());
  return server;
}

describe("HTTPS server", () => {
  it("serves the Redfish tree over TLS with the given certificate; Basic and sessions work end to end", async () => {
    const { ca, server: pair } = certificates();
    const s = testService();
    const server = serve(startRedfishServer({ fetch: s.app.fetch, port: 0, host: "127.0.0.1", tls: pair }));
    const port = await server.ready;
    expect(server.protocol).toBe("https");
    const base = `https://127.0.0.1:${port}`;

    const root = await call(`${base}/redfish/v1/`, { ca: ca.certPem });
    expect(root.status).toBe(200);
    expect(root.headers["odata-version"]).toBe("4.0");
    expect(JSON.parse(root.body).Links.Sessions["@odata.id"]).toBe("/redfish/v1/SessionService/Sessions");

    expect((await call(`${base}/redfish/v1/Systems/tenant1-vms.vm-a`, { ca: ca.certPem, headers: { Authorization: AUTH.alice } })).status).toBe(200);

    const login = await call(`${base}/redfish/v1/SessionService/Sessions`, {
      ca: ca.certPem,
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ UserName: "bob", Password: PASSWORDS.bob }),
    });
    expect(login.status).toBe(201);
    const token = login.headers["x-auth-token"] as string;
    const systems = await call(`${base}/redfish/v1/Systems`, { ca: ca.certPem, headers: { "X-Auth-Token": token } });
    expect(JSON.parse(systems.body).Members).toEqual([{ "@odata.id": "/redfish/v1/Systems/tenant2-vms.vm-c" }]);
    expect((await call(`${base}${login.headers.location}`, { ca: ca.certPem, method: "DELETE", headers: { "X-Auth-Token": token } })).status).toBe(204);
    expect((await call(`${base}/redfish/v1/Systems`, { ca: ca.certPem, headers: { "X-Auth-Token": token } })).status).toBe(401);

    // a client that does not trust the CA cannot talk to it
    await expect(call(`${base}/redfish/v1/`)).rejects.toThrow();
  });

  it("keys back-off on the real socket address: a spoofed X-Forwarded-For does not bypass it", async () => {
    const { ca, server: pair } = certificates();
    const s = testService();
    const server = serve(startRedfishServer({ fetch: s.app.fetch, port: 0, host: "127.0.0.1", tls: pair }));
    const base = `https://127.0.0.1:${await server.ready}`;
    for (let i = 0; i < 3; i++) {
      const res = await call(`${base}/redfish/v1/Systems`, {
        ca: ca.certPem,
        headers: { Authorization: basic(`sprayed-${i}`, "x"), "X-Forwarded-For": `203.0.113.${i}` },
      });
      expect(res.status).toBe(401);
    }
    const blocked = await call(`${base}/redfish/v1/Systems`, { ca: ca.certPem, headers: { Authorization: AUTH.alice, "X-Forwarded-For": "203.0.113.200" } });
    expect(blocked.status).toBe(401);
    expect(blocked.headers["retry-after"]).toBeDefined();
  });

  it("serves plain HTTP only when TLS is off", async () => {
    const s = testService();
    const server = serve(startRedfishServer({ fetch: s.app.fetch, port: 0, host: "127.0.0.1", tls: false }));
    const port = await server.ready;
    expect(server.protocol).toBe("http");
    expect((await call(`http://127.0.0.1:${port}/redfish/v1/`)).status).toBe(200);
    expect((await call(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  });

  it("logs and retries when the port is taken instead of crashing, and binds once it is free", async () => {
    const errors: unknown[][] = [];
    vi.spyOn(Log, "error").mockImplementation(((...args: unknown[]) => errors.push(args)) as never);
    const blocker = net.createServer();
    await new Promise<void>(resolve => blocker.listen(0, "127.0.0.1", resolve));
    const { port } = blocker.address() as AddressInfo;
    const s = testService();
    const server = serve(startRedfishServer({ fetch: s.app.fetch, port, host: "127.0.0.1", tls: false, retryDelayMs: 50 }));
    await new Promise(r => setTimeout(r, 200));
    expect(errors.some(([fields]) => (fields as { code?: string }).code === "EADDRINUSE")).toBe(true);
    await new Promise(resolve => blocker.close(resolve));
    expect(await server.ready).toBe(port);
    expect((await call(`http://127.0.0.1:${port}/redfish`)).status).toBe(200);
  });

  it("close() before the port was ever bound ends the retries", async () => {
    vi.spyOn(Log, "error").mockImplementation((() => undefined) as never);
    const blocker = net.createServer();
    await new Promise<void>(resolve => blocker.listen(0, "127.0.0.1", resolve));
    cleanup.push(() => new Promise(resolve => blocker.close(resolve)));
    const s = testService();
    const server = startRedfishServer({ fetch: s.app.fetch, port: (blocker.address() as AddressInfo).port, host: "127.0.0.1", tls: false, retryDelayMs: 20 });
    await server.close();
    await expect(server.ready).rejects.toThrow(/closed/);
  });
});

describe("RedfishListener", () => {
  it("follows the configuration: self-signed when the Secret is missing, Secret certificate, port change, disable", async () => {
    vi.spyOn(Log, "warn").mockImplementation((() => undefined) as never);
    const { ca, server: pair } = certificates();
    const s = testService();
    let secret: { certPem: string; keyPem: string } | undefined;
    const [portA, portB] = [await freePort(), await freePort()];
    const listener = new RedfishListener({ fetch: s.app.fetch, loadTlsSecret: async () => secret, host: "127.0.0.1", env: {} });
    cleanup.push(() => listener.close());

    await listener.reconcile(testConfig({ redfish: { port: portA } }));
    await listener.server!.ready;
    // no Secret: a self-signed certificate (clients skip verification), never plain HTTP
    expect((await call(`https://127.0.0.1:${portA}/redfish/v1/`, { insecure: true })).status).toBe(200);
    await expect(call(`https://127.0.0.1:${portA}/redfish/v1/`, { ca: ca.certPem })).rejects.toThrow();

    // same settings: nothing restarts
    const running = listener.server;
    await listener.reconcile(testConfig({ redfish: { port: portA } }));
    expect(listener.server).toBe(running);

    // the Secret's certificate on the new port
    secret = pair;
    await listener.reconcile(testConfig({ redfish: { port: portB, tls: { secretName: "redfish-tls" } } }));
    await listener.server!.ready;
    expect((await call(`https://127.0.0.1:${portB}/redfish/v1/`, { ca: ca.certPem })).status).toBe(200);
    await expect(call(`https://127.0.0.1:${portA}/redfish/v1/`, { insecure: true })).rejects.toThrow();

    // an invalid Secret falls back to self-signed instead of failing
    secret = { certPem: "not a certificate", keyPem: "nor a key" };
    await listener.reconcile(testConfig({ redfish: { port: portB, tls: { secretName: "broken-tls" } } }));
    expect((await call(`https://127.0.0.1:${portB}/redfish/v1/`, { insecure: true })).status).toBe(200);

    // plain HTTP only when explicitly configured
    await listener.reconcile(testConfig({ redfish: { port: portB, tls: { enabled: false } } }));
    expect((await call(`http://127.0.0.1:${portB}/redfish/v1/`)).status).toBe(200);

    // disabled (or no chassis): no listener at all
    await listener.reconcile(testConfig({ redfish: { enabled: false, port: portB } }));
    expect(listener.server).toBeUndefined();
    await expect(call(`http://127.0.0.1:${portB}/redfish/v1/`)).rejects.toThrow();
  });

  it("takes REDFISH_PORT over redfish.port, and ignores an invalid one", async () => {
    vi.spyOn(Log, "error").mockImplementation((() => undefined) as never);
    const s = testService();
    const port = await freePort();
    const listener = new RedfishListener({ fetch: s.app.fetch, loadTlsSecret: async () => undefined, host: "127.0.0.1", env: { REDFISH_PORT: String(port) } });
    cleanup.push(() => listener.close());
    await listener.reconcile(testConfig({ redfish: { tls: { enabled: false } } }));
    expect(await listener.server!.ready).toBe(port);

    const other = await freePort();
    const invalid = new RedfishListener({ fetch: s.app.fetch, loadTlsSecret: async () => undefined, host: "127.0.0.1", env: { REDFISH_PORT: "3000" } });
    cleanup.push(() => invalid.close());
    await invalid.reconcile(testConfig({ redfish: { port: other, tls: { enabled: false } } }));
    expect(await invalid.server!.ready).toBe(other);
  });
});

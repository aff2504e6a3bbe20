// The Redfish server over real sockets: HTTPS with a CA-signed or self-signed certificate, plain HTTP only
// when configured, the socket address as the back-off key, EADDRINUSE retried, and the listener following
// configuration changes.
import net, { type AddressInfo } from "node:net";
import tls from "node:tls";
import { Log } from "pepr";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createCertificateAuthority, issueServerCertificate, type PemPair } from "../../capabilities/common/tls";
import { RedfishListener, startRedfishServer, type RedfishServer } from "../../redfish/server";
import { call } from "../helpers/http-call";
import { AUTH, basic, PASSWORDS, testConfig, testService } from "./fixtures";

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
        headers: { Authorization: basic("alice", `guess-${i}`), "X-Forwarded-For": `203.0.113.${i}` },
      });
      expect(res.status).toBe(401);
    }
    const blocked = await call(`${base}/redfish/v1/Systems`, { ca: ca.certPem, headers: { Authorization: basic("alice", "guess-3"), "X-Forwarded-For": "203.0.113.200" } });
    expect(blocked.status).toBe(401);
    expect(blocked.headers["retry-after"]).toBeDefined();
  });

  it("reads request headers from Node's parse as Fetch would: two Authorization fields are refused, never the first taken", async () => {
    const { ca, server: pair } = certificates();
    const s = testService();
    const server = serve(startRedfishServer({ fetch: s.app.fetch, port: 0, host: "127.0.0.1", tls: pair }));
    const port = await server.ready;
    const get = async (headerLines: string) => {
      const socket = await rawTls(port, ca.certPem);
      const reply = readUntilClosed(socket);
      socket.write(`GET ${SYSTEM_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n${headerLines}\r\n`);
      return (await reply).text;
    };
    // Node's IncomingMessage keeps the first Authorization alone; the service must see both, as Fetch joins them.
    expect(await get(`Authorization: ${AUTH.alice}\r\nAuthorization: ${basic("alice", "wrong")}\r\n`)).toMatch(/^HTTP\/1\.1 401 /);
    expect(await get(`authorization: ${AUTH.alice}\r\n`)).toMatch(/^HTTP\/1\.1 200 /);
    // If-None-Match, read the same way, still gives 304 for the current ETag and 200 for a list without it.
    const etag = /\r\netag: ("[^"]+")/i.exec(await get(`Authorization: ${AUTH.alice}\r\n`))![1];
    expect(await get(`Authorization: ${AUTH.alice}\r\nIf-None-Match: "other"\r\nIf-None-Match: ${etag}\r\n`)).toMatch(/^HTTP\/1\.1 304 /);
    expect(await get(`Authorization: ${AUTH.alice}\r\nIf-None-Match: "other"\r\n`)).toMatch(/^HTTP\/1\.1 200 /);
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
    await expect.poll(() => errors.some(([fields]) => (fields as { code?: string }).code === "EADDRINUSE"), { message: "EADDRINUSE logged" }).toBe(true);
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

/** A raw TLS connection to the server (no HTTP client in between). */
function rawTls(port: number, ca: string, options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca, ...options }, () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Everything the server sends until it closes the connection, and when it closed it. */
function readUntilClosed(socket: net.Socket): Promise<{ text: string; closedAt: number }> {
  return new Promise(resolve => {
    let text = "";
    socket.on("data", chunk => (text += chunk.toString("latin1")));
    socket.on("error", () => undefined);
    socket.on("close", () => resolve({ text, closedAt: Date.now() }));
  });
}

const SYSTEM_PATH = "/redfish/v1/Systems/tenant1-vms.vm-a";

describe("protocol and connection limits", () => {
  const LIMITS = { handshakeMs: 600, headersMs: 600, requestMs: 1_500, keepAliveMs: 800, maxConnections: 8 };

  async function limitedServer() {
    const { ca, server: pair } = certificates();
    const s = testService();
    const server = serve(startRedfishServer({ fetch: s.app.fetch, port: 0, host: "127.0.0.1", tls: pair, limits: LIMITS }));
    return { port: await server.ready, ca: ca.certPem };
  }

  it("answers an unknown HTTP method with 501 and a Redfish error body, not the parser's 400", async () => {
    const { port, ca } = await limitedServer();
    const socket = await rawTls(port, ca);
    const reply = readUntilClosed(socket);
    socket.write("FAKEMETHODFORTEST /redfish/v1 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    const { text } = await reply;
    expect(text).toMatch(/^HTTP\/1\.1 501 Not Implemented\r\n/);
    const body = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4)) as { error: { code: string; "@Message.ExtendedInfo": unknown[] } };
    expect(body.error.code).toBe("Base.1.18.1.GeneralError");
    expect(body.error["@Message.ExtendedInfo"]).toHaveLength(1);
    // other parse errors keep their status
    const other = await rawTls(port, ca);
    const otherReply = readUntilClosed(other);
    other.write("GET /redfish/v1 HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n");
    expect((await otherReply).text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    // a broken body of a request the app already has is answered too (the response has not started)
    const chunked = await rawTls(port, ca);
    const chunkedReply = readUntilClosed(chunked);
    chunked.write(`POST ${SYSTEM_PATH}/Actions/ComputerSystem.Reset HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${AUTH.alice}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`);
    expect((await chunkedReply).text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
  });

  it("reads a request body from the socket: in pieces, and 413 for an oversized one the client sees whole", async () => {
    const { port, ca } = await limitedServer();
    const login = JSON.stringify({ UserName: "alice", Password: PASSWORDS.alice });
    const head = (length: number | "chunked") =>
      `POST /redfish/v1/SessionService/Sessions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n${length === "chunked" ? "Transfer-Encoding: chunked" : `Content-Length: ${length}`}\r\nConnection: close\r\n\r\n`;
    const exchange = async (...parts: string[]) => {
      const socket = await rawTls(port, ca);
      const reply = readUntilClosed(socket);
      for (const [i, part] of parts.entries()) {
        if (i > 0) await new Promise(resolve => setTimeout(resolve, 50)); // separate TCP segments
        socket.write(part);
      }
      return (await reply).text;
    };
    // A body that arrives in pieces is read whole.
    expect(await exchange(head(Buffer.byteLength(login)) + login.slice(0, 10), login.slice(10))).toMatch(/^HTTP\/1\.1 201 Created\r\n/);
    expect(await exchange(head("chunked") + `5\r\n${login.slice(0, 5)}\r\n`, `${(login.length - 5).toString(16)}\r\n${login.slice(5)}\r\n0\r\n\r\n`)).toMatch(/^HTTP\/1\.1 201 Created\r\n/);
    // Over 64 KiB, announced or counted: the body is read (up to 4 MiB) and the client gets the 413 and its error body.
    const big = "x".repeat(100 * 1024);
    for (const text of [await exchange(head(big.length) + big), await exchange(head("chunked") + `${big.length.toString(16)}\r\n${big}\r\n0\r\n\r\n`)]) {
      expect(text).toMatch(/^HTTP\/1\.1 413 /);
      expect(text).toContain("Send a request body of at most 65536 bytes.");
    }
  });

  it("sends HSTS, offers only ECDHE+AEAD suites on TLS 1.2, refuses TLS 1.1, and resumes sessions from tickets", async () => {
    const { port, ca } = await limitedServer();
    const root = await call(`https://127.0.0.1:${port}/redfish/v1/`, { ca });
    expect(root.headers["strict-transport-security"]).toBe("max-age=31536000");
    for (const cipher of ["AES128-GCM-SHA256", "AES256-SHA256", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA384"]) {
      await expect(rawTls(port, ca, { maxVersion: "TLSv1.2", ciphers: cipher }), cipher).rejects.toThrow();
    }
    for (const cipher of ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"]) {
      const socket = await rawTls(port, ca, { maxVersion: "TLSv1.2", ciphers: cipher });
      expect(socket.getCipher().standardName, cipher).toMatch(/^TLS_ECDHE_RSA_WITH_/);
      socket.destroy();
    }
    await expect(rawTls(port, ca, { minVersion: "TLSv1.1", maxVersion: "TLSv1.1", ciphers: "DEFAULT:@SECLEVEL=0" })).rejects.toThrow();

    for (const version of ["TLSv1.2", "TLSv1.3"] as const) {
      const first = await rawTls(port, ca, { maxVersion: version });
      // TLS 1.2 has its ticket after the handshake; TLS 1.3 sends it after the handshake, with the first data
      const session =
        version === "TLSv1.2"
          ? first.getSession()!
          : await new Promise<Buffer>(resolve => {
              first.once("session", resolve);
              first.write("GET /redfish HTTP/1.1\r\nHost: localhost\r\n\r\n");
            });
      expect(first.isSessionReused()).toBe(false);
      first.destroy();
      const resumed = await rawTls(port, ca, { maxVersion: version, session });
      expect(resumed.isSessionReused(), version).toBe(true);
      resumed.destroy();
    }
  });

  it("keeps a connection for clients that keep it, and closes it once idle for the keep-alive timeout", async () => {
    const { port, ca } = await limitedServer();
    const socket = await rawTls(port, ca);
    const closed = readUntilClosed(socket);
    let received = "";
    socket.on("data", chunk => (received += chunk.toString("latin1")));
    socket.write("GET /redfish HTTP/1.1\r\nHost: localhost\r\n\r\n");
    // The second request goes on the connection the first reply left open.
    await vi.waitFor(() => expect(received).toMatch(/HTTP\/1\.1 200 OK/), { timeout: 5_000 });
    socket.write("GET /redfish/v1/ HTTP/1.1\r\nHost: localhost\r\n\r\n");
    const sentAt = Date.now();
    const { text, closedAt } = await closed;
    expect(text.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
    expect(closedAt - sentAt).toBeGreaterThanOrEqual(LIMITS.keepAliveMs - 100);
    expect(closedAt - sentAt).toBeLessThan(LIMITS.keepAliveMs + 2_500);
  });

  it("closes slow clients within the timeouts: no ClientHello, headers a byte at a time, a body a byte at a time", async () => {
    const { port, ca } = await limitedServer();
    const started = Date.now();
    // 1. a TCP connection that never starts TLS
    const silent = net.connect({ host: "127.0.0.1", port });
    const silentClosed = readUntilClosed(silent);
    // 2. the request head, one byte every 100 ms, never finished
    const slowHead = await rawTls(port, ca);
    const slowHeadClosed = readUntilClosed(slowHead);
    const head = "GET /redfish/v1/ HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + "a".repeat(200);
    let i = 0;
    const headTimer = setInterval(() => slowHead.writable && slowHead.write(head[i++ % head.length]), 100);
    // 3. a complete head, then a body one byte every 100 ms
    const slowBody = await rawTls(port, ca);
    const slowBodyClosed = readUntilClosed(slowBody);
    slowBody.write("POST /redfish/v1/SessionService/Sessions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n");
    const bodyTimer = setInterval(() => slowBody.writable && slowBody.write(" "), 100);
    try {
      const [a, b, c] = await Promise.all([silentClosed, slowHeadClosed, slowBodyClosed]);
      const check = 1_000 + 700; // Node checks the timeouts once a second; scheduling slack on a loaded machine
      expect(a.closedAt - started).toBeLessThan(LIMITS.handshakeMs + check);
      expect(b.closedAt - started).toBeLessThan(LIMITS.headersMs + check);
      expect(c.closedAt - started).toBeLessThan(LIMITS.requestMs + check);
      // an incomplete head is answered 408; a request already handed to the app is just closed
      expect(b.text).toMatch(/^HTTP\/1\.1 408 /);
    } finally {
      clearInterval(headTimer);
      clearInterval(bodyTimer);
    }
  });

  it("drops connections beyond maxConnections at accept and serves again once they are gone", async () => {
    const { port, ca } = await limitedServer();
    const held = await Promise.all(Array.from({ length: LIMITS.maxConnections }, () => rawTls(port, ca)));
    const extra = net.connect({ host: "127.0.0.1", port });
    const { closedAt } = await readUntilClosed(extra);
    expect(closedAt).toBeGreaterThan(0);
    held.forEach(s => s.destroy());
    // The server sees the closes asynchronously: a request made too early may still be dropped at accept.
    await expect.poll(async () => (await call(`https://127.0.0.1:${port}/redfish`, { ca })).status, { timeout: 5_000, interval: 50, message: "served again" }).toBe(200);
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

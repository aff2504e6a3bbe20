// The Redfish listener: HTTPS by default (certificate from a Secret, else a self-signed pair with a
// warning), plain HTTP only when redfish.tls.enabled is false. Runs in the watcher pod next to Pepr's
// own server, so a listen error (EADDRINUSE) is logged and retried, never thrown: an unhandled 'error'
// event would kill the watcher.
import { createAdaptorServer } from "@hono/node-server";
import { createServer as createHttpsServer } from "node:https";
import { createSecureContext } from "node:tls";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import { Log } from "./platform";
import { createSelfSignedServerCertificate } from "../capabilities/common/tls";
import { redfishActive, redfishPortSchema, type ModuleConfig } from "../capabilities/config/schema";

export interface TlsMaterial {
  certPem: string;
  keyPem: string;
}

type FetchHandler = (request: Request, env: unknown) => Response | Promise<Response>;

export interface RedfishServerOptions {
  /** The Hono app's fetch (`app.fetch`). */
  fetch: FetchHandler;
  /** 0 picks a free port (tests). */
  port: number;
  /** Listen address; default: all interfaces. */
  host?: string;
  /** The certificate to serve, or false for plain HTTP. */
  tls: TlsMaterial | false;
  /** First retry delay after EADDRINUSE (doubles up to 30 s). */
  retryDelayMs?: number;
}

export interface RedfishServer {
  /** The bound port once listening (retries until it is, or until close()). */
  readonly ready: Promise<number>;
  readonly protocol: "https" | "http";
  close(): Promise<void>;
}

const MAX_RETRY_DELAY_MS = 30_000;

export function startRedfishServer(options: RedfishServerOptions): RedfishServer {
  const protocol = options.tls ? "https" : "http";
  const server = (
    options.tls
      ? createAdaptorServer({
          fetch: options.fetch,
          createServer: createHttpsServer,
          serverOptions: { cert: options.tls.certPem, key: options.tls.keyPem, minVersion: "TLSv1.2" },
        })
      : createAdaptorServer({ fetch: options.fetch })
  ) as Server;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let delay = options.retryDelayMs ?? 1000;

  const ready = new Promise<number>((resolve, reject) => {
    const listen = () => {
      if (closed) return;
      if (options.host) server.listen(options.port, options.host);
      else server.listen(options.port);
    };
    server.on("listening", () => {
      const port = (server.address() as AddressInfo).port;
      Log.info({ port, protocol }, "Redfish server listening");
      resolve(port);
    });
    server.on("error", (err: NodeJS.ErrnoException) => {
      if (closed) return;
      if (err.code === "EADDRINUSE" || err.code === "EACCES" || err.code === "EADDRNOTAVAIL") {
        Log.error({ port: options.port, code: err.code, retryInSeconds: delay / 1000 }, "Redfish server cannot listen yet; retrying");
        retryTimer = setTimeout(listen, delay);
        retryTimer.unref();
        delay = Math.min(delay * 2, MAX_RETRY_DELAY_MS);
        return;
      }
      Log.error({ code: err.code, err: err.message }, "Redfish server error");
    });
    server.on("close", () => {
      if (closed) reject(new Error("Redfish server closed before it was listening"));
    });
    listen();
  });
  // A caller that never awaits `ready` must not see an unhandled rejection after close().
  ready.catch(() => undefined);

  return {
    ready,
    protocol,
    close: () =>
      new Promise<void>(resolve => {
        closed = true;
        if (retryTimer) clearTimeout(retryTimer);
        if (!server.listening) {
          server.emit("close");
          resolve();
          return;
        }
        server.close(() => resolve());
        // Keep-alive connections would hold close() open; Redfish clients reconnect.
        server.closeAllConnections();
      }),
  };
}

// ---- listener settings from the configuration ----

export interface ListenerSettings {
  port: number;
  tls: { enabled: boolean; secretName: string };
}

/** Port (REDFISH_PORT overrides redfish.port when valid) and TLS settings; undefined when Redfish is inactive. */
export function listenerSettings(config: ModuleConfig | undefined, env: NodeJS.ProcessEnv = process.env): ListenerSettings | undefined {
  if (!config || !redfishActive(config)) return undefined;
  let port = config.redfish.port;
  if (env.REDFISH_PORT !== undefined && env.REDFISH_PORT !== "") {
    const parsed = redfishPortSchema.safeParse(Number(env.REDFISH_PORT));
    if (parsed.success) port = parsed.data;
    else Log.error({ REDFISH_PORT: env.REDFISH_PORT, port }, "REDFISH_PORT must be a port >= 1024 other than 3000; using redfish.port");
  }
  return { port, tls: { enabled: config.redfish.tls.enabled, secretName: config.redfish.tls.secretName } };
}

let selfSigned: TlsMaterial | undefined;

/** One self-signed pair per process (regenerating on every restart of the listener would gain nothing). */
export function selfSignedCertificate(): TlsMaterial {
  selfSigned ??= createSelfSignedServerCertificate({
    commonName: "kubevirt-infra-redfish",
    dnsNames: [...new Set([os.hostname(), "localhost"])],
    ipAddresses: ["127.0.0.1", "::1"],
  });
  return selfSigned;
}

/**
 * Keeps the listener in line with the configuration: started when Redfish becomes active, restarted
 * when the port or TLS settings change, stopped when Redfish is disabled. Reconciles run one at a time.
 */
export class RedfishListener {
  private current: { settings: ListenerSettings; server: RedfishServer } | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly options: {
      fetch: FetchHandler;
      /** Reads `tls.crt`/`tls.key` of the named Secret in the module's namespace; undefined when absent. */
      loadTlsSecret: (secretName: string) => Promise<TlsMaterial | undefined>;
      host?: string;
      env?: NodeJS.ProcessEnv;
    },
  ) {}

  reconcile(config: ModuleConfig | undefined): Promise<void> {
    this.queue = this.queue.then(() => this.apply(listenerSettings(config, this.options.env))).catch(err => {
      Log.error({ err: err instanceof Error ? err.message : String(err) }, "Redfish listener reconcile failed");
    });
    return this.queue;
  }

  /** The running server (tests). */
  get server(): RedfishServer | undefined {
    return this.current?.server;
  }

  close(): Promise<void> {
    return this.reconcile(undefined);
  }

  private async apply(settings: ListenerSettings | undefined): Promise<void> {
    if (JSON.stringify(settings) === JSON.stringify(this.current?.settings)) return;
    if (this.current) {
      await this.current.server.close();
      Log.info({ port: this.current.settings.port }, "Redfish server stopped");
      this.current = undefined;
    }
    if (!settings) return;
    const tls = settings.tls.enabled ? await this.certificate(settings.tls.secretName) : false;
    if (!tls) Log.warn({ port: settings.port }, "Redfish is served over plain HTTP (redfish.tls.enabled: false)");
    const server = startRedfishServer({ fetch: this.options.fetch, port: settings.port, host: this.options.host, tls });
    this.current = { settings, server };
  }

  private async certificate(secretName: string): Promise<TlsMaterial> {
    try {
      const fromSecret = await this.options.loadTlsSecret(secretName);
      if (fromSecret) {
        createSecureContext({ cert: fromSecret.certPem, key: fromSecret.keyPem }); // throws on a bad pair
        return fromSecret;
      }
      Log.warn({ secretName }, "Redfish TLS Secret not found; serving a self-signed certificate (clients must skip verification)");
    } catch (err) {
      Log.warn({ secretName, err: err instanceof Error ? err.message : String(err) }, "Redfish TLS Secret unreadable or invalid; serving a self-signed certificate");
    }
    return selfSignedCertificate();
  }
}

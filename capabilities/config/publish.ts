// Hands the watcher's validated configuration to the admission pods through the Pepr Store, the only
// supported channel between Pepr's pods.
//
// Why the watcher patches the PeprStore itself instead of calling `Store.setItem`: in pepr 1.1.4
// (dist/lib.js, StoreController) `setItem` only queues the write; a timer flushes the queue every 4 s,
// and every receiver debounces PeprStore watch events by 1 s. A change could thus take 4 s + 1 s + API
// latency, over the product's 5 s budget. Patching the key right away leaves only the receivers' 1 s
// debounce. The key and value are exactly what `Store.setItem` would write (../common/pepr-store.ts), so
// admission pods read it with the ordinary `Store.getItem`/`Store.subscribe`.
//
// Only the non-secret part is published (no users, no passwords): anyone who can read the PeprStore
// object can read the Store.
import { createHash } from "node:crypto";
import { z } from "zod";
import { peprStoreDataKey } from "../common/pepr-store";
import { configErrorMap, formatIssues } from "./errors";
import { moduleConfigSchema, type ModuleConfig } from "./schema";

export const CONFIG_CAPABILITY_NAME = "module-config";
/** Store key (through `Store.getItem`) of the published configuration. */
export const STORE_CONFIG_KEY = "config";
/** Data key inside the PeprStore object, as Pepr's Store writes it for `setItem(STORE_CONFIG_KEY)`. */
export const STORE_CONFIG_DATA_KEY = peprStoreDataKey(CONFIG_CAPABILITY_NAME, STORE_CONFIG_KEY);
const FORMAT = 1;

/** The config without anything secret (users and their passwords). */
export function publicConfig(config: ModuleConfig): ModuleConfig {
  return { ...config, authentication: { ...config.authentication, users: [] } };
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** A short fingerprint of the public config: the same in the watcher and every admission pod. */
export function publicConfigHash(config: ModuleConfig): string {
  return createHash("sha256").update(canonicalJson(publicConfig(config))).digest("hex").slice(0, 16);
}

/** Compares two configs including users (in memory only; never logged). */
export function sameConfig(a: ModuleConfig | undefined, b: ModuleConfig | undefined): boolean {
  return a !== undefined && b !== undefined && canonicalJson(a) === canonicalJson(b);
}

export interface PublishedConfig {
  config: ModuleConfig;
  hash: string;
  configMapResourceVersion: string;
}

const envelopeSchema = z.strictObject({
  format: z.literal(FORMAT),
  hash: z.string(),
  configMapResourceVersion: z.string(),
  config: z.unknown(),
});

/** The Store value for a config (JSON text). */
export function encodePublishedConfig(config: ModuleConfig, configMapResourceVersion: string): string {
  return JSON.stringify({ format: FORMAT, hash: publicConfigHash(config), configMapResourceVersion, config: publicConfig(config) });
}

/** Parses a Store value with the same schema the watcher used; errors name the field. */
export function decodePublishedConfig(text: string): { ok: true; published: PublishedConfig } | { ok: false; errors: string[] } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, errors: ["Store value is not JSON"] };
  }
  const envelope = envelopeSchema.safeParse(json, { error: configErrorMap });
  if (!envelope.success) return { ok: false, errors: formatIssues(envelope.error.issues) };
  const config = moduleConfigSchema.safeParse(envelope.data.config, { error: configErrorMap });
  if (!config.success) return { ok: false, errors: formatIssues(config.error.issues) };
  // The hash is recomputed rather than trusted, so every process reports the config it actually runs.
  return {
    ok: true,
    published: { config: config.data, hash: publicConfigHash(config.data), configMapResourceVersion: envelope.data.configMapResourceVersion },
  };
}

/** A log-safe description of what a Kubernetes client call threw (kubernetes-fluent-client throws the response). */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  const response = e as { status?: unknown; statusText?: unknown } | undefined;
  if (response && typeof response.status === "number") return `HTTP ${response.status}${typeof response.statusText === "string" ? ` ${response.statusText}` : ""}`;
  return String(e);
}

export interface StorePublisher {
  /** Queues a value; only the latest queued value is written. Never throws. */
  publish(value: string): void;
  /** Resolves once nothing is queued or being written (tests, shutdown). */
  idle(): Promise<void>;
}

interface PublisherLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/**
 * Writes Store values one at a time, always the newest, retrying with back-off (the PeprStore object
 * appears only a few seconds after Pepr starts, and the API server may be briefly unreachable).
 */
export function createStorePublisher(
  write: (value: string) => Promise<void>,
  log: PublisherLog,
  opts: { retryBaseMs?: number; retryMaxMs?: number } = {},
): StorePublisher {
  const retryBaseMs = opts.retryBaseMs ?? 250;
  const retryMaxMs = opts.retryMaxMs ?? 5000;
  let queued: string | undefined;
  let running: Promise<void> | undefined;

  const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms).unref());

  async function drain(): Promise<void> {
    let failures = 0;
    while (queued !== undefined) {
      const value = queued;
      queued = undefined;
      try {
        await write(value);
        if (failures > 0) log.info({ attempts: failures + 1 }, "config published to the Pepr Store after retrying");
        failures = 0;
      } catch (e) {
        failures++;
        if (queued === undefined) queued = value;
        if (failures === 1 || failures % 20 === 0) {
          log.warn({ attempts: failures, error: describeError(e) }, "could not publish the config to the Pepr Store yet; retrying");
        }
        await sleep(Math.min(retryMaxMs, retryBaseMs * 2 ** Math.min(failures - 1, 10)));
      }
    }
  }

  function kick(): void {
    if (running) return;
    running = drain().finally(() => {
      running = undefined;
      // A value queued after the loop ended but before this ran would otherwise wait for the next publish.
      if (queued !== undefined) kick();
    });
  }

  return {
    publish(value) {
      queued = value;
      kick();
    },
    async idle() {
      while (running) await running;
    },
  };
}

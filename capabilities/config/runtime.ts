// The configuration in force in this process, and how it changes.
// - Watcher: fed by the ConfigMap and Secret (applyConfigSource); publishes the non-secret part to the Store.
// - Admission pods: fed by the Store (applyPublishedConfig).
// A change that does not validate is refused (log line + Event naming the field) and the last good
// configuration stays in force. Until a configuration is in force, currentConfig() is undefined and
// every capability is inert.
import { Log, metricsCollector } from "pepr";
import { recordEvent } from "../common/gateway";
import { loadConfigFromObjects, type ConfigMapSource, type SecretSource } from "./load";
import { decodePublishedConfig, encodePublishedConfig, publicConfigHash, sameConfig, type StorePublisher } from "./publish";
import type { ModuleConfig } from "./schema";

export type ConfigListener = (config: ModuleConfig, previous: ModuleConfig | undefined) => void;

export interface RuntimeLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

type EventTarget = { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string; uid?: string } };

export interface ConfigMetrics {
  applied(hash: string, previousHash: string | undefined): void;
  refused(): void;
}

export interface ConfigRuntimeDeps {
  log: RuntimeLog;
  recordEvent: (involved: EventTarget, type: "Normal" | "Warning", reason: string, message: string) => Promise<void>;
  metrics?: ConfigMetrics;
  /** Environment for overrides (REDFISH_PORT); defaults to process.env. */
  env?: Record<string, string | undefined>;
}

export interface ConfigStatus {
  /** Configurations applied in this process since it started (0 = none yet). */
  generation: number;
  /** publicConfigHash of the config in force: equal in the watcher and the admission pods. */
  hash?: string;
  /** resourceVersion of the ConfigMap the config in force came from ("" when there was none). */
  configMapResourceVersion?: string;
  source?: "ConfigMap" | "Store";
}

export type ApplyOutcome =
  | { status: "applied"; warnings: string[] }
  | { status: "unchanged" }
  | { status: "refused"; errors: string[] }
  /** The watcher has not yet seen both the ConfigMap and the Secret (or learnt that they are absent). */
  | { status: "waiting" };

type SourceState<T> = { seen: false } | { seen: true; object: T | null };

const MAX_EVENT_MESSAGE = 1000;

export class ConfigRuntime {
  readonly #deps: ConfigRuntimeDeps;
  #config: ModuleConfig | undefined;
  #status: ConfigStatus = { generation: 0 };
  #listeners = new Map<number, ConfigListener>();
  #nextListenerId = 0;
  #configMap: SourceState<ConfigMapSource> = { seen: true, object: null };
  #usersSecret: SourceState<SecretSource> = { seen: true, object: null };
  #lastRefused: string | undefined;
  #lastStoreValue: string | null | undefined;
  #publisher: StorePublisher | undefined;
  #publishedHash: string | undefined;

  constructor(deps: ConfigRuntimeDeps) {
    this.#deps = deps;
  }

  current(): ModuleConfig | undefined {
    return this.#config;
  }

  status(): ConfigStatus {
    return { ...this.#status };
  }

  /** Calls `fn(config, previous)` after each change (not for the config already in force). Returns the unsubscribe. */
  onChange(fn: ConfigListener): () => void {
    const id = this.#nextListenerId++;
    this.#listeners.set(id, fn);
    return () => {
      this.#listeners.delete(id);
    };
  }

  /**
   * In the watcher: evaluate nothing until both sources were seen (through Watch or a startup read),
   * so a Secret seen before its ConfigMap does not look like users of undefined chassis.
   */
  expectSources(): void {
    this.#configMap = { seen: false };
    this.#usersSecret = { seen: false };
  }

  /** In the watcher: where to publish the non-secret config for the admission pods. */
  setPublisher(publisher: StorePublisher): void {
    this.#publisher = publisher;
  }

  /**
   * A new state of the ConfigMap and/or the users Secret (null = deleted, undefined = unchanged).
   * `onlyIfUnseen` is for the startup read: it must not override what a Watch event already delivered.
   */
  async applySource(
    change: { configMap?: ConfigMapSource | null; usersSecret?: SecretSource | null },
    opts: { onlyIfUnseen?: boolean } = {},
  ): Promise<ApplyOutcome> {
    let trigger: EventTarget | undefined;
    if (change.configMap !== undefined && !(opts.onlyIfUnseen && this.#configMap.seen)) {
      this.#configMap = { seen: true, object: change.configMap };
      trigger = change.configMap ?? undefined;
    }
    if (change.usersSecret !== undefined && !(opts.onlyIfUnseen && this.#usersSecret.seen)) {
      this.#usersSecret = { seen: true, object: change.usersSecret };
      trigger ??= change.usersSecret ?? undefined;
    }
    if (!this.#configMap.seen || !this.#usersSecret.seen) return { status: "waiting" };

    const configMap = this.#configMap.object;
    const usersSecret = this.#usersSecret.object;
    const result = loadConfigFromObjects({ configMap, usersSecret, env: this.#deps.env ?? process.env });
    if (!result.ok) {
      const fingerprint = JSON.stringify([configMap?.metadata?.resourceVersion, configMap?.data, usersSecret?.metadata?.resourceVersion, usersSecret?.data, usersSecret?.stringData]);
      // A re-list delivers the same objects again: refuse them again, but say it only once.
      if (fingerprint === this.#lastRefused) return { status: "refused", errors: result.errors };
      this.#lastRefused = fingerprint;
      await this.#refuse(result.errors, trigger ?? configMap ?? usersSecret ?? undefined, {
        configMapResourceVersion: configMap?.metadata?.resourceVersion,
        usersSecretResourceVersion: usersSecret?.metadata?.resourceVersion,
      });
      return { status: "refused", errors: result.errors };
    }
    this.#lastRefused = undefined;
    const resourceVersion = configMap?.metadata?.resourceVersion ?? "";
    const outcome = this.#accept(result.config, result.warnings, "ConfigMap", resourceVersion);
    if (outcome.status === "applied") {
      this.#publish(result.config, resourceVersion);
      if (configMap) {
        const warned = result.warnings.length > 0 ? ` with ${result.warnings.length} warning(s) (see the watcher log)` : "";
        await this.#deps.recordEvent(
          configMap,
          "Normal",
          "ConfigApplied",
          `kubevirt-infra configuration applied${warned}: generation ${this.#status.generation}, hash ${this.#status.hash}`,
        );
      }
    }
    return outcome;
  }

  /** A Store value published by the watcher (null = no value). Invalid values are refused; the last good stays. */
  applyPublished(value: string | null): ApplyOutcome {
    // The Store notifies on every PeprStore change, mostly other keys: skip what was already handled.
    if (value === this.#lastStoreValue) return this.#config ? { status: "unchanged" } : { status: "waiting" };
    this.#lastStoreValue = value;
    if (value === null) {
      if (this.#config === undefined) {
        this.#deps.log.info({}, "no kubevirt-infra configuration in the Pepr Store yet; capabilities stay inert until the watcher publishes one");
        return { status: "waiting" };
      }
      this.#deps.log.warn({ configHash: this.#status.hash }, "the published configuration disappeared from the Pepr Store; keeping the last good one");
      return { status: "unchanged" };
    }
    const decoded = decodePublishedConfig(value);
    if (!decoded.ok) {
      this.#deps.metrics?.refused();
      this.#deps.log.error(
        { errors: decoded.errors, configHash: this.#status.hash },
        `published configuration refused, ${this.#staysText()}: ${summarize(decoded.errors)}`,
      );
      return { status: "refused", errors: decoded.errors };
    }
    const { config, configMapResourceVersion } = decoded.published;
    return this.#accept(config, [], "Store", configMapResourceVersion);
  }

  #staysText(): string {
    return this.#config ? `the previous configuration stays in force (hash ${this.#status.hash})` : "no configuration is in force (capabilities stay inert)";
  }

  async #refuse(errors: string[], target: EventTarget | undefined, versions: Record<string, string | undefined>): Promise<void> {
    this.#deps.metrics?.refused();
    const stays = this.#staysText();
    this.#deps.log.error({ errors, configHash: this.#status.hash, ...versions }, `config refused, ${stays}: ${summarize(errors)}`);
    if (target) {
      let message = `kubevirt-infra configuration refused; ${stays}. ${errors.join("; ")}`;
      if (message.length > MAX_EVENT_MESSAGE) message = `${message.slice(0, MAX_EVENT_MESSAGE - 40)}… (all errors in the watcher log)`;
      await this.#deps.recordEvent(target, "Warning", "ConfigRefused", message);
    }
  }

  #accept(config: ModuleConfig, warnings: string[], source: "ConfigMap" | "Store", configMapResourceVersion: string): ApplyOutcome {
    const hash = publicConfigHash(config);
    // The Store holds only the public part, so admission pods compare by hash; the watcher compares everything (users too).
    const unchanged = source === "Store" ? hash === this.#status.hash && this.#config !== undefined : sameConfig(config, this.#config);
    if (unchanged) return { status: "unchanged" };
    const previous = this.#config;
    const previousHash = this.#status.hash;
    // Shared by every capability of the process: nobody may change it behind the others' backs.
    this.#config = deepFreeze(config);
    this.#status = { generation: this.#status.generation + 1, hash, configMapResourceVersion, source };
    const fields = {
      configGeneration: this.#status.generation,
      configHash: hash,
      configMapResourceVersion,
      source,
      ...(source === "ConfigMap" ? { users: config.authentication.users.length } : {}),
    };
    this.#deps.log.info(fields, `config applied generation=${this.#status.generation} hash=${hash}`);
    for (const warning of warnings) this.#deps.log.warn({ configHash: hash }, `config warning: ${warning}`);
    this.#deps.metrics?.applied(hash, previousHash);
    for (const listener of this.#listeners.values()) {
      try {
        listener(config, previous);
      } catch (e) {
        this.#deps.log.error({ error: e instanceof Error ? e.message : String(e) }, "a configuration listener failed");
      }
    }
    return { status: "applied", warnings };
  }

  #publish(config: ModuleConfig, configMapResourceVersion: string): void {
    if (!this.#publisher) return;
    const hash = publicConfigHash(config);
    // Users-only changes leave the public part alone; the first config of a process is always written
    // because the Store may still hold what an earlier watcher published.
    if (hash === this.#publishedHash) return;
    this.#publishedHash = hash;
    this.#publisher.publish(encodePublishedConfig(config, configMapResourceVersion));
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}

function summarize(errors: string[]): string {
  return errors.length <= 3 ? errors.join("; ") : `${errors.slice(0, 3).join("; ")}; and ${errors.length - 3} more`;
}

/** Metrics on Pepr's /metrics endpoint (prefixed "pepr_"). */
export function peprConfigMetrics(): ConfigMetrics {
  metricsCollector.addGauge("kubevirt_infra_config_generation", "Configurations applied in this process since it started", []);
  metricsCollector.addGauge("kubevirt_infra_config_info", "1 for the configuration in force (label hash), 0 for earlier ones", ["hash"]);
  metricsCollector.addCounter("kubevirt_infra_config_refused_total", "Configuration changes refused as invalid");
  return {
    applied(hash, previousHash) {
      metricsCollector.incGauge("kubevirt_infra_config_generation", {}, 1);
      if (previousHash !== undefined && previousHash !== hash) metricsCollector.incGauge("kubevirt_infra_config_info", { hash: previousHash }, -1);
      if (previousHash !== hash) metricsCollector.incGauge("kubevirt_infra_config_info", { hash }, 1);
    },
    refused() {
      metricsCollector.incCounter("kubevirt_infra_config_refused_total");
    },
  };
}

const runtime = new ConfigRuntime({ log: Log, recordEvent, metrics: peprConfigMetrics() });

/** The process-wide runtime (the module-config capability wires its sources). */
export function moduleConfigRuntime(): ConfigRuntime {
  return runtime;
}

/** The last good, validated configuration of this process; undefined until one was loaded (capabilities inert). */
export function currentConfig(): ModuleConfig | undefined {
  return runtime.current();
}

/** Subscribes to configuration changes: `fn(config, previous)`; read currentConfig() for the one already in force. */
export function onConfigChange(fn: ConfigListener): () => void {
  return runtime.onChange(fn);
}

/** Generation, hash and source of the configuration in force (for health output and tests). */
export function configStatus(): ConfigStatus {
  return runtime.status();
}

/** Feeds the ConfigMap / users Secret (null = deleted) into the process-wide runtime. */
export function applyConfigSource(
  change: { configMap?: ConfigMapSource | null; usersSecret?: SecretSource | null },
  opts?: { onlyIfUnseen?: boolean },
): Promise<ApplyOutcome> {
  return runtime.applySource(change, opts);
}

/** Feeds a Store value (admission pods) into the process-wide runtime. */
export function applyPublishedConfig(value: string | null): ApplyOutcome {
  return runtime.applyPublished(value);
}

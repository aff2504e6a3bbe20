// The watcher side of node-identity: settings from the config, Nodes from the watch, the infra VMs from the
// infra cluster (kubeconfig from a Secret), the back-fill, and the infra snapshot handed to admission pods.
// Plain module: every side effect (API writes, Secret read, Store, logs, metrics) is injected.
import { NodeBackfill, type FailedVerification } from "./backfill";
import type { Resolution } from "./decide";
import type { IdentityChanges, JsonPatchOp, NodeView } from "./identity";
import { InfraMirror, type InfraMirrorOptions } from "./infra-mirror";
import { VmIndex, encodeSnapshot, type InfraSnapshot } from "./infra-index";
import type { NodeIdentitySettings, SettingsResult } from "./settings";

export interface Logger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export type NodeIdentityCounter = "patched" | "verificationFailed" | "error";

export interface WatcherDeps {
  patchNode(name: string, ops: JsonPatchOp[]): Promise<unknown>;
  /** Records a Warning Event on the Node; `eventName` is stable per problem so a repeat is not a duplicate. */
  recordNodeEvent(node: NodeView, reason: string, message: string, eventName: string): Promise<void>;
  /** The infra kubeconfig from the Secret (undefined = Secret or key absent). */
  readInfraKubeconfig(secret: { name: string; key: string }): Promise<string | undefined>;
  /** Hands the encoded infra snapshot to the admission pods (Pepr Store). */
  publishSnapshot(encoded: string): void;
  log: Logger;
  count(counter: NodeIdentityCounter): void;
  /** How long the first back-fill waits for the infra VMs before it goes ahead unverified. */
  infraGraceMs?: number;
  /** How often the kubeconfig Secret is re-read (credential rotation). */
  secretRefreshMs?: number;
  concurrency?: number;
  mirror?: Pick<InfraMirrorOptions, "relistIntervalMs" | "requestTimeoutMs" | "debounceMs">;
}

const EVENT_REASONS: Record<FailedVerification["problem"], string> = {
  VmNotFound: "InfraVMNotFound",
  UuidMismatch: "InfraVMUUIDMismatch",
  ProviderIDConflict: "ProviderIDConflict",
  DuplicateClaim: "InfraVMClaimedTwice",
};

function errorText(error: unknown): string {
  const e = error as { status?: unknown; reason?: unknown; message?: unknown } | undefined;
  const status = typeof e?.status === "number" && e.status > 0 ? `HTTP ${e.status} ` : "";
  const message = typeof e?.message === "string" ? e.message : String(error);
  return `${status}${message}`.slice(0, 300);
}

/** A short, stable, DNS-safe digest for Event names. */
function digest(text: string): string {
  let hash = 2166136261;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 16777619);
  return (hash >>> 0).toString(36);
}

interface InfraTarget {
  secret: { name: string; key: string };
  namespaces: readonly string[];
}

function sameTarget(a: InfraTarget | undefined, b: InfraTarget | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class NodeIdentityWatcher {
  readonly #deps: WatcherDeps;
  readonly #backfill: NodeBackfill;
  #settings?: NodeIdentitySettings;
  #inactiveReason?: string;
  #infraTarget?: InfraTarget;
  #kubeconfig?: string;
  #mirror?: InfraMirror;
  #secretTimer?: NodeJS.Timeout;
  #graceTimer?: NodeJS.Timeout;
  #infraGeneration = 0;
  #stopped = false;

  constructor(deps: WatcherDeps) {
    this.#deps = deps;
    const log = deps.log;
    this.#backfill = new NodeBackfill(
      {
        patchNode: deps.patchNode,
        problem: (node, resolution, verification, applied) => this.#reportProblem(node, resolution, verification, applied),
        patched: (node, resolution, changes) => this.#reportPatched(node, resolution, changes),
        failed: (name, error) => {
          deps.count("error");
          const status = (error as { status?: unknown }).status;
          // 422 = the Node changed since it was read (resourceVersion test): the next watch event retries.
          const level = status === 422 || status === 409 ? "debug" : "warn";
          log[level]({ node: name, error: errorText(error) }, `node-identity: could not update node ${name}; retrying`);
        },
      },
      { concurrency: deps.concurrency },
    );
  }

  /** New configuration (or none): re-reconcile every Node, (re)start or stop the infra mirror. */
  configure(result: SettingsResult): void {
    if (this.#stopped) return;
    if (!result.active) {
      if (this.#settings || this.#inactiveReason !== result.reason) {
        this.#deps.log.info({ reason: result.reason }, `node-identity inactive: ${result.reason}`);
      }
      this.#settings = undefined;
      this.#inactiveReason = result.reason;
      this.#setInfraTarget(undefined);
      this.#backfill.configure(undefined);
      return;
    }
    this.#inactiveReason = undefined;
    for (const warning of result.warnings) this.#deps.log.warn({}, `node-identity: ${warning}`);
    const { settings } = result;
    this.#settings = settings;
    this.#deps.log.info(
      { mode: settings.mode, mappings: settings.explicit.size, infra: settings.infraKubeconfig ? settings.infraNamespaces : [] },
      "node-identity active",
    );
    this.#setInfraTarget(settings.infraKubeconfig ? { secret: settings.infraKubeconfig, namespaces: settings.infraNamespaces } : undefined);
    this.#backfill.configure(settings);
  }

  /** A Node watch event (MODIFIED stands for added or modified). Malformed objects are logged and skipped. */
  nodeEvent(obj: unknown, phase: "MODIFIED" | "DELETED"): void {
    try {
      if (phase === "DELETED") {
        const name = (obj as { metadata?: { name?: unknown } } | undefined)?.metadata?.name;
        if (typeof name === "string") this.#backfill.forget(name);
        return;
      }
      this.#backfill.observe(obj);
    } catch (error) {
      this.#deps.count("error");
      this.#deps.log.warn({ error: errorText(error) }, "node-identity: ignoring a malformed Node watch event");
    }
  }

  whenIdle(): Promise<void> {
    return this.#backfill.whenIdle();
  }

  stop(): void {
    this.#stopped = true;
    this.#setInfraTarget(undefined);
    this.#backfill.stop();
  }

  #reportProblem(node: NodeView, resolution: Resolution, verification: FailedVerification, applied: boolean): void {
    this.#deps.count("verificationFailed");
    const consequence = applied ? "applied anyway (nodeIdentity.mode: report)" : "not applied (nodeIdentity.mode: enforce)";
    const message = `${verification.message}; ${consequence}`;
    this.#deps.log.warn(
      { node: node.name, source: resolution.source, vm: `${resolution.target.namespace}/${resolution.target.name}`, problem: verification.problem, applied },
      `node-identity: ${message}`,
    );
    // Event names are DNS subdomains (at most 253 characters).
    const eventName = `${node.name.slice(0, 220)}.node-identity.${digest(message)}`;
    void this.#deps.recordNodeEvent(node, EVENT_REASONS[verification.problem], message, eventName);
  }

  #reportPatched(node: NodeView, resolution: Resolution, changes: IdentityChanges): void {
    this.#deps.count("patched");
    this.#deps.log.info(
      {
        node: node.name,
        source: resolution.source,
        vm: `${resolution.target.namespace}/${resolution.target.name}`,
        changed: [...Object.keys(changes.annotations), ...(changes.providerID ? ["spec.providerID"] : [])],
      },
      `node-identity: node ${node.name} set to VM ${resolution.target.namespace}/${resolution.target.name} (${resolution.source})`,
    );
  }

  // ---- infra access -------------------------------------------------------------------------------

  #setInfraTarget(target: InfraTarget | undefined): void {
    if (sameTarget(target, this.#infraTarget)) return;
    this.#infraTarget = target;
    this.#infraGeneration++;
    this.#kubeconfig = undefined;
    this.#stopMirror();
    clearTimeout(this.#secretTimer);
    clearTimeout(this.#graceTimer);
    this.#backfill.setInfraIndex(undefined);
    if (!target || this.#stopped) {
      this.#backfill.hold(false);
      return;
    }
    // Hold the back-fill until the infra VMs are known (or the grace period ends), so it does not apply a
    // mapping that verification would have refused.
    this.#backfill.hold(true);
    const generation = this.#infraGeneration;
    this.#graceTimer = setTimeout(() => {
      if (generation !== this.#infraGeneration) return;
      this.#deps.log.warn(
        { secret: target.secret.name, namespaces: target.namespaces },
        "node-identity: the infra cluster's VMs are not known yet; reconciling Nodes without discovery or verification until they are",
      );
      this.#backfill.hold(false);
    }, this.#deps.infraGraceMs ?? 10_000);
    this.#graceTimer.unref?.();
    void this.#refreshKubeconfig(generation);
  }

  async #refreshKubeconfig(generation: number): Promise<void> {
    const target = this.#infraTarget;
    if (!target || generation !== this.#infraGeneration) return;
    let kubeconfig: string | undefined;
    let failed = false;
    try {
      kubeconfig = await this.#deps.readInfraKubeconfig(target.secret);
      if (kubeconfig === undefined) {
        failed = true;
        this.#deps.log.warn(
          { secret: target.secret.name, key: target.secret.key },
          `node-identity: infra kubeconfig Secret pepr-system/${target.secret.name} (key ${target.secret.key}) not found; no discovery or verification`,
        );
      }
    } catch (error) {
      failed = true;
      this.#deps.log.warn({ secret: target.secret.name, error: errorText(error) }, "node-identity: could not read the infra kubeconfig Secret; retrying");
    }
    if (generation !== this.#infraGeneration) return;
    if (kubeconfig !== undefined && kubeconfig !== this.#kubeconfig) {
      this.#kubeconfig = kubeconfig;
      this.#startMirror(target, kubeconfig, generation);
    }
    // Re-read periodically for credential rotation, sooner while it fails.
    const delay = failed ? Math.min(this.#deps.secretRefreshMs ?? 60_000, 5_000) : (this.#deps.secretRefreshMs ?? 60_000);
    this.#secretTimer = setTimeout(() => void this.#refreshKubeconfig(generation), delay);
    this.#secretTimer.unref?.();
  }

  #startMirror(target: InfraTarget, kubeconfig: string, generation: number): void {
    this.#stopMirror();
    let mirror: InfraMirror;
    try {
      mirror = new InfraMirror({
        ...this.#deps.mirror,
        kubeconfig,
        namespaces: target.namespaces,
        onSnapshot: snapshot => {
          if (generation === this.#infraGeneration) this.#onSnapshot(snapshot);
        },
        onError: message => this.#deps.log.warn({ secret: target.secret.name }, `node-identity: infra cluster: ${message}`),
      });
    } catch {
      // The parser's message could quote the file (credentials): say only where it came from.
      this.#deps.log.error(
        { secret: target.secret.name, key: target.secret.key },
        `node-identity: Secret pepr-system/${target.secret.name} key ${target.secret.key} is not a valid kubeconfig`,
      );
      return;
    }
    this.#mirror = mirror;
    mirror.start();
  }

  #onSnapshot(snapshot: InfraSnapshot): void {
    clearTimeout(this.#graceTimer);
    this.#deps.log.info({ namespaces: snapshot.namespaces, vms: snapshot.vms.length }, "node-identity: infra VMs updated");
    this.#backfill.setInfraIndex(new VmIndex(snapshot));
    this.#backfill.hold(false);
    this.#deps.publishSnapshot(encodeSnapshot(snapshot));
  }

  #stopMirror(): void {
    this.#mirror?.stop();
    this.#mirror = undefined;
  }
}

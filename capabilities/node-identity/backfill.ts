// The watcher's back-fill: keeps every Node's identity right, whatever the webhook saw or missed (Nodes that
// predate the module, mapping changes, writes made while the webhook was down). Nodes come from the watch,
// work is queued per Node name (a Node is never reconciled twice at once), a bounded number of patches are
// in flight, and only Nodes whose identity differs are written. Plain module: side effects are injected.
import { decide, VmClaims, type NodeDecision, type Resolution, type Verification } from "./decide";
import { hasChanges, toJsonPatch, toNodeView, type IdentityChanges, type JsonPatchOp, type NodeView } from "./identity";
import type { VmIndex } from "./infra-index";
import type { NodeIdentitySettings } from "./settings";

export type FailedVerification = Extract<Verification, { outcome: "failed" }>;

export interface BackfillHooks {
  /** Applies a JSON patch to the Node and returns the Node as stored. */
  patchNode(name: string, ops: JsonPatchOp[]): Promise<unknown>;
  /** A mapping the infra cluster or the Node contradicts; called once per Node and distinct problem. */
  problem(node: NodeView, resolution: Resolution, verification: FailedVerification, applied: boolean): void;
  patched(node: NodeView, resolution: Resolution, changes: IdentityChanges): void;
  /** A reconcile failed; it is retried with back-off. */
  failed(nodeName: string, error: unknown): void;
}

export interface BackfillOptions {
  /** Patches in flight at once. */
  concurrency?: number;
  /** Upper bound of the retry back-off. */
  maxRetryDelayMs?: number;
}

const BASE_RETRY_DELAY_MS = 500;

export class NodeBackfill {
  readonly #hooks: BackfillHooks;
  readonly #concurrency: number;
  readonly #maxRetryDelayMs: number;
  #settings?: NodeIdentitySettings;
  #index?: VmIndex;
  readonly #claims = new VmClaims();
  readonly #nodes = new Map<string, NodeView>();
  /** Queued names; a Set keeps insertion order and drops duplicates. */
  readonly #pending = new Set<string>();
  readonly #running = new Set<string>();
  /** Names that changed while being reconciled: run again afterwards. */
  readonly #dirty = new Set<string>();
  readonly #retries = new Map<string, { attempts: number; timer?: NodeJS.Timeout; notBefore: number }>();
  readonly #reported = new Map<string, string>();
  #idleWaiters: (() => void)[] = [];
  #held = false;
  #stopped = false;

  constructor(hooks: BackfillHooks, options: BackfillOptions = {}) {
    this.#hooks = hooks;
    this.#concurrency = Math.max(1, options.concurrency ?? 16);
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? 30_000;
  }

  /** New settings (undefined = inactive): every known Node is reconciled against them. */
  configure(settings: NodeIdentitySettings | undefined): void {
    this.#settings = settings;
    if (!settings) this.#reported.clear();
    this.#enqueueAll();
  }

  /** A new view of the infra VMs (undefined = no infra access): every known Node is reconciled again. */
  setInfraIndex(index: VmIndex | undefined): void {
    this.#index = index;
    this.#enqueueAll();
  }

  /** A Node from the watch (ADDED/MODIFIED). Throws on a malformed object. */
  observe(obj: unknown): void {
    const node = toNodeView(obj);
    this.#nodes.set(node.name, node);
    this.#claims.observe(node);
    this.#enqueue(node.name);
  }

  forget(name: string): void {
    this.#nodes.delete(name);
    this.#claims.forget(name);
    this.#reported.delete(name);
    this.#clearRetry(name);
  }

  /**
   * While held, Nodes are collected and queued but not reconciled (e.g. until the infra VMs are known, so the
   * first back-fill does not apply mappings that verification would have refused).
   */
  hold(held: boolean): void {
    this.#held = held;
    if (!held) this.#pump();
  }

  get nodeCount(): number {
    return this.#nodes.size;
  }

  /** Resolves once no reconcile is queued (or held) or running; scheduled retries do not count. */
  whenIdle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise(resolve => this.#idleWaiters.push(resolve));
  }

  stop(): void {
    this.#stopped = true;
    this.#pending.clear();
    for (const name of [...this.#retries.keys()]) this.#clearRetry(name);
  }

  #enqueueAll(): void {
    for (const name of this.#nodes.keys()) this.#enqueue(name);
  }

  #enqueue(name: string): void {
    if (this.#stopped) return;
    if (this.#running.has(name)) this.#dirty.add(name);
    else this.#pending.add(name);
    this.#pump();
  }

  #isIdle(): boolean {
    return (this.#held || this.#pending.size === 0) && this.#running.size === 0;
  }

  #pump(): void {
    while (!this.#held && this.#running.size < this.#concurrency && this.#pending.size > 0) {
      const name = this.#pending.values().next().value as string;
      this.#pending.delete(name);
      this.#running.add(name);
      void this.#run(name);
    }
    if (this.#isIdle()) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      waiters.forEach(resolve => resolve());
    }
  }

  async #run(name: string): Promise<void> {
    try {
      await this.#reconcile(name);
    } catch (error) {
      // Deleted meanwhile (the delete event comes on another watch stream, possibly late).
      if ((error as { status?: unknown }).status === 404) this.forget(name);
      else {
        this.#hooks.failed(name, error);
        this.#scheduleRetry(name, false);
      }
    } finally {
      this.#running.delete(name);
      if (this.#dirty.delete(name)) this.#pending.add(name);
      this.#pump();
    }
  }

  async #reconcile(name: string): Promise<void> {
    const settings = this.#settings;
    const node = this.#nodes.get(name);
    if (!settings || !node) return;
    const decision = decide(node, settings, this.#index, this.#claims);
    this.#noteProblem(node, decision);
    // Claimed from now on, so a second Node resolving to the same VM meanwhile is refused, not patched too.
    if (decision.apply && decision.resolution && hasChanges(decision.changes)) this.#claims.claim(name, decision.resolution.target);
    if (!hasChanges(decision.changes)) {
      this.#clearRetry(name);
      return;
    }
    const retry = this.#retries.get(name);
    if (retry && retry.notBefore > Date.now()) return; // backing off; the scheduled retry comes back

    const stored = await this.#hooks.patchNode(name, toJsonPatch(node, decision.changes));
    this.#hooks.patched(node, decision.resolution!, decision.changes);
    // The answer is the Node as stored, after admission webhooks. Take it as the latest view unless a newer
    // watch event already replaced the one patched.
    const after = toNodeView(stored);
    if (this.#nodes.get(name) === node) {
      this.#nodes.set(name, after);
      this.#claims.observe(after);
    }
    const stillWrong = hasChanges(decide(after, settings, this.#index, this.#claims).changes);
    if (stillWrong) {
      // Something (a webhook with older data, another controller) rewrote the identity: do not fight it in a
      // tight loop; back off until the views agree.
      this.#scheduleRetry(name, true);
    } else {
      this.#clearRetry(name);
    }
  }

  #noteProblem(node: NodeView, decision: NodeDecision): void {
    const verification = decision.verification;
    if (verification?.outcome !== "failed") {
      this.#reported.delete(node.name);
      return;
    }
    const fingerprint = `${verification.problem}:${verification.message}:${decision.apply}`;
    if (this.#reported.get(node.name) === fingerprint) return;
    this.#reported.set(node.name, fingerprint);
    this.#hooks.problem(node, decision.resolution!, verification, decision.apply);
  }

  #scheduleRetry(name: string, holdOff: boolean): void {
    if (this.#stopped) return;
    const previous = this.#retries.get(name);
    if (previous?.timer) clearTimeout(previous.timer);
    const attempts = (previous?.attempts ?? 0) + 1;
    const delay = Math.min(this.#maxRetryDelayMs, BASE_RETRY_DELAY_MS * 2 ** (attempts - 1));
    const entry = { attempts, notBefore: holdOff ? Date.now() + delay : 0, timer: undefined as NodeJS.Timeout | undefined };
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      entry.notBefore = 0;
      this.#enqueue(name);
    }, delay);
    entry.timer.unref?.();
    this.#retries.set(name, entry);
  }

  #clearRetry(name: string): void {
    const entry = this.#retries.get(name);
    if (entry?.timer) clearTimeout(entry.timer);
    this.#retries.delete(name);
  }
}

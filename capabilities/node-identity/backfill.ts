// The watcher's back-fill: keeps every Node's identity right, whatever the webhook saw or missed (Nodes that
// predate the module, mapping changes, writes made while the webhook was down). Nodes come from the shared
// Node informer, work goes through the keyed work queue (a Node is never reconciled twice at once, a failed
// one is retried with back-off), a bounded number of patches are in flight, and only Nodes whose identity
// differs are written. Plain module: side effects are injected.
import { WorkQueue } from "../common/work-queue";
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

export class NodeBackfill {
  readonly #hooks: BackfillHooks;
  readonly #queue: WorkQueue;
  #settings?: NodeIdentitySettings;
  #index?: VmIndex;
  readonly #claims = new VmClaims();
  readonly #nodes = new Map<string, NodeView>();
  /** Nodes rewritten by someone else after our patch: not written again before this time (ms epoch). */
  readonly #holdOffUntil = new Map<string, number>();
  readonly #reported = new Map<string, string>();

  constructor(hooks: BackfillHooks, options: BackfillOptions = {}) {
    this.#hooks = hooks;
    this.#queue = new WorkQueue(name => this.#process(name), {
      concurrency: options.concurrency ?? 16,
      maxDelayMs: options.maxRetryDelayMs ?? 30_000,
      onError: (name, error) => this.#hooks.failed(name, error),
    });
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
    this.#queue.add(node.name);
  }

  forget(name: string): void {
    this.#nodes.delete(name);
    this.#claims.forget(name);
    this.#reported.delete(name);
    this.#holdOffUntil.delete(name);
    this.#queue.forget(name);
  }

  /**
   * While held, Nodes are collected and queued but not reconciled (e.g. until the infra VMs are known, so the
   * first back-fill does not apply mappings that verification would have refused).
   */
  hold(held: boolean): void {
    this.#queue.hold(held);
  }

  get nodeCount(): number {
    return this.#nodes.size;
  }

  /** Resolves once no reconcile is queued (or held) or running; scheduled retries do not count. */
  whenIdle(): Promise<void> {
    return this.#queue.whenIdle();
  }

  stop(): void {
    this.#queue.shutDown();
  }

  #enqueueAll(): void {
    for (const name of this.#nodes.keys()) this.#queue.add(name);
  }

  /** One reconcile; a thrown error is retried by the queue with back-off. */
  async #process(name: string): Promise<void> {
    try {
      await this.#reconcile(name);
    } catch (error) {
      // Deleted meanwhile (the delete event may come later on the watch): nothing to retry.
      if ((error as { status?: unknown }).status === 404) this.forget(name);
      else throw error;
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
      this.#done(name);
      return;
    }
    if ((this.#holdOffUntil.get(name) ?? 0) > Date.now()) return; // backing off; the scheduled retry comes back

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
      // tight loop; back off (growing) until the views agree.
      const delay = this.#queue.nextDelay(name);
      this.#holdOffUntil.set(name, Date.now() + delay);
      this.#queue.addRateLimited(name);
    } else {
      this.#done(name);
    }
  }

  #done(name: string): void {
    this.#holdOffUntil.delete(name);
    this.#queue.forget(name);
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
}

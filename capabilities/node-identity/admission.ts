// The admission side of node-identity: what to change on a Node in a CREATE/UPDATE request. Everything the
// decision needs is prepared off the request path (settings when the config changes, the infra VM index
// when the watcher publishes a snapshot), so a request costs a few map lookups and never calls an API.
// Plain module.
import type { ModuleConfig } from "../config/schema";
import { decide, type NodeDecision } from "./decide";
import { toNodeView, type NodeView } from "./identity";
import { VmIndex, decodeSnapshot } from "./infra-index";
import { nodeIdentitySettings, type SettingsResult } from "./settings";

export interface AdmissionLog {
  warn(obj: object, msg: string): void;
}

export interface AdmissionDecision {
  node: NodeView;
  decision: NodeDecision;
}

export class NodeAdmission {
  readonly #log: AdmissionLog;
  #configSeen: ModuleConfig | undefined;
  #settings: SettingsResult = { active: false, reason: "no valid module configuration is loaded" };
  #snapshotText: string | null = null;
  #index: VmIndex | undefined;

  constructor(log: AdmissionLog) {
    this.#log = log;
  }

  /** The infra snapshot the watcher published (Store value; null = none). Malformed values are ignored. */
  acceptSnapshot(text: string | null): void {
    if (text === this.#snapshotText) return;
    this.#snapshotText = text;
    if (text === null) {
      this.#index = undefined;
      return;
    }
    try {
      this.#index = new VmIndex(decodeSnapshot(text));
    } catch {
      this.#index = undefined;
      this.#log.warn({}, "node-identity: ignoring a malformed infra snapshot in the Pepr Store");
    }
  }

  /**
   * The decision for a Node object under `config`; undefined when node-identity is inactive. Throws on a
   * malformed Node (the caller approves it unchanged).
   */
  evaluate(config: ModuleConfig | undefined, obj: unknown): AdmissionDecision | undefined {
    if (config !== this.#configSeen) {
      this.#configSeen = config;
      this.#settings = nodeIdentitySettings(config);
    }
    if (!this.#settings.active) return undefined;
    const { settings } = this.#settings;
    const node = toNodeView(obj);
    const index = settings.infraKubeconfig ? this.#index : undefined;
    return { node, decision: decide(node, settings, index) };
  }
}

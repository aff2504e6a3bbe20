import { Capability, Log, a, metricsCollector, type PeprMutateRequest } from "pepr";
import { patchNode, readSecretKey, recordEvent, setPeprStoreData } from "../common/gateway";
import type { SharedInformers } from "../common/informers";
import { MODULE_PEPR_STORE, peprStoreDataKey } from "../common/pepr-store";
import { createStorePublisher } from "../config/publish";
import { currentConfig, onConfigChange } from "../config/runtime";
import { NodeAdmission } from "./admission";
import { INFRA_SNAPSHOT_STORE_KEY } from "./infra-index";
import { nodeIdentitySettings } from "./settings";
import { NodeIdentityWatcher, type NodeIdentityCounter } from "./watcher";

// Bindings only: admission → NodeAdmission; the shared Node informer + config → NodeIdentityWatcher (see docs/node-identity.md).
// No `namespaces` filter: Pepr's namespace filter silently skips cluster-scoped kinds like Node.
export const NodeIdentity = new Capability({
  name: "node-identity",
  description: "Keeps the infra VM identity annotations on nested-cluster Nodes",
});

const { When, Store } = NodeIdentity;
const MODULE_NAMESPACE = "pepr-system";
// What Store.setItem(INFRA_SNAPSHOT_STORE_KEY) would write; patched directly like the config (see config/publish.ts).
const SNAPSHOT_DATA_KEY = peprStoreDataKey(NodeIdentity.name, INFRA_SNAPSHOT_STORE_KEY);

const COUNTERS: Record<NodeIdentityCounter | "mutated", [string, string]> = {
  mutated: ["kubevirt_infra_node_identity_admission_mutations_total", "Node admission requests whose identity was set or corrected"],
  patched: ["kubevirt_infra_node_identity_backfill_patches_total", "Nodes whose identity the watcher's back-fill set or corrected"],
  verificationFailed: ["kubevirt_infra_node_identity_verification_failures_total", "Mappings the infra cluster or the Node contradicts"],
  error: ["kubevirt_infra_node_identity_errors_total", "Errors handled by node-identity (the Node write was never rejected)"],
};
for (const [name, help] of Object.values(COUNTERS)) metricsCollector.addCounter(name, help);
const count = (counter: NodeIdentityCounter | "mutated"): void => metricsCollector.incCounter(COUNTERS[counter][0]);

// ---- admission ----------------------------------------------------------------------------------------

const admission = new NodeAdmission(Log);

/**
 * Fails open by construction: whatever happens (no or invalid config, malformed Node, a bug), the request
 * is approved unchanged. A Node webhook that rejects can stop a cluster; the back-fill catches up.
 */
function mutateNode(req: PeprMutateRequest<a.Node>): void {
  try {
    const evaluated = admission.evaluate(currentConfig(), req.Raw);
    if (!evaluated) return;
    const { node, decision } = evaluated;
    const { resolution, verification, changes } = decision;
    if (verification?.outcome === "failed") {
      count("verificationFailed");
      Log.warn(
        { node: node.name, source: resolution?.source, problem: verification.problem, applied: decision.apply },
        `node-identity: ${verification.message}; ${decision.apply ? "applied anyway (report mode)" : "not applied"}`,
      );
    }
    const annotations = Object.entries(changes.annotations);
    if (annotations.length === 0 && changes.providerID === undefined) return;
    for (const [key, value] of annotations) req.SetAnnotation(key, value);
    if (changes.providerID !== undefined) req.Raw.spec = { ...req.Raw.spec, providerID: changes.providerID };
    count("mutated");
    Log.info(
      { node: node.name, source: resolution?.source, vm: `${resolution?.target.namespace}/${resolution?.target.name}` },
      `node-identity: admission set node ${node.name} to VM ${resolution?.target.namespace}/${resolution?.target.name}`,
    );
  } catch (error) {
    count("error");
    Log.error({ error: error instanceof Error ? error.message : String(error) }, "node-identity: admission failed; Node approved unchanged");
  }
}

When(a.Node).IsCreatedOrUpdated().Mutate(mutateNode);

// ---- watcher ------------------------------------------------------------------------------------------

let watcher: NodeIdentityWatcher | undefined;

function nodeIdentityWatcher(): NodeIdentityWatcher {
  if (watcher) return watcher;
  const snapshotPublisher = createStorePublisher(value => setPeprStoreData(MODULE_PEPR_STORE, SNAPSHOT_DATA_KEY, value), Log);
  const created = new NodeIdentityWatcher({
    patchNode,
    recordNodeEvent: (node, reason, message, eventName) =>
      recordEvent({ apiVersion: "v1", kind: "Node", metadata: { name: node.name, uid: node.uid } }, "Warning", reason, message, { name: eventName }),
    readInfraKubeconfig: secret => readSecretKey(MODULE_NAMESPACE, secret.name, secret.key),
    publishSnapshot: value => snapshotPublisher.publish(value),
    log: Log,
    count,
  });
  created.configure(nodeIdentitySettings(currentConfig()));
  onConfigChange(config => created.configure(nodeIdentitySettings(config)));
  watcher = created;
  return created;
}

/** The watcher's back-fill follows the shared Node informer. Returns stop. */
export function startNodeIdentityWatch(informers: SharedInformers): () => void {
  const nodes = nodeIdentityWatcher();
  return informers.informer("Node").addHandlers({
    onAdd: node => nodes.nodeEvent(node, "MODIFIED"),
    onUpdate: node => nodes.nodeEvent(node, "MODIFIED"),
    onDelete: node => nodes.nodeEvent(node, "DELETED"),
  });
}

// Admission pods (and `pepr dev`): the watcher's infra snapshot arrives through the Store.
if (process.env.PEPR_MODE !== "build" && process.env.PEPR_WATCH_MODE !== "true") {
  Store.subscribe(() => admission.acceptSnapshot(Store.getItem(INFRA_SNAPSHOT_STORE_KEY)));
}

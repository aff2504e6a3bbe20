// Which infra VM a Node is, whether the infra cluster agrees, and what (if anything) to change on the Node.
// The same decision serves the admission webhook and the watcher's back-fill. Plain module: lookups only,
// O(1) in the number of Nodes, mappings and VMs.
import {
  CLUSTER_NAMESPACE_ANNOTATION,
  VM_NAME_ANNOTATION,
  VM_NAME_LEGACY_ANNOTATION,
  VM_NAMESPACE_ANNOTATION,
  identityChanges,
  sameUUID,
  vmNameFromProviderID,
  type IdentityChanges,
  type NodeView,
  type VmRef,
} from "./identity";
import { uuidCompatible, type InfraVm, type VmIndex } from "./infra-index";
import type { NodeIdentitySettings } from "./settings";

export type MappingSource = "nodeMapping" | "providerID" | "systemUUID" | "hostname" | "vmName" | "identity";

export interface Resolution {
  target: VmRef;
  source: MappingSource;
}

export type ProblemKind = "VmNotFound" | "UuidMismatch" | "ProviderIDConflict" | "DuplicateClaim";

export type Verification =
  | { outcome: "verified" }
  /** Nothing to check against (no infra access, or the VM's namespace is not mirrored). */
  | { outcome: "unverified"; reason: string }
  | { outcome: "failed"; problem: ProblemKind; message: string };

export interface NodeDecision {
  resolution?: Resolution;
  verification?: Verification;
  /** Whether the resolved identity is (to be) applied: resolved and verified, unverifiable, or report mode. */
  apply: boolean;
  /** What to change on the Node; empty when nothing is resolved, nothing is applied, or it is already right. */
  changes: IdentityChanges;
}

function ref(vm: InfraVm): VmRef {
  return { name: vm.name, namespace: vm.namespace };
}

function vmLabel(target: VmRef): string {
  return `${target.namespace}/${target.name}`;
}

/** A single candidate, or the one in the default namespace when several namespaces hold one. */
function pick(candidates: readonly InfraVm[], defaultNamespace: string | undefined): InfraVm | undefined {
  if (candidates.length === 1) return candidates[0];
  const preferred = candidates.filter(vm => vm.namespace === defaultNamespace);
  return preferred.length === 1 ? preferred[0] : undefined;
}

function discover(node: NodeView, settings: NodeIdentitySettings, index: VmIndex): Resolution | undefined {
  if (node.systemUUID) {
    const match = pick(index.byFirmwareUUID(node.systemUUID), settings.defaultNamespace);
    if (match) return { target: ref(match), source: "systemUUID" };
  }
  // Names are weaker evidence than the UUID: a candidate whose UUID contradicts the Node is never taken.
  const compatible = (vms: readonly InfraVm[]): InfraVm[] => vms.filter(vm => uuidCompatible(node.systemUUID, vm));
  const byHostname = pick(compatible(index.byHostname(node.name)), settings.defaultNamespace);
  if (byHostname) return { target: ref(byHostname), source: "hostname" };
  const byName = pick(compatible(index.byName(node.name)), settings.defaultNamespace);
  if (byName) return { target: ref(byName), source: "vmName" };
  return undefined;
}

/**
 * The namespace of a kubevirt:// providerID's VM. Whoever creates a Node sets its annotations, so the Cluster API
 * cluster-namespace annotation counts only when it names an infra namespace this module is configured for
 * (infra.namespace or a nodeMapping namespace); otherwise infra.namespace. A Node cannot point itself at another
 * tenant's namespace.
 */
function providerIDNamespace(node: NodeView, settings: NodeIdentitySettings): string | undefined {
  const claimed = node.annotations[CLUSTER_NAMESPACE_ANNOTATION];
  if (claimed && settings.infraNamespaces.includes(claimed)) return claimed;
  return settings.defaultNamespace;
}

/**
 * Which VM each Node claims (the identity annotations it carries, or the identity about to be applied), to find two
 * Nodes claiming one VM: the CSI driver would attach one VM's volumes to whichever Node asked.
 */
export class VmClaims {
  readonly #byNode = new Map<string, string>();
  readonly #byVm = new Map<string, Set<string>>();

  /** The Node's claim as its annotations state it. */
  observe(node: NodeView): void {
    const name = node.annotations[VM_NAME_ANNOTATION] || node.annotations[VM_NAME_LEGACY_ANNOTATION];
    const namespace = node.annotations[VM_NAMESPACE_ANNOTATION];
    if (name && namespace) this.claim(node.name, { name, namespace });
    else this.forget(node.name);
  }

  claim(nodeName: string, vm: VmRef): void {
    this.forget(nodeName);
    const key = vmLabel(vm);
    this.#byNode.set(nodeName, key);
    const nodes = this.#byVm.get(key) ?? new Set<string>();
    nodes.add(nodeName);
    this.#byVm.set(key, nodes);
  }

  forget(nodeName: string): void {
    const key = this.#byNode.get(nodeName);
    if (key === undefined) return;
    this.#byNode.delete(nodeName);
    const nodes = this.#byVm.get(key);
    nodes?.delete(nodeName);
    if (nodes?.size === 0) this.#byVm.delete(key);
  }

  /** Another Node that claims `vm`, if any (the alphabetically first, so reports are stable). */
  otherClaimant(vm: VmRef, nodeName: string): string | undefined {
    const others = [...(this.#byVm.get(vmLabel(vm)) ?? [])].filter(n => n !== nodeName);
    return others.sort()[0];
  }
}

/** Mapping sources in order, first match wins: nodeMapping, kubevirt:// providerID, discovery, identity. */
export function resolveMapping(node: NodeView, settings: NodeIdentitySettings, index?: VmIndex): Resolution | undefined {
  const explicit = settings.explicit.get(node.name);
  if (explicit) return { target: explicit, source: "nodeMapping" };

  const providerVm = vmNameFromProviderID(node.providerID);
  const providerNamespace = providerIDNamespace(node, settings);
  if (providerVm && providerNamespace) return { target: { name: providerVm, namespace: providerNamespace }, source: "providerID" };

  if (index) {
    const discovered = discover(node, settings, index);
    if (discovered) return discovered;
  }

  if (settings.identityMapping && settings.defaultNamespace) {
    return { target: { name: node.name, namespace: settings.defaultNamespace }, source: "identity" };
  }
  return undefined;
}

/** Checks a resolved identity against the Node itself and, when available, the infra cluster's VMs. */
export function verifyMapping(node: NodeView, resolution: Resolution, index?: VmIndex): Verification {
  const { target } = resolution;
  const providerVm = vmNameFromProviderID(node.providerID);
  if (providerVm && providerVm !== target.name) {
    return {
      outcome: "failed",
      problem: "ProviderIDConflict",
      message: `${resolution.source} maps node ${node.name} to VM ${vmLabel(target)}, but its providerID ${node.providerID} names VM ${providerVm} (a providerID cannot be changed)`,
    };
  }
  if (!index) return { outcome: "unverified", reason: "no infra cluster access configured or synced yet" };
  if (!index.covers(target.namespace)) {
    return { outcome: "unverified", reason: `infra namespace ${target.namespace} is not watched` };
  }
  const vm = index.get(target.namespace, target.name);
  if (!vm) {
    return {
      outcome: "failed",
      problem: "VmNotFound",
      message: `${resolution.source} maps node ${node.name} to VM ${vmLabel(target)}, which does not exist in the infra cluster`,
    };
  }
  if (node.systemUUID && vm.firmwareUUID && !sameUUID(node.systemUUID, vm.firmwareUUID)) {
    const owner = index.byFirmwareUUID(node.systemUUID)[0];
    const hint = owner ? `; the VM with the node's UUID is ${vmLabel(ref(owner))}` : "";
    return {
      outcome: "failed",
      problem: "UuidMismatch",
      message: `${resolution.source} maps node ${node.name} to VM ${vmLabel(target)}, but the VM's firmware UUID ${vm.firmwareUUID} differs from the node's systemUUID ${node.systemUUID}${hint}`,
    };
  }
  return { outcome: "verified" };
}

/** A failed verification when another Node already claims the target VM. */
function claimConflict(node: NodeView, resolution: Resolution, claims: VmClaims | undefined): Verification | undefined {
  const other = claims?.otherClaimant(resolution.target, node.name);
  if (!other) return undefined;
  return {
    outcome: "failed",
    problem: "DuplicateClaim",
    message: `${resolution.source} maps node ${node.name} to VM ${vmLabel(resolution.target)}, which node ${other} already claims; two Nodes must not carry one VM's identity`,
  };
}

/** @param claims the other Nodes' claims (the watcher sees every Node; admission pods see one at a time). */
export function decide(node: NodeView, settings: NodeIdentitySettings, index?: VmIndex, claims?: VmClaims): NodeDecision {
  const resolution = resolveMapping(node, settings, index);
  if (!resolution) return { apply: false, changes: { annotations: {} } };
  const verified = verifyMapping(node, resolution, index);
  const verification = verified.outcome === "failed" ? verified : (claimConflict(node, resolution, claims) ?? verified);
  // A mapping the infra cluster contradicts could hot-plug this tenant's disks into another node's VM.
  const apply = verification.outcome !== "failed" || settings.mode === "report";
  const changes = apply ? identityChanges(node, resolution.target, settings) : { annotations: {} };
  return { resolution, verification, apply, changes };
}

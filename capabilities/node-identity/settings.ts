// The node-identity view of the validated module configuration: whether the capability acts at all, and
// the explicit mapping indexed by node name so that a lookup costs the same for 3 Nodes or 3,000.
// Plain module (the schema already rejected duplicate nodes/VMs and entries without a namespace).
import type { ModuleConfig } from "../config/schema";
import type { VmRef } from "./identity";

export type NodeIdentityMode = ModuleConfig["nodeIdentity"]["mode"];

export interface NodeIdentitySettings {
  mode: NodeIdentityMode;
  setProviderID: boolean;
  identityMapping: boolean;
  /** infra.namespace: the VM namespace when a source names only the VM. */
  defaultNamespace?: string;
  /** nodeMapping by node name. */
  explicit: ReadonlyMap<string, VmRef>;
  /** Where the infra kubeconfig is (a Secret in pepr-system); absent = no discovery, no verification. */
  infraKubeconfig?: { name: string; key: string };
  /** Infra namespaces whose VMs are mirrored for discovery and verification. */
  infraNamespaces: readonly string[];
}

export type SettingsResult =
  | { active: true; settings: NodeIdentitySettings; warnings: string[] }
  | { active: false; reason: string };

export function nodeIdentitySettings(config: ModuleConfig | undefined): SettingsResult {
  if (!config) return { active: false, reason: "no valid module configuration is loaded" };
  if (!config.nodeIdentity.enabled) return { active: false, reason: "nodeIdentity.enabled is false" };
  if (config.role === "infra") return { active: false, reason: "role is infra" };

  const defaultNamespace = config.infra.namespace || undefined;
  const explicit = new Map<string, VmRef>();
  for (const entry of config.nodeMapping) {
    const namespace = entry.vmNamespace || defaultNamespace;
    if (namespace) explicit.set(entry.nodeName, { name: entry.vmName, namespace });
  }
  const infraKubeconfig = config.infra.kubeconfigSecret;
  const infraNamespaces = [...new Set([...(defaultNamespace ? [defaultNamespace] : []), ...[...explicit.values()].map(r => r.namespace)])];
  const warnings: string[] = [];
  if (infraKubeconfig && infraNamespaces.length === 0) {
    warnings.push("infra.kubeconfigSecret is set but infra.namespace is not: there is no infra namespace to discover VMs in");
  }
  return {
    active: true,
    warnings,
    settings: {
      mode: config.nodeIdentity.mode,
      setProviderID: config.nodeIdentity.setProviderID,
      identityMapping: config.nodeIdentity.identityMapping,
      defaultNamespace,
      explicit,
      infraKubeconfig: infraKubeconfig && infraNamespaces.length > 0 ? infraKubeconfig : undefined,
      infraNamespaces,
    },
  };
}

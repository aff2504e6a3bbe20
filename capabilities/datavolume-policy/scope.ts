// Which DataVolumes the policy polices: the KubeVirt CSI driver's volumes in the configured infra namespaces.
// VM root disks and the module's own (Redfish virtual-media) DataVolumes are left alone. At admission the module's
// own writes are recognised by WHO writes (the watcher's ServiceAccount), never by a label anyone can set.
import type { DataVolumeFacts } from "./model";
import type { DataVolumePolicySettings } from "./settings";

/** Label the module puts on DataVolumes it creates itself (Redfish virtual-media ISOs). Only the audit reads it. */
export const MODULE_MANAGED_LABEL = { key: "app.kubernetes.io/managed-by", value: "kubevirt-infra" } as const;

/**
 * The module's ServiceAccounts (pepr-system): the watcher's own in the chart and the built manifest, and the one
 * `npx pepr deploy` gives both Deployments. Only the watcher writes DataVolumes; the admission pods' account has no
 * DataVolume rights in any rendering, so listing it opens nothing.
 */
export const MODULE_SERVICE_ACCOUNTS = { namespace: "pepr-system", watcher: "pepr-kubevirt-infra-watcher", shared: "pepr-kubevirt-infra" } as const;

const serviceAccountUser = (name: string): string => `system:serviceaccount:${MODULE_SERVICE_ACCOUNTS.namespace}:${name}`;

/** `userInfo.username` of the module's own API requests. */
export const MODULE_REQUESTERS: ReadonlySet<string> = new Set([serviceAccountUser(MODULE_SERVICE_ACCOUNTS.watcher), serviceAccountUser(MODULE_SERVICE_ACCOUNTS.shared)]);

export type ScopeDecision =
  | { inScope: true; reason: "name-prefix" | "csi-service-account" }
  | { inScope: false; reason: "namespace" | "module-requester" | "module-managed" | "not-csi" };

/**
 * @param requester the admission request's `userInfo.username`; undefined in the watcher audit, which cannot know
 *   who wrote an existing object (there only the name prefix identifies CSI volumes).
 */
export function classifyDataVolume(
  dv: DataVolumeFacts,
  requester: string | undefined,
  settings: DataVolumePolicySettings,
): ScopeDecision {
  if (!settings.namespaces.has(dv.namespace)) return { inScope: false, reason: "namespace" };
  if (requester !== undefined && MODULE_REQUESTERS.has(requester)) return { inScope: false, reason: "module-requester" };
  // The audit cannot know who wrote an existing object; there the label marks the module's ISOs. Admission never
  // honours it: whoever may create DataVolumes could set it.
  if (requester === undefined && dv.labels[MODULE_MANAGED_LABEL.key] === MODULE_MANAGED_LABEL.value) {
    return { inScope: false, reason: "module-managed" };
  }
  const fromCsiServiceAccount = requester !== undefined && settings.csiServiceAccounts.has(requester);
  if (fromCsiServiceAccount) return { inScope: true, reason: "csi-service-account" };
  const prefix = settings.csiNamePrefix;
  if (prefix !== "") {
    const name = dv.name !== "" ? dv.name : dv.generateName;
    if (name.startsWith(prefix)) return { inScope: true, reason: "name-prefix" };
  }
  return { inScope: false, reason: "not-csi" };
}

// Which DataVolumes the policy polices: the KubeVirt CSI driver's volumes in the configured infra namespaces.
// VM root disks and the module's own (Redfish virtual-media) DataVolumes are left alone.
import type { DataVolumeFacts } from "./model";
import type { DataVolumePolicySettings } from "./settings";

/** Label the module puts on DataVolumes it creates itself (Redfish virtual-media ISOs). */
export const MODULE_MANAGED_LABEL = { key: "app.kubernetes.io/managed-by", value: "kubevirt-infra" } as const;

export type ScopeDecision =
  | { inScope: true; reason: "name-prefix" | "csi-service-account" }
  | { inScope: false; reason: "namespace" | "module-managed" | "not-csi" };

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
  const fromCsiServiceAccount = requester !== undefined && settings.csiServiceAccounts.has(requester);
  // The exemption label is honoured only for writers other than the CSI controllers: a tenant's CSI driver must not
  // be able to opt its volumes out of the policy by adding the label.
  if (!fromCsiServiceAccount && dv.labels[MODULE_MANAGED_LABEL.key] === MODULE_MANAGED_LABEL.value) {
    return { inScope: false, reason: "module-managed" };
  }
  if (fromCsiServiceAccount) return { inScope: true, reason: "csi-service-account" };
  const prefix = settings.csiNamePrefix;
  if (prefix !== "") {
    const name = dv.name !== "" ? dv.name : dv.generateName;
    if (name.startsWith(prefix)) return { inScope: true, reason: "name-prefix" };
  }
  return { inScope: false, reason: "not-csi" };
}

// Module configuration → the policy's plain settings. The schema has already validated everything (label lists,
// service account names, defaults of namespaces and per-rule modes); this only reshapes it.
import type { ModuleConfig } from "../config/schema";
import { datavolumePolicyActive, infraLabels, tenantLabels } from "../config/schema";
import type { DataVolumePolicySettings } from "./settings";
import { buildPolicySettings } from "./settings";

/** The policy settings, or undefined when the policy is inert (no config, disabled, role nested, no namespace). */
export function policySettingsFromConfig(config: ModuleConfig | undefined): DataVolumePolicySettings | undefined {
  if (!config || !datavolumePolicyActive(config)) return undefined;
  const policy = config.datavolumePolicy;
  return buildPolicySettings({
    namespaces: policy.namespaces,
    csiNamePrefix: policy.csiNamePrefix,
    csiServiceAccounts: policy.csiServiceAccounts,
    requiredLabels: infraLabels(config),
    requiredLabelsMode: policy.requiredLabels.mode,
    tenants: policy.tenants.map(t => ({ name: t.name, labels: tenantLabels(t), serviceAccounts: t.serviceAccounts })),
    tenantBindingMode: policy.tenantBinding.mode,
    storageClass: {
      mode: policy.storageClassEnforcement.mode,
      allowAll: policy.storageClassEnforcement.allowAll,
      allowDefault: policy.storageClassEnforcement.allowDefault,
      allowList: policy.storageClassEnforcement.allowList,
    },
  });
}

/** Memoised per config object: admission calls this on every request, the config changes rarely. */
export function cachedPolicySettings(): (config: ModuleConfig | undefined) => DataVolumePolicySettings | undefined {
  let lastConfig: ModuleConfig | undefined;
  let lastSettings: DataVolumePolicySettings | undefined;
  let primed = false;
  return config => {
    if (!primed || config !== lastConfig) {
      lastSettings = policySettingsFromConfig(config);
      lastConfig = config;
      primed = true;
    }
    return lastSettings;
  };
}

// The datavolume-policy's own view of the configuration: plain, pre-indexed settings so that every admission
// decision is a handful of map lookups. Built once per configuration version (see from-config.ts).

export type PolicyMode = "enforce" | "warn" | "audit";
export type RuleName = "requiredLabels" | "tenantBinding" | "storageClass";

/** A label set in the CSI driver's sense (`infraClusterLabels`): every key must be present with exactly this value. */
export type LabelSet = Readonly<Record<string, string>>;

export interface Tenant {
  readonly name: string;
  readonly labels: LabelSet;
  /** Requesters (`system:serviceaccount:<ns>:<name>`) that may write DataVolumes labelled for this tenant. */
  readonly serviceAccounts: readonly string[];
}

export interface StorageClassRule {
  readonly mode: PolicyMode;
  readonly allowAll: boolean;
  /** An absent storageClassName (the infra cluster's default class) is allowed. */
  readonly allowDefault: boolean;
  readonly allowList: ReadonlySet<string>;
}

export interface PolicySettingsInput {
  namespaces: readonly string[];
  csiNamePrefix: string;
  csiServiceAccounts: readonly string[];
  /** `infra.labels`, already parsed; empty = no module-wide required labels. */
  requiredLabels: LabelSet;
  requiredLabelsMode: PolicyMode;
  tenants: readonly Tenant[];
  tenantBindingMode: PolicyMode;
  storageClass: { mode: PolicyMode; allowAll: boolean; allowDefault: boolean; allowList: readonly string[] };
}

export interface DataVolumePolicySettings {
  readonly namespaces: ReadonlySet<string>;
  /** "" disables name-based scoping (then only requests from CSI service accounts are policed). */
  readonly csiNamePrefix: string;
  /** Configured CSI service accounts plus every tenant's service accounts: their DataVolumes are CSI volumes. */
  readonly csiServiceAccounts: ReadonlySet<string>;
  readonly requiredLabels: { readonly mode: PolicyMode; readonly labels: LabelSet };
  readonly tenants: readonly Tenant[];
  readonly tenantBinding: { readonly mode: PolicyMode };
  readonly storageClass: StorageClassRule;
  /** Index: service account → tenants it is bound to. */
  readonly tenantsByServiceAccount: ReadonlyMap<string, readonly Tenant[]>;
  /** Index: "key=value" → tenants whose label set contains that pair (finds a DataVolume's tenant in O(#labels)). */
  readonly tenantsByLabelPair: ReadonlyMap<string, readonly Tenant[]>;
}

export const labelPair = (key: string, value: string): string => `${key}=${value}`;

export function formatLabelSet(labels: LabelSet): string {
  return Object.entries(labels)
    .map(([k, v]) => labelPair(k, v))
    .join(",");
}

function pushInto<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) {
    if (!list.includes(value)) list.push(value);
  } else {
    map.set(key, [value]);
  }
}

export function buildPolicySettings(input: PolicySettingsInput): DataVolumePolicySettings {
  const tenantsByServiceAccount = new Map<string, Tenant[]>();
  const tenantsByLabelPair = new Map<string, Tenant[]>();
  const csiServiceAccounts = new Set(input.csiServiceAccounts);
  for (const tenant of input.tenants) {
    for (const sa of tenant.serviceAccounts) {
      pushInto(tenantsByServiceAccount, sa, tenant);
      csiServiceAccounts.add(sa);
    }
    for (const [k, v] of Object.entries(tenant.labels)) pushInto(tenantsByLabelPair, labelPair(k, v), tenant);
  }
  return {
    namespaces: new Set(input.namespaces),
    csiNamePrefix: input.csiNamePrefix,
    csiServiceAccounts,
    requiredLabels: { mode: input.requiredLabelsMode, labels: { ...input.requiredLabels } },
    tenants: input.tenants,
    tenantBinding: { mode: input.tenantBindingMode },
    storageClass: {
      mode: input.storageClass.mode,
      allowAll: input.storageClass.allowAll,
      allowDefault: input.storageClass.allowDefault,
      allowList: new Set(input.storageClass.allowList),
    },
    tenantsByServiceAccount,
    tenantsByLabelPair,
  };
}

// The three rule sets of the policy, evaluated on parsed DataVolumes. Pure functions: no I/O, no Pepr.
//
// - requiredLabels: a CSI DataVolume carries a complete label set the CSI driver uses (`infra.labels`, or one of
//   the configured tenants' labels). The driver ignores DataVolumes without its `infraClusterLabels`.
// - tenantBinding: a service account bound to a tenant writes only DataVolumes labelled for that tenant.
// - storageClass: `infraStorageClassEnforcement` semantics of the driver (allowAll, allowDefault, allowList).
import type { DataVolumeFacts, StorageClassRef } from "./model";
import type { DataVolumePolicySettings, LabelSet, PolicyMode, Tenant } from "./settings";
import { labelPair } from "./settings";

export interface LabelProblem {
  readonly key: string;
  readonly expected: string;
  /** undefined = the label is missing. */
  readonly actual: string | undefined;
}

export type LabelSource = { readonly kind: "infra.labels" } | { readonly kind: "tenant"; readonly tenant: Tenant };

export interface ExpectedLabels {
  readonly source: LabelSource;
  readonly labels: LabelSet;
}

/**
 * new: a CREATE, or an existing object in the audit.
 * introduced-by-update: the UPDATE breaks a rule the old object satisfied (e.g. removes a required label).
 * pre-existing: the old object already broke the rule in the same way; denying would only block controllers
 *   (CDI updates its DataVolumes) without fixing anything, so enforce mode downgrades this to a warning.
 */
export type ViolationOrigin = "new" | "introduced-by-update" | "pre-existing";

export type Violation =
  | {
      readonly rule: "requiredLabels";
      readonly origin: ViolationOrigin;
      /** The label set the DataVolume is closest to (or the requester's tenant), with what is wrong against it. */
      readonly expected: ExpectedLabels;
      readonly problems: readonly LabelProblem[];
      /** Other complete label sets that would also satisfy the rule. */
      readonly alternatives: readonly ExpectedLabels[];
    }
  | {
      readonly rule: "tenantBinding";
      readonly origin: ViolationOrigin;
      /** The requester (a tenant's service account, or anyone when the update moves the DataVolume). */
      readonly serviceAccount: string;
      /** The tenants the requester is bound to (empty for requesters bound to none). */
      readonly ownTenants: readonly Tenant[];
      /** Other tenants whose complete label set the DataVolume carries (for a move: every tenant it now carries). */
      readonly labelledFor: readonly Tenant[];
      /** Set when an update moves the DataVolume out of these tenants' label sets. */
      readonly movedFrom?: readonly Tenant[];
    }
  | {
      readonly rule: "storageClass";
      readonly origin: ViolationOrigin;
      readonly ref: StorageClassRef;
      readonly allowDefault: boolean;
      readonly allowList: readonly string[];
    };

export type Effect = "deny" | "warn" | "report";
export type EvaluatedViolation = Violation & { readonly mode: PolicyMode; readonly effect: Effect };

export interface EvaluationContext {
  /** `userInfo.username` of the admission request; undefined in the audit. */
  readonly requester?: string;
  /** The stored object on UPDATE. */
  readonly old?: DataVolumeFacts;
}

const carries = (labels: Readonly<Record<string, string>>, set: LabelSet): boolean => {
  for (const key in set) if (labels[key] !== set[key]) return false;
  return true;
};

const matchingPairs = (labels: Readonly<Record<string, string>>, set: LabelSet): number => {
  let n = 0;
  for (const key in set) if (labels[key] === set[key]) n++;
  return n;
};

const hasLabels = (set: LabelSet): boolean => {
  for (const _ in set) return true;
  return false;
};

/** Tenants whose label set shares at least one pair with `labels` (via the index: O(#labels), not O(#tenants)). */
function tenantsTouchedBy(labels: Readonly<Record<string, string>>, settings: DataVolumePolicySettings): Set<Tenant> {
  const touched = new Set<Tenant>();
  for (const key in labels) {
    const tenants = settings.tenantsByLabelPair.get(labelPair(key, labels[key]));
    if (tenants) for (const t of tenants) touched.add(t);
  }
  return touched;
}

const infraLabels = (settings: DataVolumePolicySettings): ExpectedLabels | undefined =>
  hasLabels(settings.requiredLabels.labels)
    ? { source: { kind: "infra.labels" }, labels: settings.requiredLabels.labels }
    : undefined;

const tenantLabels = (tenant: Tenant): ExpectedLabels => ({ source: { kind: "tenant", tenant }, labels: tenant.labels });

const canonical = (set: LabelSet): string =>
  Object.keys(set)
    .sort()
    .map(k => labelPair(k, set[k]))
    .join(",");

interface AcceptedLabelSets {
  readonly sets: readonly ExpectedLabels[];
  readonly keys: readonly string[];
}

// Built once per settings object: the request path must not walk every tenant.
const acceptedCache = new WeakMap<DataVolumePolicySettings, AcceptedLabelSets>();

/** infra.labels and every tenant's labels, each distinct set once (a tenant may repeat infra.labels). */
function acceptedLabelSets(settings: DataVolumePolicySettings): AcceptedLabelSets {
  let cached = acceptedCache.get(settings);
  if (!cached) {
    const infra = infraLabels(settings);
    const candidates = [...(infra ? [infra] : []), ...settings.tenants.filter(t => hasLabels(t.labels)).map(tenantLabels)];
    const sets: ExpectedLabels[] = [];
    const keys: string[] = [];
    const seen = new Set<string>();
    for (const set of candidates) {
      const key = canonical(set.labels);
      if (seen.has(key)) continue;
      seen.add(key);
      sets.push(set);
      keys.push(key);
    }
    cached = { sets, keys };
    acceptedCache.set(settings, cached);
  }
  return cached;
}

function otherLabelSets(accepted: AcceptedLabelSets, expected: ExpectedLabels): ExpectedLabels[] {
  const expectedKey = canonical(expected.labels);
  return accepted.sets.filter((_, i) => accepted.keys[i] !== expectedKey);
}

/** The complete label set the labels satisfy, if any: infra.labels first, then configured tenants. */
function satisfiedLabelSet(
  labels: Readonly<Record<string, string>>,
  settings: DataVolumePolicySettings,
): ExpectedLabels | undefined {
  const infra = infraLabels(settings);
  if (infra && carries(labels, infra.labels)) return infra;
  for (const tenant of tenantsTouchedBy(labels, settings)) {
    if (hasLabels(tenant.labels) && carries(labels, tenant.labels)) return tenantLabels(tenant);
  }
  return undefined;
}

function labelProblems(labels: Readonly<Record<string, string>>, expected: LabelSet): LabelProblem[] {
  const problems: LabelProblem[] = [];
  for (const key in expected) {
    if (labels[key] !== expected[key]) problems.push({ key, expected: expected[key], actual: labels[key] });
  }
  return problems;
}

function checkRequiredLabels(
  dv: DataVolumeFacts,
  ctx: EvaluationContext,
  settings: DataVolumePolicySettings,
): Violation | undefined {
  const infra = infraLabels(settings);
  if (!infra && settings.tenantsByLabelPair.size === 0) return undefined; // nothing required
  if (satisfiedLabelSet(dv.labels, settings)) return undefined;

  const accepted = acceptedLabelSets(settings);
  const previouslySatisfied = ctx.old ? satisfiedLabelSet(ctx.old.labels, settings) : undefined;
  let expected: ExpectedLabels;
  if (previouslySatisfied) {
    // The update removed or changed labels of the set the object carried: report against exactly that set.
    expected = previouslySatisfied;
  } else {
    const own = ctx.requester ? settings.tenantsByServiceAccount.get(ctx.requester) : undefined;
    if (own && own.length > 0) {
      expected = tenantLabels(own[0]);
    } else {
      // Closest set: most matching pairs; infra.labels wins ties (it comes first).
      const candidates = infra ? [infra] : [];
      for (const t of tenantsTouchedBy(dv.labels, settings)) candidates.push(tenantLabels(t));
      expected = candidates.length > 0 ? candidates[0] : accepted.sets[0];
      let best = matchingPairs(dv.labels, expected.labels);
      for (const c of candidates) {
        const n = matchingPairs(dv.labels, c.labels);
        if (n > best) {
          best = n;
          expected = c;
        }
      }
    }
  }
  let origin: ViolationOrigin = "new";
  if (ctx.old) origin = previouslySatisfied ? "introduced-by-update" : "pre-existing";
  return {
    rule: "requiredLabels",
    origin,
    expected,
    problems: labelProblems(dv.labels, expected.labels),
    alternatives: otherLabelSets(accepted, expected),
  };
}

/** The tenants whose complete label set `labels` carries. */
function tenantsCarried(labels: Readonly<Record<string, string>>, settings: DataVolumePolicySettings): Tenant[] {
  return [...tenantsTouchedBy(labels, settings)].filter(t => carries(labels, t.labels));
}

/**
 * An UPDATE that changes which tenants' label sets a DataVolume carries hands a volume from one tenant to another
 * (or out of its tenant). Only a requester bound to every tenant involved may do that: no cluster user, CDI or
 * foreign CSI controller moves volumes between tenants.
 */
function checkTenantMove(dv: DataVolumeFacts, requester: string, old: DataVolumeFacts, settings: DataVolumePolicySettings): Violation | undefined {
  const before = tenantsCarried(old.labels, settings);
  if (before.length === 0) return undefined;
  const after = tenantsCarried(dv.labels, settings);
  if (before.length === after.length && before.every(t => after.includes(t))) return undefined;
  const own = settings.tenantsByServiceAccount.get(requester) ?? [];
  if ([...before, ...after].every(t => own.includes(t))) return undefined;
  return { rule: "tenantBinding", origin: "new", serviceAccount: requester, ownTenants: own, labelledFor: after, movedFrom: before };
}

function checkTenantBinding(
  dv: DataVolumeFacts,
  ctx: EvaluationContext,
  settings: DataVolumePolicySettings,
): Violation | undefined {
  if (!ctx.requester) return undefined; // the audit cannot know who wrote an existing object
  const moved = ctx.old ? checkTenantMove(dv, ctx.requester, ctx.old, settings) : undefined;
  if (moved) return moved;
  const own = settings.tenantsByServiceAccount.get(ctx.requester);
  if (!own || own.length === 0) return undefined; // not a tenant-bound service account
  const carriesOwn = own.some(t => carries(dv.labels, t.labels));
  const labelledFor: Tenant[] = [];
  for (const t of tenantsTouchedBy(dv.labels, settings)) {
    if (!own.includes(t) && carries(dv.labels, t.labels)) labelledFor.push(t);
  }
  if (carriesOwn && labelledFor.length === 0) return undefined;
  // A tenant's service account touching another tenant's DataVolume is the cross-tenant access this rule exists
  // for, on UPDATE as much as on CREATE: never downgraded as pre-existing.
  return { rule: "tenantBinding", origin: "new", serviceAccount: ctx.requester, ownTenants: own, labelledFor };
}

/** The driver's validateCreateVolumeRequest: allowAll; else absent class ⇒ allowDefault; else allowList. */
export function storageClassAllowed(storageClassName: string | undefined, settings: DataVolumePolicySettings): boolean {
  const rule = settings.storageClass;
  if (rule.allowAll) return true;
  if (storageClassName === undefined) return rule.allowDefault;
  // "" is Kubernetes' explicit "no class" (binds pre-provisioned classless volumes), not the default class.
  return rule.allowList.has(storageClassName);
}

function checkStorageClasses(dv: DataVolumeFacts, ctx: EvaluationContext, settings: DataVolumePolicySettings): Violation[] {
  const violations: Violation[] = [];
  for (const ref of dv.storageClasses) {
    if (storageClassAllowed(ref.storageClassName, settings)) continue;
    const before = ctx.old?.storageClasses.find(r => r.field === ref.field);
    let origin: ViolationOrigin = "new";
    if (ctx.old) origin = before && before.storageClassName === ref.storageClassName ? "pre-existing" : "introduced-by-update";
    violations.push({
      rule: "storageClass",
      origin,
      ref,
      allowDefault: settings.storageClass.allowDefault,
      allowList: [...settings.storageClass.allowList],
    });
  }
  return violations;
}

function modeOf(rule: Violation["rule"], settings: DataVolumePolicySettings): PolicyMode {
  switch (rule) {
    case "requiredLabels":
      return settings.requiredLabels.mode;
    case "tenantBinding":
      return settings.tenantBinding.mode;
    case "storageClass":
      return settings.storageClass.mode;
  }
}

function effectOf(mode: PolicyMode, origin: ViolationOrigin): Effect {
  if (mode === "audit") return "report";
  if (mode === "warn" || origin === "pre-existing") return "warn";
  return "deny";
}

/** Every violation of an in-scope DataVolume, with the mode of its rule set and what admission does about it. */
export function evaluateDataVolume(
  dv: DataVolumeFacts,
  ctx: EvaluationContext,
  settings: DataVolumePolicySettings,
): EvaluatedViolation[] {
  const found: Violation[] = [];
  const labels = checkRequiredLabels(dv, ctx, settings);
  if (labels) found.push(labels);
  const binding = checkTenantBinding(dv, ctx, settings);
  if (binding) found.push(binding);
  found.push(...checkStorageClasses(dv, ctx, settings));
  return found.map(v => {
    const mode = modeOf(v.rule, settings);
    return { ...v, mode, effect: effectOf(mode, v.origin) };
  });
}

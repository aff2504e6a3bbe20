// Human-readable texts for violations: what is wrong, the expected value, which rule (and config key), how to fix.
// Used in admission denials and warnings, Events, logs and the audit summary.
import type { DataVolumeFacts } from "./model";
import { displayName } from "./model";
import type { EvaluatedViolation, ExpectedLabels, LabelProblem, Violation } from "./rules";
import { formatLabelSet, type Tenant } from "./settings";

const MAX_LISTED = 5;

const quote = (s: string): string => JSON.stringify(s);

/** The first few items, formatted, and how many more there are (only the listed ones are formatted). */
function listSome<T>(items: readonly T[], format: (item: T) => string): string {
  const listed = items.slice(0, MAX_LISTED).map(format).join(", ");
  return items.length <= MAX_LISTED ? listed : `${listed} and ${items.length - MAX_LISTED} more`;
}

function describeSource(expected: ExpectedLabels): string {
  return expected.source.kind === "infra.labels"
    ? `the CSI driver's infraClusterLabels (config infra.labels=${quote(formatLabelSet(expected.labels))})`
    : `tenant ${quote(expected.source.tenant.name)}'s labels (config datavolumePolicy.tenants, labels=${quote(formatLabelSet(expected.labels))})`;
}

function describeProblem(p: LabelProblem): string {
  return p.actual === undefined
    ? `label ${p.key} is missing (expected ${quote(p.expected)})`
    : `label ${p.key} is ${quote(p.actual)} (expected ${quote(p.expected)})`;
}

const sourceName = (e: ExpectedLabels): string =>
  e.source.kind === "infra.labels" ? `infra.labels ${formatLabelSet(e.labels)}` : `tenant ${e.source.tenant.name} ${formatLabelSet(e.labels)}`;

function requiredLabelsText(v: Extract<Violation, { rule: "requiredLabels" }>): string {
  const problems = v.problems.map(describeProblem).join(", ");
  const what =
    v.origin === "introduced-by-update"
      ? `this update removes or changes required labels: ${problems}`
      : v.origin === "pre-existing"
        ? `${problems} (already so before this update)`
        : problems;
  const alternatives =
    v.alternatives.length > 0 ? ` Also accepted: the complete labels of ${listSome(v.alternatives, sourceName)}.` : "";
  return (
    `${what}. CSI DataVolumes must carry ${describeSource(v.expected)}; the KubeVirt CSI driver ignores DataVolumes ` +
    `without them.${alternatives} Fix: label the DataVolume ${formatLabelSet(v.expected.labels)} (the CSI controller ` +
    `sets them from its infraClusterLabels: make that flag match), or correct the policy config.`
  );
}

const tenantList = (tenants: readonly Tenant[]): string =>
  tenants.length === 0 ? "no tenant" : tenants.map(t => `${quote(t.name)} (${formatLabelSet(t.labels)})`).join(", ");

function tenantMoveText(v: Extract<Violation, { rule: "tenantBinding" }>, movedFrom: readonly Tenant[]): string {
  const requester = v.ownTenants.length > 0 ? `${v.serviceAccount} (bound to ${tenantList(v.ownTenants)})` : `${v.serviceAccount} (bound to no tenant)`;
  return (
    `this update moves the DataVolume from tenant ${tenantList(movedFrom)} to ${tenantList(v.labelledFor)}, and requester ` +
    `${requester} is not allowed for all of them. Only a service account listed for every tenant involved in ` +
    `datavolumePolicy.tenants[].serviceAccounts may move a DataVolume between tenants' label sets; otherwise keep its labels.`
  );
}

function tenantBindingText(v: Extract<Violation, { rule: "tenantBinding" }>): string {
  if (v.movedFrom) return tenantMoveText(v, v.movedFrom);
  const own = v.ownTenants.map(t => `${quote(t.name)} (${formatLabelSet(t.labels)})`).join(" or ");
  const claim =
    v.labelledFor.length > 0
      ? `but this DataVolume is labelled for tenant ${v.labelledFor.map(t => `${quote(t.name)} (${formatLabelSet(t.labels)})`).join(", ")}: cross-tenant access`
      : `but this DataVolume does not carry that tenant's labels`;
  return (
    `service account ${v.serviceAccount} is bound to tenant ${own} ${claim}. ` +
    `Fix: that tenant's CSI controller must use infraClusterLabels ${formatLabelSet(v.ownTenants[0].labels)}; if the ` +
    `binding itself is wrong, correct datavolumePolicy.tenants[].serviceAccounts.`
  );
}

function storageClassText(v: Extract<Violation, { rule: "storageClass" }>): string {
  const name = v.ref.storageClassName;
  const subject =
    name === undefined
      ? `no storage class is set (${v.ref.field} absent: the infra cluster's default class), which is not allowed (allowDefault=false)`
      : name === ""
        ? `${v.ref.field} is "" (no class: binds only pre-provisioned volumes), which is not allowed`
        : `storage class ${quote(name)} (${v.ref.field}) is not allowed`;
  // The default first: it must not disappear behind "and N more" of a long allowList.
  const allowedParts: string[] = [...(v.allowDefault ? ["no storageClassName (the default class)"] : []), ...v.allowList.map(quote)];
  const allowed = allowedParts.length > 0 ? `allowed: ${listSome(allowedParts, s => s)}` : "no storage class is allowed";
  const change = v.origin === "pre-existing" ? " (already so before this update)" : "";
  return (
    `${subject}${change}; ${allowed} (config datavolumePolicy.storageClassEnforcement, like the driver's ` +
    `infraStorageClassEnforcement). Fix: set infraStorageClassName in the nested cluster's StorageClass to an allowed ` +
    `class, or add the class to datavolumePolicy.storageClassEnforcement.allowList.`
  );
}

/** One violation as a sentence with rule, mode, problem, expected value and fix. */
export function describeViolation(v: EvaluatedViolation): string {
  const body =
    v.rule === "requiredLabels" ? requiredLabelsText(v) : v.rule === "tenantBinding" ? tenantBindingText(v) : storageClassText(v);
  return `[${v.rule}, mode ${v.mode}] ${body}`;
}

/** The admission denial: every violation that denies, and the others as context. */
export function denialMessage(dv: DataVolumeFacts, violations: readonly EvaluatedViolation[]): string {
  const denying = violations.filter(v => v.effect === "deny");
  return (
    `DataVolume ${displayName(dv)} violates the kubevirt-infra DataVolume policy: ` +
    denying.map(describeViolation).join(" | ")
  );
}

/** An admission warning (kubectl prints it as "Warning: ..."). */
export function warningMessage(dv: DataVolumeFacts, v: EvaluatedViolation): string {
  return `DataVolume ${displayName(dv)}: ${describeViolation(v)}`;
}

/** Event reason per rule (short CamelCase, as kubectl shows it). */
export function eventReason(rule: Violation["rule"]): string {
  switch (rule) {
    case "requiredLabels":
      return "MissingTenantLabels";
    case "tenantBinding":
      return "CrossTenantDataVolume";
    case "storageClass":
      return "DisallowedStorageClass";
  }
}

/** Denial while an admission pod has no configuration yet (it cannot tell what the policy requires). */
export function policyStartingMessage(namespace: string, name: string): string {
  return (
    `kubevirt-infra DataVolume policy is starting: this admission pod has no configuration yet, so DataVolume ` +
    `${namespace}/${name || "<generated>"} cannot be checked and is denied. Retry in a few seconds; if this persists, ` +
    `check that the module's watcher is running (it publishes the configuration).`
  );
}

/** Message when the policy could not evaluate a request (bad object or an internal error). */
export function evaluationFailureMessage(namespace: string, name: string, error: string, denied: boolean): string {
  const what = `kubevirt-infra DataVolume policy could not evaluate DataVolume ${namespace}/${name || "<generated>"}: ${error}.`;
  return denied
    ? `${what} Denied because a rule set is in enforce mode (fail closed). Fix the object, or switch ` +
        `datavolumePolicy.mode to warn while investigating the module logs.`
    : `${what} Allowed because no rule set is in enforce mode (fail open).`;
}

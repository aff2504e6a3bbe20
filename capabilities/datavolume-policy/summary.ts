// The operator-facing audit summary: a plain-text report per namespace plus the same data as JSON, stored by the
// watcher in ConfigMap pepr-system/kubevirt-infra-datavolume-audit.
import type { PolicyMode, RuleName } from "./settings";

export const AUDIT_CONFIGMAP = { namespace: "pepr-system", name: "kubevirt-infra-datavolume-audit" } as const;

/** Bounds the ConfigMap well below the 1 MiB object limit, however many DataVolumes violate. */
export const MAX_LISTED_DATAVOLUMES = 500;

export interface SummaryViolation {
  readonly rule: RuleName;
  readonly mode: PolicyMode;
  readonly message: string;
}

export interface NamespaceSummary {
  readonly namespace: string;
  readonly csiDataVolumes: number;
  readonly violatingDataVolumes: number;
  readonly violating: readonly { readonly name: string; readonly violations: readonly SummaryViolation[] }[];
}

export interface AuditSummary {
  readonly generatedAt: string;
  /** false when the policy is disabled or not configured for this cluster (role nested). */
  readonly active: boolean;
  readonly policy?: {
    readonly namespaces: readonly string[];
    readonly modes: Readonly<Record<RuleName, PolicyMode>>;
  };
  readonly totals: {
    readonly csiDataVolumes: number;
    readonly violatingDataVolumes: number;
    readonly violationsByRule: Readonly<Record<RuleName, number>>;
  };
  readonly namespaces: readonly NamespaceSummary[];
  /** Violating DataVolumes left out of the lists to bound the size. */
  readonly omitted: number;
}

export function renderSummaryText(s: AuditSummary): string {
  const lines: string[] = [`kubevirt-infra DataVolume policy audit (updated ${s.generatedAt})`];
  if (!s.active || !s.policy) {
    lines.push("The policy is inactive (datavolumePolicy.enabled is false, or role is not infra/both). Nothing is audited.");
    return `${lines.join("\n")}\n`;
  }
  const { modes } = s.policy;
  lines.push(
    `Namespaces: ${s.policy.namespaces.join(", ") || "(none)"}; modes: requiredLabels=${modes.requiredLabels}, ` +
      `tenantBinding=${modes.tenantBinding}, storageClass=${modes.storageClass}`,
    `CSI DataVolumes audited: ${s.totals.csiDataVolumes}; with violations: ${s.totals.violatingDataVolumes} ` +
      `(requiredLabels ${s.totals.violationsByRule.requiredLabels}, storageClass ${s.totals.violationsByRule.storageClass})`,
    "",
  );
  for (const ns of s.namespaces) {
    lines.push(`Namespace ${ns.namespace}: ${ns.csiDataVolumes} CSI DataVolumes, ${ns.violatingDataVolumes} with violations`);
    for (const dv of ns.violating) {
      lines.push(`  ${dv.name}`);
      for (const v of dv.violations) lines.push(`    - ${v.message}`);
    }
  }
  if (s.omitted > 0) lines.push("", `${s.omitted} more violating DataVolumes are not listed (see the Events on them).`);
  return `${lines.join("\n")}\n`;
}

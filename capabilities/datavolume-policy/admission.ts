// The admission decision for one DataVolume CREATE/UPDATE, independent of Pepr. Never throws.
//
// Failure handling, per mode (see docs/datavolume-policy.md):
// - no configuration yet in this admission pod: deny (the webhook is scoped to the policed namespaces; what the
//   policy requires there is unknown until the watcher publishes the configuration), except the module's own writes.
// - no policy (disabled, role nested): allow; the policy is inert.
// - the policy cannot evaluate a request in a policed namespace (malformed object, internal error): deny when any
//   rule set is in enforce mode (fail closed: an unevaluated CSI volume may be a cross-tenant claim), otherwise
//   allow with a warning (fail open: warn/audit never block).
// - the webhook itself unreachable or timing out: decided by the webhook's failurePolicy (Fail, scoped to the
//   policed namespaces, whenever the policy is enabled in the rendered values: docs/deploy.md).
import type { DataVolumeFacts } from "./model";
import { parseDataVolume } from "./model";
import { denialMessage, evaluationFailureMessage, policyStartingMessage, warningMessage } from "./messages";
import type { EvaluatedViolation } from "./rules";
import { evaluateDataVolume } from "./rules";
import type { ScopeDecision } from "./scope";
import { classifyDataVolume, MODULE_REQUESTERS } from "./scope";
import type { DataVolumePolicySettings } from "./settings";

export interface AdmissionInput {
  readonly operation: string;
  /** The request's namespace (authoritative; the object's metadata.namespace may be empty on CREATE). */
  readonly namespace?: string;
  readonly name?: string;
  readonly object: unknown;
  readonly oldObject?: unknown;
  /** `userInfo.username`, e.g. system:serviceaccount:tenant1-csi:kubevirt-csi-controller. */
  readonly username?: string;
}

export interface AdmissionDecision {
  readonly allowed: boolean;
  /** The denial text (only when denied). */
  readonly message?: string;
  readonly warnings: string[];
  /** Every violation found (deny, warn and report effects), for logs and metrics. */
  readonly violations: EvaluatedViolation[];
  readonly dataVolume?: DataVolumeFacts;
  readonly scope?: ScopeDecision;
  /** Set when the policy could not evaluate the request. */
  readonly failure?: string;
}

const ALLOW: AdmissionDecision = Object.freeze({ allowed: true, warnings: [], violations: [] }) as AdmissionDecision;

const anyRuleEnforced = (s: DataVolumePolicySettings): boolean =>
  s.requiredLabels.mode === "enforce" || s.tenantBinding.mode === "enforce" || s.storageClass.mode === "enforce";

function failed(input: AdmissionInput, namespace: string, error: string, settings: DataVolumePolicySettings): AdmissionDecision {
  const deny = anyRuleEnforced(settings);
  const message = evaluationFailureMessage(namespace, input.name ?? "", error, deny);
  return deny
    ? { allowed: false, message, warnings: [], violations: [], failure: error }
    : { allowed: true, warnings: [message], violations: [], failure: error };
}

function namespaceOf(input: AdmissionInput): string {
  if (input.namespace) return input.namespace;
  const meta = (input.object as { metadata?: { namespace?: unknown } } | null)?.metadata;
  return typeof meta?.namespace === "string" ? meta.namespace : "";
}

/** The decision of an admission pod that has no configuration yet. */
export function decideWithoutConfig(input: AdmissionInput): AdmissionDecision {
  if (input.operation !== "CREATE" && input.operation !== "UPDATE") return ALLOW;
  if (input.username !== undefined && MODULE_REQUESTERS.has(input.username)) return ALLOW;
  const message = policyStartingMessage(namespaceOf(input), input.name ?? "");
  return { allowed: false, message, warnings: [], violations: [], failure: "no configuration yet" };
}

export function decideAdmission(input: AdmissionInput, settings: DataVolumePolicySettings | undefined): AdmissionDecision {
  if (!settings) return ALLOW;
  if (input.operation !== "CREATE" && input.operation !== "UPDATE") return ALLOW;
  const namespace = namespaceOf(input);
  if (!settings.namespaces.has(namespace)) return ALLOW; // cheap exit before parsing anything
  try {
    const parsed = parseDataVolume(input.object, namespace);
    if (!parsed.ok) return failed(input, namespace, parsed.error, settings);
    const dv = parsed.dataVolume;
    const scope = classifyDataVolume(dv, input.username, settings);
    if (!scope.inScope) return { ...ALLOW, dataVolume: dv, scope };

    // A stored object that does not parse is treated as absent: the UPDATE is then judged like a CREATE (stricter).
    const oldParsed = input.operation === "UPDATE" && input.oldObject ? parseDataVolume(input.oldObject, namespace) : undefined;
    const old = oldParsed?.ok ? oldParsed.dataVolume : undefined;

    const violations = evaluateDataVolume(dv, { requester: input.username, old }, settings);
    const warnings = violations.filter(v => v.effect === "warn").map(v => warningMessage(dv, v));
    if (violations.some(v => v.effect === "deny")) {
      return { allowed: false, message: denialMessage(dv, violations), warnings, violations, dataVolume: dv, scope };
    }
    return { allowed: true, warnings, violations, dataVolume: dv, scope };
  } catch (e) {
    return failed(input, namespace, e instanceof Error ? e.message : String(e), settings);
  }
}

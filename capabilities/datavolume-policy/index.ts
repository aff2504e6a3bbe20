// Pepr bindings of the datavolume-policy (infra cluster): Validate DataVolume CREATE/UPDATE in the admission pods;
// in the watcher the audit follows the shared DataVolume informer (startDataVolumeAuditWatch). The logic lives in the plain modules next to this file.
import { Capability, Log, metricsCollector } from "pepr";
import { applyConfigMap, recordEvent } from "../common/gateway";
import type { SharedInformers } from "../common/informers";
import { DataVolume } from "../common/kinds";
import { currentConfig, onConfigChange } from "../config/runtime";
import type { AdmissionDecision } from "./admission";
import { decideAdmission, decideWithoutConfig } from "./admission";
import type { AuditSinks } from "./audit";
import { DataVolumeAudit } from "./audit";
import { cachedPolicySettings } from "./from-config";
import type { RuleName } from "./settings";
import { AUDIT_CONFIGMAP, renderSummaryText } from "./summary";

export const DataVolumePolicy = new Capability({
  name: "datavolume-policy",
  description: "Tenant labels and storage-class rules for KubeVirt CSI DataVolumes",
});

const { When } = DataVolumePolicy;

// Metric names get Pepr's "pepr_" prefix on /metrics.
const METRICS = {
  denied: "kubevirt_infra_dv_policy_denied",
  warned: "kubevirt_infra_dv_policy_warned",
  auditedAtAdmission: "kubevirt_infra_dv_policy_admission_audit",
  reported: "kubevirt_infra_dv_policy_audit_reported",
  current: "kubevirt_infra_dv_policy_violations",
} as const;
metricsCollector.addCounter(METRICS.denied, "DataVolume writes denied by the datavolume-policy (enforce mode)");
metricsCollector.addCounter(METRICS.warned, "DataVolume writes admitted with datavolume-policy warnings");
metricsCollector.addCounter(METRICS.auditedAtAdmission, "DataVolume writes admitted with violations of rule sets in audit mode");
metricsCollector.addCounter(METRICS.reported, "Violations on existing DataVolumes newly reported by the watcher audit");
metricsCollector.addGauge(METRICS.current, "Current violations on existing DataVolumes found by the watcher audit", ["rule"]);

const settingsFor = cachedPolicySettings();

function logDecision(decision: AdmissionDecision, operation: string, username: string | undefined): void {
  const dv = decision.dataVolume;
  const fields = { namespace: dv?.namespace, name: dv?.name, operation, requester: username };
  if (decision.failure) Log.warn({ ...fields, error: decision.failure }, "DataVolume policy could not evaluate a request");
  if (!decision.allowed) {
    metricsCollector.incCounter(METRICS.denied);
    Log.info({ ...fields, rules: decision.violations.filter(v => v.effect === "deny").map(v => v.rule) }, decision.message ?? "denied");
  }
  if (decision.warnings.length > 0) {
    metricsCollector.incCounter(METRICS.warned);
    for (const warning of decision.warnings) Log.info(fields, warning);
  }
  const reported = decision.violations.filter(v => v.effect === "report");
  if (reported.length > 0) {
    metricsCollector.incCounter(METRICS.auditedAtAdmission);
    Log.warn({ ...fields, rules: reported.map(v => v.rule) }, "DataVolume policy (audit mode): admitted a DataVolume with violations");
  }
}

When(DataVolume)
  .IsCreatedOrUpdated()
  .Validate(req => {
    try {
      const request = req.Request;
      const input = {
        operation: request.operation,
        namespace: request.namespace,
        name: request.name,
        object: request.object,
        oldObject: request.oldObject,
        username: request.userInfo?.username,
      };
      const config = currentConfig();
      const decision = config === undefined ? decideWithoutConfig(input) : decideAdmission(input, settingsFor(config));
      if (decision.violations.length > 0 || decision.failure) logDecision(decision, request.operation, request.userInfo?.username);
      if (decision.allowed) return req.Approve(decision.warnings.length > 0 ? decision.warnings : undefined);
      // No status code: Pepr 1.1.4 answers every denial with 422 whatever the callback says.
      return req.Deny(decision.message, undefined, decision.warnings.length > 0 ? decision.warnings : undefined);
    } catch (e) {
      // The deciders never throw; this guards the config lookup. Without settings the modes are unknown: deny, like
      // the webhook's failurePolicy Fail (the webhook only reaches this pod for the policed namespaces).
      const error = e instanceof Error ? e.message : String(e);
      Log.error({ error }, "DataVolume policy failed; request denied");
      return req.Deny(`kubevirt-infra DataVolume policy failed (${error}); denied because the policy fails closed`);
    }
  });

// --- Watcher: audit of existing DataVolumes -------------------------------------------------------------------

const lastPublished: Record<RuleName, number> = { requiredLabels: 0, tenantBinding: 0, storageClass: 0 };

const sinks: AuditSinks = {
  reportViolation: (dv, reason, message, eventName) =>
    recordEvent(
      { apiVersion: dv.apiVersion, kind: dv.kind, metadata: { name: dv.name, namespace: dv.namespace, uid: dv.uid } },
      "Warning",
      reason,
      message.length > 1024 ? `${message.slice(0, 1021)}...` : message,
      { name: eventName },
    ),
  writeSummary: summary =>
    applyConfigMap(
      AUDIT_CONFIGMAP.namespace,
      AUDIT_CONFIGMAP.name,
      { "summary.txt": renderSummaryText(summary), "summary.json": `${JSON.stringify(summary, null, 2)}\n` },
      { "app.kubernetes.io/managed-by": "kubevirt-infra", "app.kubernetes.io/component": "datavolume-policy" },
    ),
  log: (level, fields, message) => (level === "warn" ? Log.warn(fields, message) : Log.info(fields, message)),
  violationReported: () => metricsCollector.incCounter(METRICS.reported),
  currentViolations: byRule => {
    for (const rule of Object.keys(byRule) as RuleName[]) {
      const delta = byRule[rule] - lastPublished[rule];
      if (delta !== 0) metricsCollector.incGauge(METRICS.current, { rule }, delta);
      lastPublished[rule] = byRule[rule];
    }
  },
};

let audit: DataVolumeAudit | undefined;

/** The watcher's audit (created on first use, then re-audited on every config change). */
export function dataVolumeAudit(): DataVolumeAudit {
  if (!audit) {
    const created = new DataVolumeAudit(sinks);
    created.setSettings(settingsFor(currentConfig()));
    onConfigChange(config => created.setSettings(settingsFor(config)));
    audit = created;
  }
  return audit;
}

/** The watcher's audit follows the shared DataVolume informer (the same one the Redfish cache uses). Returns stop. */
export function startDataVolumeAuditWatch(informers: SharedInformers): () => void {
  const audit = dataVolumeAudit();
  return informers.informer("DataVolume").addHandlers({
    onAdd: dv => audit.upsert(dv),
    onUpdate: dv => audit.upsert(dv),
    onDelete: dv => audit.remove(dv),
  });
}

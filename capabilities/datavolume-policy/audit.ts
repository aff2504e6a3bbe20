// The watcher's audit of existing DataVolumes: a cache of every DataVolume seen (so a config change can re-audit
// without a re-list), one report (Event + log line + metric) per DataVolume per distinct violation, and a
// throttled operator summary. Knows nothing of Pepr: the sinks are injected.
import { createHash } from "node:crypto";
import type { DataVolumeFacts } from "./model";
import { parseDataVolume } from "./model";
import { describeViolation, eventReason } from "./messages";
import type { EvaluatedViolation } from "./rules";
import { evaluateDataVolume } from "./rules";
import { classifyDataVolume } from "./scope";
import type { DataVolumePolicySettings, RuleName } from "./settings";
import type { AuditSummary, NamespaceSummary, SummaryViolation } from "./summary";
import { MAX_LISTED_DATAVOLUMES } from "./summary";

export interface AuditSinks {
  /**
   * Reports one violation on the DataVolume (an Event). `eventName` is stable for this DataVolume uid and violation,
   * so a report repeated after a watcher restart is recognised by the API server instead of duplicated.
   */
  reportViolation(dv: DataVolumeFacts, reason: string, message: string, eventName: string): Promise<void>;
  writeSummary(summary: AuditSummary): Promise<void>;
  log(level: "info" | "warn", fields: Record<string, unknown>, message: string): void;
  /** A violation was reported for the first time (counter). */
  violationReported(rule: RuleName): void;
  /** Current number of violations per rule (gauge). */
  currentViolations(byRule: Record<RuleName, number>): void;
}

interface Finding {
  readonly key: string;
  readonly violation: EvaluatedViolation;
  readonly message: string;
}

interface AuditedDataVolume {
  readonly dv: DataVolumeFacts;
  readonly findings: readonly Finding[];
}

const objectKey = (namespace: string, name: string): string => `${namespace}/${name}`;

/** A stable fingerprint of what is wrong (not of the wording), so a reworded message is not a new violation. */
function violationKey(v: EvaluatedViolation): string {
  switch (v.rule) {
    case "requiredLabels":
      return `requiredLabels:${v.problems.map(p => `${p.key}=${p.actual ?? "<missing>"}->${p.expected}`).join(",")}`;
    case "storageClass":
      return `storageClass:${v.ref.field}=${v.ref.storageClassName ?? "<default>"}`;
    case "tenantBinding":
      return `tenantBinding:${v.serviceAccount}`;
  }
}

/** Event names are DNS subdomains (<= 253 chars): DataVolume name (trimmed) + a hash of uid and violation. */
function eventName(dv: DataVolumeFacts, key: string): string {
  const hash = createHash("sha256").update(`${dv.uid}\n${key}`).digest("hex").slice(0, 16);
  const base = dv.name.slice(0, 200).replace(/[^a-z0-9]+$/, ""); // a trimmed name must still end alphanumeric
  return `${base || "datavolume"}.dvpolicy.${hash}`;
}

const zeroByRule = (): Record<RuleName, number> => ({ requiredLabels: 0, tenantBinding: 0, storageClass: 0 });

export interface DataVolumeAuditOptions {
  /** Coalescing window for summary writes. */
  summaryDelayMs?: number;
  now?: () => Date;
}

export class DataVolumeAudit {
  readonly #sinks: AuditSinks;
  readonly #summaryDelayMs: number;
  readonly #now: () => Date;
  #settings: DataVolumePolicySettings | undefined;
  #everActive = false;
  /** Every DataVolume seen, policed or not: a config change may widen the scope. */
  readonly #objects = new Map<string, DataVolumeFacts>();
  /** In-scope DataVolumes and their current findings. */
  readonly #audited = new Map<string, AuditedDataVolume>();
  /** uid → violation keys already reported by this process. */
  readonly #reported = new Map<string, Set<string>>();
  #writes: Promise<void> = Promise.resolve();
  #summaryTimer: NodeJS.Timeout | undefined;
  #summaryWrite: Promise<void> = Promise.resolve();

  constructor(sinks: AuditSinks, opts: DataVolumeAuditOptions = {}) {
    this.#sinks = sinks;
    this.#summaryDelayMs = opts.summaryDelayMs ?? 1000;
    this.#now = opts.now ?? (() => new Date());
  }

  /** New (or removed: undefined) policy settings: re-audit everything cached. */
  setSettings(settings: DataVolumePolicySettings | undefined): void {
    this.#settings = settings;
    if (settings) this.#everActive = true;
    this.#audited.clear();
    for (const dv of this.#objects.values()) this.#audit(dv);
    // Written right away when the policy becomes inactive too, so the summary never shows stale violations.
    if (this.#everActive) this.#scheduleSummary();
  }

  /** A DataVolume was added or modified (watch event or re-list). Malformed objects are logged and skipped. */
  upsert(raw: unknown): void {
    const parsed = parseDataVolume(raw);
    if (!parsed.ok) {
      this.#sinks.log("warn", {}, `DataVolume audit skipped an object: ${parsed.error}`);
      return;
    }
    const dv = parsed.dataVolume;
    const key = objectKey(dv.namespace, dv.name);
    const previous = this.#objects.get(key);
    if (previous && previous.uid !== dv.uid) this.#reported.delete(previous.uid); // deleted and recreated
    this.#objects.set(key, dv);
    const changed = this.#audit(dv);
    if (changed && this.#everActive) this.#scheduleSummary();
  }

  remove(raw: unknown): void {
    const parsed = parseDataVolume(raw);
    if (!parsed.ok) return;
    const key = objectKey(parsed.dataVolume.namespace, parsed.dataVolume.name);
    const known = this.#objects.get(key);
    if (!known) return;
    this.#objects.delete(key);
    this.#reported.delete(known.uid);
    if (this.#audited.delete(key) && this.#everActive) this.#scheduleSummary();
  }

  /** The current summary (also what gets written). */
  summary(): AuditSummary {
    const settings = this.#settings;
    const generatedAt = this.#now().toISOString();
    const byRule = zeroByRule();
    if (!settings) {
      return {
        generatedAt,
        active: false,
        totals: { csiDataVolumes: 0, violatingDataVolumes: 0, violationsByRule: byRule },
        namespaces: [],
        omitted: 0,
      };
    }
    const perNamespace = new Map<string, { csi: number; violating: { name: string; violations: SummaryViolation[] }[] }>();
    for (const ns of [...settings.namespaces].sort()) perNamespace.set(ns, { csi: 0, violating: [] });
    let csiTotal = 0;
    let violatingTotal = 0;
    for (const { dv, findings } of this.#audited.values()) {
      const entry = perNamespace.get(dv.namespace);
      if (!entry) continue;
      entry.csi++;
      csiTotal++;
      if (findings.length === 0) continue;
      violatingTotal++;
      for (const f of findings) byRule[f.violation.rule]++;
      entry.violating.push({
        name: dv.name,
        violations: findings.map(f => ({ rule: f.violation.rule, mode: f.violation.mode, message: f.message })),
      });
    }
    let budget = MAX_LISTED_DATAVOLUMES;
    let omitted = 0;
    const namespaces: NamespaceSummary[] = [];
    for (const [namespace, entry] of perNamespace) {
      entry.violating.sort((a, b) => a.name.localeCompare(b.name));
      const listed = entry.violating.slice(0, Math.max(0, budget));
      budget -= listed.length;
      omitted += entry.violating.length - listed.length;
      namespaces.push({ namespace, csiDataVolumes: entry.csi, violatingDataVolumes: entry.violating.length, violating: listed });
    }
    return {
      generatedAt,
      active: true,
      policy: {
        namespaces: [...settings.namespaces].sort(),
        modes: {
          requiredLabels: settings.requiredLabels.mode,
          tenantBinding: settings.tenantBinding.mode,
          storageClass: settings.storageClass.mode,
        },
      },
      totals: { csiDataVolumes: csiTotal, violatingDataVolumes: violatingTotal, violationsByRule: byRule },
      namespaces,
      omitted,
    };
  }

  /** Resolves when every report and summary write started so far (including a pending summary) has finished. */
  async flush(): Promise<void> {
    if (this.#summaryTimer) {
      clearTimeout(this.#summaryTimer);
      this.#summaryTimer = undefined;
      this.#writeSummaryNow();
    }
    await this.#writes;
    await this.#summaryWrite;
  }

  /** Stops the pending summary timer (tests, shutdown). */
  stop(): void {
    if (this.#summaryTimer) clearTimeout(this.#summaryTimer);
    this.#summaryTimer = undefined;
  }

  /** Audits one DataVolume; returns whether its entry in the summary changed. */
  #audit(dv: DataVolumeFacts): boolean {
    const key = objectKey(dv.namespace, dv.name);
    const before = this.#audited.get(key);
    const settings = this.#settings;
    if (!settings || !classifyDataVolume(dv, undefined, settings).inScope) {
      return this.#audited.delete(key);
    }
    const findings = evaluateDataVolume(dv, {}, settings).map(violation => ({
      key: violationKey(violation),
      violation,
      message: describeViolation(violation),
    }));
    this.#audited.set(key, { dv, findings });
    for (const finding of findings) this.#reportOnce(dv, finding);
    return (
      !before ||
      before.findings.length !== findings.length ||
      before.findings.some((f, i) => f.key !== findings[i].key || f.message !== findings[i].message)
    );
  }

  #reportOnce(dv: DataVolumeFacts, finding: Finding): void {
    let reported = this.#reported.get(dv.uid);
    if (!reported) {
      reported = new Set();
      this.#reported.set(dv.uid, reported);
    }
    if (reported.has(finding.key)) return;
    reported.add(finding.key);
    const { rule, mode } = finding.violation;
    this.#sinks.log(
      "warn",
      { namespace: dv.namespace, name: dv.name, rule, mode },
      `DataVolume policy audit: ${dv.namespace}/${dv.name} ${finding.message}`,
    );
    this.#sinks.violationReported(rule);
    const name = eventName(dv, finding.key);
    // Sequential: a start with many violating DataVolumes must not open hundreds of API requests at once.
    this.#writes = this.#writes.then(() =>
      this.#sinks.reportViolation(dv, eventReason(rule), finding.message, name).catch(e => {
        this.#sinks.log("warn", { namespace: dv.namespace, name: dv.name }, `DataVolume policy: could not record Event: ${e}`);
      }),
    );
  }

  #scheduleSummary(): void {
    // Throttle, not debounce: under constant churn the summary is still at most summaryDelayMs old.
    if (this.#summaryTimer) return;
    this.#summaryTimer = setTimeout(() => {
      this.#summaryTimer = undefined;
      this.#writeSummaryNow();
    }, this.#summaryDelayMs);
    this.#summaryTimer.unref?.();
  }

  #writeSummaryNow(): void {
    const summary = this.summary();
    this.#sinks.currentViolations({ ...summary.totals.violationsByRule });
    this.#summaryWrite = this.#summaryWrite.then(() =>
      this.#sinks.writeSummary(summary).catch(e => {
        this.#sinks.log("warn", {}, `DataVolume policy: could not write the audit summary: ${e}`);
      }),
    );
  }
}

// Unit tests of the watcher audit (plain module) with recording sinks: dedupe, re-audit on config change,
// summary content and throttling, resilience to bad objects and failing sinks.
import { afterEach, describe, expect, it, vi } from "vitest";
import { DataVolumeAudit, type AuditSinks } from "../../capabilities/datavolume-policy/audit";
import type { DataVolumeFacts } from "../../capabilities/datavolume-policy/model";
import { MODULE_MANAGED_LABEL } from "../../capabilities/datavolume-policy/scope";
import type { RuleName } from "../../capabilities/datavolume-policy/settings";
import { MAX_LISTED_DATAVOLUMES, renderSummaryText, type AuditSummary } from "../../capabilities/datavolume-policy/summary";
import { dataVolume, NS, settingsFor, TENANT1_LABELS } from "./policy-helpers";

interface Recorded {
  events: { dv: DataVolumeFacts; reason: string; message: string; name: string }[];
  summaries: AuditSummary[];
  logs: { level: string; message: string }[];
  reportedByRule: RuleName[];
  current: Record<RuleName, number>[];
}

function recordingSinks(overrides: Partial<AuditSinks> = {}): { sinks: AuditSinks; rec: Recorded } {
  const rec: Recorded = { events: [], summaries: [], logs: [], reportedByRule: [], current: [] };
  const sinks: AuditSinks = {
    reportViolation: async (dv, reason, message, name) => {
      rec.events.push({ dv, reason, message, name });
    },
    writeSummary: async summary => {
      rec.summaries.push(summary);
    },
    log: (level, _fields, message) => rec.logs.push({ level, message }),
    violationReported: rule => rec.reportedByRule.push(rule),
    currentViolations: byRule => rec.current.push(byRule),
    ...overrides,
  };
  return { sinks, rec };
}

const audits: DataVolumeAudit[] = [];
function newAudit(sinks: AuditSinks, summaryDelayMs = 10): DataVolumeAudit {
  const audit = new DataVolumeAudit(sinks, { summaryDelayMs, now: () => new Date("2025-01-01T00:00:00Z") });
  audits.push(audit);
  return audit;
}
afterEach(() => {
  for (const a of audits.splice(0)) a.stop();
});

const restrictClasses = { storageClassEnforcement: { allowAll: false, allowDefault: true, allowList: ["fast"] } };

describe("DataVolume audit", () => {
  it("reports pre-existing violations once the config arrives: one Event, log line and metric per violation", async () => {
    const { sinks, rec } = recordingSinks();
    const audit = newAudit(sinks);
    audit.upsert(dataVolume("pvc-bad"));
    audit.upsert(dataVolume("pvc-good", { labels: TENANT1_LABELS }));
    audit.upsert(dataVolume("vm-1-rootdisk"));
    await audit.flush();
    expect(rec.events).toEqual([]); // no config yet: nothing to judge against

    audit.setSettings(settingsFor());
    await audit.flush();
    expect(rec.events).toHaveLength(1);
    expect(rec.events[0]).toMatchObject({ reason: "MissingTenantLabels", dv: { name: "pvc-bad", uid: "uid-pvc-bad" } });
    expect(rec.events[0].message).toContain(`label csi-driver/cluster is missing (expected "tenant1")`);
    expect(rec.logs.filter(l => l.level === "warn" && l.message.includes(`${NS}/pvc-bad`))).toHaveLength(1);
    expect(rec.reportedByRule).toEqual(["requiredLabels"]);
    expect(rec.current.at(-1)).toEqual({ requiredLabels: 1, tenantBinding: 0, storageClass: 0 });
    const summary = rec.summaries.at(-1)!;
    expect(summary.totals).toMatchObject({ csiDataVolumes: 2, violatingDataVolumes: 1 });
    expect(summary.namespaces).toEqual([
      {
        namespace: NS,
        csiDataVolumes: 2,
        violatingDataVolumes: 1,
        violating: [{ name: "pvc-bad", violations: [expect.objectContaining({ rule: "requiredLabels", mode: "enforce" })] }],
      },
    ]);
  });

  it("does not repeat a report on re-list, and reports a new distinct violation of the same DataVolume", async () => {
    const { sinks, rec } = recordingSinks();
    const audit = newAudit(sinks);
    audit.setSettings(settingsFor(restrictClasses));
    audit.upsert(dataVolume("pvc-1"));
    audit.upsert(dataVolume("pvc-1")); // the watcher's periodic re-list
    audit.setSettings(settingsFor(restrictClasses)); // an unrelated config change re-audits
    await audit.flush();
    expect(rec.events.map(e => e.reason)).toEqual(["MissingTenantLabels"]);

    audit.upsert(dataVolume("pvc-1", { storageClassName: "slow" }));
    await audit.flush();
    expect(rec.events.map(e => e.reason)).toEqual(["MissingTenantLabels", "DisallowedStorageClass"]);
    expect(rec.events[1].message).toContain(`storage class "slow"`);
  });

  it("gives each DataVolume uid and violation a stable, valid Event name", async () => {
    const { sinks, rec } = recordingSinks();
    const first = newAudit(sinks);
    first.setSettings(settingsFor());
    const longName = `pvc-${"a".repeat(240)}`;
    first.upsert(dataVolume(longName));
    first.upsert(dataVolume("pvc-2"));
    await first.flush();
    // A restarted watcher computes the same names (the API server then answers AlreadyExists).
    const restarted = newAudit(sinks);
    restarted.setSettings(settingsFor());
    restarted.upsert(dataVolume("pvc-2"));
    await restarted.flush();
    const [long, two, twoAgain] = rec.events.map(e => e.name);
    expect(two).toBe(twoAgain);
    expect(long.length).toBeLessThanOrEqual(253);
    expect(long).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
    // Recreated under the same name (new uid): a new report.
    restarted.upsert(dataVolume("pvc-2", { uid: "other-uid" }));
    await restarted.flush();
    expect(rec.events).toHaveLength(4);
    expect(rec.events[3].name).not.toBe(two);
  });

  it("updates the summary when a DataVolume is fixed or deleted", async () => {
    const { sinks, rec } = recordingSinks();
    const audit = newAudit(sinks);
    audit.setSettings(settingsFor());
    audit.upsert(dataVolume("pvc-1"));
    audit.upsert(dataVolume("pvc-2"));
    await audit.flush();
    expect(rec.summaries.at(-1)!.totals.violatingDataVolumes).toBe(2);

    audit.upsert(dataVolume("pvc-1", { labels: TENANT1_LABELS }));
    audit.remove(dataVolume("pvc-2"));
    await audit.flush();
    expect(rec.summaries.at(-1)!.totals).toMatchObject({ csiDataVolumes: 1, violatingDataVolumes: 0 });
    expect(rec.current.at(-1)).toEqual({ requiredLabels: 0, tenantBinding: 0, storageClass: 0 });
  });

  it("re-audits cached DataVolumes when the config widens the scope", async () => {
    const { sinks, rec } = recordingSinks();
    const audit = newAudit(sinks);
    audit.setSettings(settingsFor());
    audit.upsert(dataVolume("pvc-9", { namespace: "tenant2-vms" }));
    await audit.flush();
    expect(rec.events).toEqual([]);
    audit.setSettings(settingsFor({ namespaces: [NS, "tenant2-vms"] }));
    await audit.flush();
    expect(rec.events.map(e => e.dv.namespace)).toEqual(["tenant2-vms"]);
    expect(rec.summaries.at(-1)!.namespaces.map(n => n.namespace)).toEqual([NS, "tenant2-vms"]);
  });

  it("writes an inactive summary when the policy is switched off, and nothing if it never was on", async () => {
    const never = recordingSinks();
    const idle = newAudit(never.sinks);
    idle.setSettings(undefined);
    idle.upsert(dataVolume("pvc-1"));
    await idle.flush();
    expect(never.rec.summaries).toEqual([]);

    const { sinks, rec } = recordingSinks();
    const audit = newAudit(sinks);
    audit.setSettings(settingsFor());
    audit.upsert(dataVolume("pvc-1"));
    audit.setSettings(undefined);
    await audit.flush();
    expect(rec.summaries.at(-1)).toMatchObject({ active: false, totals: { violatingDataVolumes: 0 } });
    expect(renderSummaryText(rec.summaries.at(-1)!)).toContain("The policy is inactive");
  });

  it("leaves module-managed and non-CSI DataVolumes alone", async () => {
    const { sinks, rec } = recordingSinks();
    const audit = newAudit(sinks);
    audit.setSettings(settingsFor());
    audit.upsert(dataVolume("pvc-iso", { labels: { [MODULE_MANAGED_LABEL.key]: MODULE_MANAGED_LABEL.value } }));
    audit.upsert(dataVolume("vm-1-rootdisk"));
    await audit.flush();
    expect(rec.events).toEqual([]);
    expect(rec.summaries.at(-1)!.totals.csiDataVolumes).toBe(0);
  });

  it("coalesces a burst of changes into one summary write", async () => {
    vi.useFakeTimers();
    try {
      const { sinks, rec } = recordingSinks();
      const audit = newAudit(sinks, 50);
      audit.setSettings(settingsFor());
      for (let i = 0; i < 20; i++) audit.upsert(dataVolume(`pvc-${i}`));
      // Three summary delays pass: the burst was written once, by the timer (flush finds nothing pending).
      await vi.advanceTimersByTimeAsync(150);
      expect(rec.summaries).toHaveLength(1);
      await audit.flush();
      expect(rec.summaries).toHaveLength(1);
      expect(rec.summaries[0].totals.violatingDataVolumes).toBe(20);
    } finally {
      vi.useRealTimers();
    }
  });

  it("skips malformed objects with a log line and survives failing sinks", async () => {
    const { sinks, rec } = recordingSinks({
      reportViolation: async () => {
        throw new Error("API down");
      },
      writeSummary: async () => {
        throw new Error("API down");
      },
    });
    const audit = newAudit(sinks);
    audit.setSettings(settingsFor());
    audit.upsert({ metadata: { name: "pvc-x", namespace: NS, labels: "not-a-map" } });
    audit.upsert(dataVolume("pvc-1"));
    await audit.flush();
    const warnings = rec.logs.filter(l => l.level === "warn").map(l => l.message);
    expect(warnings.some(m => m.includes("skipped an object") && m.includes("metadata.labels"))).toBe(true);
    expect(warnings.some(m => m.includes("could not record Event: Error: API down"))).toBe(true);
    expect(warnings.some(m => m.includes("could not write the audit summary"))).toBe(true);
    expect(audit.summary().totals.violatingDataVolumes).toBe(1);
  });

  it("bounds the listed DataVolumes and renders a readable per-namespace text", () => {
    const { sinks } = recordingSinks();
    const audit = newAudit(sinks);
    audit.setSettings(settingsFor());
    for (let i = 0; i <= MAX_LISTED_DATAVOLUMES; i++) audit.upsert(dataVolume(`pvc-${String(i).padStart(4, "0")}`));
    const summary = audit.summary();
    expect(summary.omitted).toBe(1);
    expect(summary.namespaces[0].violatingDataVolumes).toBe(MAX_LISTED_DATAVOLUMES + 1);
    const text = renderSummaryText(summary);
    expect(text).toContain(`Namespace ${NS}: ${MAX_LISTED_DATAVOLUMES + 1} CSI DataVolumes, ${MAX_LISTED_DATAVOLUMES + 1} with violations`);
    expect(text).toContain("  pvc-0000\n    - [requiredLabels, mode enforce] label csi-driver/cluster is missing");
    expect(text).toContain("1 more violating DataVolumes are not listed");
  });
});

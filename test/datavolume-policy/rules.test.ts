// Unit tests of the datavolume-policy plain modules: scope, every rule, modes, messages and the admission decision.
import { describe, expect, it } from "vitest";
import { moduleConfigSchema } from "../../capabilities/config/schema";
import { decideAdmission, decideWithoutConfig, type AdmissionInput } from "../../capabilities/datavolume-policy/admission";
import { policySettingsFromConfig } from "../../capabilities/datavolume-policy/from-config";
import { parseDataVolume } from "../../capabilities/datavolume-policy/model";
import { evaluateDataVolume, storageClassAllowed } from "../../capabilities/datavolume-policy/rules";
import { classifyDataVolume, MODULE_MANAGED_LABEL, MODULE_REQUESTERS } from "../../capabilities/datavolume-policy/scope";
import { buildPolicySettings, type DataVolumePolicySettings, type PolicySettingsInput, type Tenant } from "../../capabilities/datavolume-policy/settings";
import {
  ADMIN,
  configDoc,
  dataVolume,
  MODULE_WATCHER,
  NS,
  settingsFor,
  TENANT1_LABELS,
  TENANT1_SA,
  TENANT2_LABELS,
  TENANT2_SA,
  TWO_TENANTS,
} from "./policy-helpers";

function facts(obj: Record<string, unknown>) {
  const parsed = parseDataVolume(obj);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.dataVolume;
}

const create = (object: unknown, username = ADMIN): AdmissionInput => ({ operation: "CREATE", namespace: NS, object, username });
const update = (oldObject: unknown, object: unknown, username = ADMIN): AdmissionInput => ({
  operation: "UPDATE",
  namespace: NS,
  object,
  oldObject,
  username,
});

describe("policy settings from the module config", () => {
  it("is inert when disabled, for role nested, or without config", () => {
    expect(policySettingsFromConfig(undefined)).toBeUndefined();
    expect(policySettingsFromConfig(moduleConfigSchema.parse(configDoc({ enabled: false })))).toBeUndefined();
    expect(policySettingsFromConfig(moduleConfigSchema.parse({ ...configDoc(), role: "nested" }))).toBeUndefined();
  });

  it("defaults namespaces to infra.namespace, rule modes to the policy mode, and counts tenant SAs as CSI", () => {
    const s = settingsFor({ mode: "warn", storageClassEnforcement: { mode: "enforce" }, ...TWO_TENANTS });
    expect([...s.namespaces]).toEqual([NS]);
    expect(s.requiredLabels).toEqual({ mode: "warn", labels: TENANT1_LABELS });
    expect(s.tenantBinding.mode).toBe("warn");
    expect(s.storageClass.mode).toBe("enforce");
    expect(s.csiServiceAccounts.has(TENANT2_SA)).toBe(true);
    expect(s.tenantsByServiceAccount.get(TENANT1_SA)?.map(t => t.name)).toEqual(["tenant1"]);
  });
});

describe("scope", () => {
  const s = settingsFor({ csiServiceAccounts: ["system:serviceaccount:csi:controller"] });

  it("polices DataVolumes named with the CSI prefix in the configured namespaces only", () => {
    expect(classifyDataVolume(facts(dataVolume("pvc-1")), ADMIN, s)).toEqual({ inScope: true, reason: "name-prefix" });
    expect(classifyDataVolume(facts(dataVolume("pvc-1", { namespace: "other" })), ADMIN, s)).toEqual({
      inScope: false,
      reason: "namespace",
    });
    expect(classifyDataVolume(facts(dataVolume("vm-1-rootdisk")), ADMIN, s)).toEqual({ inScope: false, reason: "not-csi" });
  });

  it("uses generateName while the name is not generated yet", () => {
    expect(classifyDataVolume(facts(dataVolume("", { generateName: "pvc-" })), ADMIN, s).inScope).toBe(true);
    expect(classifyDataVolume(facts(dataVolume("", { generateName: "disk-" })), ADMIN, s).inScope).toBe(false);
  });

  it("polices any DataVolume written by a configured CSI service account", () => {
    expect(classifyDataVolume(facts(dataVolume("anything")), "system:serviceaccount:csi:controller", s)).toEqual({
      inScope: true,
      reason: "csi-service-account",
    });
  });

  it("exempts the module's own writes by requester; the managed-by label only marks ISOs for the audit", () => {
    const managed = facts(dataVolume("pvc-iso", { labels: { [MODULE_MANAGED_LABEL.key]: MODULE_MANAGED_LABEL.value } }));
    expect(classifyDataVolume(managed, ADMIN, s)).toEqual({ inScope: true, reason: "name-prefix" });
    expect(classifyDataVolume(managed, "system:serviceaccount:csi:controller", s).inScope).toBe(true);
    expect(classifyDataVolume(managed, undefined, s)).toEqual({ inScope: false, reason: "module-managed" });
    for (const requester of MODULE_REQUESTERS) {
      expect(classifyDataVolume(facts(dataVolume("pvc-iso")), requester, s)).toEqual({ inScope: false, reason: "module-requester" });
    }
    expect(MODULE_REQUESTERS.has(MODULE_WATCHER)).toBe(true);
  });

  it("with an empty prefix, only CSI service accounts define CSI volumes", () => {
    const bySa = settingsFor({ csiNamePrefix: "", csiServiceAccounts: [TENANT1_SA] });
    expect(classifyDataVolume(facts(dataVolume("pvc-1")), ADMIN, bySa).inScope).toBe(false);
    expect(classifyDataVolume(facts(dataVolume("pvc-1")), TENANT1_SA, bySa).inScope).toBe(true);
  });
});

describe("required labels", () => {
  const s = settingsFor();

  it("admits a CSI DataVolume carrying infra.labels", () => {
    expect(evaluateDataVolume(facts(dataVolume("pvc-1", { labels: { ...TENANT1_LABELS, extra: "x" } })), {}, s)).toEqual([]);
  });

  it("names the missing label, its expected value, the rule and the config key", () => {
    const [v] = evaluateDataVolume(facts(dataVolume("pvc-1")), {}, s);
    expect(v).toMatchObject({
      rule: "requiredLabels",
      origin: "new",
      effect: "deny",
      problems: [{ key: "csi-driver/cluster", expected: "tenant1", actual: undefined }],
    });
    const d = decideAdmission(create(dataVolume("pvc-1")), s);
    expect(d.allowed).toBe(false);
    expect(d.message).toContain(`DataVolume ${NS}/pvc-1`);
    expect(d.message).toContain(`label csi-driver/cluster is missing (expected "tenant1")`);
    expect(d.message).toContain("[requiredLabels, mode enforce]");
    expect(d.message).toContain(`infra.labels="csi-driver/cluster=tenant1"`);
    expect(d.message).toContain("Fix:");
  });

  it("names a wrong value with the expected one", () => {
    const d = decideAdmission(create(dataVolume("pvc-1", { labels: TENANT2_LABELS })), s);
    expect(d.allowed).toBe(false);
    expect(d.message).toContain(`label csi-driver/cluster is "tenant2" (expected "tenant1")`);
  });

  it("names every missing label of a multi-label set", () => {
    const multi = settingsFor({}, { labels: "csi-driver/cluster=tenant1,team=blue" });
    const d = decideAdmission(create(dataVolume("pvc-1", { labels: { team: "red" } })), multi);
    expect(d.message).toContain(`label csi-driver/cluster is missing (expected "tenant1")`);
    expect(d.message).toContain(`label team is "red" (expected "blue")`);
  });

  it("denies an UPDATE that removes a required label", () => {
    const before = dataVolume("pvc-1", { labels: TENANT1_LABELS });
    const d = decideAdmission(update(before, dataVolume("pvc-1", { labels: {} })), s);
    expect(d.allowed).toBe(false);
    expect(d.violations[0]).toMatchObject({ rule: "requiredLabels", origin: "introduced-by-update" });
    expect(d.message).toContain("this update removes or changes required labels: label csi-driver/cluster is missing");
  });

  it("lets an UPDATE of a DataVolume that already lacked the labels through, with a warning", () => {
    const legacy = dataVolume("pvc-legacy");
    const d = decideAdmission(update(legacy, { ...legacy, metadata: { ...(legacy.metadata as object), annotations: { a: "b" } } }), s);
    expect(d.allowed).toBe(true);
    expect(d.violations[0]).toMatchObject({ origin: "pre-existing", effect: "warn" });
    expect(d.warnings).toHaveLength(1);
    expect(d.warnings[0]).toContain("already so before this update");
  });

  it("accepts any configured tenant's complete label set", () => {
    const shared = settingsFor(TWO_TENANTS);
    expect(evaluateDataVolume(facts(dataVolume("pvc-2", { labels: TENANT2_LABELS })), {}, shared)).toEqual([]);
    const d = decideAdmission(create(dataVolume("pvc-3", { labels: { "csi-driver/cluster": "tenant9" } })), shared);
    expect(d.allowed).toBe(false);
    expect(d.message).toContain("Also accepted: the complete labels of tenant tenant2 csi-driver/cluster=tenant2");
  });

  it("requires nothing when neither infra.labels nor tenants are configured", () => {
    const none = settingsFor({}, { labels: "" });
    expect(evaluateDataVolume(facts(dataVolume("pvc-1")), {}, none)).toEqual([]);
  });
});

describe("tenant binding", () => {
  const s = settingsFor(TWO_TENANTS);

  it("denies a service account creating a DataVolume labelled for another tenant, naming both and the SA", () => {
    const d = decideAdmission(create(dataVolume("pvc-x", { labels: TENANT1_LABELS }), TENANT2_SA), s);
    expect(d.allowed).toBe(false);
    expect(d.violations.map(v => v.rule)).toEqual(["tenantBinding"]);
    expect(d.message).toContain(`service account ${TENANT2_SA} is bound to tenant "tenant2"`);
    expect(d.message).toContain(`labelled for tenant "tenant1" (csi-driver/cluster=tenant1): cross-tenant access`);
    expect(d.message).toContain("datavolumePolicy.tenants");
  });

  it("admits the tenant's own DataVolumes", () => {
    expect(decideAdmission(create(dataVolume("pvc-y", { labels: TENANT2_LABELS }), TENANT2_SA), s)).toMatchObject({
      allowed: true,
      violations: [],
    });
  });

  it("reports both rules when a tenant service account omits its labels, against its own tenant's labels", () => {
    const d = decideAdmission(create(dataVolume("pvc-z"), TENANT2_SA), s);
    expect(d.violations.map(v => v.rule)).toEqual(["requiredLabels", "tenantBinding"]);
    expect(d.message).toContain(`label csi-driver/cluster is missing (expected "tenant2")`);
    expect(d.message).toContain("does not carry that tenant's labels");
  });

  it("does not apply to requesters that are not bound to a tenant", () => {
    expect(decideAdmission(create(dataVolume("pvc-a", { labels: TENANT2_LABELS }), ADMIN), s).allowed).toBe(true);
  });

  it("denies a cross-tenant UPDATE even when the object was already labelled that way", () => {
    const theirs = dataVolume("pvc-b", { labels: TENANT1_LABELS });
    const d = decideAdmission(update(theirs, theirs, TENANT2_SA), s);
    expect(d.allowed).toBe(false);
    expect(d.violations[0]).toMatchObject({ rule: "tenantBinding", effect: "deny" });
  });

  it("catches a service account bound to a tenant using infra.labels of another tenant (no tenant entry for it)", () => {
    const onlyTenant2 = settingsFor({ tenants: [TWO_TENANTS.tenants[1]] });
    const d = decideAdmission(create(dataVolume("pvc-c", { labels: TENANT1_LABELS }), TENANT2_SA), onlyTenant2);
    expect(d.allowed).toBe(false);
    expect(d.violations.map(v => v.rule)).toEqual(["tenantBinding"]);
  });
});

describe("moves between tenants' label sets", () => {
  const s = settingsFor(TWO_TENANTS);
  const baseInput: PolicySettingsInput = {
    namespaces: [NS],
    csiNamePrefix: "pvc-",
    csiServiceAccounts: [],
    requiredLabels: {},
    requiredLabelsMode: "enforce",
    tenants: [],
    tenantBindingMode: "enforce",
    storageClass: { mode: "enforce", allowAll: true, allowDefault: true, allowList: [] },
  };
  const before = dataVolume("pvc-1", { labels: TENANT2_LABELS });

  it("denies a move (and a removal of the tenant labels) by a requester not allowed for every tenant involved", () => {
    for (const [after, to] of [
      [dataVolume("pvc-1", { labels: TENANT1_LABELS }), ["tenant1"]],
      [dataVolume("pvc-1", { labels: { ...TENANT2_LABELS, "csi-driver/cluster": "none" } }), []],
    ] as const) {
      const [v] = evaluateDataVolume(facts(after), { requester: ADMIN, old: facts(before) }, s).filter(x => x.rule === "tenantBinding");
      expect(v).toMatchObject({ rule: "tenantBinding", effect: "deny", serviceAccount: ADMIN });
      expect(v.rule === "tenantBinding" && v.movedFrom?.map(t => t.name)).toEqual(["tenant2"]);
      expect(v.rule === "tenantBinding" && v.labelledFor.map(t => t.name)).toEqual(to);
    }
    const d = decideAdmission(update(before, dataVolume("pvc-1", { labels: TENANT1_LABELS }), TENANT1_SA), s);
    expect(d.allowed).toBe(false);
    expect(d.message).toContain(`moves the DataVolume from tenant "tenant2" (csi-driver/cluster=tenant2) to "tenant1"`);
    expect(d.message).toContain("datavolumePolicy.tenants[].serviceAccounts");
  });

  it("admits a move by a requester bound to every tenant involved, and updates that keep the tenant", () => {
    // The config schema gives each service account one tenant; the settings model allows more, and the rule uses it.
    const mover = "system:serviceaccount:ops:mover";
    const tenant1: Tenant = { name: "tenant1", labels: TENANT1_LABELS, serviceAccounts: [mover] };
    const tenant2: Tenant = { name: "tenant2", labels: TENANT2_LABELS, serviceAccounts: [mover] };
    const both = buildPolicySettings({ ...baseInput, tenants: [tenant1, tenant2] });
    const onlyOne = buildPolicySettings({ ...baseInput, tenants: [tenant1, { ...tenant2, serviceAccounts: [] }] });
    const moved = dataVolume("pvc-1", { labels: TENANT1_LABELS });
    expect(decideAdmission(update(before, moved, mover), both)).toMatchObject({ allowed: true, violations: [] });
    expect(decideAdmission(update(before, moved, mover), onlyOne).allowed).toBe(false);
    expect(decideAdmission(update(before, dataVolume("pvc-1", { labels: { ...TENANT2_LABELS, extra: "x" } })), s).allowed).toBe(true);
  });
});

describe("an admission pod without configuration", () => {
  it("denies CREATE and UPDATE with a message saying the policy is starting, except the module's own writes", () => {
    const d = decideWithoutConfig(create(dataVolume("pvc-1", { labels: TENANT1_LABELS })));
    expect(d.allowed).toBe(false);
    expect(d.message).toContain("DataVolume policy is starting");
    expect(decideWithoutConfig(update(dataVolume("pvc-1"), dataVolume("pvc-1"))).allowed).toBe(false);
    expect(decideWithoutConfig(create(dataVolume("vm-1-cd"), MODULE_WATCHER)).allowed).toBe(true);
    expect(decideWithoutConfig({ operation: "DELETE", namespace: NS, object: null }).allowed).toBe(true);
  });
});

describe("storage class rules (the driver's infraStorageClassEnforcement)", () => {
  const list = (extra: Record<string, unknown>) =>
    settingsFor({ storageClassEnforcement: { allowAll: false, allowDefault: true, allowList: ["fast"], ...extra } });

  it("allowAll admits any class, including none", () => {
    const s = settingsFor();
    for (const name of [undefined, "", "anything"]) expect(storageClassAllowed(name, s)).toBe(true);
  });

  it("allowDefault admits an absent class; allowList admits listed ones; others and \"\" are denied", () => {
    const s: DataVolumePolicySettings = list({});
    expect(storageClassAllowed(undefined, s)).toBe(true);
    expect(storageClassAllowed("fast", s)).toBe(true);
    expect(storageClassAllowed("slow", s)).toBe(false);
    expect(storageClassAllowed("", s)).toBe(false);
    expect(storageClassAllowed(undefined, list({ allowDefault: false }))).toBe(false);
  });

  it("denies a disallowed class with the field, the allowed classes and the config key", () => {
    const d = decideAdmission(create(dataVolume("pvc-1", { labels: TENANT1_LABELS, storageClassName: "slow" })), list({}));
    expect(d.allowed).toBe(false);
    expect(d.message).toContain(`storage class "slow" (spec.storage.storageClassName) is not allowed`);
    expect(d.message).toContain(`allowed: no storageClassName (the default class), "fast"`);
    expect(d.message).toContain("datavolumePolicy.storageClassEnforcement.allowList");
  });

  it("keeps a long allow list readable: the default first, then a few classes and a count", () => {
    const many = list({ allowList: ["a", "b", "c", "d", "e", "f", "g"] });
    const d = decideAdmission(create(dataVolume("pvc-1", { labels: TENANT1_LABELS, storageClassName: "slow" })), many);
    expect(d.message).toContain(`allowed: no storageClassName (the default class), "a", "b", "c", "d" and 3 more`);
  });

  it("denies the default class when allowDefault is false", () => {
    const d = decideAdmission(create(dataVolume("pvc-1", { labels: TENANT1_LABELS })), list({ allowDefault: false }));
    expect(d.allowed).toBe(false);
    expect(d.message).toContain("the infra cluster's default class), which is not allowed (allowDefault=false)");
  });

  it("checks spec.pvc.storageClassName too", () => {
    const d = decideAdmission(
      create(dataVolume("pvc-1", { labels: TENANT1_LABELS, storageClassName: "slow", section: "pvc" })),
      list({}),
    );
    expect(d.message).toContain("(spec.pvc.storageClassName)");
  });

  it("only warns on an UPDATE that keeps a class the object already had", () => {
    const dv = dataVolume("pvc-1", { labels: TENANT1_LABELS, storageClassName: "slow" });
    const d = decideAdmission(update(dv, dv), list({}));
    expect(d).toMatchObject({ allowed: true, violations: [{ rule: "storageClass", origin: "pre-existing", effect: "warn" }] });
  });
});

describe("modes", () => {
  it("warn admits with one warning per violation", () => {
    const s = settingsFor({ mode: "warn", storageClassEnforcement: { allowAll: false, allowDefault: false } });
    const d = decideAdmission(create(dataVolume("pvc-1")), s);
    expect(d.allowed).toBe(true);
    expect(d.warnings).toHaveLength(2);
    expect(d.warnings[0]).toContain("[requiredLabels, mode warn]");
    expect(d.warnings[0]).toContain("csi-driver/cluster");
    expect(d.warnings[1]).toContain("[storageClass, mode warn]");
  });

  it("audit admits without warnings and reports the violations", () => {
    const d = decideAdmission(create(dataVolume("pvc-1")), settingsFor({ mode: "audit" }));
    expect(d).toMatchObject({ allowed: true, warnings: [], violations: [{ rule: "requiredLabels", effect: "report" }] });
  });

  it("modes are per rule set: a warn rule does not deny while an enforce rule does", () => {
    const s = settingsFor({
      requiredLabels: { mode: "warn" },
      storageClassEnforcement: { mode: "enforce", allowAll: false, allowDefault: false },
    });
    const d = decideAdmission(create(dataVolume("pvc-1")), s);
    expect(d.allowed).toBe(false);
    expect(d.message).toContain("[storageClass, mode enforce]");
    expect(d.message).not.toContain("[requiredLabels");
    expect(d.warnings).toHaveLength(1);
    expect(d.warnings[0]).toContain("[requiredLabels, mode warn]");
  });
});

describe("admission decision edges", () => {
  const s = settingsFor();

  it("admits everything while the policy is inert", () => {
    expect(decideAdmission(create(dataVolume("pvc-1")), undefined)).toMatchObject({ allowed: true, warnings: [] });
  });

  it("admits VM root disks without labels in the policed namespace", () => {
    expect(decideAdmission(create(dataVolume("vm-1-rootdisk")), s)).toMatchObject({ allowed: true, violations: [] });
  });

  it("ignores other operations and other namespaces, even malformed objects there", () => {
    expect(decideAdmission({ ...create(dataVolume("pvc-1")), operation: "DELETE" }, s).allowed).toBe(true);
    expect(decideAdmission({ operation: "CREATE", namespace: "elsewhere", object: "garbage" }, s).allowed).toBe(true);
  });

  it("fails closed on an unreadable object when a rule set enforces, open (with a warning) otherwise", () => {
    const bad = { metadata: { name: "pvc-1", namespace: NS, labels: { a: 1 } } };
    const enforce = decideAdmission(create(bad), s);
    expect(enforce.allowed).toBe(false);
    expect(enforce.failure).toContain("metadata.labels.a");
    expect(enforce.message).toContain("fail closed");
    const warn = decideAdmission(create(bad), settingsFor({ mode: "warn" }));
    expect(warn.allowed).toBe(true);
    expect(warn.warnings[0]).toContain("fail open");
  });

  it("never throws: an object that explodes when read is answered per mode", () => {
    const exploding = new Proxy(
      {},
      {
        get() {
          throw new Error("boom");
        },
      },
    );
    const enforce = decideAdmission(create(exploding), s);
    expect(enforce).toMatchObject({ allowed: false, failure: "boom" });
    expect(decideAdmission(create(exploding), settingsFor({ mode: "audit" }))).toMatchObject({ allowed: true, failure: "boom" });
  });

  it("judges an UPDATE like a CREATE when the stored object cannot be read", () => {
    const d = decideAdmission(update("garbage", dataVolume("pvc-1")), s);
    expect(d).toMatchObject({ allowed: false, violations: [{ rule: "requiredLabels", origin: "new" }] });
  });
});

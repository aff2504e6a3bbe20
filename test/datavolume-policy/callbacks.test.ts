// The datavolume-policy's Validate binding reached through Pepr: real AdmissionRequests wrapped by
// PeprValidateRequest, the configuration fed through the config runtime exactly as admission pods get it
// (a Store value published by the watcher).
import { PeprValidateRequest } from "pepr";
import { describe, expect, it } from "vitest";
import { encodePublishedConfig } from "../../capabilities/config/publish";
import { applyPublishedConfig } from "../../capabilities/config/runtime";
import { moduleConfigSchema } from "../../capabilities/config/schema";
import { DataVolumePolicy } from "../../capabilities/datavolume-policy";
import { ADMIN, configDoc, dataVolume, MODULE_WATCHER, NS, TENANT1_LABELS, TENANT1_SA, TENANT2_LABELS, TENANT2_SA, TWO_TENANTS } from "./policy-helpers";

type AdmissionRequest = ConstructorParameters<typeof PeprValidateRequest>[0];

let requestCounter = 0;
function admissionRequest(
  operation: "CREATE" | "UPDATE",
  object: Record<string, unknown>,
  opts: { oldObject?: Record<string, unknown>; username?: string } = {},
): AdmissionRequest {
  const metadata = object.metadata as { name?: string; namespace?: string };
  return {
    uid: `req-${++requestCounter}`,
    kind: { group: "cdi.kubevirt.io", version: "v1beta1", kind: "DataVolume" },
    resource: { group: "cdi.kubevirt.io", version: "v1beta1", resource: "datavolumes" },
    requestKind: { group: "cdi.kubevirt.io", version: "v1beta1", kind: "DataVolume" },
    name: metadata.name ?? "",
    namespace: metadata.namespace,
    operation,
    userInfo: { username: opts.username ?? ADMIN, groups: ["system:authenticated"] },
    object,
    oldObject: opts.oldObject,
    dryRun: false,
  } as unknown as AdmissionRequest;
}

const validateBindings = DataVolumePolicy.bindings.filter(b => b.isValidate && b.validateCallback);

async function validate(request: AdmissionRequest) {
  expect(validateBindings).toHaveLength(1);
  return validateBindings[0].validateCallback!(new PeprValidateRequest(request));
}

let configVersion = 0;
function useConfig(doc: Record<string, unknown>): void {
  const outcome = applyPublishedConfig(encodePublishedConfig(moduleConfigSchema.parse(doc), String(++configVersion)));
  // "unchanged": the same config (same hash) is already in force.
  expect(["applied", "unchanged"]).toContain(outcome.status);
}

describe("datavolume-policy Validate binding", () => {
  it("binds DataVolume CREATE and UPDATE of cdi.kubevirt.io/v1beta1", () => {
    expect(validateBindings[0].kind).toMatchObject({ group: "cdi.kubevirt.io", version: "v1beta1", kind: "DataVolume" });
    expect(validateBindings[0].event).toBe("CREATEORUPDATE");
  });

  it("denies while no configuration is in force, saying the policy is starting; the module's own writes pass", async () => {
    const result = await validate(admissionRequest("CREATE", dataVolume("pvc-1", { labels: TENANT1_LABELS })));
    expect(result.allowed).toBe(false);
    expect(result.statusMessage).toContain("DataVolume policy is starting");
    expect(result.statusMessage).toContain(`${NS}/pvc-1`);
    const update = await validate(admissionRequest("UPDATE", dataVolume("pvc-1"), { oldObject: dataVolume("pvc-1") }));
    expect(update.allowed).toBe(false);
    expect(await validate(admissionRequest("CREATE", dataVolume("vm-1-cd-abc12"), { username: MODULE_WATCHER }))).toMatchObject({ allowed: true });
  });

  it("enforces the demo policy: labels required on CSI volumes only", async () => {
    useConfig(configDoc());
    expect(await validate(admissionRequest("CREATE", dataVolume("pvc-ok", { labels: TENANT1_LABELS })))).toEqual({
      allowed: true,
      warnings: undefined,
    });

    const denied = await validate(admissionRequest("CREATE", dataVolume("pvc-missing")));
    expect(denied.allowed).toBe(false);
    expect(denied.statusMessage).toContain(`DataVolume ${NS}/pvc-missing`);
    expect(denied.statusMessage).toContain(`label csi-driver/cluster is missing (expected "tenant1")`);

    expect(await validate(admissionRequest("CREATE", dataVolume("vm-1-rootdisk")))).toMatchObject({ allowed: true });
    expect(await validate(admissionRequest("CREATE", dataVolume("pvc-elsewhere", { namespace: "tenant2-vms" })))).toMatchObject({
      allowed: true,
    });
  });

  it("denies removing a required label on UPDATE", async () => {
    useConfig(configDoc());
    const before = dataVolume("pvc-1", { labels: TENANT1_LABELS });
    const result = await validate(admissionRequest("UPDATE", dataVolume("pvc-1"), { oldObject: before }));
    expect(result.allowed).toBe(false);
    expect(result.statusMessage).toContain("this update removes or changes required labels");
  });

  it("warn mode admits with admission warnings (hot-reloaded from the config)", async () => {
    useConfig(configDoc({ mode: "warn" }));
    const result = await validate(admissionRequest("CREATE", dataVolume("pvc-warn")));
    expect(result.allowed).toBe(true);
    expect(result.warnings).toHaveLength(1);
    expect(result.warnings![0]).toContain("[requiredLabels, mode warn] label csi-driver/cluster is missing");
  });

  it("denies a cross-tenant DataVolume, naming the tenant and the service account", async () => {
    useConfig(configDoc(TWO_TENANTS));
    const result = await validate(admissionRequest("CREATE", dataVolume("pvc-x", { labels: TENANT1_LABELS }), { username: TENANT2_SA }));
    expect(result.allowed).toBe(false);
    expect(result.statusMessage).toContain(TENANT2_SA);
    expect(result.statusMessage).toContain(`labelled for tenant "tenant1"`);
    const own = await validate(admissionRequest("CREATE", dataVolume("pvc-y", { labels: TENANT1_LABELS }), { username: TENANT1_SA }));
    expect(own.allowed).toBe(true);
  });

  it("denies a disallowed storage class", async () => {
    useConfig(configDoc({ storageClassEnforcement: { allowAll: false, allowDefault: false, allowList: ["fast"] } }));
    const result = await validate(admissionRequest("CREATE", dataVolume("pvc-sc", { labels: TENANT1_LABELS, storageClassName: "slow" })));
    expect(result.allowed).toBe(false);
    expect(result.statusMessage).toContain(`storage class "slow" (spec.storage.storageClassName) is not allowed; allowed: "fast"`);
    const fast = await validate(admissionRequest("CREATE", dataVolume("pvc-sc2", { labels: TENANT1_LABELS, storageClassName: "fast" })));
    expect(fast.allowed).toBe(true);
  });

  it("answers a malformed object with a clear denial in enforce mode instead of throwing", async () => {
    useConfig(configDoc());
    const result = await validate(
      admissionRequest("CREATE", { apiVersion: "cdi.kubevirt.io/v1beta1", kind: "DataVolume", metadata: { name: "pvc-bad", namespace: NS, labels: ["x"] } }),
    );
    expect(result.allowed).toBe(false);
    expect(result.statusMessage).toContain("could not evaluate DataVolume tenant1-vms/pvc-bad");
  });

  it("exempts the module's DataVolumes by requester, not by the managed-by label (issue #12 (4))", async () => {
    useConfig(configDoc(TWO_TENANTS));
    const managedBy = { "app.kubernetes.io/managed-by": "kubevirt-infra" };
    // pvc-c with only the label, created by a cluster user: judged like any CSI volume.
    const labelOnly = await validate(admissionRequest("CREATE", dataVolume("pvc-c", { labels: managedBy })));
    expect(labelOnly.allowed).toBe(false);
    expect(labelOnly.statusMessage).toContain("label csi-driver/cluster is missing");
    // A patch that removes the tenant label while adding the managed-by label.
    const before = dataVolume("pvc-d", { labels: TENANT2_LABELS });
    const swap = await validate(admissionRequest("UPDATE", dataVolume("pvc-d", { labels: managedBy }), { oldObject: before }));
    expect(swap.allowed).toBe(false);
    // The watcher's own ServiceAccount creates its ISO DataVolumes, label or not.
    expect(await validate(admissionRequest("CREATE", dataVolume("pvc-iso", { labels: managedBy }), { username: MODULE_WATCHER }))).toMatchObject({
      allowed: true,
    });
  });

  it("denies moving a DataVolume from tenant2's labels to tenant1's unless the requester is allowed for both", async () => {
    useConfig(configDoc(TWO_TENANTS));
    const before = dataVolume("pvc-m", { labels: TENANT2_LABELS });
    const after = dataVolume("pvc-m", { labels: TENANT1_LABELS });
    for (const username of [ADMIN, "system:serviceaccount:cdi:cdi-sa", TENANT1_SA, TENANT2_SA]) {
      const result = await validate(admissionRequest("UPDATE", after, { oldObject: before, username }));
      expect(result.allowed, username).toBe(false);
      expect(result.statusMessage).toContain(`moves the DataVolume from tenant "tenant2"`);
    }
    // An update that keeps the tenant (CDI adding an annotation) is not a move.
    const annotated = { ...before, metadata: { ...(before.metadata as object), annotations: { "cdi.kubevirt.io/storage.pod.phase": "Succeeded" } } };
    expect((await validate(admissionRequest("UPDATE", annotated, { oldObject: before, username: "system:serviceaccount:cdi:cdi-sa" }))).allowed).toBe(true);
  });

  it("becomes inert again when the policy is disabled", async () => {
    useConfig(configDoc({ enabled: false }));
    expect(await validate(admissionRequest("CREATE", dataVolume("pvc-missing")))).toMatchObject({ allowed: true });
  });
});

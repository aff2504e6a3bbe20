// The pieces the RBAC generation and its test stand on: request → authorizer attributes (as kube-apiserver
// derives them), grants → rules (and the rules' description, for names and switches from the values), Watch
// bindings → grants.
import { describe, expect, it } from "vitest";
import { hasWildcard, permissionsOf, renderRules, watchGrants, type Grant } from "../../scripts/deploy/rbac";
import { rbacTemplates } from "../../scripts/deploy/rbac-objects";
import { requestAttributes } from "../../scripts/deploy/request-attributes";
import { evaluateTemplate, type Values } from "../../scripts/deploy/template";

describe("requestAttributes", () => {
  const one = (method: string, url: string, contentType?: string) => requestAttributes(method, url, contentType)?.map(a => ({ ...a }));

  it.each([
    ["GET", "/api/v1/nodes", { verb: "list", group: "", resource: "nodes", subresource: "", namespace: "", name: "" }],
    ["GET", "/api/v1/nodes?watch=true&resourceVersion=5", { verb: "watch", group: "", resource: "nodes", subresource: "", namespace: "", name: "" }],
    ["GET", "/api/v1/namespaces/pepr-system/secrets/users", { verb: "get", group: "", resource: "secrets", subresource: "", namespace: "pepr-system", name: "users" }],
    [
      "GET",
      "/api/v1/configmaps?fieldSelector=metadata.name%3Dkubevirt-infra-config",
      { verb: "list", group: "", resource: "configmaps", subresource: "", namespace: "", name: "kubevirt-infra-config" },
    ],
    [
      "PUT",
      "/apis/subresources.kubevirt.io/v1/namespaces/vms/virtualmachines/vm-1/start",
      { verb: "update", group: "subresources.kubevirt.io", resource: "virtualmachines", subresource: "start", namespace: "vms", name: "vm-1" },
    ],
    ["POST", "/apis/cdi.kubevirt.io/v1beta1/namespaces/vms/datavolumes", { verb: "create", group: "cdi.kubevirt.io", resource: "datavolumes", subresource: "", namespace: "vms", name: "" }],
    ["DELETE", "/apis/cdi.kubevirt.io/v1beta1/namespaces/vms/datavolumes", { verb: "deletecollection", group: "cdi.kubevirt.io", resource: "datavolumes", subresource: "", namespace: "vms", name: "" }],
    ["PATCH", "/api/v1/nodes/worker-0/status", { verb: "patch", group: "", resource: "nodes", subresource: "status", namespace: "", name: "worker-0" }],
    ["GET", "/api/v1/namespaces/pepr-system", { verb: "get", group: "", resource: "namespaces", subresource: "", namespace: "pepr-system", name: "pepr-system" }],
  ])("%s %s", (method, url, expected) => {
    expect(one(method, url)).toEqual([expected]);
  });

  it("treats server-side apply as patch and create (by name)", () => {
    expect(one("PATCH", "/api/v1/namespaces/pepr-system/configmaps/audit?fieldManager=pepr", "application/apply-patch+yaml; charset=utf-8")?.map(a => a.verb)).toEqual([
      "patch",
      "create",
    ]);
    expect(one("PATCH", "/api/v1/namespaces/pepr-system/configmaps/audit", "application/json-patch+json")?.map(a => a.verb)).toEqual(["patch"]);
  });

  it("ignores non-resource and discovery paths", () => {
    for (const url of ["/version", "/openapi/v2", "/api", "/api/v1", "/apis/kubevirt.io/v1", "/healthz"]) expect(one("GET", url), url).toBeUndefined();
  });
});

describe("renderRules", () => {
  const g = (over: Partial<Grant>): Grant => ({ group: "", resource: "configmaps", verbs: ["get"], scope: "module", role: "any", why: "test", ...over });

  it("merges verbs per resource and names, in a fixed verb order", () => {
    expect(renderRules([g({ verbs: ["watch"] }), g({ verbs: ["list", "get"] })])).toEqual([{ apiGroups: [""], resources: ["configmaps"], verbs: ["get", "list", "watch"] }]);
  });

  it("drops a rule another rule covers, and keeps narrower names apart", () => {
    const rules = renderRules([g({ verbs: ["get", "patch"], resourceNames: ["a", "b"] }), g({ verbs: ["patch"], resourceNames: ["a"] }), g({ verbs: ["create"], resourceNames: ["c"] })]);
    expect(rules).toEqual([
      { apiGroups: [""], resources: ["configmaps"], resourceNames: ["a", "b"], verbs: ["get", "patch"] },
      { apiGroups: [""], resources: ["configmaps"], resourceNames: ["c"], verbs: ["create"] },
    ]);
  });

  it("leaves names and switches from the values to the rules' description", () => {
    expect(() => renderRules([g({ resource: "secrets", resourceNamesFrom: [{ path: ["infra", "kubeconfigSecret", "name"] }] })])).toThrow("depends on the values");
    expect(() => renderRules([g({ enabledBy: { path: ["redfish", "kubernetesIdentities", "enabled"] } })])).toThrow("depends on the values");
  });

  it("expands to permissions where an unnamed grant subsumes named ones", () => {
    const perms = permissionsOf([
      { apiGroups: [""], resources: ["nodes"], verbs: ["patch"], resourceNames: ["worker-0"] },
      { apiGroups: [""], resources: ["nodes"], verbs: ["patch", "list"] },
    ]);
    expect([...perms].sort()).toEqual(["core/nodes:list@*", "core/nodes:patch@*"]);
  });

  it("spots wildcards", () => {
    expect(hasWildcard({ apiGroups: ["*"], resources: ["pods"], verbs: ["get"] })).toBe(true);
    expect(hasWildcard({ apiGroups: [""], resources: ["pods"], verbs: ["get"] })).toBe(false);
  });
});

describe("rbacTemplates", () => {
  const g = (over: Partial<Grant>): Grant => ({ group: "", resource: "secrets", verbs: ["get"], scope: "module", role: "any", why: "test", ...over });
  /** The rules of the watcher's Role in pepr-system for these grants and values. */
  const watcherModuleRules = (grants: Grant[], values: Values) =>
    rbacTemplates(grants)
      .flatMap(({ template }) => evaluateTemplate(template, { uuid: "pepr-test", ...values }))
      .find(o => o.kind === "Role" && (o.metadata as { namespace?: string }).namespace === "pepr-system" && (o.metadata as { name: string }).name === "pepr-test-watcher")?.rules;

  it("takes names from the values, and drops the rule while none is set", () => {
    const fromValues = [g({ resourceNamesFrom: [{ path: ["infra", "kubeconfigSecret", "name"] }, { path: ["redfish", "tls", "secretName"] }] }), g({ resource: "configmaps" })];
    expect(watcherModuleRules(fromValues, { infra: { kubeconfigSecret: { name: "infra-kc" } }, redfish: { tls: { secretName: "a-tls" } } })).toEqual([
      { apiGroups: [""], resources: ["configmaps"], verbs: ["get"] },
      { apiGroups: [""], resources: ["secrets"], resourceNames: ["a-tls", "infra-kc"], verbs: ["get"] },
    ]);
    expect(watcherModuleRules(fromValues, { infra: {} })).toEqual([{ apiGroups: [""], resources: ["configmaps"], verbs: ["get"] }]);
  });

  it("keeps a role's and a switch's rules behind their condition, and renders no Role when none can hold", () => {
    const grants = [
      g({ resource: "configmaps", role: "nested" }),
      g({ resource: "configmaps", verbs: ["list"], role: "infra", enabledBy: { path: ["feature", "enabled"] } }),
    ];
    expect(watcherModuleRules(grants, { role: "nested", feature: { enabled: true } })).toEqual([{ apiGroups: [""], resources: ["configmaps"], verbs: ["get"] }]);
    expect(watcherModuleRules(grants, { role: "both", feature: { enabled: true } })).toEqual([
      { apiGroups: [""], resources: ["configmaps"], verbs: ["get"] },
      { apiGroups: [""], resources: ["configmaps"], verbs: ["list"] },
    ]);
    expect(watcherModuleRules(grants, { role: "infra", feature: { enabled: false } })).toBeUndefined();
  });
});

describe("watchGrants", () => {
  it("gives list and watch per watched kind, limited by a name filter, unlimited when any binding has none", () => {
    const grants = watchGrants([
      {
        name: "config",
        bindings: [
          { kind: { group: "", version: "v1", kind: "ConfigMap" }, isWatch: true, filters: { name: "kubevirt-infra-config" } },
          { kind: { group: "", version: "v1", kind: "Secret" }, isWatch: true, filters: { name: "users" } },
          { kind: { group: "", version: "v1", kind: "Secret" }, isWatch: true, filters: { name: "" } },
          { kind: { group: "", version: "v1", kind: "Node" }, filters: {} },
        ],
      },
      { name: "redfish", bindings: [{ kind: { group: "kubevirt.io", version: "v1", kind: "VirtualMachine", plural: "virtualmachines" }, isWatch: true }] },
    ]);
    expect(renderRules(grants)).toEqual([
      { apiGroups: [""], resources: ["configmaps"], resourceNames: ["kubevirt-infra-config"], verbs: ["list", "watch"] },
      { apiGroups: [""], resources: ["secrets"], verbs: ["list", "watch"] },
      { apiGroups: ["kubevirt.io"], resources: ["virtualmachines"], verbs: ["list", "watch"] },
    ]);
  });
});

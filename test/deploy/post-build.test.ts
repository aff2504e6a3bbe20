// The post-build step on a real `pepr build` output: every generated object is checked against its kind,
// cross-references between objects resolve, the role switch and failure policies follow the values, the
// config objects load with the module's own loader, and the step is idempotent and fails loudly.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { z } from "zod";
import { loadConfig } from "../../capabilities/config/load";
import { parseManifest, postBuild } from "../../scripts/post-build";
import { loadBuiltCapabilities } from "../../scripts/deploy/capabilities";
import { hasWildcard, permissionsOf, type PolicyRule } from "../../scripts/deploy/rbac";
import type { KubeObject } from "../../scripts/deploy/manifest";
import { build, copyDist, fullValues, NAME, REPO, removeDir, TEST_PASSWORD, UUID, writeValues, type Built } from "./helpers";

// ---- what each kind must look like -------------------------------------------------------------------

const name = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
const meta = (namespaced: boolean) =>
  z.object({ name, ...(namespaced ? { namespace: z.literal("pepr-system") } : {}), labels: z.record(z.string(), z.string()).optional() });
/** Roles and RoleBindings also live in the chassis namespaces (the watcher's rights on VMs there). */
const roleMeta = z.object({ name, namespace: name, labels: z.record(z.string(), z.string()).optional() });
const rule = z.strictObject({
  apiGroups: z.array(z.string()).min(1),
  resources: z.array(z.string()).min(1),
  resourceNames: z.array(z.string()).min(1).optional(),
  verbs: z.array(z.enum(["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"])).min(1),
});
const subject = z.strictObject({ kind: z.literal("ServiceAccount"), name, namespace: z.literal("pepr-system") });
const roleRef = z.strictObject({ apiGroup: z.literal("rbac.authorization.k8s.io"), kind: z.enum(["Role", "ClusterRole"]), name: z.string() });
const webhook = z.object({
  admissionReviewVersions: z.array(z.string()).nonempty(),
  clientConfig: z.object({ caBundle: z.string().min(100), service: z.object({ name: z.literal(NAME), namespace: z.literal("pepr-system"), path: z.string() }) }),
  failurePolicy: z.enum(["Fail", "Ignore"]),
  name: z.string(),
  rules: z.array(z.object({ apiGroups: z.array(z.string()), apiVersions: z.array(z.string()), operations: z.array(z.string()), resources: z.array(z.string()) })).nonempty(),
  sideEffects: z.literal("None"),
  namespaceSelector: z.object({ matchExpressions: z.array(z.object({ key: z.string(), operator: z.enum(["In", "NotIn"]), values: z.array(z.string()).nonempty() })) }),
  timeoutSeconds: z.number().int().min(1).max(30),
});
const container = z.object({
  name: z.string(),
  image: z.string().regex(/^ghcr\.io\/defenseunicorns\/pepr\/controller:v1\.1\.4$/),
  env: z.array(z.object({ name: z.string(), value: z.string() })),
  securityContext: z.object({
    runAsNonRoot: z.literal(true),
    allowPrivilegeEscalation: z.literal(false),
    capabilities: z.object({ drop: z.tuple([z.literal("ALL")]) }),
  }),
  readinessProbe: z.object({ httpGet: z.object({ path: z.string(), port: z.number().int(), scheme: z.enum(["HTTP", "HTTPS"]) }) }),
  livenessProbe: z.object({ httpGet: z.object({ path: z.literal("/healthz"), port: z.literal(3000) }) }),
});
const deployment = z.object({
  apiVersion: z.literal("apps/v1"),
  metadata: meta(true),
  spec: z.object({
    replicas: z.number().int().min(1),
    selector: z.object({ matchLabels: z.record(z.string(), z.string()) }),
    template: z.object({
      metadata: z.object({ labels: z.record(z.string(), z.string()) }),
      spec: z.object({
        serviceAccountName: z.enum([NAME, `${NAME}-watcher`]),
        securityContext: z.object({ runAsNonRoot: z.literal(true), seccompProfile: z.object({ type: z.literal("RuntimeDefault") }) }),
        containers: z.tuple([container]),
        volumes: z.array(z.object({ name: z.string(), secret: z.object({ secretName: z.string() }) })),
      }),
    }),
  }),
});

const KINDS: Record<string, z.ZodType> = {
  Namespace: z.object({ apiVersion: z.literal("v1"), metadata: z.object({ name: z.literal("pepr-system") }) }),
  ClusterRole: z.object({ apiVersion: z.literal("rbac.authorization.k8s.io/v1"), metadata: meta(false), rules: z.array(rule).nonempty() }),
  ClusterRoleBinding: z.object({ apiVersion: z.literal("rbac.authorization.k8s.io/v1"), metadata: meta(false), roleRef, subjects: z.array(subject).nonempty() }),
  Role: z.object({ apiVersion: z.literal("rbac.authorization.k8s.io/v1"), metadata: roleMeta, rules: z.array(rule).nonempty() }),
  RoleBinding: z.object({ apiVersion: z.literal("rbac.authorization.k8s.io/v1"), metadata: roleMeta, roleRef, subjects: z.array(subject).nonempty() }),
  ServiceAccount: z.object({ apiVersion: z.literal("v1"), metadata: meta(true) }),
  Secret: z.union([
    z.object({ apiVersion: z.literal("v1"), metadata: meta(true), type: z.enum(["Opaque", "kubernetes.io/tls"]), data: z.record(z.string(), z.string().regex(/^[A-Za-z0-9+/=]+$/)) }),
    z.object({ apiVersion: z.literal("v1"), metadata: meta(true), type: z.literal("Opaque"), stringData: z.record(z.string(), z.string()) }),
  ]),
  ConfigMap: z.object({ apiVersion: z.literal("v1"), metadata: meta(true), data: z.record(z.string(), z.string()) }),
  Deployment: deployment,
  Service: z.object({
    apiVersion: z.literal("v1"),
    metadata: meta(true),
    spec: z.object({
      selector: z.record(z.string(), z.string()),
      ports: z.array(z.object({ port: z.number().int(), targetPort: z.number().int() })).nonempty(),
      type: z.enum(["ClusterIP", "NodePort", "LoadBalancer"]).optional(),
    }),
  }),
  Route: z.object({
    apiVersion: z.literal("route.openshift.io/v1"),
    metadata: meta(true),
    spec: z.object({
      to: z.object({ kind: z.literal("Service"), name: z.string() }),
      port: z.object({ targetPort: z.enum(["https", "http"]) }),
      tls: z.object({ termination: z.enum(["edge", "reencrypt"]), insecureEdgeTerminationPolicy: z.enum(["Redirect", "None"]) }),
    }),
  }),
  NetworkPolicy: z.object({
    apiVersion: z.literal("networking.k8s.io/v1"),
    metadata: roleMeta,
    spec: z.strictObject({
      podSelector: z.object({ matchLabels: z.record(z.string(), z.string()) }),
      policyTypes: z.tuple([z.literal("Egress")]),
      egress: z.array(z.record(z.string(), z.unknown())).nonempty(),
    }),
  }),
  MutatingWebhookConfiguration: z.object({ apiVersion: z.literal("admissionregistration.k8s.io/v1"), metadata: meta(false), webhooks: z.tuple([webhook]) }),
  ValidatingWebhookConfiguration: z.object({ apiVersion: z.literal("admissionregistration.k8s.io/v1"), metadata: meta(false), webhooks: z.tuple([webhook]) }),
};

/** Every object has a known kind and its fields; references between objects resolve. */
function validateManifest(b: Built): void {
  for (const obj of b.objects) {
    const schema = KINDS[obj.kind];
    expect(schema, `unexpected kind ${obj.kind} (${obj.metadata.name})`).toBeDefined();
    const parsed = schema.safeParse(obj);
    expect(parsed.success, `${obj.kind}/${obj.metadata.name}: ${parsed.error?.message}`).toBe(true);
  }
  const keys = b.objects.map(o => `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`);
  expect(new Set(keys).size, "duplicate objects").toBe(keys.length);
  for (const binding of b.objects.filter(o => o.kind === "RoleBinding" || o.kind === "ClusterRoleBinding")) {
    const ref = binding.roleRef as { kind: string; name: string };
    const target = b.objects.find(o => o.kind === ref.kind && o.metadata.name === ref.name && (ref.kind === "ClusterRole" || o.metadata.namespace === binding.metadata.namespace));
    if (!ref.name.startsWith("system:")) expect(target, `${binding.metadata.name} → ${ref.kind} ${ref.name}`).toBeDefined();
    for (const s of binding.subjects as { name: string }[]) expect(b.find("ServiceAccount", s.name), `${binding.metadata.name} → SA ${s.name}`).toBeDefined();
  }
  for (const dep of b.objects.filter(o => o.kind === "Deployment")) {
    const spec = (dep.spec as any).template.spec;
    for (const v of spec.volumes) expect(b.find("Secret", v.secret.secretName), `${dep.metadata.name} volume ${v.name}`).toBeDefined();
    const labels = (dep.spec as any).template.metadata.labels;
    for (const [k, v] of Object.entries((dep.spec as any).selector.matchLabels)) expect(labels[k]).toBe(v);
  }
  for (const svc of b.objects.filter(o => o.kind === "Service")) {
    const selector = (svc.spec as any).selector as Record<string, string>;
    const targets = b.objects.filter(
      o => o.kind === "Deployment" && Object.entries(selector).every(([k, v]) => (o.spec as any).template.metadata.labels[k] === v),
    );
    expect(targets, `Service ${svc.metadata.name} selects no Deployment`).toHaveLength(1);
  }
  for (const cr of b.objects.filter(o => o.kind === "ClusterRole" || o.kind === "Role")) {
    for (const r of cr.rules as PolicyRule[]) expect(hasWildcard(r), `${cr.kind} ${cr.metadata.name}: ${JSON.stringify(r)}`).toBe(false);
  }
}

const rulesOf = (o: KubeObject) => o.rules as PolicyRule[];
const grants = (o: KubeObject, group: string, resource: string) =>
  rulesOf(o)
    .filter(r => r.apiGroups.includes(group) && r.resources.includes(resource))
    .flatMap(r => r.verbs);
const hook = (o: KubeObject | undefined) => (o?.webhooks as any[])[0];
const watcherContainer = (b: Built) => (b.get("Deployment", `${NAME}-watcher`).spec as any).template.spec.containers[0];

function configObjectsLoad(b: Built) {
  const configYaml = (b.get("ConfigMap", "kubevirt-infra-config").data as Record<string, string>)["config.yaml"];
  const usersYaml = (b.get("Secret", "kubevirt-infra-users").stringData as Record<string, string>)["users.yaml"];
  return { configYaml, usersYaml, loaded: loadConfig({ configYaml, usersYaml, env: {} }) };
}

// ---- tests --------------------------------------------------------------------------------------------------

let dist: string;
let defaults: Built;

beforeAll(async () => {
  dist = await copyDist();
  defaults = await build(dist);
});

afterAll(() => removeDir(dist));

describe("the manifest with the default values", () => {
  it("holds every object with its expected kind and fields, and the references resolve", () => {
    validateManifest(defaults);
    const kinds = defaults.objects.map(o => `${o.kind}/${o.metadata.name}`);
    for (const expected of [
      `Deployment/${NAME}`,
      `Deployment/${NAME}-watcher`,
      `MutatingWebhookConfiguration/${NAME}`,
      `ValidatingWebhookConfiguration/${NAME}`,
      "Service/kubevirt-infra-redfish",
      "ConfigMap/kubevirt-infra-config",
      "Secret/kubevirt-infra-users",
      `ClusterRole/${NAME}`,
    ]) {
      expect(kinds).toContain(expected);
    }
  });

  it("has the Node webhook failing open, and the DataVolume webhook failing open while no namespace is policed", () => {
    const mutating = hook(defaults.get("MutatingWebhookConfiguration", NAME));
    expect(mutating.rules).toEqual([{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["nodes"] }]);
    expect(mutating.failurePolicy).toBe("Ignore");
    const validating = hook(defaults.get("ValidatingWebhookConfiguration", NAME));
    expect(validating.rules).toEqual([{ apiGroups: ["cdi.kubevirt.io"], apiVersions: ["v1beta1"], operations: ["CREATE", "UPDATE"], resources: ["datavolumes"] }]);
    expect(validating.failurePolicy).toBe("Ignore");
    expect(validating.namespaceSelector.matchExpressions[0]).toMatchObject({ operator: "NotIn", values: expect.arrayContaining(["kube-system", "pepr-system"]) });
    const extras = parseManifest(fs.readFileSync(path.join(dist, `${UUID}-extras.yaml`), "utf8"), "extras");
    expect(extras.some(o => o.kind === "ValidatingWebhookConfiguration")).toBe(false);
  });

  it("serves Redfish through a Service on the watcher pod's Redfish port", () => {
    const svc = defaults.get("Service", "kubevirt-infra-redfish").spec as any;
    expect(svc.selector).toEqual({ app: `${NAME}-watcher`, "pepr.dev/controller": "watcher" });
    expect(svc.ports).toEqual([{ name: "https", port: 8443, targetPort: 8443, protocol: "TCP" }]);
    // Pepr's watcher readiness stays on its own port while Redfish has no chassis (it does not serve then).
    expect(watcherContainer(defaults).readinessProbe.httpGet.port).toBe(3000);
  });

  it("ships config objects the module loads, inert by default", () => {
    const { loaded } = configObjectsLoad(defaults);
    expect(loaded.ok).toBe(true);
    if (loaded.ok) {
      expect(loaded.config.role).toBe("both");
      expect(loaded.config.chassis).toEqual([]);
      expect(loaded.config.nodeIdentity.enabled).toBe(false);
      expect(loaded.config.datavolumePolicy.enabled).toBe(false);
    }
  });

  it("replaces Pepr's store Role (no object named, unbound ServiceAccount) with a working namespaced Role", () => {
    const role = defaults.get("Role", `${NAME}-store`);
    expect(rulesOf(role)).toContainEqual({
      apiGroups: ["pepr.dev"],
      resources: ["peprstores"],
      resourceNames: [`${NAME}-schedule`, `${NAME}-store`],
      verbs: ["get", "list", "watch", "create", "patch"],
    });
    expect(defaults.get("RoleBinding", `${NAME}-store`).subjects).toEqual([{ kind: "ServiceAccount", name: NAME, namespace: "pepr-system" }]);
    // Pepr's cluster-wide grant on every PeprStore is gone.
    expect(grants(defaults.get("ClusterRole", NAME), "pepr.dev", "peprstores")).toEqual([]);
  });
});

describe("the manifest for a configured install", () => {
  let full: Built;
  let fullDist: string;
  beforeAll(async () => {
    fullDist = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-full-"));
    fs.cpSync(dist, fullDist, { recursive: true });
    full = await build(fullDist, fullValues());
  });
  afterAll(() => removeDir(fullDist));

  it("is valid object by object", () => validateManifest(full));

  it("makes the DataVolume webhook fail closed, scoped to the policed namespace", () => {
    const validating = hook(full.get("ValidatingWebhookConfiguration", NAME));
    expect(validating.rules).toEqual([{ apiGroups: ["cdi.kubevirt.io"], apiVersions: ["v1beta1"], operations: ["CREATE", "UPDATE"], resources: ["datavolumes"] }]);
    expect(validating.failurePolicy).toBe("Fail");
    expect(validating.namespaceSelector).toEqual({ matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["tenant1-vms"] }] });
    expect(hook(full.get("MutatingWebhookConfiguration", NAME)).failurePolicy).toBe("Ignore");
  });

  it("keeps the DataVolume webhook failing closed in warn and audit mode (the mode is hot-reloaded, the webhook is not)", async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-warn-"));
    try {
      fs.cpSync(dist, d, { recursive: true });
      for (const mode of ["warn", "audit"]) {
        const b = await build(d, { ...fullValues(), datavolumePolicy: { enabled: true, mode } });
        expect(hook(b.get("ValidatingWebhookConfiguration", NAME)).failurePolicy, mode).toBe("Fail");
      }
      const optedOut = await build(d, { ...fullValues(), deploy: { dataVolumeWebhook: { failurePolicy: "Ignore" } } });
      expect(hook(optedOut.get("ValidatingWebhookConfiguration", NAME)).failurePolicy).toBe("Ignore");
    } finally {
      removeDir(d);
    }
  });

  it("gives `npx pepr deploy` installs a patch that makes the DataVolume webhook fail closed and scoped", () => {
    const extras = parseManifest(fs.readFileSync(path.join(fullDist, `${UUID}-extras.yaml`), "utf8"), "extras");
    const patch = extras.find(o => o.kind === "ValidatingWebhookConfiguration");
    expect(patch).toEqual({
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingWebhookConfiguration",
      metadata: { name: NAME },
      webhooks: [
        {
          name: `${NAME}.pepr.dev`,
          failurePolicy: "Fail",
          namespaceSelector: { matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: ["tenant1-vms"] }] },
        },
      ],
    });
    // The webhook name is the one Pepr generates, so the merge hits the DataVolume webhook and nothing else.
    expect(hook(full.get("ValidatingWebhookConfiguration", NAME)).name).toBe(`${NAME}.pepr.dev`);
    expect(extras.some(o => o.kind === "MutatingWebhookConfiguration")).toBe(false);
  });

  it("can restrict the importer pods' egress in each chassis namespace to what the image URL policy allows", async () => {
    expect(full.objects.filter(o => o.kind === "NetworkPolicy")).toEqual([]); // an option, off by default
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-netpol-"));
    try {
      fs.cpSync(dist, d, { recursive: true });
      const values = fullValues() as Record<string, any>;
      values.chassis = [...values.chassis, { name: "tenant2", namespace: "tenant2-vms" }];
      values.redfish = { imageUrlPolicy: { serviceCidrs: ["172.30.0.0/16"], denyCidrs: ["203.0.113.7"], allowCidrs: ["10.20.0.0/16", "fd12::5"] } };
      values.deploy = { ...values.deploy, importerNetworkPolicy: { enabled: true } };
      const b = await build(d, values);
      validateManifest(b);
      const policies = b.objects.filter(o => o.kind === "NetworkPolicy");
      expect(policies.map(p => p.metadata.namespace)).toEqual(["tenant1-vms", "tenant2-vms"]);
      const spec = policies[0].spec as any;
      expect(spec.podSelector).toEqual({ matchLabels: { app: "containerized-data-importer" } });
      const [dns, open, allowed] = spec.egress;
      expect(dns).toEqual({ ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] });
      const [v4, v6] = open.to.map((t: any) => t.ipBlock);
      expect(v4.cidr).toBe("0.0.0.0/0");
      expect(v4.except).toEqual(expect.arrayContaining(["127.0.0.0/8", "169.254.0.0/16", "10.0.0.0/8", "100.64.0.0/10", "172.30.0.0/16", "203.0.113.7/32"]));
      expect(v6.cidr).toBe("::/0");
      expect(v6.except).toEqual(expect.arrayContaining(["::1/128", "fe80::/10", "fc00::/7", "::ffff:0:0/96"]));
      expect(allowed).toEqual({ to: [{ ipBlock: { cidr: "10.20.0.0/16" } }, { ipBlock: { cidr: "fd12::5/128" } }] });

      values.redfish = { imageUrlPolicy: { allowAllDestinations: true } };
      const lab = await build(d, values);
      expect((lab.objects.find(o => o.kind === "NetworkPolicy")!.spec as any).egress).toEqual([{}]);
    } finally {
      removeDir(d);
    }
  });

  it("lets the watcher's readiness follow the Redfish cache sync", () => {
    expect(watcherContainer(full).readinessProbe).toEqual({ httpGet: { path: "/healthz", port: 8443, scheme: "HTTPS" }, initialDelaySeconds: 10 });
    expect(watcherContainer(full).livenessProbe.httpGet.port).toBe(3000);
  });

  it("adds the OpenShift Route, service-CA annotation and nonroot-v2 SCC binding", () => {
    const route = full.get("Route", "kubevirt-infra-redfish").spec as any;
    expect(route).toEqual({
      host: "redfish.apps.example.com",
      to: { kind: "Service", name: "kubevirt-infra-redfish", weight: 100 },
      port: { targetPort: "https" },
      tls: { termination: "reencrypt", insecureEdgeTerminationPolicy: "Redirect" },
    });
    expect(full.get("Service", "kubevirt-infra-redfish").metadata.annotations).toEqual({
      "service.beta.openshift.io/serving-cert-secret-name": "kubevirt-infra-redfish-tls",
    });
    expect(full.get("RoleBinding", `${NAME}-nonroot-v2`).roleRef).toEqual({
      apiGroup: "rbac.authorization.k8s.io",
      kind: "ClusterRole",
      name: "system:openshift:scc:nonroot-v2",
    });
  });

  it("puts the users in the Secret only, and the module loads both", () => {
    const { configYaml, usersYaml, loaded } = configObjectsLoad(full);
    expect(configYaml).not.toContain("passwordHash");
    expect(YAML.parse(usersYaml)).toEqual([expect.objectContaining({ username: "admin", chassis: ["tenant1"] })]);
    expect(loaded.ok, loaded.ok ? "" : loaded.errors.join("\n")).toBe(true);
    if (loaded.ok) {
      expect(loaded.config.authentication.users).toHaveLength(1);
      expect(loaded.config.datavolumePolicy.namespaces).toEqual(["tenant1-vms"]);
    }
  });

  it("reads only the Secrets the config names, and no Secret outside pepr-system", () => {
    const watcherRole = full.objects.find(o => o.kind === "Role" && o.metadata.name === `${NAME}-watcher` && o.metadata.namespace === "pepr-system")!;
    for (const secret of ["infra-kubeconfig", "kubevirt-infra-redfish-tls"]) {
      expect(rulesOf(watcherRole)).toContainEqual({ apiGroups: [""], resources: ["secrets"], resourceNames: [secret], verbs: ["get"] });
    }
    // The users Secret through its informer (that one Secret), the event subscriptions' Secret by name; the only
    // unnamed right on Secrets in pepr-system is `create` (server-side apply creates the subscriptions' Secret).
    expect(rulesOf(watcherRole)).toContainEqual({ apiGroups: [""], resources: ["secrets"], resourceNames: ["kubevirt-infra-users"], verbs: ["list", "watch"] });
    expect(rulesOf(watcherRole)).toContainEqual({ apiGroups: [""], resources: ["secrets"], resourceNames: ["kubevirt-infra-event-subscriptions"], verbs: ["get", "patch"] });
    const unnamed = rulesOf(watcherRole).filter(r => r.resources.includes("secrets") && !r.resourceNames);
    expect(unnamed.flatMap(r => r.verbs)).toEqual(["create"]);
    // The admission pods read no Secret at all.
    expect(grants(full.get("Role", `${NAME}-store`), "", "secrets")).toEqual([]);
    expect(grants(full.get("ClusterRole", NAME), "", "secrets")).toEqual([]);
    const clusterWide = [...permissionsOf(rulesOf(full.get("ClusterRole", `${NAME}-watcher`)))].filter(p => p.startsWith("core/secrets:"));
    // No cluster-wide right on Secrets at all; virtual media creates download credentials in the chassis
    // namespaces only. Nothing reads other Secrets.
    expect(clusterWide).toEqual([]);
    const chassisRole = full.objects.find(o => o.kind === "Role" && o.metadata.namespace === "tenant1-vms")!;
    expect(grants(chassisRole, "", "secrets")).toEqual(["create"]);
  });
});

describe("the role switch", () => {
  let roleDist: string;
  beforeAll(() => {
    roleDist = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-role-"));
    fs.cpSync(dist, roleDist, { recursive: true });
  });
  afterAll(() => removeDir(roleDist));

  it("Pepr's Watch bindings are all on core kinds, which every cluster serves: no watcher needs a resync give-up override", async () => {
    const capabilities = await loadBuiltCapabilities(path.join(roleDist, `pepr-${UUID}.js`));
    const watched = capabilities.flatMap(c => c.bindings.filter(b => b.isWatch).map(b => b.kind));
    expect(watched.length).toBeGreaterThan(0);
    expect(watched.filter(kind => kind.group !== "")).toEqual([]);
  });

  it("nested: Node webhook only, no Redfish, node writes but no VM writes", async () => {
    const b = await build(roleDist, { role: "nested", infra: { namespace: "tenant1-vms" }, nodeIdentity: { enabled: true } });
    validateManifest(b);
    expect(b.find("ValidatingWebhookConfiguration", NAME)).toBeUndefined();
    expect(b.find("MutatingWebhookConfiguration", NAME)).toBeDefined();
    expect(b.find("Service", "kubevirt-infra-redfish")).toBeUndefined();
    const cr = b.get("ClusterRole", `${NAME}-watcher`);
    expect(grants(cr, "", "nodes")).toContain("patch");
    expect(grants(cr, "kubevirt.io", "virtualmachines")).not.toContain("patch");
    expect(grants(cr, "subresources.kubevirt.io", "virtualmachines/start")).toEqual([]);
    expect(b.objects.filter(o => o.kind === "Role" && o.metadata.namespace !== "pepr-system")).toEqual([]);
  });

  it("infra: DataVolume webhook only, no Node writes", async () => {
    const b = await build(roleDist, { role: "infra", chassis: [{ name: "c", namespace: "vms" }], infra: { namespace: "vms" }, datavolumePolicy: { enabled: true } });
    validateManifest(b);
    expect(b.find("MutatingWebhookConfiguration", NAME)).toBeUndefined();
    expect(b.find("ValidatingWebhookConfiguration", NAME)).toBeDefined();
    expect(b.find("Service", "kubevirt-infra-redfish")).toBeDefined();
    const cr = b.get("ClusterRole", `${NAME}-watcher`);
    expect(grants(cr, "", "nodes")).not.toContain("patch");
    // Power actions: in the chassis namespace only.
    expect(grants(cr, "subresources.kubevirt.io", "virtualmachines/start")).toEqual([]);
    const chassisRole = b.objects.find(o => o.kind === "Role" && o.metadata.namespace === "vms")!;
    expect(grants(chassisRole, "subresources.kubevirt.io", "virtualmachines/start")).toEqual(["update"]);
  });
});

describe("the post-build step itself", () => {
  const outputs = (d: string) =>
    [`pepr-module-${UUID}.yaml`, `${UUID}-extras.yaml`, `${UUID}-chart/values.yaml`, `${UUID}-chart/values.schema.json`]
      .concat(fs.readdirSync(path.join(d, `${UUID}-chart/templates`)).map(f => `${UUID}-chart/templates/${f}`))
      .map(f => [f, fs.readFileSync(path.join(d, f), "utf8")] as const);

  it("is idempotent, and a re-run with other values gives those values' output", async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-idem-"));
    try {
      fs.cpSync(dist, d, { recursive: true });
      await build(d);
      const first = outputs(d);
      await build(d);
      expect(outputs(d)).toEqual(first);
      await build(d, fullValues());
      expect((await build(d, { role: "infra" })).find("MutatingWebhookConfiguration", NAME)).toBeUndefined();
      await build(d);
      expect(outputs(d)).toEqual(first);
    } finally {
      removeDir(d);
    }
  });

  it("fails loudly (non-zero, with the reason) when pepr build's output is missing", () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-empty-"));
    try {
      const tsx = path.join(REPO, "node_modules/tsx/dist/cli.mjs");
      const run = spawnSync(process.execPath, [tsx, path.join(REPO, "scripts/post-build.ts"), "--dist", empty], { encoding: "utf8", cwd: REPO });
      expect(run.status).not.toBe(0);
      expect(run.stderr).toMatch(/post-build failed: .*pepr-kubevirt-infra\.js is missing/);
    } finally {
      removeDir(empty);
    }
  });

  it("fails when a Pepr template it patches changed shape", async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-shape-"));
    try {
      fs.cpSync(dist, d, { recursive: true });
      for (const base of [d, path.join(d, ".pepr-original")]) {
        const f = path.join(base, `${UUID}-chart/templates/watcher-deployment.yaml`);
        if (fs.existsSync(f)) fs.writeFileSync(f, fs.readFileSync(f, "utf8").replace("readinessProbe:", "readiness:").replaceAll("kubevirt-infra post-build", "x"));
      }
      await expect(postBuild({ dist: d })).rejects.toThrow(/watcher-deployment\.yaml: the text to patch was not found/);
    } finally {
      removeDir(d);
    }
  });

  it("rejects invalid values with every problem named", async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-bad-"));
    try {
      const file = writeValues(d, { role: "tenant", deploy: { route: { termination: "passthrough" } }, chasis: [] });
      await expect(postBuild({ dist, valuesFile: file })).rejects.toThrow(/chasis[\s\S]*deploy\.route\.termination[\s\S]*role/);
      const edge = writeValues(d, { chassis: [{ name: "c", namespace: "vms" }], deploy: { route: { enabled: true, termination: "edge" } } }, "edge.yaml");
      await expect(postBuild({ dist, valuesFile: edge })).rejects.toThrow(/edge.*redfish\.tls\.enabled: false/);
    } finally {
      removeDir(d);
    }
  });

  it("never writes a plain-text password into the ConfigMap", async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-pw-"));
    try {
      fs.cpSync(dist, d, { recursive: true });
      const values = { chassis: [{ name: "c", namespace: "vms" }], authentication: { users: [{ username: "u", password: TEST_PASSWORD, chassis: ["c"] }] } };
      const b = await build(d, values);
      expect(JSON.stringify(b.get("ConfigMap", "kubevirt-infra-config"))).not.toContain(TEST_PASSWORD);
      expect((b.get("Secret", "kubevirt-infra-users").stringData as Record<string, string>)["users.yaml"]).toContain(TEST_PASSWORD);
    } finally {
      removeDir(d);
    }
  });
});

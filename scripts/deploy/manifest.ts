// Turns the objects `pepr build` generated into the module's deployment, for given values: least-privilege
// RBAC, per-webhook failure policies, the role switch, pod hardening, and the objects Pepr 1.1.4 cannot
// express (Redfish Service, OpenShift Route, config ConfigMap and users Secret, SCC binding).
// Pure functions over plain objects; scripts/post-build.ts does the file I/O.
import { isIP } from "node:net";
import { DEFAULT_DENIED_RANGES } from "../../redfish/url-policy";
import { allGatewayGrants } from "./permissions";
import { grantApplies, grantHeldBy, MODULE_NAMESPACE, peprRuntimeGrants, renderRules, watchGrants, type BuildCapability, type Grant, type PolicyRule } from "./rbac";
import { nonrootSccBinding, redfishRoute, redfishService } from "./module-objects";
import { evaluateTemplate, type ObjectTemplate } from "./template";
import { dataVolumeFailurePolicy, policedNamespaces, redfishServes, type DeployValues, type ResolvedValues } from "./values";

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export interface BuildContext {
  /** package.json pepr.uuid */
  uuid: string;
  capabilities: BuildCapability[];
}

export const CONFIG_MAP_NAME = "kubevirt-infra-config";
export const USERS_SECRET_NAME = "kubevirt-infra-users";
export { NONROOT_SCC_CLUSTER_ROLE, REDFISH_SERVICE_NAME } from "./module-objects";

const PART_OF = { "app.kubernetes.io/part-of": "kubevirt-infra" };

export function resourceName(ctx: BuildContext): string {
  return `pepr-${ctx.uuid}`;
}

/** Every grant the module needs: Pepr's runtime, its Watch bindings, and the gateway's calls. */
export function moduleGrants(ctx: BuildContext): Grant[] {
  return [...peprRuntimeGrants(ctx.uuid), ...watchGrants(ctx.capabilities), ...allGatewayGrants()];
}

function find(objects: KubeObject[], kind: string, name: string): KubeObject {
  const found = objects.find(o => o.kind === kind && o.metadata?.name === name);
  if (!found) throw new Error(`the Pepr manifest has no ${kind} ${name}: did \`pepr build\` change its output?`);
  return found;
}

function podSpec(deployment: KubeObject): Record<string, any> {
  const spec = (deployment.spec as any)?.template?.spec;
  if (!spec?.containers?.[0]) throw new Error(`Deployment ${deployment.metadata.name} has no pod template`);
  return spec;
}

export function transformPeprObjects(input: KubeObject[], ctx: BuildContext, values: ResolvedValues): KubeObject[] {
  const { config, deploy } = values;
  const role = config.role;
  const name = resourceName(ctx);
  let objects = structuredClone(input);

  const grants = moduleGrants(ctx).filter(g => grantApplies(g, role));
  const admissionGrants = grants.filter(g => grantHeldBy(g, "admission"));
  // Pepr's ClusterRole, ClusterRoleBinding and ServiceAccount stay the admission pods'; the watcher gets its own.
  find(objects, "ClusterRole", name).rules = renderRules(
    admissionGrants.filter(g => g.scope === "cluster"),
    config,
  );
  // Pepr's scoped store Role names no object (resourceNames [""]) and binds a ServiceAccount that does not
  // exist; it becomes the admission pods' namespaced Role, bound to their ServiceAccount.
  find(objects, "Role", `${name}-store`).rules = renderRules(
    admissionGrants.filter(g => g.scope === "module"),
    config,
  );
  const storeBinding = find(objects, "RoleBinding", `${name}-store`);
  storeBinding.subjects = [serviceAccountSubject(name)];
  objects.splice(objects.indexOf(storeBinding) + 1, 0, ...watcherRbacObjects(ctx, values, grants.filter(g => grantHeldBy(g, "watcher"))));
  podSpec(find(objects, "Deployment", `${name}-watcher`)).serviceAccountName = watcherServiceAccountName(ctx);

  const mutating = find(objects, "MutatingWebhookConfiguration", name);
  const validating = find(objects, "ValidatingWebhookConfiguration", name);
  // A Node webhook that rejects can stop a cluster: node-identity fails open and the watcher back-fills.
  for (const hook of mutating.webhooks as any[]) hook.failurePolicy = "Ignore";
  const namespaces = policedNamespaces(config);
  // Without policed namespaces in the values the webhook cannot be scoped: it keeps Pepr's scope and fails open, so
  // enabling the policy later in the live ConfigMap works, but only a rendering with the policy fails closed.
  for (const hook of validating.webhooks as any[]) {
    if (namespaces.length > 0) Object.assign(hook, dataVolumeWebhookScope(namespaces, deploy));
    else hook.failurePolicy = "Ignore";
  }
  if (role === "infra") objects = objects.filter(o => o !== mutating);
  if (role === "nested") objects = objects.filter(o => o !== validating);

  for (const deployment of [find(objects, "Deployment", name), find(objects, "Deployment", `${name}-watcher`)]) {
    const pod = podSpec(deployment);
    pod.securityContext = { ...pod.securityContext, seccompProfile: { type: "RuntimeDefault" } };
  }
  const watcher = podSpec(find(objects, "Deployment", `${name}-watcher`)).containers[0];
  if (redfishServes(config)) {
    // Ready = the Redfish caches have synced (the Redfish server answers /healthz 503 until then).
    watcher.readinessProbe = {
      httpGet: { path: "/healthz", port: config.redfish.port, scheme: config.redfish.tls.enabled ? "HTTPS" : "HTTP" },
      initialDelaySeconds: 10,
    };
  }
  return objects;
}

export function watcherServiceAccountName(ctx: BuildContext): string {
  return `${resourceName(ctx)}-watcher`;
}

const serviceAccountSubject = (name: string) => ({ kind: "ServiceAccount", name, namespace: MODULE_NAMESPACE });

/** The namespaces the watcher gets a Role in: each chassis namespace (Redfish acts nowhere else). */
export function chassisNamespaces(values: ResolvedValues): string[] {
  if (values.config.role === "nested") return [];
  return [...new Set(values.config.chassis.map(c => c.namespace))].sort();
}

function roleAndBinding(kind: "ClusterRole" | "Role", name: string, namespace: string | undefined, rules: PolicyRule[], subject: string): KubeObject[] {
  const metadata = { name, ...(namespace ? { namespace } : {}), labels: { ...PART_OF } };
  return [
    { apiVersion: "rbac.authorization.k8s.io/v1", kind, metadata, rules },
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: kind === "ClusterRole" ? "ClusterRoleBinding" : "RoleBinding",
      metadata: { ...metadata },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind, name },
      subjects: [serviceAccountSubject(subject)],
    },
  ];
}

/**
 * The watcher's ServiceAccount and its rules: a ClusterRole for cluster-wide needs, a Role in pepr-system, a Role
 * in each chassis namespace for what Redfish reads and does to VMs, VMIs, DataVolumes and Secrets there, and a Role
 * in each policed namespace for the DataVolume audit's reads.
 */
export function watcherRbacObjects(ctx: BuildContext, values: ResolvedValues, watcherGrants: readonly Grant[]): KubeObject[] {
  const account = watcherServiceAccountName(ctx);
  const out: KubeObject[] = [{ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: account, namespace: MODULE_NAMESPACE, labels: { ...PART_OF } } }];
  const rulesOf = (scope: Grant["scope"]) => renderRules(watcherGrants.filter(g => g.scope === scope), values.config);
  out.push(...roleAndBinding("ClusterRole", account, undefined, rulesOf("cluster"), account));
  const moduleRules = rulesOf("module");
  if (moduleRules.length > 0) out.push(...roleAndBinding("Role", account, MODULE_NAMESPACE, moduleRules, account));
  const chassisRules = rulesOf("chassis");
  if (chassisRules.length > 0) for (const namespace of chassisNamespaces(values)) out.push(...roleAndBinding("Role", account, namespace, chassisRules, account));
  const policedRules = rulesOf("policed");
  if (policedRules.length > 0) {
    for (const namespace of policedNamespaces(values.config)) out.push(...roleAndBinding("Role", `${account}-datavolume-audit`, namespace, policedRules, account));
  }
  return out;
}

/**
 * `npx pepr deploy` gives both Deployments Pepr's one ServiceAccount: there the watcher's bindings name that account.
 */
export function forSharedServiceAccount(objects: readonly KubeObject[], ctx: BuildContext): KubeObject[] {
  const watcher = watcherServiceAccountName(ctx);
  return objects
    .filter(o => !(o.kind === "ServiceAccount" && o.metadata.name === watcher))
    .map(o => {
      const subjects = o.subjects as { kind: string; name: string; namespace?: string }[] | undefined;
      if (!subjects?.some(s => s.kind === "ServiceAccount" && s.name === watcher)) return o;
      const renamed = subjects.map(s => (s.kind === "ServiceAccount" && s.name === watcher ? serviceAccountSubject(resourceName(ctx)) : s));
      return { ...o, subjects: renamed.filter((s, i) => renamed.findIndex(x => x.kind === s.kind && x.name === s.name) === i) };
    });
}

/** The DataVolume webhook's failure policy and scope: the policed namespaces only. */
export function dataVolumeWebhookScope(namespaces: readonly string[], deploy: DeployValues): { failurePolicy: "Fail" | "Ignore"; namespaceSelector: object } {
  return {
    failurePolicy: dataVolumeFailurePolicy(deploy),
    namespaceSelector: { matchExpressions: [{ key: "kubernetes.io/metadata.name", operator: "In", values: [...namespaces] }] },
  };
}

/**
 * For `npx pepr deploy`, which renders both webhooks from package.json's module-wide onError (Ignore): a patch of
 * the DataVolume webhook only (kubectl apply merges webhooks by name), making it fail closed and scoped like the
 * chart's. Undefined when nothing is policed.
 */
export function dataVolumeWebhookPatch(ctx: BuildContext, values: ResolvedValues): KubeObject | undefined {
  const namespaces = policedNamespaces(values.config);
  if (values.config.role === "nested" || namespaces.length === 0) return undefined;
  const name = resourceName(ctx);
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingWebhookConfiguration",
    metadata: { name },
    webhooks: [{ name: `${name}.pepr.dev`, ...dataVolumeWebhookScope(namespaces, values.deploy) }],
  };
}

export const IMPORTER_NETWORK_POLICY_NAME = "kubevirt-infra-importer-egress";

/**
 * Egress of CDI's importer pods under the image URL policy: DNS, every address outside the default-denied ranges,
 * the Service CIDRs and denyCidrs, and the allowCidrs (a rule of their own, since NetworkPolicy rules add up).
 * With allowAllDestinations the policy allows all egress.
 */
export function importerEgress(config: ResolvedValues["config"]): object[] {
  const policy = config.redfish.imageUrlPolicy;
  const dns = { ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] };
  if (policy.allowAllDestinations) return [{}];
  const denied = [...DEFAULT_DENIED_RANGES, ...policy.serviceCidrs, ...policy.denyCidrs];
  const within = (family: 4 | 6) => denied.filter(r => isIP(r.split("/")[0]) === family).map(r => (r.includes("/") ? r : `${r}/${family === 4 ? 32 : 128}`));
  const asCidr = (r: string) => (r.includes("/") ? r : `${r}/${isIP(r) === 6 ? 128 : 32}`);
  return [
    dns,
    { to: [{ ipBlock: { cidr: "0.0.0.0/0", except: within(4) } }, { ipBlock: { cidr: "::/0", except: within(6) } }] },
    ...(policy.allowCidrs.length > 0 ? [{ to: policy.allowCidrs.map(r => ({ ipBlock: { cidr: asCidr(r) } })) }] : []),
  ];
}

function importerNetworkPolicies(values: ResolvedValues): KubeObject[] {
  if (!values.deploy.importerNetworkPolicy.enabled) return [];
  return chassisNamespaces(values).map(namespace => ({
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: IMPORTER_NETWORK_POLICY_NAME, namespace, labels: { ...PART_OF, "app.kubernetes.io/component": "redfish" } },
    spec: {
      podSelector: { matchLabels: { ...values.deploy.importerNetworkPolicy.podSelector } },
      policyTypes: ["Egress"],
      egress: importerEgress(values.config),
    },
  }));
}

/** The objects Pepr cannot generate, for these values. */
export function moduleObjects(ctx: BuildContext, values: ResolvedValues): KubeObject[] {
  const { deploy } = values;
  const chartValues = { ...values.config, deploy, uuid: resourceName(ctx) };
  const render = (template: ObjectTemplate) => {
    const object = evaluateTemplate(template, chartValues);
    return object ? [object as KubeObject] : [];
  };
  const out: KubeObject[] = [...render(redfishService), ...render(redfishRoute)];
  if (deploy.createConfig) {
    out.push({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: CONFIG_MAP_NAME, namespace: MODULE_NAMESPACE, labels: { ...PART_OF } },
      data: { "config.yaml": values.configYaml },
    });
  }
  if (deploy.createUsersSecret) {
    out.push({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: USERS_SECRET_NAME, namespace: MODULE_NAMESPACE, labels: { ...PART_OF } },
      type: "Opaque",
      stringData: { "users.yaml": values.usersYaml },
    });
  }
  out.push(...importerNetworkPolicies(values));
  out.push(...render(nonrootSccBinding));
  return out;
}

/** The whole deployment: Pepr's objects, transformed, followed by the module's own. */
export function buildManifest(peprObjects: KubeObject[], ctx: BuildContext, values: ResolvedValues): KubeObject[] {
  return [...transformPeprObjects(peprObjects, ctx, values), ...moduleObjects(ctx, values)];
}

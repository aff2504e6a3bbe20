// Turns the objects `pepr build` generated into the module's deployment, for given values: least-privilege
// RBAC, per-webhook failure policies, the role switch, pod hardening, and the objects Pepr 1.1.4 cannot
// express (Redfish Service, OpenShift Route, config ConfigMap and users Secret, importer NetworkPolicy, SCC
// binding). The RBAC, the webhooks, the watcher's pod changes and the module's objects are evaluated from the
// descriptions the chart prints (./rbac-objects.ts, ./module-objects.ts), for the chart's values with the user's
// merged over them.
// Pure functions over plain objects; scripts/post-build.ts does the file I/O.
import { allGatewayGrants } from "./permissions";
import { MODULE_NAMESPACE, peprRuntimeGrants, watchGrants, type BuildCapability, type Grant } from "./rbac";
import { rbacTemplates } from "./rbac-objects";
import {
  dataVolumesPoliced,
  MODULE_OBJECT_TEMPLATES,
  mutatingWebhookConfiguration,
  validatingWebhookConfiguration,
  watcherReadinessProbe,
  watcherServiceAccount,
  type PeprWebhook,
} from "./module-objects";
import { evaluateFields, evaluateTemplate, type ObjectTemplate, type Values } from "./template";
import { helmMerge, type ResolvedValues } from "./values";

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
  /** The chart's values.yaml (Pepr's values and the module's defaults, ./chart.ts chartValuesText), parsed. */
  chartValues: Values;
}

export { CONFIG_MAP_NAME, IMPORTER_NETWORK_POLICY_NAME, NONROOT_SCC_CLUSTER_ROLE, REDFISH_SERVICE_NAME, USERS_SECRET_NAME } from "./module-objects";

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

/** The `.Values` Helm renders the chart with for these values: the user's merged over the chart's. */
export function chartValuesFor(ctx: BuildContext, values: ResolvedValues): Values {
  return helmMerge(ctx.chartValues, values.document) as Values;
}

/** The one webhook `pepr build` writes in a webhook configuration. */
export function onlyWebhook(config: KubeObject): PeprWebhook {
  const hooks = config.webhooks as PeprWebhook[] | undefined;
  if (!hooks || hooks.length !== 1) throw new Error(`${config.kind} ${config.metadata.name}: expected exactly one webhook from pepr build, found ${hooks?.length ?? 0}`);
  return hooks[0];
}

function podSpec(deployment: KubeObject): Record<string, any> {
  const spec = (deployment.spec as any)?.template?.spec;
  if (!spec?.containers?.[0]) throw new Error(`Deployment ${deployment.metadata.name} has no pod template`);
  return spec;
}

export function transformPeprObjects(input: KubeObject[], ctx: BuildContext, values: ResolvedValues): KubeObject[] {
  const name = resourceName(ctx);
  const chartValues = chartValuesFor(ctx, values);
  const objects = structuredClone(input);

  // Pepr's ClusterRole and store Role and RoleBinding stay the admission pods', rewritten; the watcher gets its own.
  const added: KubeObject[] = [];
  for (const { template, rewritesPepr } of rbacTemplates(moduleGrants(ctx))) {
    for (const object of evaluateTemplate(template, chartValues) as KubeObject[]) {
      if (rewritesPepr) objects.splice(objects.indexOf(find(objects, object.kind, object.metadata.name)), 1, object);
      else added.push(object);
    }
  }
  objects.splice(objects.indexOf(find(objects, "RoleBinding", `${name}-store`)) + 1, 0, ...added);

  for (const [kind, describe] of [
    ["MutatingWebhookConfiguration", mutatingWebhookConfiguration],
    ["ValidatingWebhookConfiguration", validatingWebhookConfiguration],
  ] as const) {
    const pepr = find(objects, kind, name);
    objects.splice(objects.indexOf(pepr), 1, ...(evaluateTemplate(describe(onlyWebhook(pepr)), chartValues) as KubeObject[]));
  }

  for (const deployment of [find(objects, "Deployment", name), find(objects, "Deployment", `${name}-watcher`)]) {
    const pod = podSpec(deployment);
    pod.securityContext = { ...pod.securityContext, seccompProfile: { type: "RuntimeDefault" } };
  }
  const watcherPod = podSpec(find(objects, "Deployment", `${name}-watcher`));
  watcherPod.serviceAccountName = watcherServiceAccount.evaluate(chartValues);
  watcherPod.containers[0].readinessProbe = evaluateFields(watcherReadinessProbe, chartValues);
  // The chart's watcher.env, as its template lists it: entries Pepr's manifest lacks are added (process settings).
  const env = (watcherPod.containers[0].env ??= []) as { name: string }[];
  for (const entry of (chartValues.watcher as { env?: { name: string }[] } | undefined)?.env ?? []) {
    if (!env.some(e => e.name === entry.name)) env.push(entry);
  }
  return objects;
}

export function watcherServiceAccountName(ctx: BuildContext): string {
  return `${resourceName(ctx)}-watcher`;
}

const serviceAccountSubject = (name: string) => ({ kind: "ServiceAccount", name, namespace: MODULE_NAMESPACE });

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

/**
 * For `npx pepr deploy`, which renders both webhooks from package.json's module-wide onError (Ignore): a patch of
 * the DataVolume webhook only (kubectl apply merges webhooks by name), making it fail closed and scoped like the
 * chart's: its failure policy and scope taken from the manifest's. Undefined when nothing is policed.
 */
export function dataVolumeWebhookPatch(ctx: BuildContext, values: ResolvedValues, manifest: readonly KubeObject[]): KubeObject | undefined {
  const name = resourceName(ctx);
  const validating = manifest.find(o => o.kind === "ValidatingWebhookConfiguration" && o.metadata.name === name);
  if (!validating || !dataVolumesPoliced.evaluate(chartValuesFor(ctx, values))) return undefined;
  const { failurePolicy, namespaceSelector } = (validating.webhooks as Record<string, unknown>[])[0];
  return {
    apiVersion: "admissionregistration.k8s.io/v1",
    kind: "ValidatingWebhookConfiguration",
    metadata: { name },
    webhooks: [{ name: `${name}.pepr.dev`, failurePolicy, namespaceSelector }],
  };
}

/** The objects Pepr cannot generate, for these values. */
export function moduleObjects(ctx: BuildContext, values: ResolvedValues): KubeObject[] {
  const chartValues = chartValuesFor(ctx, values);
  return Object.values(MODULE_OBJECT_TEMPLATES).flatMap((template: ObjectTemplate) => evaluateTemplate(template, chartValues) as KubeObject[]);
}

/** The whole deployment: Pepr's objects, transformed, followed by the module's own. */
export function buildManifest(peprObjects: KubeObject[], ctx: BuildContext, values: ResolvedValues): KubeObject[] {
  return [...transformPeprObjects(peprObjects, ctx, values), ...moduleObjects(ctx, values)];
}

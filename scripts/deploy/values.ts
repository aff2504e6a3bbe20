// One values file configures everything: the module config keys (role, chassis, authentication, redfish, ...)
// at the top level, as in the legacy charts, plus `deploy:` for what only the deployment needs (Redfish
// Service, OpenShift Route, webhook policy). Pepr's own chart keys (admission, watcher, ...) sit beside them.
// The same values drive the Helm chart and the plain manifest (`npm run build -- --values my-values.yaml`).
import { z } from "zod";
import YAML from "yaml";
import { loadConfig, type LoadResult } from "../../capabilities/config/load";
import { moduleConfigSchema, type ModuleConfig } from "../../capabilities/config/schema";
import { redfishRoute } from "./module-objects";
import { refusals } from "./template";

export const deployValuesSchema = z.strictObject({
  /** Render ConfigMap pepr-system/kubevirt-infra-config from these values (false: you manage it yourself). */
  createConfig: z.boolean().default(true),
  /** Render Secret pepr-system/kubevirt-infra-users from authentication.users (false: you manage it yourself). */
  createUsersSecret: z.boolean().default(true),
  redfishService: z
    .strictObject({
      type: z.enum(["ClusterIP", "NodePort", "LoadBalancer"]).default("ClusterIP"),
      port: z.int().min(1).max(65_535).default(8443),
      nodePort: z.int().min(30_000).max(32_767).optional(),
      annotations: z.record(z.string(), z.string()).default({}),
    })
    .prefault({}),
  route: z
    .strictObject({
      /** An OpenShift Route to the Redfish Service. */
      enabled: z.boolean().default(false),
      host: z.string().default(""),
      /** reencrypt: TLS to the router and on to the module; edge: the router terminates TLS (needs redfish.tls.enabled: false). */
      termination: z.enum(["reencrypt", "edge"]).default("reencrypt"),
      insecureEdgeTerminationPolicy: z.enum(["Redirect", "None"]).default("Redirect"),
      /** reencrypt: CA of the module's Redfish certificate; empty with the OpenShift service CA (the router trusts it). */
      destinationCACertificate: z.string().default(""),
      annotations: z.record(z.string(), z.string()).default({}),
    })
    .prefault({}),
  openshift: z
    .strictObject({
      /** Annotate the Redfish Service so the OpenShift service CA issues redfish.tls.secretName. */
      servingCertificate: z.boolean().default(false),
      /**
       * Bind the module's ServiceAccount to the built-in `nonroot-v2` SCC. Pepr 1.1.4's controller image
       * runs as UID 65532 and writes the module into /app (owned by that UID), so it cannot take the random
       * UID of `restricted-v2`; nonroot-v2 is restricted-v2 with a fixed non-root UID allowed.
       */
      nonrootSCC: z.boolean().default(false),
    })
    .prefault({}),
  importerNetworkPolicy: z
    .strictObject({
      /**
       * A NetworkPolicy in each chassis namespace for CDI's importer pods: egress only to DNS and to addresses the
       * image URL policy allows (CDI follows redirects, which the URL check cannot see).
       */
      enabled: z.boolean().default(false),
      /** Pod selector of the importer pods (CDI labels them app: containerized-data-importer). */
      podSelector: z.record(z.string(), z.string()).default({ app: "containerized-data-importer" }),
    })
    .prefault({}),
  dataVolumeWebhook: z
    .strictObject({
      /** auto: Fail, scoped to the policed namespaces (the webhook is rendered only when the policy polices some). */
      failurePolicy: z.enum(["auto", "Fail", "Ignore"]).default("auto"),
    })
    .prefault({}),
});
export type DeployValues = z.output<typeof deployValuesSchema>;

/** The module config keys, in schema order (from the schema itself, so a new key is picked up). */
export function configKeys(): string[] {
  const schema = z.toJSONSchema(moduleConfigSchema, { io: "input", target: "draft-7" }) as { properties?: Record<string, unknown> };
  return Object.keys(schema.properties ?? {});
}

/** Pepr's own chart keys (dist/kubevirt-infra-chart/values.yaml as `pepr build` writes it). */
export const PEPR_CHART_KEYS = ["imagePullSecrets", "additionalIgnoredNamespaces", "rbac", "secrets", "hash", "namespace", "uuid", "admission", "watcher"];

type Doc = Record<string, unknown>;

function isMap(value: unknown): value is Doc {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export interface ResolvedValues {
  /** The values as given (the manifest merges them over the chart's values.yaml, as Helm does). */
  document: Doc;
  /** The config as the module will read it (defaults filled in, validated by the module's own loader). */
  config: ModuleConfig;
  deploy: DeployValues;
  warnings: string[];
}

/**
 * Splits a values document into the module config (validated exactly as the module loads it from the
 * ConfigMap and Secret) and the deploy settings. Throws one Error listing every problem.
 */
export function resolveValues(values: unknown, source = "values"): ResolvedValues {
  if (values !== undefined && values !== null && !isMap(values)) throw new Error(`${source}: must be a mapping`);
  const doc: Doc = isMap(values) ? values : {};
  const keys = configKeys();
  const unknown = Object.keys(doc).filter(k => !keys.includes(k) && k !== "deploy" && !PEPR_CHART_KEYS.includes(k));
  const errors: string[] = unknown.map(k => `${source}: unknown key ${JSON.stringify(k)} (module config keys: ${keys.join(", ")}; deploy; or Pepr's chart keys)`);

  const configDoc: Doc = {};
  for (const key of keys) if (Object.hasOwn(doc, key)) configDoc[key] = structuredClone(doc[key]);
  let users: unknown[] = [];
  if (isMap(configDoc.authentication)) {
    const { users: given, ...rest } = configDoc.authentication;
    if (given !== undefined && !Array.isArray(given)) errors.push(`${source}: authentication.users must be a list`);
    users = Array.isArray(given) ? given : [];
    configDoc.authentication = rest;
  }
  const configYaml = YAML.stringify(configDoc, { lineWidth: 0 });
  const usersYaml = YAML.stringify(users, { lineWidth: 0 });

  const deployParsed = deployValuesSchema.safeParse(doc.deploy ?? {});
  if (!deployParsed.success) {
    errors.push(...deployParsed.error.issues.map(i => `${source}: deploy.${i.path.join(".")}: ${i.message}`));
  }
  const loaded: LoadResult = loadConfig({ configYaml, usersYaml, env: {} });
  if (!loaded.ok) errors.push(...loaded.errors.map(e => `${source}: ${e}`));
  if (errors.length > 0 || !loaded.ok || !deployParsed.success) throw new Error(errors.join("\n"));

  const deploy = deployParsed.data;
  const config = loaded.config;
  const warnings = [...loaded.warnings];
  // The chart's Route template fails on the same values (one description: ./module-objects.ts).
  const refused = refusals(redfishRoute, { ...config, deploy });
  if (refused.length > 0) throw new Error(refused.map(message => `${source}: ${message}`).join("\n"));
  if (deploy.route.enabled && config.role === "nested") warnings.push(`${source}: deploy.route is ignored with role "nested" (Redfish runs in infra clusters)`);
  return { document: structuredClone(doc), config, deploy, warnings };
}

/** The namespaces the DataVolume policy polices, as the module computes them. */
export function policedNamespaces(config: ModuleConfig): string[] {
  return config.role === "nested" || !config.datavolumePolicy.enabled ? [] : config.datavolumePolicy.namespaces;
}

/** Helm's coalescing of user values over the chart's: maps merge, null deletes, anything else replaces. */
export function helmMerge(base: unknown, over: unknown): unknown {
  if (!isMap(base) || !isMap(over)) return structuredClone(over);
  const out: Doc = structuredClone(base);
  for (const [key, value] of Object.entries(over)) {
    if (value === null) delete out[key];
    else out[key] = isMap(out[key]) && isMap(value) ? helmMerge(out[key], value) : structuredClone(value);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Defaults for values.yaml, from the JSON schema (input defaults, not the module's derived values)
// ---------------------------------------------------------------------------------------------------------

interface JsonSchema {
  type?: string | string[];
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  [key: string]: unknown;
}

/**
 * The defaults a user would get by leaving a key out, as a document: each property's `default`, and for an
 * object whose default is `{}` its properties' defaults. Derived values (e.g. a rule set's mode inherited
 * from datavolumePolicy.mode) stay absent, so setting the parent in values still cascades.
 */
export function defaultsFromJsonSchema(schema: JsonSchema): unknown {
  if (schema.properties) {
    const out: Doc = {};
    for (const [key, prop] of Object.entries(schema.properties)) {
      if (prop.properties && (prop.default === undefined || (isMap(prop.default) && Object.keys(prop.default).length === 0))) {
        if (prop.default !== undefined) out[key] = defaultsFromJsonSchema(prop);
      } else if (prop.default !== undefined) {
        out[key] = structuredClone(prop.default);
      }
    }
    return out;
  }
  return structuredClone(schema.default);
}

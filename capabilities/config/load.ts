// Loads the module configuration from its two sources: ConfigMap `pepr-system/kubevirt-infra-config`
// (key config.yaml, non-secret) and Secret `pepr-system/kubevirt-infra-users` (key users.yaml: the users
// list, same shape as authentication.users). Pure: text in, validated config (or every error) out.
import YAML from "yaml";
import { z } from "zod";
import { translateLegacyShapes } from "./legacy-values";
import { configErrorMap, formatIssues, formatPath } from "./errors";
import {
  moduleConfigSchema,
  redfishActive,
  redfishPortSchema,
  type ModuleConfig,
} from "./schema";

export const CONFIG_NAMESPACE = "pepr-system";
export const CONFIG_MAP_NAME = "kubevirt-infra-config";
export const CONFIG_MAP_KEY = "config.yaml";
export const USERS_SECRET_NAME = "kubevirt-infra-users";
export const USERS_SECRET_KEY = "users.yaml";

export type LoadResult = { ok: true; config: ModuleConfig; warnings: string[] } | { ok: false; errors: string[] };

export interface LoadInput {
  /** ConfigMap key config.yaml; undefined (no ConfigMap) = empty config = every capability inert. */
  configYaml?: string;
  /** Secret key users.yaml, already decoded; undefined = no users from the Secret. */
  usersYaml?: string;
  /** Environment for local overrides (REDFISH_PORT); defaults to process.env. */
  env?: Record<string, string | undefined>;
}

type Doc = Record<string, unknown>;

function isMap(value: unknown): value is Doc {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// YAML parser messages quote the offending token and append a source excerpt; either could be a password,
// so only the description and the position are kept.
function yamlErrorText(source: string, error: YAML.YAMLError): string {
  const firstLine = error.message.split("\n")[0];
  const description = firstLine
    .replace(/ at line \d+, column \d+:?$/, "")
    .replace(/: ".*"$/, "")
    .replace(/"[^"]*"/g, "…");
  const position = error.linePos ? ` line ${error.linePos[0].line}, column ${error.linePos[0].col}` : "";
  return `${source}${position}: YAML syntax error: ${description}`;
}

function parseYaml(text: string, source: string, errors: string[]): unknown {
  const parsed = YAML.parseAllDocuments(text, { uniqueKeys: true });
  const documents = Array.isArray(parsed) ? parsed : [];
  if (documents.length > 1) {
    errors.push(`${source}: holds ${documents.length} YAML documents ("---"); put everything in one`);
    return undefined;
  }
  const [document] = documents;
  if (!document) return undefined;
  if (document.errors.length > 0) {
    errors.push(...document.errors.map(e => yamlErrorText(source, e)));
    return undefined;
  }
  try {
    return document.toJS({ maxAliasCount: 100 });
  } catch (e) {
    errors.push(`${source}: YAML could not be read: ${e instanceof Error ? e.message.split("\n")[0] : "unknown error"}`);
    return undefined;
  }
}

/** The Secret's users.yaml: a list of users, or a mapping `users: [...]`. */
function readUsers(text: string | undefined, errors: string[]): { users: unknown[]; label: string } {
  const label = USERS_SECRET_KEY;
  if (text === undefined) return { users: [], label };
  const doc = parseYaml(text, label, errors);
  if (doc === undefined || doc === null) return { users: [], label };
  if (Array.isArray(doc)) return { users: doc, label };
  if (isMap(doc) && Array.isArray(doc.users) && Object.keys(doc).length === 1) return { users: doc.users, label: `${label}: users` };
  errors.push(`${label}: must be a list of users (each with username, passwordHash or password, chassis), or a mapping with only "users:"`);
  return { users: [], label };
}

function applyEnvOverrides(doc: Doc, env: Record<string, string | undefined>, errors: string[]): void {
  const port = env.REDFISH_PORT;
  if (port === undefined || port === "") return;
  const parsed = /^\d+$/.test(port) ? redfishPortSchema.safeParse(Number(port), { error: configErrorMap }) : undefined;
  if (!parsed?.success) {
    const reason = parsed ? parsed.error.issues.map(i => i.message).join("; ") : "must be a whole number";
    errors.push(`REDFISH_PORT (environment variable): ${JSON.stringify(port)} ${reason}`);
    return;
  }
  if (doc.redfish === undefined) doc.redfish = {};
  if (isMap(doc.redfish)) doc.redfish.port = parsed.data;
}

function collectWarnings(config: ModuleConfig, configMapUserCount: number, userLabel: (index: number) => string): string[] {
  const warnings: string[] = [];
  if (configMapUserCount > 0) {
    warnings.push(
      `authentication.users: ${configMapUserCount} user(s) in the ConfigMap, readable by anyone who may read ConfigMaps in ${CONFIG_NAMESPACE}; move them to the Secret ${USERS_SECRET_NAME} (key ${USERS_SECRET_KEY})`,
    );
  }
  config.authentication.users.forEach((user, i) => {
    if (user.password !== undefined) {
      warnings.push(`${userLabel(i)}.password: user ${JSON.stringify(user.username)} has a plain-text password; store a bcrypt hash in passwordHash instead`);
    }
  });
  if (config.role === "infra" && config.nodeIdentity.enabled) {
    warnings.push('nodeIdentity.enabled: ignored because role is "infra" (node identity acts in nested clusters)');
  }
  if (config.role === "nested" && config.datavolumePolicy.enabled) {
    warnings.push('datavolumePolicy.enabled: ignored because role is "nested" (the DataVolume policy acts in infra clusters)');
  }
  if (config.role === "nested" && config.chassis.length > 0) {
    warnings.push('chassis: ignored because role is "nested" (Redfish is served in infra clusters)');
  }
  if (redfishActive(config) && config.authentication.users.length === 0) {
    warnings.push(`authentication.users: chassis are configured but there are no users, so nobody can use Redfish (users go in the Secret ${USERS_SECRET_NAME})`);
  }
  if (redfishActive(config) && !config.redfish.tls.enabled) {
    warnings.push("redfish.tls.enabled: false, so Redfish passwords travel in plain HTTP; do this only behind a TLS-terminating Route");
  }
  const policy = config.datavolumePolicy;
  if (policy.enabled && config.infra.labels === "" && policy.tenants.length === 0) {
    warnings.push("datavolumePolicy.enabled: neither infra.labels nor datavolumePolicy.tenants are set, so no labels are required");
  }
  return warnings;
}

/** Validates the configuration documents; every problem is reported, each naming its field. */
export function loadConfig(input: LoadInput): LoadResult {
  const errors: string[] = [];
  const warnings: string[] = [];

  const configDoc = input.configYaml === undefined ? undefined : parseYaml(input.configYaml, CONFIG_MAP_KEY, errors);
  if (configDoc !== undefined && configDoc !== null && !isMap(configDoc)) {
    errors.push(`${CONFIG_MAP_KEY}: must be a mapping of settings (role, chassis, redfish, ...), not ${Array.isArray(configDoc) ? "a list" : "a single value"}`);
  }
  const legacy = translateLegacyShapes(isMap(configDoc) ? configDoc : {});
  errors.push(...legacy.errors);
  warnings.push(...legacy.warnings);
  const doc = legacy.doc as Doc;

  const secretUsers = readUsers(input.usersYaml, errors);
  applyEnvOverrides(doc, input.env ?? process.env, errors);
  if (errors.length > 0) return { ok: false, errors };

  // Users from the Secret join those of the ConfigMap; error paths still name the document they came from.
  const authentication = doc.authentication;
  const configMapUsers = isMap(authentication) && Array.isArray(authentication.users) ? authentication.users.length : 0;
  if (secretUsers.users.length > 0) {
    if (authentication === undefined) doc.authentication = { users: secretUsers.users };
    else if (isMap(authentication) && (authentication.users === undefined || Array.isArray(authentication.users))) {
      authentication.users = [...((authentication.users as unknown[] | undefined) ?? []), ...secretUsers.users];
    }
  }
  const userLabel = (index: number): string =>
    index < configMapUsers ? `authentication.users[${index}]` : `${secretUsers.label}[${index - configMapUsers}]`;
  const rename = (path: readonly PropertyKey[]): string => {
    if (path[0] === "authentication" && path[1] === "users" && typeof path[2] === "number") {
      const rest = formatPath(path.slice(3));
      return `${userLabel(path[2])}${rest === "" || rest.startsWith("[") ? rest : `.${rest}`}`;
    }
    return formatPath(path);
  };

  const parsed = moduleConfigSchema.safeParse(doc, { error: configErrorMap });
  if (!parsed.success) return { ok: false, errors: formatIssues(parsed.error.issues, rename) };
  warnings.push(...collectWarnings(parsed.data, configMapUsers, userLabel));
  return { ok: true, config: parsed.data, warnings };
}

// ---------------------------------------------------------------------------------------------------
// Kubernetes objects as Pepr's Watch hands them over (zod at the edge)
// ---------------------------------------------------------------------------------------------------

const objectMeta = z
  .object({
    name: z.string().optional(),
    namespace: z.string().optional(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
  })
  .loose();

export const configMapSourceSchema = z
  .object({
    apiVersion: z.string().optional(),
    kind: z.string().optional(),
    metadata: objectMeta.optional(),
    data: z.record(z.string(), z.string()).nullish(),
  })
  .loose();
export type ConfigMapSource = z.infer<typeof configMapSourceSchema>;

export const secretSourceSchema = z
  .object({
    apiVersion: z.string().optional(),
    kind: z.string().optional(),
    metadata: objectMeta.optional(),
    data: z.record(z.string(), z.string()).nullish(),
    stringData: z.record(z.string(), z.string()).nullish(),
  })
  .loose();
export type SecretSource = z.infer<typeof secretSourceSchema>;

export type Extracted = { ok: true; text: string | undefined } | { ok: false; error: string };

/** config.yaml of the ConfigMap; a ConfigMap without any data counts as empty, one with other keys only as a mistake. */
export function configYamlOf(configMap: ConfigMapSource | null): Extracted {
  if (!configMap) return { ok: true, text: undefined };
  const data = configMap.data ?? {};
  if (Object.hasOwn(data, CONFIG_MAP_KEY)) return { ok: true, text: data[CONFIG_MAP_KEY] };
  const keys = Object.keys(data);
  if (keys.length === 0) return { ok: true, text: undefined };
  return { ok: false, error: `ConfigMap ${CONFIG_NAMESPACE}/${CONFIG_MAP_NAME}: has no key "${CONFIG_MAP_KEY}" (keys present: ${keys.join(", ")})` };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** users.yaml of the Secret: `data` is base64 (as the API returns it); `stringData`, when present, wins. */
export function usersYamlOf(secret: SecretSource | null): Extracted {
  if (!secret) return { ok: true, text: undefined };
  if (secret.stringData && Object.hasOwn(secret.stringData, USERS_SECRET_KEY)) return { ok: true, text: secret.stringData[USERS_SECRET_KEY] };
  const data = secret.data ?? {};
  if (Object.hasOwn(data, USERS_SECRET_KEY)) {
    const encoded = data[USERS_SECRET_KEY].replace(/\s+/g, "");
    if (encoded.length % 4 !== 0 || !BASE64.test(encoded)) {
      return { ok: false, error: `Secret ${CONFIG_NAMESPACE}/${USERS_SECRET_NAME}: data "${USERS_SECRET_KEY}" is not base64 (use stringData for plain text)` };
    }
    return { ok: true, text: Buffer.from(encoded, "base64").toString("utf8") };
  }
  const keys = [...Object.keys(data), ...Object.keys(secret.stringData ?? {})];
  if (keys.length === 0) return { ok: true, text: undefined };
  return { ok: false, error: `Secret ${CONFIG_NAMESPACE}/${USERS_SECRET_NAME}: has no key "${USERS_SECRET_KEY}" (keys present: ${keys.join(", ")})` };
}

/** loadConfig from the two objects (null = the object does not exist). */
export function loadConfigFromObjects(sources: {
  configMap: ConfigMapSource | null;
  usersSecret: SecretSource | null;
  env?: Record<string, string | undefined>;
}): LoadResult {
  const configYaml = configYamlOf(sources.configMap);
  const usersYaml = usersYamlOf(sources.usersSecret);
  const errors = [configYaml, usersYaml].flatMap(r => (r.ok ? [] : [r.error]));
  if (errors.length > 0 || !configYaml.ok || !usersYaml.ok) return { ok: false, errors };
  if (sources.configMap === null && usersYaml.text !== undefined) {
    // Deleting the ConfigMap switches everything off; the users (of chassis that no longer exist) must not veto that.
    const result = loadConfig({ env: sources.env });
    const ignored = `${USERS_SECRET_KEY}: users ignored because the ConfigMap ${CONFIG_NAMESPACE}/${CONFIG_MAP_NAME} does not exist (no chassis)`;
    return result.ok ? { ...result, warnings: [ignored, ...result.warnings] } : result;
  }
  return loadConfig({ configYaml: configYaml.text, usersYaml: usersYaml.text, env: sources.env });
}

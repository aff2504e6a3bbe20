// Converts the values of the charts kubevirt-infra replaces into one kubevirt-infra values file:
//   - the kubevirt-redfish chart (server, chassis, authentication, datavolume, service, route, placement),
//   - the KubeVirt CSI driver chart (infra.namespace / labels / kubeconfig, nodeMapping as {node: vm}).
//
//   tsx scripts/migrate-values.ts --redfish old-redfish-values.yaml -o values-infra.yaml
//   tsx scripts/migrate-values.ts --csi csi-values.yaml [--csi secrets.yaml] -o values-nested.yaml \
//       --secret-out infra-kubeconfig-secret.yaml
//
// The result is validated exactly as the module validates its config (and as the chart's schema would);
// every key that changed meaning or was dropped is reported. Plain-text passwords become bcrypt hashes
// unless --keep-plain-passwords. The CSI chart's infra kubeconfig (credentials) is never written into the
// values: with --secret-out it becomes a Secret manifest that infra.kubeconfigSecret points to.
import bcrypt from "bcryptjs";
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import YAML from "yaml";
import { translateLegacyShapes } from "../capabilities/config/legacy-values";
import { resolveValues } from "./deploy/values";

type Doc = Record<string, unknown>;

export interface MigrationInput {
  /** kubevirt-redfish chart values (one or more files, merged in order). */
  redfish?: unknown[];
  /** KubeVirt CSI driver chart values (values.yaml, secrets.yaml, ...; merged in order). */
  csi?: unknown[];
  /** Hash plain-text passwords (bcrypt) instead of keeping them. Default true. */
  hashPasswords?: boolean;
  /** bcrypt cost for hashed passwords (default 10). */
  bcryptCost?: number;
}

export interface MigrationResult {
  values: Doc;
  /** A Secret holding the CSI chart's infra kubeconfig, when it had one. */
  kubeconfigSecret?: Doc;
  notes: string[];
}

export const INFRA_KUBECONFIG_SECRET = { name: "infra-kubeconfig", key: "kubeconfig" };

function isMap(value: unknown): value is Doc {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Helm-style merge: later files win; maps merge key by key. */
function merge(docs: unknown[]): Doc {
  const out: Doc = {};
  const into = (target: Doc, source: Doc) => {
    for (const [k, v] of Object.entries(source)) {
      if (isMap(v) && isMap(target[k])) into(target[k] as Doc, v);
      else target[k] = structuredClone(v);
    }
  };
  for (const doc of docs) {
    if (doc === undefined || doc === null) continue;
    if (!isMap(doc)) throw new Error("a values file must be a mapping");
    into(out, doc);
  }
  return out;
}

function take(doc: Doc, key: string): unknown {
  const value = doc[key];
  delete doc[key];
  return value;
}

/** Maps the kubevirt-redfish chart's deployment-level keys; the config-level keys are left for translateLegacyShapes. */
function fromRedfishChart(chart: Doc, values: Doc, deploy: Doc, notes: string[]): void {
  const global = take(chart, "global");
  if (global !== undefined) notes.push("global: dropped: the module runs in pepr-system with Pepr's controller image");
  const deployment = take(chart, "deployment");
  if (isMap(deployment)) {
    notes.push(
      "deployment: dropped: Redfish runs in the Pepr watcher pod; size it with watcher.resources, log level with watcher.env LOG_LEVEL",
    );
  }
  const service = take(chart, "service");
  if (isMap(service)) {
    const redfishService: Doc = {};
    if (typeof service.type === "string") redfishService.type = service.type;
    const ports = Array.isArray(service.ports) ? service.ports : [];
    const port = isMap(ports[0]) ? ports[0].port : undefined;
    if (typeof port === "number") redfishService.port = port;
    if (isMap(service.annotations) && Object.keys(service.annotations).length > 0) redfishService.annotations = service.annotations;
    if (service.enabled === false) notes.push("service.enabled: false ignored: the Redfish Service is created whenever Redfish is enabled");
    if (Object.keys(redfishService).length > 0) deploy.redfishService = redfishService;
    notes.push("service: now deploy.redfishService (Service kubevirt-infra-redfish in pepr-system)");
  }
  const route = take(chart, "route");
  if (isMap(route)) {
    const tls = isMap(route.tls) ? route.tls : {};
    const out: Doc = { enabled: route.enabled !== false };
    if (typeof route.host === "string" && route.host !== "") out.host = route.host;
    const termination = typeof tls.termination === "string" ? tls.termination : "edge";
    if (termination === "passthrough") {
      out.termination = "reencrypt";
      notes.push("route.tls.termination: passthrough is not offered; using reencrypt (the router re-encrypts to the module's certificate)");
    } else {
      out.termination = termination;
    }
    const insecure = tls.insecureEdgeTerminationPolicy;
    if (insecure === "Allow") notes.push("route.tls.insecureEdgeTerminationPolicy: Allow (plain HTTP) is not offered; using Redirect");
    else if (typeof insecure === "string") out.insecureEdgeTerminationPolicy = insecure;
    if (isMap(route.annotations) && Object.keys(route.annotations).length > 0) out.annotations = route.annotations;
    deploy.route = out;
    if (out.enabled && out.termination === "edge") {
      // The legacy chart pairs an edge Route with plain HTTP in the pod (server.tls.enabled: false).
      const server = isMap(chart.server) ? chart.server : {};
      const serverTls = isMap(server.tls) ? server.tls : {};
      if (serverTls.enabled === undefined) {
        chart.server = { ...server, tls: { ...serverTls, enabled: false } };
        notes.push("route: edge termination needs plain HTTP behind the router: redfish.tls.enabled set to false");
      }
    }
  }
  for (const key of ["rbac", "volumes", "configMap", "securityContext", "podSecurityContext"]) {
    if (take(chart, key) !== undefined) {
      notes.push(`${key}: dropped: the module's RBAC, config objects and pod security come with its chart (docs/deploy.md)`);
    }
  }
  for (const key of ["nodeSelector", "tolerations", "affinity"]) {
    const value = take(chart, key);
    if (value === undefined || (isMap(value) && Object.keys(value).length === 0) || (Array.isArray(value) && value.length === 0)) continue;
    values.watcher = { ...(isMap(values.watcher) ? values.watcher : {}), [key]: value };
    notes.push(`${key}: now watcher.${key} (Redfish runs in the watcher pod)`);
  }
  if (!("role" in values)) values.role = "infra";
}

/** Maps the CSI chart's keys that are not config; infra.* and nodeMapping are left for translateLegacyShapes. */
function fromCsiChart(chart: Doc, values: Doc, notes: string[]): Doc | undefined {
  let secret: Doc | undefined;
  if (isMap(chart.infra) && typeof chart.infra.kubeconfig === "string" && chart.infra.kubeconfig.trim() !== "") {
    secret = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: INFRA_KUBECONFIG_SECRET.name, namespace: "pepr-system" },
      type: "Opaque",
      stringData: { [INFRA_KUBECONFIG_SECRET.key]: chart.infra.kubeconfig },
    };
    delete chart.infra.kubeconfig;
    chart.infra.kubeconfigSecret = { ...INFRA_KUBECONFIG_SECRET };
    notes.push(
      "infra.kubeconfig: moved to a Secret (pepr-system/infra-kubeconfig) referenced by infra.kubeconfigSecret. The CSI driver's " +
        "account may create and delete DataVolumes; node-identity only reads VMs and VMIs, so prefer a read-only account (docs/deploy.md)",
    );
  }
  for (const key of ["images", "storageClass", "useDownstreamImages", "imageSync"]) {
    if (take(chart, key) !== undefined) notes.push(`${key}: dropped: it configures the CSI driver, which stays installed`);
  }
  if (chart.nodeMapping !== undefined || isMap(chart.infra)) {
    values.role = values.role === "infra" ? "both" : "nested";
    chart.nodeIdentity = { ...(isMap(chart.nodeIdentity) ? chart.nodeIdentity : {}), enabled: true };
    notes.push(
      "nodeIdentity.enabled: true: node-identity replaces the CSI chart's one-shot annotation Job (you may turn the Job off). " +
        "On the infra cluster, datavolumePolicy can require the same infra.labels on the driver's DataVolumes",
    );
  }
  return secret;
}

function hashUserPasswords(config: Doc, cost: number, notes: string[]): void {
  const users = isMap(config.authentication) && Array.isArray(config.authentication.users) ? config.authentication.users : [];
  let hashed = 0;
  for (const user of users) {
    if (isMap(user) && typeof user.password === "string" && user.passwordHash === undefined) {
      user.passwordHash = bcrypt.hashSync(user.password, cost);
      delete user.password;
      hashed++;
    }
  }
  if (hashed > 0) notes.push(`authentication.users: ${hashed} plain-text password(s) replaced by bcrypt hashes (the users log in with the same passwords)`);
}

export function migrateValues(input: MigrationInput): MigrationResult {
  const notes: string[] = [];
  const values: Doc = {};
  const deploy: Doc = {};
  const redfish = input.redfish?.length ? merge(input.redfish) : undefined;
  const csi = input.csi?.length ? merge(input.csi) : undefined;
  if (!redfish && !csi) throw new Error("nothing to migrate: give --redfish and/or --csi values files");

  if (redfish) fromRedfishChart(redfish, values, deploy, notes);
  const kubeconfigSecret = csi ? fromCsiChart(csi, values, notes) : undefined;
  if (redfish && csi) notes.push("role: both: the two legacy charts usually run on different clusters; split the file per cluster if so");

  // Both charts' remaining keys are config-shaped: the config loader's legacy-shape translation takes them from here.
  const legacyShaped = merge([redfish ?? {}, csi ?? {}]);
  const translated = translateLegacyShapes(legacyShaped);
  notes.push(...translated.warnings);
  if (translated.errors.length > 0) throw new Error(translated.errors.join("\n"));
  const config = translated.doc as Doc;
  if (input.hashPasswords !== false) hashUserPasswords(config, input.bcryptCost ?? 10, notes);

  const result: Doc = { role: values.role, ...config };
  if (values.watcher) result.watcher = values.watcher;
  if (Object.keys(deploy).length > 0) result.deploy = deploy;
  // Validated exactly as the module (and the chart's schema) will: a value that would not load fails here.
  const resolved = resolveValues(result, "migrated values");
  notes.push(...resolved.warnings);
  return { values: result, kubeconfigSecret, notes };
}

// ---------------------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------------------

function readYaml(file: string): unknown {
  const doc = YAML.parseDocument(fs.readFileSync(file, "utf8"));
  if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
  return doc.toJS();
}

const USAGE = "usage: migrate-values [--redfish f]... [--csi f]... [-o out.yaml] [--secret-out secret.yaml] [--keep-plain-passwords]";

function main(argv: string[]): void {
  let values: { redfish?: string[]; csi?: string[]; out?: string; "secret-out"?: string; "keep-plain-passwords"?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        redfish: { type: "string", multiple: true },
        csi: { type: "string", multiple: true },
        out: { type: "string", short: "o" },
        "secret-out": { type: "string" },
        "keep-plain-passwords": { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new Error(`${error instanceof Error ? error.message : String(error)}; ${USAGE}`);
  }
  const redfish = (values.redfish ?? []).map(readYaml);
  const csi = (values.csi ?? []).map(readYaml);
  const out = values.out;
  const secretOut = values["secret-out"];
  const hashPasswords = values["keep-plain-passwords"] !== true;
  const result = migrateValues({ redfish, csi, hashPasswords });
  if (result.kubeconfigSecret && !secretOut) {
    throw new Error("the CSI values hold an infra kubeconfig: give --secret-out <file> to write it as a Secret manifest (it never goes into the values)");
  }
  const header = ["kubevirt-infra values, migrated by scripts/migrate-values.ts. Review these notes:", ...result.notes.map(n => `- ${n}`)]
    .map(l => `# ${l}`)
    .join("\n");
  const text = `${header}\n${YAML.stringify(result.values, { lineWidth: 0 })}`;
  if (out) fs.writeFileSync(out, text, { mode: 0o600 });
  else process.stdout.write(text);
  if (result.kubeconfigSecret && secretOut) {
    fs.writeFileSync(secretOut, YAML.stringify(result.kubeconfigSecret, { lineWidth: 0 }), { mode: 0o600 });
  }
  for (const note of result.notes) process.stderr.write(`note: ${note}\n`);
  if (out) process.stderr.write(`wrote ${path.resolve(out)}${secretOut && result.kubeconfigSecret ? ` and ${path.resolve(secretOut)}` : ""}\n`);
}

if (require.main === module) {
  try {
    main(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`migrate-values failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}

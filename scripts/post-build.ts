// `npm run build` = `pepr build` + this step: it turns Pepr's output into a deployment that installs on real
// clusters (see docs/deploy.md). It rewrites, in dist/:
//   pepr-module-kubevirt-infra.yaml   the whole deployment for the given values (default: module defaults)
//   kubevirt-infra-chart/             templates, values.yaml and values.schema.json (module config + deploy)
//   kubevirt-infra-extras.yaml        what `npx pepr deploy` does not install (RBAC, Service, config objects)
//
//   tsx scripts/post-build.ts [--values my-values.yaml] [--dist dir]     (also: KUBEVIRT_INFRA_VALUES=file)
//
// Idempotent: Pepr's original files are kept in dist/.pepr-original/ and every run starts from them, so
// re-running (with the same or other values) always gives the output for those values. Exits non-zero, with
// the reason, when an input is missing or the values are invalid.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import YAML from "yaml";
import { loadBuiltCapabilities } from "./deploy/capabilities";
import { chartSchema, chartTemplates, chartValuesText, MARKER } from "./deploy/chart";
import { buildManifest, dataVolumeWebhookPatch, forSharedServiceAccount, moduleObjects, resourceName, type BuildContext, type KubeObject } from "./deploy/manifest";
import { resolveValues } from "./deploy/values";

const ROOT = path.resolve(__dirname, "..");
const PRISTINE_DIR = ".pepr-original";

export interface PostBuildOptions {
  dist: string;
  /** A values file (YAML); undefined = the module's defaults. */
  valuesFile?: string;
  log?: (line: string) => void;
}

export interface PostBuildResult {
  manifestPath: string;
  chartDir: string;
  extrasPath: string;
  warnings: string[];
}

function readPackageUuid(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { pepr?: { uuid?: string } };
  const uuid = pkg.pepr?.uuid;
  if (!uuid) throw new Error("package.json has no pepr.uuid");
  return uuid;
}

/** Pepr's original text of a generated file: saved on first sight, read back once the file carries our marker. */
function pristineText(dist: string, relative: string): string {
  const current = path.join(dist, relative);
  const saved = path.join(dist, PRISTINE_DIR, relative);
  if (!fs.existsSync(current)) throw new Error(`${current} is missing: run \`pepr build\` first (npm run build does both)`);
  const text = fs.readFileSync(current, "utf8");
  if (!text.includes(MARKER)) {
    fs.mkdirSync(path.dirname(saved), { recursive: true });
    fs.writeFileSync(saved, text);
    return text;
  }
  if (!fs.existsSync(saved)) {
    throw new Error(`${current} was already post-processed but Pepr's original (${saved}) is gone: run npm run build`);
  }
  return fs.readFileSync(saved, "utf8");
}

export function parseManifest(text: string, source: string): KubeObject[] {
  const docs = YAML.parseAllDocuments(text);
  const objects: KubeObject[] = [];
  for (const doc of Array.isArray(docs) ? docs : [docs]) {
    if (doc.errors.length > 0) throw new Error(`${source}: ${doc.errors[0].message}`);
    const value = doc.toJS() as KubeObject | null;
    if (value === null) continue;
    if (typeof value !== "object" || !value.kind || !value.metadata?.name) throw new Error(`${source}: a document is not a Kubernetes object`);
    objects.push(value);
  }
  return objects;
}

export function manifestText(objects: KubeObject[], header: string): string {
  const body = objects.map(o => YAML.stringify(o, { lineWidth: 0 }).trimEnd()).join("\n---\n");
  return `${header
    .split("\n")
    .map(l => `# ${l}`.trimEnd())
    .join("\n")}\n${body}\n`;
}

function readValuesFile(file: string): unknown {
  if (!fs.existsSync(file)) throw new Error(`values file ${file} does not exist`);
  const doc = YAML.parseDocument(fs.readFileSync(file, "utf8"), { uniqueKeys: true });
  if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}`);
  return doc.toJS();
}

function writeIfChanged(file: string, text: string): void {
  if (fs.existsSync(file) && fs.readFileSync(file, "utf8") === text) return;
  fs.writeFileSync(file, text);
}

async function buildContext(dist: string, uuid: string): Promise<BuildContext> {
  const bundle = path.join(dist, `pepr-${uuid}.js`);
  const capabilities = await loadBuiltCapabilities(bundle);
  const chartValues = YAML.parse(chartValuesText(pristineText(dist, `${uuid}-chart/values.yaml`))) as BuildContext["chartValues"];
  const ctx: BuildContext = { uuid, capabilities, chartValues };
  if (ctx.capabilities.length === 0) throw new Error(`${bundle} reported no capabilities`);
  return ctx;
}

/**
 * The whole deployment for a values document, as `npm run build -- --values` would write it, without writing
 * anything: the sandbox installs it the way `helm install/upgrade` would for the config it applies. Throws
 * (with every problem listed) when the values are invalid.
 */
export async function renderDeployment(distDir: string, values: unknown, source = "values"): Promise<KubeObject[]> {
  const dist = path.resolve(distDir);
  const uuid = readPackageUuid();
  const manifestRel = `pepr-module-${uuid}.yaml`;
  const resolved = resolveValues(values, source);
  return buildManifest(parseManifest(pristineText(dist, manifestRel), manifestRel), await buildContext(dist, uuid), resolved);
}

export async function postBuild(opts: PostBuildOptions): Promise<PostBuildResult> {
  const log = opts.log ?? (() => undefined);
  const dist = path.resolve(opts.dist);
  const uuid = readPackageUuid();
  const manifestRel = `pepr-module-${uuid}.yaml`;
  const chartRel = `${uuid}-chart`;

  const values = resolveValues(opts.valuesFile ? readValuesFile(opts.valuesFile) : {}, opts.valuesFile ?? "defaults");
  const ctx = await buildContext(dist, uuid);

  const peprManifest = parseManifest(pristineText(dist, manifestRel), manifestRel);
  const peprValues = pristineText(dist, `${chartRel}/values.yaml`);
  const peprSchema = JSON.parse(pristineText(dist, `${chartRel}/values.schema.json`)) as Record<string, unknown>;
  const watcherTemplate = pristineText(dist, `${chartRel}/templates/watcher-deployment.yaml`);

  const name = resourceName(ctx);
  const source = opts.valuesFile ? `values ${path.basename(opts.valuesFile)}` : "the module's default values";
  const manifest = buildManifest(peprManifest, ctx, values);
  const manifestPath = path.join(dist, manifestRel);
  writeIfChanged(
    manifestPath,
    manifestText(manifest, `${MARKER}: Pepr's manifest for kubevirt-infra, completed for ${source}.\nInstall: kubectl apply -f ${manifestRel}   (docs/deploy.md)`),
  );

  const findPepr = (kind: string, objectName: string) => {
    const found = peprManifest.find(o => o.kind === kind && o.metadata.name === objectName);
    if (!found) throw new Error(`${manifestRel} has no ${kind} ${objectName}`);
    return found;
  };
  const chartDir = path.join(dist, chartRel);
  const templates = chartTemplates(ctx, {
    mutating: findPepr("MutatingWebhookConfiguration", name),
    validating: findPepr("ValidatingWebhookConfiguration", name),
    watcherDeployment: watcherTemplate,
  });
  for (const [file, text] of Object.entries(templates)) writeIfChanged(path.join(chartDir, "templates", file), text);
  writeIfChanged(path.join(chartDir, "values.yaml"), chartValuesText(peprValues));
  writeIfChanged(path.join(chartDir, "values.schema.json"), `${JSON.stringify(chartSchema(peprSchema), null, 2)}\n`);

  // `npx pepr deploy` builds and applies Pepr's objects itself; these are what it leaves out.
  // Pepr's own ClusterRoleBinding binds its ClusterRole already; the watcher's binding is ours.
  const rbacKinds = new Set(["ClusterRole", "Role", "RoleBinding", "ClusterRoleBinding"]);
  const webhookPatch = dataVolumeWebhookPatch(ctx, values, manifest);
  const extras = forSharedServiceAccount(
    [
      ...manifest.filter(o => rbacKinds.has(o.kind) && o.metadata.name.startsWith(name) && !(o.kind === "ClusterRoleBinding" && o.metadata.name === name)),
      ...moduleObjects(ctx, values),
      ...(webhookPatch ? [webhookPatch] : []),
    ],
    ctx,
  );
  const extrasPath = path.join(dist, `${uuid}-extras.yaml`);
  writeIfChanged(
    extrasPath,
    manifestText(
      extras.filter((o, i) => extras.findIndex(x => x.kind === o.kind && x.metadata.name === o.metadata.name && x.metadata.namespace === o.metadata.namespace) === i),
      `${MARKER}: for installs with \`npx pepr deploy\`: apply after it (kubectl apply -f ${uuid}-extras.yaml).\n` +
        `It replaces Pepr's ClusterRole/Role with least-privilege rules (pepr deploy gives both Deployments one\n` +
        `ServiceAccount, so the watcher's rules are bound to it) and adds the Redfish Service and config objects.\n` +
        `pepr deploy renders both webhooks failurePolicy Ignore; the ValidatingWebhookConfiguration below is a patch\n` +
        `(kubectl apply merges it by webhook name) that makes the DataVolume webhook fail closed in the policed namespaces.`,
    ),
  );

  for (const warning of values.warnings) log(`warning: ${warning}`);
  log(`post-build: ${manifestRel}, ${chartRel}/ and ${uuid}-extras.yaml completed for ${source} (role ${values.config.role})`);
  return { manifestPath, chartDir, extrasPath, warnings: values.warnings };
}

function cliOptions(argv: string[]): PostBuildOptions {
  const { values } = parseArgs({
    args: argv,
    options: { values: { type: "string", short: "f" }, dist: { type: "string" } },
    strict: true,
    allowPositionals: false,
  });
  const valuesFile = values.values ?? (process.env.KUBEVIRT_INFRA_VALUES || undefined);
  return { dist: path.resolve(values.dist ?? path.join(ROOT, "dist")), valuesFile: valuesFile && path.resolve(valuesFile) };
}

if (require.main === module) {
  (async () => {
    try {
      await postBuild({ ...cliOptions(process.argv.slice(2)), log: line => console.error(line) });
    } catch (error) {
      console.error(`post-build failed: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(1);
    }
  })();
}

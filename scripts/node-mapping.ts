// Dry run of node-identity: for every Node of the current cluster, the infra VM the module would map it to,
// which source said so, whether the infra cluster confirms it, and what the module would change. Reads only
// (Nodes, the config ConfigMap, the infra kubeconfig Secret, the infra VMs); writes nothing.
//
//   KUBECONFIG=~/.kube/nested npx tsx scripts/node-mapping.ts            # table
//   KUBECONFIG=~/.kube/nested npx tsx scripts/node-mapping.ts --json     # machine-readable
//   ... scripts/node-mapping.ts --config my-values.yaml                  # preview a config before applying it
//
// When node-identity is disabled (or role is infra), the report shows what it would do once enabled.
import fs from "node:fs";
import { parseArgs } from "node:util";
import { CoreV1Api, KubeConfig, type V1Node } from "@kubernetes/client-node";
import { CONFIG_MAP_KEY, CONFIG_MAP_NAME, CONFIG_NAMESPACE, loadConfig } from "../capabilities/config/load";
import type { ModuleConfig } from "../capabilities/config/schema";
import { decide, type MappingSource } from "../capabilities/node-identity/decide";
import { toNodeView } from "../capabilities/node-identity/identity";
import { VmIndex } from "../capabilities/node-identity/infra-index";
import { listInfraSnapshot } from "../capabilities/node-identity/infra-mirror";
import { nodeIdentitySettings } from "../capabilities/node-identity/settings";

export type RowAction = "unchanged" | "set" | "refused" | "unmapped" | "malformed";

export interface MappingRow {
  node: string;
  action: RowAction;
  source?: MappingSource;
  vm?: string;
  /** verified | unverified (why) | the problem */
  check?: string;
  /** What the module would write (annotation keys and spec.providerID), for action "set". */
  changes?: Record<string, string>;
  problem?: string;
}

export interface MappingReport {
  active: boolean;
  /** Why the report is hypothetical, or what limited it (no infra access). */
  notes: string[];
  infra: { configured: boolean; namespaces: string[]; vms?: number; error?: string };
  rows: MappingRow[];
}

function errorText(error: unknown): string {
  const e = error as { code?: unknown; statusCode?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === "number" ? e.code : typeof e?.statusCode === "number" ? e.statusCode : undefined;
  const message = typeof e?.message === "string" ? e.message.split("\n")[0] : String(error);
  return `${code ? `HTTP ${code}: ` : ""}${message}`.slice(0, 200);
}

function isNotFound(error: unknown): boolean {
  const e = error as { code?: unknown; statusCode?: unknown } | undefined;
  return e?.code === 404 || e?.statusCode === 404;
}

async function readClusterConfigYaml(core: CoreV1Api): Promise<string | undefined> {
  try {
    const configMap = await core.readNamespacedConfigMap({ namespace: CONFIG_NAMESPACE, name: CONFIG_MAP_NAME });
    return configMap.data?.[CONFIG_MAP_KEY];
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** The report for the cluster `kc` points at; `configYaml` replaces the cluster's ConfigMap (preview). */
export async function nodeMappingReport(kc: KubeConfig, opts: { configYaml?: string } = {}): Promise<MappingReport> {
  const core = kc.makeApiClient(CoreV1Api);
  const configYaml = opts.configYaml ?? (await readClusterConfigYaml(core));
  const loaded = loadConfig({ configYaml });
  if (!loaded.ok) throw new Error(`the configuration is invalid:\n  ${loaded.errors.join("\n  ")}`);

  const notes: string[] = [];
  let effective: ModuleConfig = loaded.config;
  let result = nodeIdentitySettings(effective);
  const active = result.active;
  if (!result.active) {
    notes.push(`node-identity is inactive (${result.reason}): showing what it would do once enabled`);
    effective = { ...effective, role: effective.role === "infra" ? "both" : effective.role, nodeIdentity: { ...effective.nodeIdentity, enabled: true } };
    result = nodeIdentitySettings(effective);
  }
  if (!result.active) throw new Error(`node-identity cannot be evaluated: ${result.reason}`);
  const { settings } = result;
  notes.push(...result.warnings);

  const infra: MappingReport["infra"] = { configured: settings.infraKubeconfig !== undefined, namespaces: [...settings.infraNamespaces] };
  let index: VmIndex | undefined;
  if (settings.infraKubeconfig) {
    const { name, key } = settings.infraKubeconfig;
    try {
      const secret = await core.readNamespacedSecret({ namespace: CONFIG_NAMESPACE, name });
      const encoded = secret.data?.[key];
      if (encoded === undefined) throw new Error(`Secret ${CONFIG_NAMESPACE}/${name} has no key ${key}`);
      const snapshot = await listInfraSnapshot(Buffer.from(encoded, "base64").toString("utf8"), settings.infraNamespaces);
      index = new VmIndex(snapshot);
      infra.vms = index.size;
    } catch (error) {
      infra.error = isNotFound(error) ? `Secret ${CONFIG_NAMESPACE}/${name} not found` : errorText(error);
      notes.push(`infra cluster not available (${infra.error}): no discovery, no verification`);
    }
  }

  const nodes: V1Node[] = (await core.listNode()).items;
  const rows = nodes
    .map((obj): MappingRow => {
      let node;
      try {
        node = toNodeView(obj);
      } catch (error) {
        return { node: obj.metadata?.name ?? "(unnamed)", action: "malformed", problem: errorText(error) };
      }
      const { resolution, verification, apply, changes } = decide(node, settings, index);
      if (!resolution) return { node: node.name, action: "unmapped" };
      const row: MappingRow = {
        node: node.name,
        action: "unchanged",
        source: resolution.source,
        vm: `${resolution.target.namespace}/${resolution.target.name}`,
        check: verification?.outcome === "unverified" ? `unverified (${verification.reason})` : verification?.outcome,
      };
      if (verification?.outcome === "failed") {
        row.check = verification.problem;
        row.problem = verification.message;
      }
      if (!apply) return { ...row, action: "refused" };
      const writes: Record<string, string> = { ...changes.annotations };
      if (changes.providerID !== undefined) writes["spec.providerID"] = changes.providerID;
      return Object.keys(writes).length > 0 ? { ...row, action: "set", changes: writes } : row;
    })
    .sort((a, b) => a.node.localeCompare(b.node));

  return { active, notes, infra, rows };
}

export function formatReport(report: MappingReport): string {
  const header = ["NODE", "SOURCE", "VM", "CHECK", "ACTION"];
  const lines = report.rows.map(r => [
    r.node,
    r.source ?? "-",
    r.vm ?? "-",
    r.check ?? "-",
    r.action === "set" ? `set ${Object.keys(r.changes ?? {}).join(", ")}` : r.action,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map(l => l[i].length)));
  const render = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("  ");
  const out = [render(header), ...lines.map(render)];
  const problems = report.rows.filter(r => r.problem).map(r => `  ${r.node}: ${r.problem}`);
  if (problems.length > 0) out.push("", "Problems:", ...problems);
  const infra = report.infra.configured
    ? `infra: ${report.infra.error ? `unavailable (${report.infra.error})` : `${report.infra.vms} VMs in ${report.infra.namespaces.join(", ")}`}`
    : "infra: not configured (no discovery, no verification)";
  const count = (action: RowAction) => report.rows.filter(r => r.action === action).length;
  out.push(
    "",
    infra,
    `${report.rows.length} nodes: ${count("unchanged")} correct, ${count("set")} to set, ${count("refused")} refused, ${count("unmapped")} unmapped` +
      (count("malformed") ? `, ${count("malformed")} malformed` : ""),
  );
  for (const note of report.notes) out.push(`note: ${note}`);
  return out.join("\n");
}

const USAGE = "usage: node-mapping [--json] [--config <config.yaml>]   (cluster from KUBECONFIG)";

export async function main(argv: string[], write: (text: string) => void = t => process.stdout.write(t)): Promise<number> {
  let args: { json?: boolean; config?: string; help?: boolean };
  try {
    args = parseArgs({
      args: argv,
      options: { json: { type: "boolean" }, config: { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    write(`node-mapping: ${error instanceof Error ? error.message : String(error)}\n${USAGE}\n`);
    return 2;
  }
  if (args.help) {
    write(`${USAGE}\n`);
    return 0;
  }
  const json = args.json === true;
  const configFile = args.config;
  try {
    const kc = new KubeConfig();
    kc.loadFromDefault();
    const configYaml = configFile === undefined ? undefined : fs.readFileSync(configFile, "utf8");
    const report = await nodeMappingReport(kc, { configYaml });
    write(json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
    return 0;
  } catch (error) {
    write(`node-mapping: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then(code => process.exit(code));
}

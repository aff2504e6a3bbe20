// The Redfish Service, Route and SCC binding are described once (scripts/deploy/module-objects.ts): the manifest
// evaluates the description, the chart prints it as a Helm template. `helm` is not installed here (no Debian
// package), so this test renders the chart's template TEXT with an evaluator of the Go-template actions it
// contains, written from Go's text/template and sprig semantics (truth, and/or, quote, printf, toYaml | nindent,
// fail), and compares the objects with the manifest's for the same values. An action it does not know fails.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { build, copyDist, fullValues, helmMerge, isMap, NAME, removeDir, UUID } from "./helpers";

type Json = Record<string, any>;

// ---- a Go text/template evaluator for the actions these templates use ----------------------------------

type Token = { kind: "text"; text: string } | { kind: "action"; body: string };

function tokenize(template: string): Token[] {
  const tokens: Token[] = [];
  let at = 0;
  for (const match of template.matchAll(/\{\{(-?)\s*([\s\S]*?)\s*(-?)\}\}/g)) {
    let text = template.slice(at, match.index);
    if (match[1] === "-") text = text.replace(/\s+$/, "");
    tokens.push({ kind: "text", text }, { kind: "action", body: match[2] });
    at = match.index + match[0].length;
    if (match[3] === "-") throw new Error("right trim is not used by these templates");
  }
  tokens.push({ kind: "text", text: template.slice(at) });
  return tokens;
}

/** Go templates' truth. */
function truthy(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === "") return false;
  if (Array.isArray(value)) return value.length > 0;
  if (isMap(value)) return Object.keys(value).length > 0;
  return true;
}

const FUNCTIONS: Record<string, (...args: unknown[]) => unknown> = {
  eq: (a, b) => a === b,
  ne: (a, b) => a !== b,
  not: a => !truthy(a),
  // Go: `and` answers the first false argument or the last; `or` the first true one or the last.
  and: (...args) => args.find(a => !truthy(a)) ?? args[args.length - 1],
  or: (...args) => args.find(a => truthy(a)) ?? args[args.length - 1],
  ternary: (yes, no, condition) => (condition === true ? yes : no),
  quote: a => (a === undefined || a === null ? "" : JSON.stringify(String(a))),
  printf: (format, ...args) => {
    let i = 0;
    return String(format).replace(/%s/g, () => String(args[i++]));
  },
};

/** Evaluates one pipeline-free expression: `.Values.a.b`, `.`, a literal, or `fn arg...` / `(fn arg...)`. */
function evaluate(expression: string, values: Json, dot: unknown): unknown {
  const tokens = expression.match(/"(?:[^"\\]|\\.)*"|\(|\)|[^\s()]+/g) ?? [];
  let at = 0;
  const operand = (): unknown => {
    const token = tokens[at++];
    if (token === "(") {
      const value = call();
      if (tokens[at++] !== ")") throw new Error(`unbalanced ( in ${expression}`);
      return value;
    }
    if (token.startsWith('"')) return JSON.parse(token);
    if (/^-?\d+$/.test(token)) return Number(token);
    if (token === ".") return dot;
    if (token.startsWith(".Values")) return token.slice(".Values".length).split(".").slice(1).reduce<unknown>((v, p) => (isMap(v) ? v[p] : undefined), values);
    throw new Error(`unknown operand ${token} in ${expression}`);
  };
  const call = (): unknown => {
    const name = tokens[at];
    if (name in FUNCTIONS) {
      at++;
      const args: unknown[] = [];
      while (at < tokens.length && tokens[at] !== ")") args.push(operand());
      return FUNCTIONS[name](...args);
    }
    return operand();
  };
  const value = call();
  if (at !== tokens.length) throw new Error(`unparsed rest of ${expression}`);
  return value;
}

function toYamlIndented(value: unknown, indent: number): string {
  const yaml = YAML.stringify(value).trimEnd();
  return `\n${yaml
    .split("\n")
    .map(line => " ".repeat(indent) + line)
    .join("\n")}`;
}

/** Renders a template; throws what `fail` says. */
function renderTemplate(template: string, values: Json): string {
  const tokens = tokenize(template);
  let at = 0;
  const block = (dot: unknown, emit: boolean): string => {
    let out = "";
    while (at < tokens.length) {
      const token = tokens[at++];
      if (token.kind === "text") {
        if (emit) out += token.text;
        continue;
      }
      const body = token.body;
      if (body.startsWith("/*")) continue;
      if (body === "end") return out;
      let match: RegExpExecArray | null;
      if ((match = /^(if|with) (.+)$/.exec(body))) {
        const value = evaluate(match[2], values, dot);
        const inner = block(match[1] === "with" ? value : dot, emit && truthy(value));
        if (emit && truthy(value)) out += inner;
      } else if ((match = /^toYaml \. \| nindent (\d+)$/.exec(body))) {
        if (emit) out += toYamlIndented(dot, Number(match[1]));
      } else if ((match = /^fail (".*")$/.exec(body))) {
        if (emit) throw new Error(JSON.parse(match[1]));
      } else if (emit) {
        out += String(evaluate(body, values, dot) ?? "");
      }
    }
    return out;
  };
  return block(values, true);
}

// ---- the comparison --------------------------------------------------------------------------------------

let dist: string;
let chartValues: Json;
let templates: Record<string, string>;

const OBJECTS = [
  { file: "kubevirt-infra-redfish-service.yaml", kind: "Service", name: "kubevirt-infra-redfish" },
  { file: "kubevirt-infra-redfish-route.yaml", kind: "Route", name: "kubevirt-infra-redfish" },
  { file: "kubevirt-infra-nonroot-scc.yaml", kind: "RoleBinding", name: `${NAME}-nonroot-v2` },
];

beforeAll(async () => {
  dist = await copyDist();
  await build(dist);
  const chart = path.join(dist, `${UUID}-chart`);
  chartValues = YAML.parse(fs.readFileSync(path.join(chart, "values.yaml"), "utf8"));
  templates = Object.fromEntries(OBJECTS.map(o => [o.file, fs.readFileSync(path.join(chart, "templates", o.file), "utf8")]));
});

afterAll(() => removeDir(dist));

const CASES: [string, Json][] = [
  ["the defaults", {}],
  ["a full install (Route, serving certificate, SCC)", fullValues()],
  [
    "a NodePort Service with annotations and an edge Route to plain HTTP",
    {
      role: "infra",
      chassis: [{ name: "c", namespace: "vms" }],
      redfish: { tls: { enabled: false }, port: 9000 },
      deploy: {
        redfishService: { type: "NodePort", port: 443, nodePort: 30443, annotations: { "metallb.universe.tf/address-pool": "lab" } },
        route: { enabled: true, termination: "edge", annotations: { "haproxy.router.openshift.io/timeout": "60s" } },
      },
    },
  ],
  ["a ClusterIP Service ignores nodePort", { deploy: { redfishService: { nodePort: 30443 } } }],
  ["a reencrypt Route with its destination CA", { deploy: { route: { enabled: true, destinationCACertificate: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----" } } }],
  ["role nested: no Redfish objects", { role: "nested", deploy: { route: { enabled: true }, openshift: { nonrootSCC: true } } }],
  ["Redfish disabled", { redfish: { enabled: false }, deploy: { route: { enabled: true } } }],
];

describe("objects described once: the chart's templates render what the manifest holds", () => {
  it.each(CASES)("%s", async (_name, userValues) => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-chart-objects-"));
    try {
      fs.cpSync(dist, d, { recursive: true });
      const manifest = await build(d, userValues);
      const merged = helmMerge(chartValues, userValues) as Json;
      let rendered = 0;
      for (const { file, kind, name } of OBJECTS) {
        const text = renderTemplate(templates[file], merged);
        const fromChart = YAML.parseAllDocuments(text)
          .map(doc => doc.toJS())
          .filter(o => o !== null);
        const fromManifest = manifest.find(kind, name);
        expect(fromChart, file).toEqual(fromManifest ? [fromManifest] : []);
        rendered += fromChart.length;
      }
      expect(rendered).toBe(
        OBJECTS.filter(o => manifest.find(o.kind, o.name)).length,
      );
    } finally {
      removeDir(d);
    }
  });

  it("the full install renders all three, so the comparison is not vacuous", async () => {
    const manifest = await build(dist, fullValues());
    for (const { kind, name } of OBJECTS) expect(manifest.find(kind, name), `${kind} ${name}`).toBeDefined();
  });

  it.each([
    ["edge with TLS", { redfish: { tls: { enabled: true } }, deploy: { route: { enabled: true, termination: "edge" } } }, "sends plain HTTP to the module"],
    ["reencrypt without TLS", { redfish: { tls: { enabled: false } }, deploy: { route: { enabled: true, termination: "reencrypt" } } }, "needs redfish.tls.enabled: true"],
  ])("refuses a Route %s in both, with the same message", async (_name, userValues, message) => {
    await expect(build(dist, userValues)).rejects.toThrow(message);
    expect(() => renderTemplate(templates["kubevirt-infra-redfish-route.yaml"], helmMerge(chartValues, userValues) as Json)).toThrow(message);
  });
});

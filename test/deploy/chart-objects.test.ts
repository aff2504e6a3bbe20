// Every object the module adds or rewrites is described once (scripts/deploy/module-objects.ts): the manifest
// evaluates the description, the chart prints it as a Helm template. `helm` is not installed here (no Debian
// package), so this test renders the chart's template TEXT with an evaluator of Go's text/template and the sprig
// functions the templates use (truth, variables, if/else/with/range, pipelines, list/dict/pick/omit/concat,
// toYaml | nindent, fail), written from their documented semantics, and compares the objects with the manifest's
// for the same values: the Redfish Service and Route, the config ConfigMap, the users Secret, the importer
// NetworkPolicies, the SCC binding, both webhook configurations, the watcher pod's ServiceAccount and readiness
// probe, and every ServiceAccount, (Cluster)Role and (Cluster)RoleBinding, rules in order. A function or construct
// the evaluator does not know fails the test.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import YAML from "yaml";
import { build, copyDist, fullValues, helmMerge, isMap, NAME, removeDir, UUID } from "./helpers";

type Json = Record<string, any>;

// ---- a Go text/template evaluator -------------------------------------------------------------------------

type Action = { kind: "text"; text: string } | { kind: "action"; body: string };

function tokenize(template: string): Action[] {
  const tokens: Action[] = [];
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

const asList = (value: unknown): unknown[] => {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`not a list: ${JSON.stringify(value)}`);
  return value;
};

/** sigs.k8s.io/yaml, as Helm's toYaml uses it: keys sorted, the final newline trimmed. */
const toYaml = (value: unknown) => YAML.stringify(value ?? null, { sortMapEntries: true, lineWidth: 0 }).replace(/\n$/, "");

const FUNCTIONS: Record<string, (...args: unknown[]) => unknown> = {
  eq: (a, b) => a === b,
  ne: (a, b) => a !== b,
  not: a => !truthy(a),
  // Go: `and` answers the first false argument or the last; `or` the first true one or the last.
  and: (...args) => args.find(a => !truthy(a)) ?? args[args.length - 1],
  or: (...args) => args.find(a => truthy(a)) ?? args[args.length - 1],
  ternary: (yes, no, condition) => {
    if (typeof condition !== "boolean") throw new Error(`ternary needs a bool, got ${JSON.stringify(condition)}`);
    return condition ? yes : no;
  },
  quote: a => (a === undefined || a === null ? '""' : JSON.stringify(String(a))),
  printf: (format, ...args) => {
    let i = 0;
    return String(format).replace(/%s/g, () => String(args[i++]));
  },
  list: (...args) => args,
  append: (list, item) => [...asList(list), item],
  concat: (...lists) => lists.flatMap(asList),
  uniq: list => [...new Set(asList(list))],
  compact: list => asList(list).filter(truthy),
  sortAlpha: list => asList(list).map(String).sort(),
  contains: (substring, text) => String(text).includes(String(substring)),
  default: (fallback, given) => (truthy(given) ? given : fallback),
  dict: (...pairs) => Object.fromEntries(Array.from({ length: pairs.length / 2 }, (_, i) => [String(pairs[2 * i]), pairs[2 * i + 1]])),
  pick: (map, ...keys) => Object.fromEntries(keys.map(String).filter(k => isMap(map) && Object.hasOwn(map, k)).map(k => [k, (map as Json)[k]])),
  omit: (map, ...keys) => Object.fromEntries(Object.entries(map as Json).filter(([k]) => !keys.includes(k))),
  set: (map, key, value) => {
    (map as Json)[String(key)] = value;
    return map;
  },
  len: value => (typeof value === "string" || Array.isArray(value) ? value.length : isMap(value) ? Object.keys(value).length : 0),
  gt: (a, b) => Number(a) > Number(b),
  join: (separator, list) => asList(list).join(String(separator)),
  dig: (...args) => {
    const map = args.pop();
    const fallback = args.pop();
    const found = args.map(String).reduce<unknown>((node, key) => (isMap(node) ? node[key] : undefined), map);
    return found === undefined ? fallback : found;
  },
  toYaml,
  toJson: value => JSON.stringify(value ?? null),
  nindent: (width, text) => `\n${String(text).replace(/^/gm, " ".repeat(Number(width)))}`,
  fail: message => {
    throw new Error(String(message));
  },
};

class Scope {
  private readonly variables = new Map<string, unknown>();
  constructor(
    readonly dot: unknown,
    readonly root: unknown,
    private readonly parent?: Scope,
  ) {}
  child(dot: unknown = this.dot): Scope {
    return new Scope(dot, this.root, this);
  }
  declare(name: string, value: unknown) {
    this.variables.set(name, value);
  }
  assign(name: string, value: unknown) {
    if (this.variables.has(name)) this.variables.set(name, value);
    else if (this.parent) this.parent.assign(name, value);
    else throw new Error(`assignment to undeclared ${name}`);
  }
  lookup(name: string): unknown {
    if (name === "$") return this.root;
    if (this.variables.has(name)) return this.variables.get(name);
    if (this.parent) return this.parent.lookup(name);
    throw new Error(`undefined variable ${name}`);
  }
}

/** `.a.b` on a value (Helm's `.Values.AsMap` is the values map itself). */
const fields = (value: unknown, chain: string): unknown =>
  chain
    .split(".")
    .filter(Boolean)
    .reduce<unknown>((node, key) => (key === "AsMap" ? node : isMap(node) ? node[key] : undefined), value);

function evaluatePipeline(text: string, scope: Scope): unknown {
  const tokens = text.match(/"(?:[^"\\]|\\.)*"|\(|\)|\||[^\s()|]+/g) ?? [];
  let at = 0;
  const operand = (): unknown => {
    const token = tokens[at++];
    if (token === "(") {
      const value = pipeline();
      if (tokens[at++] !== ")") throw new Error(`unbalanced ( in ${text}`);
      return value;
    }
    if (token.startsWith('"')) return JSON.parse(token);
    if (/^-?\d+$/.test(token)) return Number(token);
    if (token === "true" || token === "false") return token === "true";
    if (token === ".") return scope.dot;
    if (token.startsWith(".")) return fields(scope.dot, token);
    if (token.startsWith("$")) {
      const [name, ...chain] = token.split(".");
      return fields(scope.lookup(name), chain.join("."));
    }
    if (token in FUNCTIONS) return FUNCTIONS[token]();
    throw new Error(`unknown operand ${token} in ${text}`);
  };
  const command = (piped: unknown[]): unknown => {
    const name = tokens[at];
    if (!(name in FUNCTIONS)) {
      if (piped.length > 0) throw new Error(`cannot pipe into ${name} in ${text}`);
      return operand();
    }
    at++;
    const args: unknown[] = [];
    while (at < tokens.length && tokens[at] !== ")" && tokens[at] !== "|") args.push(operand());
    return FUNCTIONS[name](...args, ...piped);
  };
  const pipeline = (): unknown => {
    let value = command([]);
    while (tokens[at] === "|") {
      at++;
      value = command([value]);
    }
    return value;
  };
  const value = pipeline();
  if (at !== tokens.length) throw new Error(`unparsed rest of ${text}`);
  return value;
}

/** Renders a template for these values (`.Values`); throws what `fail` says. */
function renderTemplate(template: string, values: Json): string {
  const tokens = tokenize(template);
  let at = 0;
  /** Renders up to the matching end/else; answers the text and the keyword that ended the block. */
  const block = (scope: Scope, emit: boolean): { out: string; ended: string } => {
    let out = "";
    while (at < tokens.length) {
      const token = tokens[at++];
      if (token.kind === "text") {
        if (emit) out += token.text;
        continue;
      }
      const body = token.body;
      let match: RegExpExecArray | null;
      if (body.startsWith("/*")) continue;
      if (body === "end" || body === "else") return { out, ended: body };
      if ((match = /^(if|with) (.+)$/.exec(body))) {
        const value = emit ? evaluatePipeline(match[2], scope) : undefined;
        const taken = emit && truthy(value);
        const then = block(scope.child(match[1] === "with" && taken ? value : scope.dot), taken);
        let otherwise = "";
        if (then.ended === "else") otherwise = block(scope.child(), emit && !taken).out;
        out += taken ? then.out : otherwise;
      } else if ((match = /^range (.+)$/.exec(body))) {
        const start = at;
        const elements = emit ? asList(evaluatePipeline(match[1], scope)) : [];
        if (elements.length === 0) block(scope.child(), false);
        for (const element of elements) {
          at = start;
          out += block(scope.child(element), true).out;
        }
      } else if ((match = /^(\$\w+) (:?=) (.+)$/.exec(body))) {
        if (!emit) continue;
        const value = evaluatePipeline(match[3], scope);
        if (match[2] === ":=") scope.declare(match[1], value);
        else scope.assign(match[1], value);
      } else if (emit) {
        const value = evaluatePipeline(body, scope);
        out += value === undefined || value === null ? "" : String(value);
      }
    }
    return { out, ended: "eof" };
  };
  const root = { Values: values };
  return block(new Scope(root, root), true).out;
}

// ---- the comparison --------------------------------------------------------------------------------------

let dist: string;
let chartValues: Json;
let templates: Record<string, string>;

/** Each chart template printed from a description, and the manifest objects it must render. */
const OBJECTS = [
  { file: "kubevirt-infra-redfish-service.yaml", kind: "Service", name: "kubevirt-infra-redfish" },
  { file: "kubevirt-infra-redfish-route.yaml", kind: "Route", name: "kubevirt-infra-redfish" },
  { file: "kubevirt-infra-config.yaml", kind: "ConfigMap", name: "kubevirt-infra-config" },
  { file: "kubevirt-infra-users.yaml", kind: "Secret", name: "kubevirt-infra-users" },
  { file: "kubevirt-infra-importer-network-policy.yaml", kind: "NetworkPolicy", name: "kubevirt-infra-importer-egress" },
  { file: "kubevirt-infra-nonroot-scc.yaml", kind: "RoleBinding", name: `${NAME}-nonroot-v2` },
  { file: "mutation-webhook.yaml", kind: "MutatingWebhookConfiguration", name: NAME },
  { file: "validation-webhook.yaml", kind: "ValidatingWebhookConfiguration", name: NAME },
];
/** Pepr's watcher Deployment, patched with the described ServiceAccount and readiness probe. */
const WATCHER = { file: "watcher-deployment.yaml", kind: "Deployment", name: `${NAME}-watcher` };
/** Every chart template that holds RBAC objects (Pepr's untouched ServiceAccount and ClusterRoleBinding too). */
const RBAC_FILES = [
  "service-account.yaml",
  "cluster-role.yaml",
  "cluster-role-binding.yaml",
  "store-role.yaml",
  "store-role-binding.yaml",
  "watcher-rbac.yaml",
  "watcher-cluster-role.yaml",
  "chassis-roles.yaml",
  "datavolume-audit-roles.yaml",
  "kubevirt-infra-nonroot-scc.yaml",
];
const RBAC_KINDS = new Set(["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]);

beforeAll(async () => {
  dist = await copyDist();
  await build(dist);
  const chart = path.join(dist, `${UUID}-chart`);
  chartValues = YAML.parse(fs.readFileSync(path.join(chart, "values.yaml"), "utf8"));
  const files = new Set([...OBJECTS.map(o => o.file), WATCHER.file, ...RBAC_FILES]);
  templates = Object.fromEntries([...files].map(file => [file, fs.readFileSync(path.join(chart, "templates", file), "utf8")]));
});

afterAll(() => removeDir(dist));

const rendered = (file: string, values: Json): Json[] =>
  YAML.parseAllDocuments(renderTemplate(templates[file], values))
    .map(doc => doc.toJS())
    .filter(o => o !== null);

/** The RBAC objects in a stable order (a manifest lists them in Pepr's order, the chart file by file); rules keep theirs. */
const byIdentity = (objects: Json[]) =>
  [...objects].sort((a, b) => `${a.kind}/${a.metadata.namespace ?? ""}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.namespace ?? ""}/${b.metadata.name}`));
const renderedRbac = (values: Json) => byIdentity(RBAC_FILES.flatMap(file => rendered(file, values)));

/** The permissions of the token and access reviews, per object that holds them. */
const reviewRules = (objects: Json[]) =>
  objects.filter(o => (o.rules as Json[] | undefined)?.some(r => /tokenreviews|subjectaccessreviews/.test(r.resources.join()))).map(o => `${o.kind}/${o.metadata.name}`);

const watcherPod = (deployment: Json) => {
  const pod = deployment.spec.template.spec;
  return { serviceAccountName: pod.serviceAccountName, readinessProbe: pod.containers[0].readinessProbe };
};

/** Values that make every description render, with non-default values wherever the templates read one. */
function everythingValues(): Json {
  const full = fullValues() as Json;
  return {
    ...full,
    chassis: [
      { name: "tenant1", namespace: "tenant1-vms" },
      { name: "tenant2", namespace: "shared-vms" },
      { name: "tenant3", namespace: "shared-vms", vmSelector: { matchLabels: { tenant: "3" } } },
    ],
    authentication: { ...(full.authentication as Json), users: [...(full.authentication as Json).users, { username: "ops", passwordHash: (full.authentication as Json).users[0].passwordHash, chassis: ["tenant2", "tenant3"] }] },
    redfish: {
      port: 9443,
      kubernetesIdentities: { enabled: true },
      imageUrlPolicy: { serviceCidrs: ["10.96.0.0/12", "fd00:10:96::/112"], denyCidrs: ["203.0.113.7", "2001:db8::1"], allowCidrs: ["10.20.0.5", "10.30.0.0/16", "fd12::5"] },
    },
    datavolumePolicy: { enabled: true, namespaces: ["tenant1-vms", "shared-vms"] },
    additionalIgnoredNamespaces: ["openshift-monitoring", "lab-infra"],
    admission: { webhookTimeout: 7 },
    deploy: {
      ...(full.deploy as Json),
      redfishService: { type: "LoadBalancer", port: 443, nodePort: 31443, annotations: { "metallb.universe.tf/address-pool": "lab" } },
      importerNetworkPolicy: { enabled: true, podSelector: { app: "importer", tier: "cdi" } },
      dataVolumeWebhook: { failurePolicy: "Ignore" },
    },
  };
}

const CASES: [string, Json][] = [
  ["the defaults", {}],
  [
    "role infra: identities on, chassis and policed namespaces repeated, the TLS Secret renamed, extra watcher rules",
    {
      role: "infra",
      chassis: [
        { name: "b", namespace: "vms-b" },
        { name: "a", namespace: "vms-a" },
        { name: "b2", namespace: "vms-b" },
      ],
      redfish: { kubernetesIdentities: { enabled: true }, tls: { secretName: "bmc-tls" } },
      datavolumePolicy: { enabled: true, namespaces: ["vms-b", "csi-a", "vms-b"] },
      rbac: [{ apiGroups: [""], resources: ["pods"], verbs: ["get", "list"] }],
    },
  ],
  [
    "role nested: identities and the policy on grant nothing for them; the infra kubeconfig Secret by name",
    {
      role: "nested",
      infra: { namespace: "tenant-a", kubeconfigSecret: { name: "infra-kc" } },
      redfish: { kubernetesIdentities: { enabled: true } },
      datavolumePolicy: { enabled: true },
    },
  ],
  ["role both: the policy disabled, namespaces listed (no audit Role)", { chassis: [{ name: "c", namespace: "vms" }], datavolumePolicy: { enabled: false, namespaces: ["vms", "other"] } }],
  ["role both: the two config-named Secrets are one", { infra: { namespace: "t", kubeconfigSecret: { name: "shared" } }, redfish: { tls: { secretName: "shared" } } }],
  ["a full install (Route, serving certificate, SCC)", fullValues()],
  ["every object, non-default values (two chassis namespaces, CIDRs of both families, ignored namespaces)", everythingValues()],
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
  ["role nested: no Redfish objects, no DataVolume webhook", { role: "nested", chassis: [{ name: "c", namespace: "vms" }], deploy: { route: { enabled: true }, openshift: { nonrootSCC: true }, importerNetworkPolicy: { enabled: true } } }],
  ["role infra: no Node webhook; the policy polices infra.namespace", { role: "infra", infra: { namespace: "tenant-a" }, datavolumePolicy: { enabled: true } }],
  ["Redfish disabled", { redfish: { enabled: false }, deploy: { route: { enabled: true } } }],
  [
    "config objects left to the user; all egress allowed",
    {
      chassis: [{ name: "c", namespace: "vms" }],
      redfish: { imageUrlPolicy: { allowAllDestinations: true } },
      deploy: { createConfig: false, createUsersSecret: false, importerNetworkPolicy: { enabled: true } },
    },
  ],
];

describe("objects described once: the chart's templates render what the manifest holds", () => {
  it.each(CASES)("%s", async (_name, userValues) => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "kvi-chart-objects-"));
    try {
      fs.cpSync(dist, d, { recursive: true });
      const manifest = await build(d, userValues);
      const merged = helmMerge(chartValues, userValues) as Json;
      for (const { file, kind, name } of OBJECTS) {
        expect(rendered(file, merged), file).toEqual(manifest.objects.filter(o => o.kind === kind && o.metadata.name === name));
      }
      const [watcher] = rendered(WATCHER.file, merged);
      expect(watcherPod(watcher), WATCHER.file).toEqual(watcherPod(manifest.get(WATCHER.kind, WATCHER.name)));
      const rbac = renderedRbac(merged);
      expect(rbac, "RBAC").toEqual(byIdentity(manifest.objects.filter(o => RBAC_KINDS.has(o.kind))));
      // Only the watcher reviews tokens and access, and only when identities are on where Redfish runs.
      const reviews = merged.redfish.kubernetesIdentities.enabled === true && merged.role !== "nested";
      expect(reviewRules(rbac)).toEqual(reviews ? [`ClusterRole/${NAME}-watcher`] : []);
    } finally {
      removeDir(d);
    }
  });

  it("renders every object for the non-default values, so the comparison is not vacuous", async () => {
    const manifest = await build(dist, everythingValues());
    const merged = helmMerge(chartValues, everythingValues()) as Json;
    for (const { kind, name } of OBJECTS) expect(manifest.find(kind, name), `${kind} ${name}`).toBeDefined();
    // One NetworkPolicy per distinct chassis namespace, with the addresses of both families as CIDRs.
    const policies = rendered("kubevirt-infra-importer-network-policy.yaml", merged);
    expect(policies.map(p => p.metadata.namespace)).toEqual(["shared-vms", "tenant1-vms"]);
    expect(JSON.stringify(policies[0].spec.egress)).toContain('"203.0.113.7/32"');
    expect(JSON.stringify(policies[0].spec.egress)).toContain('"fd12::5/128"');
    const [validating] = rendered("validation-webhook.yaml", merged);
    expect(validating.webhooks[0]).toMatchObject({ failurePolicy: "Ignore", timeoutSeconds: 7, namespaceSelector: { matchExpressions: [{ operator: "In", values: ["tenant1-vms", "shared-vms"] }] } });
    const [mutating] = rendered("mutation-webhook.yaml", merged);
    expect(mutating.webhooks[0].namespaceSelector.matchExpressions[0].values).toEqual(["kube-system", "pepr-system", "openshift-monitoring", "lab-infra"]);
    expect(watcherPod(rendered(WATCHER.file, merged)[0]).readinessProbe.httpGet).toEqual({ path: "/healthz", port: 9443, scheme: "HTTPS" });
    // A Role and RoleBinding in each distinct chassis and policed namespace; the reviews where identities are on.
    const rbac = renderedRbac(merged);
    const where = (kind: string, name: string) => rbac.filter(o => o.kind === kind && o.metadata.name === name).map(o => o.metadata.namespace);
    for (const kind of ["Role", "RoleBinding"]) {
      expect(where(kind, `${NAME}-watcher`)).toEqual(["pepr-system", "shared-vms", "tenant1-vms"]);
      expect(where(kind, `${NAME}-watcher-datavolume-audit`)).toEqual(["shared-vms", "tenant1-vms"]);
    }
    expect(reviewRules(rbac)).toEqual([`ClusterRole/${NAME}-watcher`]);
    const kubeconfigRule = rbac.find(o => o.kind === "Role" && o.metadata.namespace === "pepr-system" && o.metadata.name === `${NAME}-watcher`)!.rules.find((r: Json) => r.resourceNames?.includes("infra-kubeconfig"));
    expect(kubeconfigRule).toEqual({ apiGroups: [""], resources: ["secrets"], resourceNames: ["infra-kubeconfig"], verbs: ["get"] });
  });

  it("appends the chart value rbac to the watcher's ClusterRole in both", async () => {
    const extra = { apiGroups: [""], resources: ["pods"], verbs: ["get", "list"] };
    const manifest = await build(dist, { rbac: [extra] });
    const [clusterRole] = rendered("watcher-cluster-role.yaml", helmMerge(chartValues, { rbac: [extra] }) as Json);
    expect(clusterRole.rules.at(-1)).toEqual(extra);
    expect((manifest.get("ClusterRole", `${NAME}-watcher`).rules as Json[]).at(-1)).toEqual(extra);
  });

  it.each([
    ["edge with TLS", { redfish: { tls: { enabled: true } }, deploy: { route: { enabled: true, termination: "edge" } } }, "sends plain HTTP to the module"],
    ["reencrypt without TLS", { redfish: { tls: { enabled: false } }, deploy: { route: { enabled: true, termination: "reencrypt" } } }, "needs redfish.tls.enabled: true"],
  ])("refuses a Route %s in both, with the same message", async (_name, userValues, message) => {
    await expect(build(dist, userValues)).rejects.toThrow(message);
    expect(() => renderTemplate(templates["kubevirt-infra-redfish-route.yaml"], helmMerge(chartValues, userValues) as Json)).toThrow(message);
  });
});

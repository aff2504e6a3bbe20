// One description of a Kubernetes object, two renderings: evaluated against a values document (the manifest,
// ./manifest.ts) and printed as a Helm template (the chart, ./chart.ts). Each decision (a condition, where a
// field's value comes from) is written once, as a small expression that both evaluates here and prints as the
// Go-template / sprig expression Helm evaluates the same way.

/** The chart's `.Values`: the module config keys, `deploy`, and Pepr's keys (`uuid`, ...), defaults filled in. */
export type Values = Record<string, unknown>;

/** Go templates' truth: false, 0, "", nil and empty lists and maps are false. */
function truthy(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === "") return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === "object") return Object.keys(value).length > 0;
  return true;
}

export interface Expr {
  evaluate(values: Values): unknown;
  /** The Helm expression; `root` is how the template reaches `.Values` (`$.Values` inside range). */
  helm(root: string): string;
}

const quoted = (value: string | number | boolean) => (typeof value === "string" ? JSON.stringify(value) : String(value));

/** `.Values.a.b`: the value at a path of the values (undefined when absent, like Helm's nil). */
export function v(path: string): Expr {
  const parts = path.split(".");
  return {
    evaluate: values => parts.reduce<unknown>((at, part) => (at !== null && typeof at === "object" ? (at as Record<string, unknown>)[part] : undefined), values),
    helm: root => `${root}.${path}`,
  };
}

export function literal(value: string | number | boolean): Expr {
  return { evaluate: () => value, helm: () => quoted(value) };
}

const lift = (e: Expr | string | number | boolean): Expr => (typeof e === "object" ? e : literal(e));
const call = (name: string, args: Expr[], evaluate: (values: Values) => unknown): Expr => ({
  evaluate,
  helm: root => `(${name} ${args.map(a => a.helm(root)).join(" ")})`,
});

export const eq = (a: Expr, b: Expr | string | number | boolean): Expr => call("eq", [a, lift(b)], vs => a.evaluate(vs) === lift(b).evaluate(vs));
export const ne = (a: Expr, b: Expr | string | number | boolean): Expr => call("ne", [a, lift(b)], vs => a.evaluate(vs) !== lift(b).evaluate(vs));
export const not = (a: Expr): Expr => call("not", [a], vs => !truthy(a.evaluate(vs)));
/** A string from the values, quoted in the template (sprig `quote`), so YAML reads it as text. */
export const text = (a: Expr): Expr => call("quote", [a], vs => String(a.evaluate(vs) ?? ""));
/** Go's `and` / `or` answer one of their arguments; only their truth is used here. */
export const and = (...args: Expr[]): Expr => call("and", args, vs => args.every(a => truthy(a.evaluate(vs))));
export const or = (...args: Expr[]): Expr => call("or", args, vs => args.some(a => truthy(a.evaluate(vs))));
/** sprig `ternary yes no condition`. */
export const ternary = (yes: Expr | string, no: Expr | string, condition: Expr): Expr =>
  call("ternary", [lift(yes), lift(no), condition], vs => (truthy(condition.evaluate(vs)) ? lift(yes) : lift(no)).evaluate(vs));

/** Fields present only when `condition` holds: spread into a map, `{ ...when(cond, { key: value }) }`. */
class When {
  constructor(
    readonly condition: Expr,
    readonly fields: Fields,
  ) {}
}
/** The entries of a map from the values (e.g. user annotations), merged into the map it is spread into. */
class Entries {
  constructor(readonly from: Expr) {}
}

export type Node = string | number | boolean | Expr | Node[] | Fields;
export interface Fields {
  [key: string]: Node | When | Entries;
}

let spreadKeys = 0;
const spreadKey = () => `\u0000spread${spreadKeys++}`;
const isSpread = (key: string) => key.startsWith("\u0000spread");

export function when(condition: Expr, fields: Fields): Fields {
  return { [spreadKey()]: new When(condition, fields) };
}

export function entriesOf(from: Expr): Fields {
  return { [spreadKey()]: new Entries(from) };
}

function isExpr(node: unknown): node is Expr {
  return typeof node === "object" && node !== null && typeof (node as Expr).evaluate === "function" && typeof (node as Expr).helm === "function";
}

/** A whole document: rendered only when `condition` holds (no condition: always). */
export interface ObjectTemplate {
  condition?: Expr;
  /** Values that make the chart fail with `message` (helm install refuses; the manifest renderer throws). */
  refuse?: { condition: Expr; message: string }[];
  object: Fields;
}

// ---- evaluation (the manifest) --------------------------------------------------------------------------

function evaluateNode(node: Node, values: Values): unknown {
  if (isExpr(node)) return node.evaluate(values);
  if (Array.isArray(node)) return node.map(item => evaluateNode(item, values));
  if (typeof node === "object") return evaluateFields(node, values);
  return node;
}

function evaluateFields(fields: Fields, values: Values): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, node] of Object.entries(fields)) {
    if (node instanceof When) {
      if (truthy(node.condition.evaluate(values))) Object.assign(out, evaluateFields(node.fields, values));
    } else if (node instanceof Entries) {
      const from = node.from.evaluate(values);
      if (from && typeof from === "object") Object.assign(out, structuredClone(from));
    } else out[key] = evaluateNode(node, values);
  }
  return out;
}

/** The messages of the template's refusals that these values trigger. */
export function refusals(template: ObjectTemplate, values: Values): string[] {
  return (template.refuse ?? []).filter(refusal => truthy(refusal.condition.evaluate(values))).map(refusal => refusal.message);
}

/** The object for these values, or undefined when its condition does not hold. Throws what the values trigger. */
export function evaluateTemplate(template: ObjectTemplate, values: Values): Record<string, unknown> | undefined {
  const refused = refusals(template, values);
  if (refused.length > 0) throw new Error(refused.join("\n"));
  if (template.condition && !truthy(template.condition.evaluate(values))) return undefined;
  return evaluateFields(template.object, values);
}

// ---- printing (the chart) -------------------------------------------------------------------------------

function scalarText(node: string | number | boolean | Expr, root: string): string {
  return isExpr(node) ? `{{ ${node.helm(root)} }}` : quoted(node);
}

function printFields(fields: Fields, indent: number, root: string): string[] {
  const pad = " ".repeat(indent);
  const lines: string[] = [];
  for (const [key, node] of Object.entries(fields)) {
    if (node instanceof When) {
      lines.push(`${pad}{{- if ${node.condition.helm(root)} }}`, ...printFields(node.fields, indent, root), `${pad}{{- end }}`);
    } else if (node instanceof Entries) {
      lines.push(`${pad}{{- with ${node.from.helm(root)} }}`, `${pad}{{- toYaml . | nindent ${indent} }}`, `${pad}{{- end }}`);
    } else if (!isSpread(key)) {
      lines.push(...printEntry(`${pad}${/^[A-Za-z0-9_.\/-]+$/.test(key) ? key : JSON.stringify(key)}:`, node, indent, root));
    }
  }
  return lines;
}

function printEntry(head: string, node: Node, indent: number, root: string): string[] {
  if (Array.isArray(node)) {
    if (node.length === 0) return [`${head} []`];
    const pad = " ".repeat(indent + 2);
    return [head, ...node.flatMap(item => printListItem(item, pad, indent + 4, root))];
  }
  if (typeof node === "object" && !isExpr(node)) {
    const body = printFields(node, indent + 2, root);
    return body.length === 0 ? [`${head} {}`] : [head, ...body];
  }
  return [`${head} ${scalarText(node, root)}`];
}

function printListItem(item: Node, pad: string, indent: number, root: string): string[] {
  if (typeof item === "object" && !isExpr(item) && !Array.isArray(item)) {
    const body = printFields(item, indent, root);
    // The first field goes on the "- " line.
    const first = body.findIndex(line => !line.trimStart().startsWith("{{"));
    if (first === 0) return [`${pad}- ${body[0].trimStart()}`, ...body.slice(1)];
    return [`${pad}-`, ...body];
  }
  if (Array.isArray(item)) throw new Error("lists of lists are not used in templates");
  return [`${pad}- ${scalarText(item, root)}`];
}

/** The Helm template text of one document. */
export function helmTemplate(template: ObjectTemplate): string {
  const lines: string[] = [];
  for (const refusal of template.refuse ?? []) lines.push(`{{- if ${refusal.condition.helm(".Values")} }}`, `{{- fail ${JSON.stringify(refusal.message)} }}`, "{{- end }}");
  const body = printFields(template.object, 0, ".Values");
  if (template.condition) lines.push(`{{- if ${template.condition.helm(".Values")} }}`, ...body, "{{- end }}");
  else lines.push(...body);
  return `${lines.join("\n")}\n`;
}

// One description of a Kubernetes object, two renderings: evaluated against a values document (the manifest,
// ./manifest.ts) and printed as a Helm template (the chart, ./chart.ts). Each decision (a condition, where a
// field's value comes from) is written once, as a small expression that both evaluates here and prints as the
// Go-template / sprig expression Helm evaluates the same way. What needs more than one expression (a list built in
// a loop) is a `variable`: its Helm statements and its evaluation sit side by side, and test/deploy/chart-objects
// renders every template against the manifest for the same values.
import YAML from "yaml";

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
  /** `item` is the element of a `forEach` document being rendered (Helm's `.` inside `range`). */
  evaluate(values: Values, item?: unknown): unknown;
  /** The Helm expression; `root` is how the template reaches `.Values` (`$.Values` inside range). */
  helm(root: string): string;
  /** The Helm text of the value inside a YAML scalar, when it is not one call (`{{ .Values.uuid }}-watcher`). */
  inline?(root: string): string;
}

const YAML_WORDS = /^(true|false|yes|no|on|off|y|n|null|~)$/i;
/** A YAML scalar: plain when YAML reads it back as this string (keeps the templates readable), else JSON-quoted. */
const quoted = (value: string | number | boolean) =>
  typeof value !== "string" ? String(value) : /^[A-Za-z\/][A-Za-z0-9+\/=._-]*$/.test(value) && !YAML_WORDS.test(value) ? value : JSON.stringify(value);
/** A Go-template string literal. */
const goString = (value: string | number | boolean) => (typeof value === "string" ? JSON.stringify(value) : String(value));

/** `.Values.a.b`: the value at a path of the values (undefined when absent, like Helm's nil). */
export function v(path: string): Expr {
  const parts = path.split(".");
  return {
    evaluate: values => parts.reduce<unknown>((at, part) => (at !== null && typeof at === "object" ? (at as Record<string, unknown>)[part] : undefined), values),
    helm: root => `${root}.${path}`,
  };
}

export function literal(value: string | number | boolean): Expr {
  return { evaluate: () => value, helm: () => goString(value) };
}

/** The element of a `forEach` document (Helm's `.` inside `range`). */
export const item: Expr = { evaluate: (_values, element) => element, helm: () => "." };

/**
 * The value at a path of the values, or `fallback` when any part is absent: sprig `dig`, since a field of a missing
 * map fails a Helm template where the path is optional (`infra.kubeconfigSecret`).
 */
export function dig(path: readonly string[], fallback: string | boolean): Expr {
  return {
    evaluate: values => path.reduce<unknown>((at, part) => (at !== null && typeof at === "object" ? (at as Record<string, unknown>)[part] : undefined), values) ?? fallback,
    helm: root => `(dig ${path.map(goString).join(" ")} ${goString(fallback)} ${root}.AsMap)`,
  };
}

/** `<value of a><suffix>`: printed `{{ a }}<suffix>` in a scalar, `(printf "%s<suffix>" a)` inside an expression. */
export function suffixed(a: Expr, suffix: string): Expr {
  return {
    evaluate: (vs, it) => `${String(a.evaluate(vs, it))}${suffix}`,
    helm: root => `(printf "%s${suffix}" ${a.helm(root)})`,
    inline: root => `{{ ${bare(a.helm(root))} }}${suffix}`,
  };
}

const lift = (e: Expr | string | number | boolean): Expr => (typeof e === "object" ? e : literal(e));
const call = (name: string, args: Expr[], evaluate: (values: Values, item?: unknown) => unknown): Expr => ({
  evaluate,
  helm: root => `(${name} ${args.map(a => a.helm(root)).join(" ")})`,
});

export const eq = (a: Expr, b: Expr | string | number | boolean): Expr => call("eq", [a, lift(b)], (vs, it) => a.evaluate(vs, it) === lift(b).evaluate(vs, it));
export const ne = (a: Expr, b: Expr | string | number | boolean): Expr => call("ne", [a, lift(b)], (vs, it) => a.evaluate(vs, it) !== lift(b).evaluate(vs, it));
export const not = (a: Expr): Expr => call("not", [a], (vs, it) => !truthy(a.evaluate(vs, it)));
/** A string from the values, quoted in the template (sprig `quote`), so YAML reads it as text. */
export const text = (a: Expr): Expr => call("quote", [a], (vs, it) => String(a.evaluate(vs, it) ?? ""));
/** Go's `and` / `or` answer one of their arguments; only their truth is used here. */
export const and = (...args: Expr[]): Expr => call("and", args, (vs, it) => args.every(a => truthy(a.evaluate(vs, it))));
export const or = (...args: Expr[]): Expr => call("or", args, (vs, it) => args.some(a => truthy(a.evaluate(vs, it))));
/** sprig `ternary yes no condition`. */
export const ternary = (yes: Expr | string, no: Expr | string, condition: Expr): Expr =>
  call("ternary", [lift(yes), lift(no), condition], (vs, it) => (truthy(condition.evaluate(vs, it)) ? lift(yes) : lift(no)).evaluate(vs, it));

/** The distinct strings of a list, sorted (sprig `uniq | sortAlpha`; Go and JavaScript order names alike). */
export function sortedUnique(a: Expr): Expr {
  return {
    evaluate: (vs, it) => {
      const list = a.evaluate(vs, it);
      return [...new Set((Array.isArray(list) ? list : []).map(String))].sort();
    },
    helm: root => `(sortAlpha (uniq ${a.helm(root)}))`,
  };
}

/** The entries that are set, as a list (sprig `compact (list ...)`: empty strings, false and nil left out). */
export function setValues(...entries: Expr[]): Expr {
  return {
    evaluate: (vs, it) => entries.map(e => e.evaluate(vs, it)).filter(truthy),
    helm: root => `(compact (list ${entries.map(e => e.helm(root)).join(" ")}))`,
  };
}

/** A value computed by template statements (`{{- $name := ... }}`) in Helm, and by `evaluate` here. */
export interface Variable extends Expr {
  statements(root: string): string[];
}

export function variable(name: `$${string}`, statements: (root: string) => string[], evaluate: (values: Values) => unknown): Variable {
  return { evaluate: values => evaluate(values), helm: () => name, statements };
}

/** Removes the parentheses around a whole call: `{{ f a }}` reads better than `{{ (f a) }}`. */
function bare(helm: string): string {
  if (!helm.startsWith("(") || !helm.endsWith(")")) return helm;
  let depth = 0;
  for (let i = 0; i < helm.length; i++) {
    if (helm[i] === '"') {
      for (i++; helm[i] !== '"'; i++) if (helm[i] === "\\") i++;
    } else if (helm[i] === "(") depth++;
    else if (helm[i] === ")" && --depth === 0 && i < helm.length - 1) return helm;
  }
  return helm.slice(1, -1);
}

/** YAML as Helm's `toYaml` writes it: keys sorted. */
export function toYamlText(value: unknown): string {
  return YAML.stringify(value, { sortMapEntries: true, lineWidth: 0 });
}

/** Fields present only when `condition` holds (else `otherwise`): spread into a map, `{ ...when(cond, { key: value }) }`. */
class When {
  constructor(
    readonly condition: Expr,
    readonly fields: Fields,
    readonly otherwise?: Fields,
  ) {}
}
/** A structured value from the values or a variable, as it is (Helm: `toYaml | nindent`). */
class Block {
  constructor(readonly from: Expr) {}
}
/** A string holding the YAML of a value (Helm: a `|` scalar with `toYaml | nindent`). */
class YamlText {
  constructor(readonly from: Expr) {}
}
/** The entries of a map from the values (e.g. user annotations), merged into the map it is spread into. */
class Entries {
  constructor(readonly from: Expr) {}
}

/** A list of strings on one line, `["a", "b"]` (Helm: `toJson` of a list from the values). */
class FlowList {
  constructor(readonly from: readonly string[] | Expr) {}
}
/** List items present only when `condition` holds (Helm: `if` around them). */
class ItemsWhen {
  constructor(
    readonly condition: Expr,
    readonly items: ListItem[],
  ) {}
}
/** The items of a list from the values, appended where they stand (Helm: `toYaml | nindent`). */
class ItemsOf {
  constructor(readonly from: Expr) {}
}

export type ListItem = Node | ItemsWhen | ItemsOf;
export type Node = string | number | boolean | Expr | Block | YamlText | FlowList | ListItem[] | Fields;
export interface Fields {
  [key: string]: Node | When | Entries;
}

let spreadKeys = 0;
const spreadKey = () => `\u0000spread${spreadKeys++}`;
const isSpread = (key: string) => key.startsWith("\u0000spread");

export function when(condition: Expr, fields: Fields, otherwise?: Fields): Fields {
  return { [spreadKey()]: new When(condition, fields, otherwise) };
}

export const block = (from: Expr): Block => new Block(from);
export const flowList = (from: readonly string[] | Expr): FlowList => new FlowList(from);
export const whenItems = (condition: Expr, items: ListItem[]): ItemsWhen => new ItemsWhen(condition, items);
export const itemsOf = (from: Expr): ItemsOf => new ItemsOf(from);
export const yamlText = (from: Expr): YamlText => new YamlText(from);

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
  /** Computed before the document, in this order (a variable may use the ones before it). */
  variables?: Variable[];
  /** One document per element of this list (Helm `range`; the element is `item`), instead of one. */
  forEach?: Expr;
  /** The document, or several in this order (for each element of `forEach`). */
  object: Fields | Fields[];
}

const documentsOf = (template: ObjectTemplate): Fields[] => (Array.isArray(template.object) ? template.object : [template.object]);

// ---- evaluation (the manifest) --------------------------------------------------------------------------

function evaluateNode(node: Node, values: Values, element: unknown): unknown {
  if (isExpr(node)) return node.evaluate(values, element);
  if (node instanceof Block) return structuredClone(node.from.evaluate(values, element));
  if (node instanceof YamlText) return toYamlText(node.from.evaluate(values, element));
  if (node instanceof FlowList) return isExpr(node.from) ? structuredClone(node.from.evaluate(values, element)) : [...node.from];
  if (Array.isArray(node)) return evaluateList(node, values, element);
  if (typeof node === "object") return evaluateFields(node, values, element);
  return node;
}

function evaluateList(items: ListItem[], values: Values, element: unknown): unknown[] {
  return items.flatMap(entry => {
    if (entry instanceof ItemsWhen) return truthy(entry.condition.evaluate(values, element)) ? evaluateList(entry.items, values, element) : [];
    if (entry instanceof ItemsOf) {
      const from = entry.from.evaluate(values, element);
      return Array.isArray(from) ? structuredClone(from) : [];
    }
    return [evaluateNode(entry, values, element)];
  });
}

/** The map these fields describe, for these values. */
export function evaluateFields(fields: Fields, values: Values, element?: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, node] of Object.entries(fields)) {
    if (node instanceof When) {
      const chosen = truthy(node.condition.evaluate(values, element)) ? node.fields : node.otherwise;
      if (chosen) Object.assign(out, evaluateFields(chosen, values, element));
    } else if (node instanceof Entries) {
      const from = node.from.evaluate(values, element);
      if (from && typeof from === "object") Object.assign(out, structuredClone(from));
    } else out[key] = evaluateNode(node, values, element);
  }
  return out;
}

/** The messages of the template's refusals that these values trigger. */
export function refusals(template: ObjectTemplate, values: Values): string[] {
  return (template.refuse ?? []).filter(refusal => truthy(refusal.condition.evaluate(values))).map(refusal => refusal.message);
}

/** The objects for these values: none when the condition does not hold. Throws what the values trigger. */
export function evaluateTemplate(template: ObjectTemplate, values: Values): Record<string, unknown>[] {
  const refused = refusals(template, values);
  if (refused.length > 0) throw new Error(refused.join("\n"));
  if (template.condition && !truthy(template.condition.evaluate(values))) return [];
  const documents = documentsOf(template);
  if (!template.forEach) return documents.map(document => evaluateFields(document, values));
  const elements = template.forEach.evaluate(values);
  return (Array.isArray(elements) ? elements : []).flatMap(element => documents.map(document => evaluateFields(document, values, element)));
}

// ---- printing (the chart) -------------------------------------------------------------------------------

function scalarText(node: string | number | boolean | Expr, root: string): string {
  if (!isExpr(node)) return quoted(node);
  return node.inline ? node.inline(root) : `{{ ${bare(node.helm(root))} }}`;
}

function printFields(fields: Fields, indent: number, root: string): string[] {
  const pad = " ".repeat(indent);
  const lines: string[] = [];
  for (const [key, node] of Object.entries(fields)) {
    if (node instanceof When) {
      lines.push(`${pad}{{- if ${bare(node.condition.helm(root))} }}`, ...printFields(node.fields, indent, root));
      if (node.otherwise) lines.push(`${pad}{{- else }}`, ...printFields(node.otherwise, indent, root));
      lines.push(`${pad}{{- end }}`);
    } else if (node instanceof Entries) {
      lines.push(`${pad}{{- with ${node.from.helm(root)} }}`, `${pad}{{- toYaml . | nindent ${indent} }}`, `${pad}{{- end }}`);
    } else if (!isSpread(key)) {
      lines.push(...printEntry(`${pad}${/^[A-Za-z0-9_.\/-]+$/.test(key) ? key : JSON.stringify(key)}:`, node, indent, root));
    }
  }
  return lines;
}

/** `head` (a key, `key:`) and its value, the value's lines indented under it. */
function printEntry(head: string, node: Node, indent: number, root: string): string[] {
  const pad = " ".repeat(indent + 2);
  if (node instanceof Block) return [head, `${pad}{{- toYaml ${node.from.helm(root)} | nindent ${indent + 2} }}`];
  if (node instanceof YamlText) return [`${head} |`, `${pad}{{- toYaml ${node.from.helm(root)} | nindent ${indent + 2} }}`];
  if (node instanceof FlowList) {
    return [`${head} ${isExpr(node.from) ? `{{ toJson ${node.from.helm(root)} }}` : `[${node.from.map(entry => JSON.stringify(entry)).join(", ")}]`}`];
  }
  if (Array.isArray(node)) {
    if (node.length === 0) return [`${head} []`];
    return [head, ...printListItems(node, pad, indent + 4, root)];
  }
  if (typeof node === "object" && !isExpr(node)) {
    const body = printFields(node, indent + 2, root);
    return body.length === 0 ? [`${head} {}`] : [head, ...body];
  }
  return [`${head} ${scalarText(node, root)}`];
}

function printListItems(items: ListItem[], pad: string, indent: number, root: string): string[] {
  return items.flatMap(item => {
    if (item instanceof ItemsWhen) return [`${pad}{{- if ${bare(item.condition.helm(root))} }}`, ...printListItems(item.items, pad, indent, root), `${pad}{{- end }}`];
    if (item instanceof ItemsOf) return [`${pad}{{- with ${item.from.helm(root)} }}`, `${pad}{{- toYaml . | nindent ${pad.length} }}`, `${pad}{{- end }}`];
    return printListItem(item, pad, indent, root);
  });
}

function printListItem(item: Node, pad: string, indent: number, root: string): string[] {
  if (Array.isArray(item) || item instanceof Block || item instanceof YamlText || item instanceof FlowList) throw new Error("list items are maps or scalars in these templates");
  if (typeof item === "object" && !isExpr(item)) {
    const body = printFields(item, indent, root);
    // The first field goes on the "- " line.
    const first = body.findIndex(line => !line.trimStart().startsWith("{{"));
    if (first === 0) return [`${pad}- ${body[0].trimStart()}`, ...body.slice(1)];
    return [`${pad}-`, ...body];
  }
  return [`${pad}- ${scalarText(item, root)}`];
}

/** The Helm text of one field (`key: value`, the value's lines below it) at `indent` spaces, for patching a template. */
export function helmField(key: string, node: Node, indent: number): string {
  return `${printEntry(`${" ".repeat(indent)}${key}:`, node, indent, ".Values").join("\n")}\n`;
}

/** The Helm template text of one document (or one per element of `forEach`). */
export function helmTemplate(template: ObjectTemplate): string {
  const lines: string[] = [];
  for (const refusal of template.refuse ?? []) lines.push(`{{- if ${bare(refusal.condition.helm(".Values"))} }}`, `{{- fail ${JSON.stringify(refusal.message)} }}`, "{{- end }}");
  for (const computed of template.variables ?? []) lines.push(...computed.statements(".Values"));
  const documents = documentsOf(template);
  const body = template.forEach
    ? [`{{- range ${bare(template.forEach.helm(".Values"))} }}`, ...documents.flatMap(document => ["---", ...printFields(document, 0, "$.Values")]), "{{- end }}"]
    : documents.flatMap((document, i) => [...(i > 0 ? ["---"] : []), ...printFields(document, 0, ".Values")]);
  if (template.condition) lines.push(`{{- if ${bare(template.condition.helm(".Values"))} }}`, ...body, "{{- end }}");
  else lines.push(...body);
  return `${lines.join("\n")}\n`;
}

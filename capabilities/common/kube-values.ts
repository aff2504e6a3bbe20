// Kubernetes value rules and helpers (k8s.io/apimachinery: validation, resource.Quantity, labels.Selector):
// names, label keys and values, the CSI driver's label-list text, selectors and quantities. Plain functions
// with no dependency on the module config, so Redfish and the capabilities may import them directly.

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;

// Decimal, binary-SI and exponent forms ("10Gi", "500M", "1e9", "0.5").
const QUANTITY = /^(\d+(\.\d+)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;

/** Shows a user-supplied (non-secret) value in an error message, shortened. */
export function showValue(value: unknown): string {
  const text = typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

export function isDns1123Label(value: string): boolean {
  return value.length <= 63 && DNS1123_LABEL.test(value);
}

export function isDns1123Subdomain(value: string): boolean {
  return value.length <= 253 && DNS1123_SUBDOMAIN.test(value);
}

/** Why `key` is not a valid Kubernetes label key, or undefined when it is. */
export function labelKeyProblem(key: string): string | undefined {
  const parts = key.split("/");
  const name = parts.length === 2 ? parts[1] : parts[0];
  if (parts.length > 2) return `label key ${showValue(key)} has more than one "/"`;
  if (parts.length === 2 && !isDns1123Subdomain(parts[0])) {
    return `label key ${showValue(key)} has an invalid prefix (a DNS subdomain like "example.com", lowercase, at most 253 characters)`;
  }
  if (name.length === 0 || name.length > 63 || !LABEL_NAME_PART.test(name)) {
    return `label key ${showValue(key)} is not a valid Kubernetes label key (name part: 1-63 characters, letters, digits, "-", "_", ".", starting and ending with a letter or digit)`;
  }
  return undefined;
}

/** Why `value` is not a valid Kubernetes label value, or undefined when it is. */
export function labelValueProblem(key: string, value: string): string | undefined {
  if (value === "") return undefined;
  if (value.length > 63 || !LABEL_NAME_PART.test(value)) {
    return `label ${showValue(key)} has an invalid value ${showValue(value)} (at most 63 characters, letters, digits, "-", "_", ".", starting and ending with a letter or digit, or empty)`;
  }
  return undefined;
}

export type LabelListResult = { ok: true; labels: Record<string, string> } | { ok: false; problem: string };

/**
 * Parses the KubeVirt CSI driver's label list format (`infraClusterLabels`, flag `--infra-cluster-labels`):
 * `key=value,key=value`, split on "," then on the first "=", no whitespace trimming (the driver does none,
 * so " b=c" would become the invalid key " b" there too). Empty text is an empty set.
 */
export function tryParseLabelList(text: string): LabelListResult {
  const labels: Record<string, string> = {};
  if (text === "") return { ok: true, labels };
  const entries = text.split(",");
  for (const [index, entry] of entries.entries()) {
    const eq = entry.indexOf("=");
    if (eq < 0) {
      return { ok: false, problem: `entry ${index + 1} (${showValue(entry)}) is not key=value; the format is "key=value,key=value"` };
    }
    const key = entry.slice(0, eq);
    const value = entry.slice(eq + 1);
    const problem = labelKeyProblem(key) ?? labelValueProblem(key, value);
    if (problem) return { ok: false, problem };
    if (Object.hasOwn(labels, key)) return { ok: false, problem: `label ${showValue(key)} is given twice` };
    labels[key] = value;
  }
  return { ok: true, labels };
}

/** `parseLabelList("a=b,c=d")` → `{ a: "b", c: "d" }`; throws an Error starting with `field` on bad input. */
export function parseLabelList(text: string, field = "labels"): Record<string, string> {
  const result = tryParseLabelList(text);
  if (!result.ok) throw new Error(`${field}: ${result.problem}`);
  return result.labels;
}

export type LabelSelectorOperator = "In" | "NotIn" | "Exists" | "DoesNotExist";

/** A Kubernetes label selector (metav1.LabelSelector), as the config's chassis `vmSelector` holds it. */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: LabelSelectorOperator; values?: string[] }[];
}

/** Whether a VM's labels satisfy a chassis `vmSelector` (no selector = every VM of the namespace). */
export function labelSelectorMatches(selector: LabelSelector | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector) return true;
  const have = labels ?? {};
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (have[key] !== value) return false;
  }
  for (const req of selector.matchExpressions ?? []) {
    const present = Object.hasOwn(have, req.key);
    const values = req.values ?? [];
    if (req.operator === "Exists" && !present) return false;
    if (req.operator === "DoesNotExist" && present) return false;
    if (req.operator === "In" && !(present && values.includes(have[req.key]))) return false;
    if (req.operator === "NotIn" && present && values.includes(have[req.key])) return false;
  }
  return true;
}

/** Whether `text` is a positive Kubernetes quantity. */
export function isPositiveQuantity(text: string): boolean {
  return QUANTITY.test(text) && quantityToBytes(text) > 0;
}

const QUANTITY_FACTORS: Record<string, number> = {
  "": 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** Bytes of a Kubernetes quantity like "10Gi", "500M", "1e9"; NaN when it is not one. */
export function quantityToBytes(quantity: string): number {
  const match = /^(\d+(?:\.\d+)?|\.\d+)(.*)$/.exec(quantity);
  if (!match) return Number.NaN;
  const [, number, suffix] = match;
  if (/^[eE][+-]?\d+$/.test(suffix)) return Number(`${number}${suffix}`);
  const factor = QUANTITY_FACTORS[suffix];
  return factor === undefined ? Number.NaN : Number(number) * factor;
}

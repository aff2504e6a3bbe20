// The SSE stream's `$filter` (DSP0266 "Server-sent events": the properties of SSEFilterPropertiesSupported joined
// with `eq`, `and`, `or`, `not` and parentheses, as OData's $filter), e.g.
//   $filter=EventType eq 'StatusChange'
//   $filter=(RegistryPrefix eq 'TaskEvent') or (OriginResource eq '/redfish/v1/Systems/tenant1-vms.vm-1')
// Values may be quoted ('…', '' for a quote) or bare. Anything else is refused with a message naming the problem.

/** The filterable properties this service supports (advertised in SSEFilterPropertiesSupported). */
export const SSE_FILTER_PROPERTIES = ["EventFormatType", "EventType", "MessageId", "OriginResource", "RegistryPrefix", "ResourceType"] as const;
export type SseFilterProperty = (typeof SSE_FILTER_PROPERTIES)[number];

/** What a filter sees of an event. */
export type SseFilterSubject = Record<SseFilterProperty, string>;
export type SseFilter = (event: SseFilterSubject) => boolean;

export class SseFilterError extends Error {}

/** Longest filter accepted (characters) and deepest nesting of parentheses / `not`. */
const MAX_FILTER_LENGTH = 2048;
const MAX_DEPTH = 16;

type Token = { kind: "open" } | { kind: "close" } | { kind: "word"; text: string } | { kind: "string"; text: string };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (/\s/.test(ch)) i++;
    else if (ch === "(" || ch === ")") {
      tokens.push(ch === "(" ? { kind: "open" } : { kind: "close" });
      i++;
    } else if (ch === "'") {
      let value = "";
      i++;
      for (;;) {
        if (i >= text.length) throw new SseFilterError("a quoted value is not closed");
        if (text[i] === "'" && text[i + 1] === "'") {
          value += "'";
          i += 2;
        } else if (text[i] === "'") {
          i++;
          break;
        } else value += text[i++];
      }
      tokens.push({ kind: "string", text: value });
    } else {
      const start = i;
      while (i < text.length && !/[\s()']/.test(text[i])) i++;
      tokens.push({ kind: "word", text: text.slice(start, i) });
    }
  }
  return tokens;
}

/** Parses a `$filter` value into a predicate; throws SseFilterError naming the problem. */
export function parseSseFilter(text: string): SseFilter {
  if (text.length > MAX_FILTER_LENGTH) throw new SseFilterError(`the filter is longer than ${MAX_FILTER_LENGTH} characters`);
  const tokens = tokenize(text);
  let pos = 0;
  const peekWord = (word: string) => {
    const t = tokens[pos];
    return t?.kind === "word" && t.text.toLowerCase() === word;
  };
  const describe = (t: Token | undefined) => {
    if (t === undefined) return "the end";
    if (t.kind === "open" || t.kind === "close") return t.kind === "open" ? "'('" : "')'";
    return JSON.stringify(t.text.slice(0, 64));
  };

  // or-expression := and-expression ("or" and-expression)*; and binds tighter than or, as in OData.
  const orExpression = (depth: number): SseFilter => {
    const parts = [andExpression(depth)];
    while (peekWord("or")) {
      pos++;
      parts.push(andExpression(depth));
    }
    return parts.length === 1 ? parts[0] : e => parts.some(p => p(e));
  };
  const andExpression = (depth: number): SseFilter => {
    const parts = [unary(depth)];
    while (peekWord("and")) {
      pos++;
      parts.push(unary(depth));
    }
    return parts.length === 1 ? parts[0] : e => parts.every(p => p(e));
  };
  const unary = (depth: number): SseFilter => {
    if (depth > MAX_DEPTH) throw new SseFilterError(`the filter nests deeper than ${MAX_DEPTH} levels`);
    if (peekWord("not")) {
      pos++;
      const inner = unary(depth + 1);
      return e => !inner(e);
    }
    if (tokens[pos]?.kind === "open") {
      pos++;
      const inner = orExpression(depth + 1);
      if (tokens[pos]?.kind !== "close") throw new SseFilterError(`expected ')' but found ${describe(tokens[pos])}`);
      pos++;
      return inner;
    }
    return comparison();
  };
  const comparison = (): SseFilter => {
    const property = tokens[pos];
    if (property?.kind !== "word") throw new SseFilterError(`expected a property but found ${describe(property)}`);
    const name = SSE_FILTER_PROPERTIES.find(p => p === property.text);
    if (!name) throw new SseFilterError(`${JSON.stringify(property.text.slice(0, 64))} is not a filterable property (use ${SSE_FILTER_PROPERTIES.join(", ")})`);
    pos++;
    if (!peekWord("eq")) throw new SseFilterError(`expected 'eq' after ${name} but found ${describe(tokens[pos])} (only eq is supported)`);
    pos++;
    const value = tokens[pos];
    if (value?.kind !== "word" && value?.kind !== "string") throw new SseFilterError(`expected a value after '${name} eq' but found ${describe(value)}`);
    pos++;
    const wanted = value.text;
    return e => e[name] === wanted;
  };

  if (tokens.length === 0) throw new SseFilterError("the filter is empty");
  const filter = orExpression(0);
  if (pos < tokens.length) throw new SseFilterError(`unexpected ${describe(tokens[pos])} (join conditions with and / or)`);
  return filter;
}

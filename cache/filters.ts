// containerd-style filters over disk usage records, as BuildKit's prune and du accept them:
// ["type==source.local", "type==exec.cachemount"] matches either type (items are ORed), while
// "type==regular,inuse" needs both (selectors in one item are ANDed).
import { CacheError, type UsageInfo } from "./types.ts";

type Op = "==" | "!=" | "~=";
type Selector = { field: string; op?: Op; value?: string; re?: RegExp };

const FIELDS = new Set([
  "id",
  "parent",
  "description",
  "type",
  "inuse",
  "mutable",
  "immutable",
  "shared",
  "private",
]);

/** The values a field has for a record (several for "parent"); booleans are present or not. */
function fieldValues(u: UsageInfo, field: string): string[] | boolean {
  switch (field) {
    case "id":
      return [u.id];
    case "parent":
      return u.parents;
    case "description":
      return u.description === "" ? [] : [u.description];
    case "type":
      return [u.recordType];
    case "inuse":
      return u.inUse;
    case "mutable":
      return u.mutable;
    case "immutable":
      return !u.mutable;
    case "shared":
      return u.shared;
    case "private":
      return !u.shared;
  }
  return [];
}

function splitSelectors(item: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < item.length; i++) {
    const c = item[i]!;
    if (c === "\\" && quoted && i + 1 < item.length) {
      cur += c + item[++i];
    } else if (c === '"') {
      quoted = !quoted;
      cur += c;
    } else if (c === "," && !quoted) {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  if (quoted) throw new Error("unterminated quote");
  out.push(cur);
  return out;
}

function parseSelector(text: string): Selector {
  const m = /^\s*([a-z]+)\s*(?:(==|!=|~=)\s*(.*?))?\s*$/.exec(text);
  if (!m) throw new Error(`cannot parse selector ${JSON.stringify(text)}`);
  const field = m[1]!;
  if (!FIELDS.has(field))
    throw new Error(`unknown field ${JSON.stringify(field)}; known: ${[...FIELDS].join(", ")}`);
  if (m[2] === undefined) return { field };
  let value = m[3]!;
  if (value.startsWith('"')) {
    if (!value.endsWith('"') || value.length < 2)
      throw new Error(`bad quoted value in ${JSON.stringify(text)}`);
    value = value.slice(1, -1).replace(/\\(.)/g, "$1");
  }
  const op = m[2] as Op;
  return { field, op, value, re: op === "~=" ? new RegExp(value) : undefined };
}

function matches(s: Selector, u: UsageInfo): boolean {
  const values = fieldValues(u, s.field);
  if (typeof values === "boolean") {
    if (s.op === undefined) return values;
    const want = s.value === "true" || s.value === "1";
    return s.op === "!=" ? values !== want : s.op === "==" ? values === want : false;
  }
  if (s.op === undefined) return values.length > 0;
  if (s.op === "==") return values.includes(s.value!);
  if (s.op === "!=") return !values.includes(s.value!);
  return values.some((v) => s.re!.test(v));
}

/** A predicate for `filters`; an empty list matches everything. Throws on a malformed filter. */
export function parseFilters(filters: string[] = []): (u: UsageInfo) => boolean {
  const items = filters.map((item) => {
    try {
      return splitSelectors(item).map(parseSelector);
    } catch (e) {
      throw new CacheError(
        "invalid_argument",
        `parsing filter ${JSON.stringify(item)}: ${(e as Error).message}`,
      );
    }
  });
  if (items.length === 0) return () => true;
  return (u) => items.some((sels) => sels.every((s) => matches(s, u)));
}

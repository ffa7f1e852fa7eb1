// How each instruction's arguments are read, before any expansion: JSON arrays, shell-form
// command lines, whitespace-separated words, and the key/value forms of ENV, LABEL and ARG.
// Which reader an instruction uses decides what its arguments are, so this table mirrors
// BuildKit's dispatch table exactly.

/** An ENV/LABEL pair: the raw value (quotes kept) and whether it was written key=value. */
export interface KeyValue {
  key: string;
  value: string;
  delim: boolean;
}

/** The arguments of one instruction as read from its line. */
export interface ParsedArgs {
  args: string[];
  json: boolean;
  pairs?: KeyValue[];
  /** Why arguments that look like JSON were not taken as JSON. */
  notJson?: string;
}

const WS_SPLIT = /[\t\v\f\r ]+/;
const SPACE = /^\p{White_Space}$/u;
const isSpace = (ch: string) => SPACE.test(ch);

/** A JSON array that is not all strings: BuildKit refuses it rather than falling back. */
export class NotStringArrayError extends Error {
  override name = "NotStringArrayError";
  constructor() {
    super("when using JSON array syntax, arrays must be comprised of strings only");
  }
}

/** Decodes a JSON array of strings, or says why the text is not one. */
function parseJSONArray(rest: string): { ok: true; items: string[] } | { ok: false; why: string } {
  const text = rest.replace(/^\s+/, "");
  if (!text.startsWith("[")) return { ok: false, why: "not a JSON array" };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, why: (e as Error).message };
  }
  if (!Array.isArray(value)) return { ok: false, why: "not a JSON array" };
  if (!value.every((v) => typeof v === "string")) throw new NotStringArrayError();
  return { ok: true, items: value as string[] };
}

// Text that was surely meant as a JSON array: quoted items separated by commas or spaces.
const QUOTED_ITEMS =
  /^\[\s*(?:"(?:[^"\\]|\\.)*"|'[^']*')(?:\s*,?\s*(?:"(?:[^"\\]|\\.)*"|'[^']*'))*\s*,?\s*\]$/;

/** JSON form if the text is a JSON array, else the whole text as a shell-form command. */
export function parseMaybeJSON(rest: string): ParsedArgs {
  if (rest === "") return { args: [], json: false };
  const parsed = parseJSONArray(rest);
  if (parsed.ok) return { args: parsed.items, json: true };
  const looksLikeJson = QUOTED_ITEMS.test(rest.trim());
  return { args: [rest], json: false, notJson: looksLikeJson ? parsed.why : undefined };
}

/** JSON form if the text is a JSON array, else whitespace-separated words. */
export function parseMaybeJSONToList(rest: string): ParsedArgs {
  const parsed = parseJSONArray(rest);
  if (parsed.ok) return { args: parsed.items, json: true };
  return { ...parseWhitespaceWords(rest), notJson: QUOTED_ITEMS.test(rest.trim()) ? parsed.why : undefined };
}

/** Words split on spaces and tabs, nothing else. */
export function parseWhitespaceWords(rest: string): ParsedArgs {
  if (rest === "") return { args: [], json: false };
  return { args: rest.split(WS_SPLIT), json: false };
}

/** The whole rest as one argument. */
export function parseString(rest: string): ParsedArgs {
  return { args: rest === "" ? [] : [rest], json: false };
}

/**
 * Words separated by whitespace where quoted or escaped text stays in one word; quotes and
 * escapes are kept, to be removed by expansion later.
 */
export function parseWords(rest: string, escapeChar: string): string[] {
  const chars = Array.from(rest);
  const words: string[] = [];
  let phase: "spaces" | "word" | "quote" = "spaces";
  let quote = "";
  let blankOK = false;
  let word = "";
  for (let pos = 0; pos <= chars.length; pos++) {
    let ch = chars[pos] ?? "";
    if (phase === "spaces") {
      if (pos === chars.length) break;
      if (isSpace(ch)) continue;
      phase = "word";
    }
    if (pos === chars.length) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === "word") {
      if (isSpace(ch)) {
        phase = "spaces";
        if (blankOK || word.length > 0) words.push(word);
        word = "";
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = "quote";
      }
      if (ch === escapeChar) {
        if (pos + 1 === chars.length) continue;
        word += ch;
        ch = chars[++pos]!;
      }
      word += ch;
      continue;
    }
    if (ch === quote) phase = "word";
    if (ch === escapeChar && quote !== "'") {
      if (pos + 1 === chars.length) {
        phase = "word";
        continue;
      }
      word += ch;
      ch = chars[++pos]!;
    }
    word += ch;
  }
  return words;
}

/** ENV and LABEL: `k=v k2="v 2"` pairs, or the legacy `k value with spaces` form. */
export function parseNameVal(rest: string, instruction: string, escapeChar: string): ParsedArgs {
  const words = parseWords(rest, escapeChar);
  if (words.length === 0) return { args: [], json: false, pairs: [] };
  if (!words[0]!.includes("=")) {
    const m = /^([^\t\v\f\r ]*?)[\t\v\f\r ]+([\s\S]*)$/.exec(rest);
    if (!m) throw new Error(`${instruction} must have two arguments`);
    const pair = { key: m[1]!, value: m[2]!, delim: false };
    return { args: [pair.key, pair.value], json: false, pairs: [pair] };
  }
  const pairs = words.map((word) => {
    const eq = word.indexOf("=");
    if (eq < 0) {
      throw new Error(
        `Syntax error - can't find = in ${JSON.stringify(word)}. Must be of the form: name=value`,
      );
    }
    return { key: word.slice(0, eq), value: word.slice(eq + 1), delim: true };
  });
  return { args: pairs.flatMap((p) => [p.key, p.value]), json: false, pairs };
}

/** HEALTHCHECK: a type word (CMD, NONE) then a command in JSON or shell form. */
export function parseHealthConfig(rest: string): ParsedArgs {
  const m = /^(\S+)\s*([\s\S]*)$/u.exec(rest);
  if (!m) return { args: [], json: false };
  const cmd = parseMaybeJSON(m[2]!);
  return { ...cmd, args: [m[1]!, ...cmd.args] };
}

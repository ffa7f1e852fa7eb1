// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" here is Dockerfile syntax, not a template.
// Shell word expansion as BuildKit's Dockerfile frontend does it: quotes, escapes (with `\` or
// the backtick chosen by `# escape=`), $VAR and the ${VAR...} forms, and optional splitting into
// words. It is a port of the behaviour, quirks included, because Dockerfiles rely on them: an
// expansion that differs by a character changes a cache key or a file path.
import { goQuote } from "../gofmt.ts";
import {
  PatternError,
  replaceAllGo,
  replaceFirst,
  shellPatternToRegex,
  trimPrefix,
  trimSuffix,
} from "./pattern.ts";

/** Where variable values come from: a lookup, a record, or "K=V" strings (last one wins). */
export type EnvSource =
  | ((name: string) => string | undefined)
  | Readonly<Record<string, string>>
  | readonly string[];

/** A malformed expression or a ${VAR?message} that fired; the message names the word. */
export class ShellExpansionError extends Error {
  override name = "ShellExpansionError";
}

export interface LexOptions {
  /** Keep quote characters in the result (used to find quoted heredoc names, progress names). */
  rawQuotes?: boolean;
  /** Keep escape characters in the result. */
  rawEscapes?: boolean;
  /** Treat quotes as ordinary characters (heredoc bodies). */
  skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written instead of expanding them to "". */
  skipUnsetEnv?: boolean;
}

/** The outcome of one expansion: the word, its split words, and which variables were looked up. */
export interface ExpansionResult {
  result: string;
  words: string[];
  matched: Set<string>;
  unmatched: Set<string>;
}

const EOF = undefined;
const SPACE = /^\p{White_Space}$/u;
const LETTER = /^\p{L}$/u;
const DIGIT = /^\p{Nd}$/u;
const SPECIAL_PARAMS = new Set(["@", "*", "#", "?", "-", "$", "!", "0"]);

function isSpace(ch: string): boolean {
  return SPACE.test(ch);
}

/** Turns an EnvSource into a lookup. */
export function envLookup(env: EnvSource): (name: string) => string | undefined {
  if (typeof env === "function") return env;
  if (Array.isArray(env)) {
    const map = new Map<string, string>();
    for (const e of env as readonly string[]) {
      const i = e.indexOf("=");
      if (i < 0) map.set(e, "");
      else map.set(e.slice(0, i), e.slice(i + 1));
    }
    return (name) => map.get(name);
  }
  const rec = env as Readonly<Record<string, string>>;
  return (name) => (Object.hasOwn(rec, name) ? rec[name] : undefined);
}

/** Collects characters into whitespace-separated words, keeping quoted or escaped text whole. */
class WordCollector {
  word = "";
  words: string[] = [];
  inWord = false;

  addChar(ch: string): void {
    if (isSpace(ch)) {
      if (this.inWord && this.word.length !== 0) {
        this.words.push(this.word);
        this.word = "";
        this.inWord = false;
      }
    } else {
      this.addRawChar(ch);
    }
  }
  addRawChar(ch: string): void {
    this.word += ch;
    this.inWord = true;
  }
  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }
  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }
  finish(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = "";
      this.inWord = false;
    }
    return this.words;
  }
}

/** One pass over one word; holds the cursor and the variables looked up. */
class WordScanner {
  private readonly chars: string[];
  private pos = 0;
  private readonly escapeChar: string;
  private readonly opts: LexOptions;
  private readonly lookup: (name: string) => string | undefined;
  private rawEscapes: boolean;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(
    word: string,
    escapeChar: string,
    opts: LexOptions,
    lookup: (name: string) => string | undefined,
  ) {
    this.chars = Array.from(word);
    this.escapeChar = escapeChar;
    this.opts = opts;
    this.lookup = lookup;
    this.rawEscapes = opts.rawEscapes ?? false;
  }

  private peek(): string | undefined {
    return this.chars[this.pos];
  }
  private next(): string | undefined {
    return this.pos < this.chars.length ? this.chars[this.pos++] : EOF;
  }

  private getEnv(name: string): string | undefined {
    const v = this.lookup(name);
    if (v === undefined) this.unmatched.add(name);
    else this.matched.add(name);
    return v;
  }

  /** Processes up to `stop` (consumed) or the end; the stop character must be found if given. */
  processStopOn(stop: string | undefined, rawEscapes: boolean): [string, string[]] {
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      return this.scan(stop);
    } finally {
      this.rawEscapes = saved;
    }
  }

  private scan(stop: string | undefined): [string, string[]] {
    let result = "";
    const words = new WordCollector();
    const quotes = !this.opts.skipProcessQuotes;
    while (this.peek() !== EOF) {
      let ch = this.peek()!;
      if (stop !== undefined && ch === stop) {
        this.next();
        return [result, words.finish()];
      }
      if (ch === "$") {
        const value = this.processDollar();
        result += value;
        words.addString(value);
        continue;
      }
      if (quotes && (ch === "'" || ch === '"')) {
        const value = ch === "'" ? this.processSingleQuote() : this.processDoubleQuote();
        result += value;
        words.addRawString(value);
        continue;
      }
      ch = this.next()!;
      if (ch === this.escapeChar) {
        if (this.rawEscapes) {
          words.addRawChar(ch);
          result += ch;
        }
        const escaped = this.next();
        // An escape at the very end is dropped.
        if (escaped === EOF) break;
        ch = escaped;
        words.addRawChar(ch);
      } else {
        words.addChar(ch);
      }
      result += ch;
    }
    if (stop !== undefined) {
      throw new ShellExpansionError(`unexpected end of statement while looking for matching ${stop}`);
    }
    return [result, words.finish()];
  }

  /** '...': everything literal, and there is no way to escape a single quote inside. */
  private processSingleQuote(): string {
    const raw = this.opts.rawQuotes;
    const open = this.next()!;
    let result = raw ? open : "";
    for (;;) {
      const ch = this.next();
      if (ch === EOF) {
        throw new ShellExpansionError("unexpected end of statement while looking for matching single-quote");
      }
      if (ch === "'") return raw ? result + ch : result;
      result += ch;
    }
  }

  /** "...": $ expands; the escape character escapes only " $ and itself. */
  private processDoubleQuote(): string {
    const raw = this.opts.rawQuotes;
    const open = this.next()!;
    let result = raw ? open : "";
    for (;;) {
      const peek = this.peek();
      if (peek === EOF) {
        throw new ShellExpansionError("unexpected end of statement while looking for matching double-quote");
      }
      if (peek === '"') {
        this.next();
        return raw ? `${result}"` : result;
      }
      if (peek === "$") {
        result += this.processDollar();
        continue;
      }
      let ch = this.next()!;
      if (ch === this.escapeChar) {
        if (this.rawEscapes) result += ch;
        const after = this.peek();
        if (after === EOF) continue;
        if (after === '"' || after === "$" || after === this.escapeChar) ch = this.next()!;
      }
      result += ch;
    }
  }

  private processDollar(): string {
    this.next();
    if (this.peek() !== "{") {
      const name = this.processName();
      if (name === "") return "$";
      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv) return `$${name}`;
      return value ?? "";
    }
    this.next();
    const first = this.peek();
    if (first === EOF) throw new ShellExpansionError("syntax error: missing '}'");
    if (first === "{" || first === "}" || first === ":") {
      throw new ShellExpansionError("syntax error: bad substitution");
    }
    const name = this.processName();
    let ch = this.next();
    let modifier = ch ?? "\uFFFD";
    let nullIsUnset = false;
    if (ch === "}") {
      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}}`;
      return value ?? "";
    }
    if (ch === "/") return this.processReplace(name);
    if (ch === ":") {
      nullIsUnset = true;
      ch = this.next();
      modifier += ch ?? "\uFFFD";
    } else if (ch !== "+" && ch !== "-" && ch !== "?" && ch !== "#" && ch !== "%") {
      throw new ShellExpansionError(`unsupported modifier (${modifier}) in substitution`);
    }
    let word: string;
    try {
      [word] = this.processStopOn("}", ch === "#" || ch === "%");
    } catch (e) {
      if (this.peek() === EOF) throw new ShellExpansionError("syntax error: missing '}'");
      throw e;
    }
    const value = this.getEnv(name);
    if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}${modifier}${word}}`;
    const unset = value === undefined || (nullIsUnset && value === "");
    switch (ch) {
      case "-":
        return unset ? word : value!;
      case "+":
        return unset ? "" : word;
      case "?":
        if (value === undefined) {
          throw new ShellExpansionError(`${name}: ${word !== "" ? word : "is not allowed to be unset"}`);
        }
        if (nullIsUnset && value === "") {
          throw new ShellExpansionError(`${name}: ${word !== "" ? word : "is not allowed to be empty"}`);
        }
        return value;
      case "#":
      case "%": {
        // %/# remove the shortest match, %%/## the longest.
        const greedy = word.startsWith(ch);
        const pattern = greedy ? word.slice(1) : word;
        try {
          return ch === "%"
            ? trimSuffix(pattern, value ?? "", greedy)
            : trimPrefix(pattern, value ?? "", greedy);
        } catch (e) {
          throw patternFailure(pattern, e);
        }
      }
      default:
        throw new ShellExpansionError(`unsupported modifier (${modifier}) in substitution`);
    }
  }

  /** ${VAR/pattern/replacement} and ${VAR//pattern/replacement}. */
  private processReplace(name: string): string {
    const all = this.peek() === "/";
    if (all) this.next();
    let pattern: string;
    try {
      [pattern] = this.processStopOn("/", true);
    } catch (e) {
      if (this.peek() === EOF) throw new ShellExpansionError("syntax error: missing '/' in ${}");
      throw e;
    }
    let replacement: string;
    try {
      [replacement] = this.processStopOn("}", true);
    } catch (e) {
      if (this.peek() === EOF) throw new ShellExpansionError("syntax error: missing '}'");
      throw e;
    }
    const value = this.getEnv(name);
    if (value === undefined && this.opts.skipUnsetEnv) return `\${${name}/${pattern}/${replacement}}`;
    let re: RegExp;
    try {
      re = shellPatternToRegex(pattern, true, false);
    } catch (e) {
      throw patternFailure(pattern, e);
    }
    return all ? replaceAllGo(re, value ?? "", replacement) : replaceFirst(re, value ?? "", replacement);
  }

  /** A name: letters, digits and _, or all digits, or one special parameter character. */
  private processName(): string {
    let name = "";
    while (this.peek() !== EOF) {
      const ch = this.peek()!;
      if (name === "" && DIGIT.test(ch)) {
        while (this.peek() !== EOF && DIGIT.test(this.peek()!)) name += this.next();
        return name;
      }
      if (name === "" && SPECIAL_PARAMS.has(ch)) return this.next()!;
      if (!LETTER.test(ch) && !DIGIT.test(ch) && ch !== "_") break;
      name += this.next();
    }
    return name;
  }
}

function patternFailure(pattern: string, e: unknown): ShellExpansionError {
  const why = e instanceof PatternError ? e.message : String(e);
  return new ShellExpansionError(`invalid pattern (${pattern}) in substitution: ${why}`);
}

/**
 * A shell lexer for one escape character. Stateless between calls, so one instance can be
 * shared; options are fixed at construction (make another lexer for raw variants).
 */
export class ShellLex {
  readonly escapeToken: "\\" | "`";
  readonly options: Readonly<LexOptions>;

  constructor(escapeToken: "\\" | "`" = "\\", options: LexOptions = {}) {
    this.escapeToken = escapeToken;
    this.options = { ...options };
  }

  /** The same lexer with some options changed. */
  with(options: LexOptions): ShellLex {
    return new ShellLex(this.escapeToken, { ...this.options, ...options });
  }

  /** Expands and reports which variables were looked up; throws ShellExpansionError. */
  process(word: string, env: EnvSource): ExpansionResult {
    const scanner = new WordScanner(word, this.escapeToken, this.options, envLookup(env));
    try {
      const [result, words] = scanner.processStopOn(undefined, this.options.rawEscapes ?? false);
      return { result, words, matched: scanner.matched, unmatched: scanner.unmatched };
    } catch (e) {
      if (e instanceof ShellExpansionError) {
        throw new ShellExpansionError(`failed to process ${goQuote(word)}: ${e.message}`);
      }
      throw e;
    }
  }

  /** The expanded word, quotes removed, spaces between words kept. */
  processWord(word: string, env: EnvSource): string {
    return this.process(word, env).result;
  }

  /** The expanded word split into words the way a shell would (after expansion). */
  processWords(word: string, env: EnvSource): string[] {
    return this.process(word, env).words;
  }
}

// .dockerignore-style path patterns (the semantics of moby/patternmatcher, which BuildKit's local
// source and copy include/exclude use): last matching pattern wins, `!` makes an exception, a pattern
// that matches a directory matches everything below it, `**` spans any number of directories.
import { posix } from "node:path";
import { globMatch, validateGlob } from "./glob.ts";

/** Go's filepath.Clean for "/"-separated paths: no trailing slash, "." for an empty result. */
export function cleanPath(p: string): string {
  if (p === "") return ".";
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith("/") ? n.slice(0, -1) : n;
}

type MatchKind = "exact" | "prefix" | "suffix" | "regexp";

/** One compiled pattern. */
export interface Pattern {
  /** The cleaned pattern, without its `!`. */
  readonly text: string;
  /** True for an exception (`!pattern`), which re-includes what earlier patterns matched. */
  readonly exclusion: boolean;
  readonly kind: MatchKind;
  readonly regexp?: RegExp;
}

// Characters that need a backslash in a `u`-mode regexp (where escaping anything else is an error).
const REGEXP_SPECIAL = new Set([..."\\^$.|?*+()[]{}/"]);

function regexpChar(ch: string): string {
  return REGEXP_SPECIAL.has(ch) ? `\\${ch}` : ch;
}

function classChar(ch: string): string {
  return `\\u{${ch.codePointAt(0)!.toString(16)}}`;
}

/** Translates a bracket expression starting at cps[i] ("[") to a regexp class; returns it and the next index. */
function translateClass(cps: string[], i: number): { re: string; next: number } {
  let j = i + 1;
  let re = "[";
  if (cps[j] === "^") {
    re += "^";
    j++;
  }
  // The pattern was validated with Go's rules: every class is closed and "-" always makes a range.
  while (j < cps.length && cps[j] !== "]") {
    let lo = cps[j]!;
    if (lo === "\\") lo = cps[++j]!;
    j++;
    let hi = lo;
    if (cps[j] === "-") {
      hi = cps[j + 1]!;
      j += 2;
      if (hi === "\\") hi = cps[j++]!;
    }
    // Go accepts a reversed range and it matches nothing; a regexp would reject it.
    if (lo.codePointAt(0)! <= hi.codePointAt(0)!) re += classChar(lo) + "-" + classChar(hi);
  }
  return { re: re + "]", next: j };
}

/**
 * Compiles a cleaned pattern the way moby/patternmatcher does: patterns without wildcards compare
 * exactly, "x/**" by prefix, "**"+"x" by suffix, anything else through a regexp. Unlike Docker, classes
 * are translated as classes (Docker pastes them into its regexp, which misreads "[*]").
 */
function compile(text: string): { kind: MatchKind; regexp?: RegExp } {
  const cps = Array.from(text);
  let re = "^";
  let kind: MatchKind = "exact";
  for (let i = 0; i < cps.length; i++) {
    const start = i;
    const ch = cps[i]!;
    if (ch === "*") {
      if (cps[i + 1] === "*") {
        i++;
        // "**/" is the same as "**".
        if (cps[i + 1] === "/") i++;
        if (i + 1 >= cps.length) {
          // A trailing "**" matches everything below, as in .gitignore.
          if (kind === "exact") kind = "prefix";
          else {
            re += ".*";
            kind = "regexp";
          }
        } else {
          re += "(?:.*/)?";
          kind = "regexp";
        }
        if (start === 0) kind = "suffix";
      } else {
        re += "[^/]*";
        kind = "regexp";
      }
    } else if (ch === "?") {
      re += "[^/]";
      kind = "regexp";
    } else if (ch === "\\") {
      if (i + 1 < cps.length) {
        re += regexpChar(cps[++i]!);
        kind = "regexp";
      } else {
        re += "\\\\";
      }
    } else if (ch === "[") {
      const cls = translateClass(cps, i);
      re += cls.re;
      i = cls.next;
      kind = "regexp";
    } else {
      re += regexpChar(ch);
    }
  }
  if (kind !== "regexp") return { kind };
  // `s`: a "**" spans file names with newlines too (Go's regexp "." would not).
  return { kind, regexp: new RegExp(re + "$", "su") };
}

function matchOne(p: Pattern, path: string): boolean {
  switch (p.kind) {
    case "exact":
      return path === p.text;
    case "prefix":
      return path.startsWith(p.text.slice(0, -2));
    case "suffix": {
      const suffix = p.text.slice(2);
      if (path.endsWith(suffix)) return true;
      // "**/foo" also matches "foo" itself.
      return suffix.startsWith("/") && path === suffix.slice(1);
    }
    case "regexp":
      return p.regexp!.test(path);
  }
}

/** Per-pattern results for a directory, handed to its children so they need not re-check parents. */
export type ParentMatch = readonly boolean[];

/**
 * A list of .dockerignore-style patterns. Paths given to it are relative, "/"-separated and clean.
 * A class because compiling is done once and the compiled patterns are reused for every path.
 */
export class PatternMatcher {
  readonly patterns: readonly Pattern[];
  /** True when some pattern is an exception (`!`). */
  readonly hasExclusions: boolean;

  /** Compiles `patterns`; throws on a malformed one (unclosed `[`, lone `!`, trailing `\`). */
  constructor(patterns: readonly string[]) {
    const out: Pattern[] = [];
    for (const raw of patterns) {
      let p = raw.trim();
      if (p === "") continue;
      let exclusion = false;
      if (p.startsWith("!")) {
        if (p.length === 1) throw new Error(`invalid pattern "!": an exception needs a pattern after "!"`);
        exclusion = true;
        p = p.slice(1).trim();
      }
      p = cleanPath(p);
      // Patterns are relative to the context root: "/foo" and "./foo" both mean "foo".
      if (p.startsWith("/")) p = cleanPath(p.slice(1));
      try {
        validateGlob(p);
      } catch (err) {
        throw new Error(`invalid pattern ${JSON.stringify(raw)}: ${(err as Error).message}`);
      }
      out.push({ text: p, exclusion, ...compile(p) });
    }
    this.patterns = out;
    this.hasExclusions = out.some((p) => p.exclusion);
  }

  /** Whether `path` or one of its parent directories is matched (and not re-included by an exception). */
  matches(path: string): boolean {
    return this.matchesWithParent(path).matched;
  }

  /**
   * Like {@link matches}, reusing the result of `path`'s parent directory (from a walk) instead of
   * re-checking every parent. Without `parent`, parents are checked one by one.
   */
  matchesWithParent(path: string, parent?: ParentMatch): { matched: boolean; state: ParentMatch } {
    const hasParent = parent !== undefined && parent.length > 0;
    if (hasParent && parent.length !== this.patterns.length) {
      throw new Error(`parent match state has ${parent.length} entries, want ${this.patterns.length}`);
    }
    let matched = false;
    const state: boolean[] = new Array(this.patterns.length).fill(false);
    for (let i = 0; i < this.patterns.length; i++) {
      const p = this.patterns[i]!;
      let m = hasParent ? parent[i]! : false;
      if (!m) {
        // An inclusion cannot change a matched path, nor an exception an unmatched one.
        if (p.exclusion !== matched) continue;
        m = matchOne(p, path);
        if (!m && !hasParent) {
          const dirs = path.split("/");
          for (let j = 1; j < dirs.length && !m; j++) m = matchOne(p, dirs.slice(0, j).join("/"));
        }
      }
      state[i] = m;
      if (m) matched = !p.exclusion;
    }
    return { matched, state };
  }

  /**
   * Whether some pattern of the given polarity (exceptions, or plain patterns) could match a path
   * strictly below directory `dir`. Conservative (may say yes wrongly, never no wrongly): a walker
   * uses it to skip whole directories that nothing inside could change.
   */
  couldMatchBelow(dir: string, exclusions: boolean): boolean {
    const dirParts = dir === "" || dir === "." ? [] : dir.split("/");
    for (const p of this.patterns) {
      if (p.exclusion !== exclusions) continue;
      if (patternCouldMatchBelow(p.text, dirParts)) return true;
    }
    return false;
  }
}

function patternCouldMatchBelow(text: string, dirParts: string[]): boolean {
  // "**" spans directories and an escaped "/" hides one: give up and say yes.
  if (text.includes("**") || text.includes("\\/")) return true;
  const parts = text.split("/");
  for (let i = 0; i < dirParts.length; i++) {
    if (i >= parts.length) return false;
    if (!globMatch(parts[i]!, dirParts[i]!)) return false;
  }
  return parts.length > dirParts.length;
}

/**
 * Parses a .dockerignore file into patterns, as Docker's ignorefile.ReadAll does: `#` comments,
 * blank lines and surrounding spaces dropped, each pattern cleaned and made relative ("/foo" and
 * "./foo" mean "foo"), `!` kept in front.
 */
export function parseDockerignore(text: string): string[] {
  const out: string[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i]!;
    if (i === 0) line = line.replace(/^\uFEFF/, "");
    if (line.startsWith("#")) continue;
    let p = line.trim();
    if (p === "") continue;
    const invert = p.startsWith("!");
    if (invert) p = p.slice(1).trim();
    if (p.length > 0) {
      p = cleanPath(p);
      if (p.length > 1 && p.startsWith("/")) p = p.slice(1);
    }
    out.push(invert ? "!" + p : p);
  }
  return out;
}

// Go's filepath.Match syntax (Unix flavour), which LLB wildcards and .dockerignore patterns use:
// `*` any run of non-"/" characters, `?` one non-"/" character, `[a-z]`/`[^a-z]` classes, `\x` escapes.

/** A malformed pattern (unclosed class, bad range, trailing backslash), like Go's ErrBadPattern. */
export class BadPatternError extends Error {
  constructor(pattern: string, why: string) {
    super(`invalid pattern ${JSON.stringify(pattern)}: ${why}`);
    this.name = "BadPatternError";
  }
}

/** True when `s` has an unescaped `*`, `?` or `[`, i.e. when it needs matching rather than comparing. */
export function hasWildcards(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === "\\") i++;
    else if (ch === "*" || ch === "?" || ch === "[") return true;
  }
  return false;
}

type Chunk = { star: boolean; chunk: string[]; rest: string[] };

function scanChunk(p: string[]): Chunk {
  let star = false;
  while (p.length > 0 && p[0] === "*") {
    p = p.slice(1);
    star = true;
  }
  let inRange = false;
  let i = 0;
  scan: for (; i < p.length; i++) {
    switch (p[i]) {
      case "\\":
        if (i + 1 < p.length) i++;
        break;
      case "[":
        inRange = true;
        break;
      case "]":
        inRange = false;
        break;
      case "*":
        if (!inRange) break scan;
        break;
    }
  }
  return { star, chunk: p.slice(0, i), rest: p.slice(i) };
}

/** Reads one (possibly escaped) character of a class; returns it and what follows. */
function classChar(pattern: string, chunk: string[]): { ch: string; rest: string[] } {
  if (chunk.length === 0 || chunk[0] === "-" || chunk[0] === "]") {
    throw new BadPatternError(pattern, "bad character class");
  }
  if (chunk[0] === "\\") {
    chunk = chunk.slice(1);
    if (chunk.length === 0) throw new BadPatternError(pattern, "trailing backslash in class");
  }
  const rest = chunk.slice(1);
  if (rest.length === 0) throw new BadPatternError(pattern, "unclosed character class");
  return { ch: chunk[0]!, rest };
}

/** Matches one chunk against the start of `s`; returns the unmatched rest of `s`, or undefined. */
function matchChunk(pattern: string, chunk: string[], s: string[]): string[] | undefined {
  // Keeps scanning after a mismatch so that a malformed pattern is always reported.
  let failed = false;
  while (chunk.length > 0) {
    if (!failed && s.length === 0) failed = true;
    switch (chunk[0]) {
      case "[": {
        let r = "";
        if (!failed) {
          r = s[0]!;
          s = s.slice(1);
        }
        chunk = chunk.slice(1);
        let negated = false;
        if (chunk.length > 0 && chunk[0] === "^") {
          negated = true;
          chunk = chunk.slice(1);
        }
        let matched = false;
        let ranges = 0;
        for (;;) {
          if (chunk.length > 0 && chunk[0] === "]" && ranges > 0) {
            chunk = chunk.slice(1);
            break;
          }
          const lo = classChar(pattern, chunk);
          chunk = lo.rest;
          let hi = lo.ch;
          if (chunk[0] === "-") {
            const h = classChar(pattern, chunk.slice(1));
            chunk = h.rest;
            hi = h.ch;
          }
          const code = r.codePointAt(0) ?? -1;
          if (lo.ch.codePointAt(0)! <= code && code <= hi.codePointAt(0)!) matched = true;
          ranges++;
        }
        if (matched === negated) failed = true;
        break;
      }
      case "?":
        if (!failed) {
          if (s[0] === "/") failed = true;
          s = s.slice(1);
        }
        chunk = chunk.slice(1);
        break;
      case "\\":
        chunk = chunk.slice(1);
        if (chunk.length === 0) throw new BadPatternError(pattern, "trailing backslash");
        if (!failed) {
          if (chunk[0] !== s[0]) failed = true;
          s = s.slice(1);
        }
        chunk = chunk.slice(1);
        break;
      default:
        if (!failed) {
          if (chunk[0] !== s[0]) failed = true;
          s = s.slice(1);
        }
        chunk = chunk.slice(1);
    }
  }
  return failed ? undefined : s;
}

/**
 * Go's filepath.Match: whether `name` matches the whole `pattern`. Throws {@link BadPatternError}
 * for a malformed pattern, whatever the name.
 */
export function globMatch(pattern: string, name: string): boolean {
  let p = Array.from(pattern);
  let s = Array.from(name);
  outer: while (p.length > 0) {
    const { star, chunk, rest } = scanChunk(p);
    p = rest;
    if (star && chunk.length === 0) {
      // A trailing star matches the rest of the name unless it crosses a separator.
      return !s.includes("/");
    }
    const t = matchChunk(pattern, chunk, s);
    // Without a star the chunk must match here; with one, it may also match further on.
    if (t !== undefined && (t.length === 0 || p.length > 0)) {
      s = t;
      continue;
    }
    if (star) {
      for (let i = 0; i < s.length && s[i] !== "/"; i++) {
        const t2 = matchChunk(pattern, chunk, s.slice(i + 1));
        if (t2 !== undefined) {
          if (p.length === 0 && t2.length > 0) continue;
          s = t2;
          continue outer;
        }
      }
    }
    // No match: still check that the rest of the pattern is well formed.
    while (p.length > 0) {
      const next = scanChunk(p);
      p = next.rest;
      matchChunk(pattern, next.chunk, []);
    }
    return false;
  }
  return s.length === 0;
}

/** Throws {@link BadPatternError} when `pattern` is malformed. */
export function validateGlob(pattern: string): void {
  globMatch(pattern, ".");
}

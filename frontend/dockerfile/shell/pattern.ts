// The shell patterns of ${VAR#pat}, ${VAR%pat} and ${VAR/pat/repl}: `*` and `?` wildcards with
// backslash escapes (no bracket expressions), evaluated with Go's regexp semantics, since that is
// what BuildKit's expansion uses and results must not differ by a character.

/** Why a pattern could not be used. */
export class PatternError extends Error {
  override name = "PatternError";
}

// Go's `.` matches any character but newline; JavaScript's also refuses \r and U+2028/9.
const ANY = "[^\\n]";
const REGEX_SPECIAL = new Set(["[", "]", "{", "}", ".", "+", "(", ")", "|", "^", "$"]);

/**
 * Turns a shell pattern into a regular expression source. `greedy` picks the longest match for
 * `*`; `anchored` matches at the start only.
 */
export function shellPatternToRegex(pattern: string, greedy: boolean, anchored: boolean): RegExp {
  const chars = Array.from(pattern);
  let out = anchored ? "^" : "";
  for (let i = 0; i < chars.length; i++) {
    let ch = chars[i]!;
    if (ch === "*") {
      out += greedy ? `${ANY}*` : `${ANY}*?`;
      continue;
    }
    if (ch === "?") {
      out += ANY;
      continue;
    }
    if (ch === "\\") {
      // An escaped } or / only protected the ${} syntax; it is not part of the pattern.
      const next = chars[i + 1];
      if (next === "}" || next === "/") continue;
      i++;
      if (next !== "*" && next !== "?" && next !== "\\") {
        throw new PatternError(`invalid escape '\\${next ?? "\uFFFD"}'`);
      }
      out += `\\${next}`;
      continue;
    }
    if (REGEX_SPECIAL.has(ch)) ch = `\\${ch}`;
    out += ch;
  }
  return new RegExp(out, "u");
}

/** Removes the shortest (or longest, when greedy) prefix of `value` matching `pattern`. */
export function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = shellPatternToRegex(pattern, greedy, true).exec(value);
  return m ? value.slice(m.index + m[0].length) : value;
}

/** Removes the shortest (or longest, when greedy) suffix of `value` matching `pattern`. */
export function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  // A regex finds leftmost matches only, so search the reversed value with the reversed pattern.
  return reverse(trimPrefix(reversePattern(pattern), reverse(value), greedy));
}

function reverse(s: string): string {
  return Array.from(s).reverse().join("");
}

/** Reverses a pattern keeping each escape before the character it escapes ("a\*c" → "c\*a"). */
export function reversePattern(pattern: string): string {
  const chars = Array.from(pattern);
  const out: string[] = new Array(chars.length);
  const last = chars.length - 1;
  for (let i = 0; i <= last; ) {
    const at = last - i;
    if (chars[i] === "\\" && i !== last) {
      out[at - 1] = "\\";
      out[at] = chars[i + 1]!;
      i += 2;
    } else {
      out[at] = chars[i]!;
      i++;
    }
  }
  return out.join("");
}

/** Replaces the first match of `re` in `value` with `replacement`, taken literally. */
export function replaceFirst(re: RegExp, value: string, replacement: string): string {
  const m = re.exec(value);
  if (!m) return value;
  return value.slice(0, m.index) + replacement + value.slice(m.index + m[0].length);
}

/**
 * Go's Regexp.ReplaceAllString: `$0`, `$1`, `${name}` and `$$` in the replacement are template
 * references, and an empty match right after a previous match is not replaced again.
 */
export function replaceAllGo(re: RegExp, value: string, replacement: string): string {
  const global = new RegExp(re.source, "gu");
  let out = "";
  let lastMatchEnd = 0;
  let searchPos = 0;
  while (searchPos <= value.length) {
    global.lastIndex = searchPos;
    const m = global.exec(value);
    if (!m) break;
    const start = m.index;
    const end = start + m[0].length;
    out += value.slice(lastMatchEnd, start);
    if (end > lastMatchEnd || start === 0) out += expandTemplate(replacement, m);
    lastMatchEnd = end;
    const width = searchPos < value.length ? String.fromCodePoint(value.codePointAt(searchPos)!).length : 1;
    if (searchPos + width > end) searchPos += width;
    else if (searchPos + 1 > end) searchPos++;
    else searchPos = end;
  }
  return out + value.slice(lastMatchEnd);
}

/** Go's Regexp.Expand for a replacement template against one match. */
function expandTemplate(template: string, match: RegExpExecArray): string {
  let out = "";
  let rest = template;
  for (;;) {
    const dollar = rest.indexOf("$");
    if (dollar < 0) break;
    out += rest.slice(0, dollar);
    rest = rest.slice(dollar + 1);
    if (rest.startsWith("$")) {
      out += "$";
      rest = rest.slice(1);
      continue;
    }
    const ref = /^(?:\{([\p{L}\p{Nd}_]+)\}|([\p{L}\p{Nd}_]+))/u.exec(rest);
    if (!ref) {
      out += "$";
      continue;
    }
    rest = rest.slice(ref[0].length);
    const name = ref[1] ?? ref[2]!;
    if (/^\d+$/.test(name) && !(name.length > 1 && name.startsWith("0"))) {
      out += match[Number(name)] ?? "";
    } else {
      out += match.groups?.[name] ?? "";
    }
  }
  return out + rest;
}

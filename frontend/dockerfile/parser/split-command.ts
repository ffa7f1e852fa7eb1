// Splitting one logical line into the instruction word, its `--flag=value` flags, and the rest.

const SPACE = /^\p{White_Space}$/u;
const isSpace = (ch: string) => SPACE.test(ch);

/** The instruction as written, its flags (quotes and backslashes removed) and the trimmed rest. */
export function splitCommand(line: string): { command: string; flags: string[]; rest: string } {
  const trimmed = line.trim();
  const m = /^([^\t\v\f\r ]*)[\t\v\f\r ]+([\s\S]*)$/.exec(trimmed);
  if (!m) return { command: trimmed, flags: [], rest: "" };
  const { rest, flags } = extractFlags(m[2]!);
  return { command: m[1]!, flags, rest: rest.trim() };
}

/**
 * Reads leading words that start with "--" as flags. A flag word may contain quotes and
 * backslash escapes; a bare "--" ends the flags. Everything from the first other word on is
 * the rest.
 */
export function extractFlags(line: string): { rest: string; flags: string[] } {
  const chars = Array.from(line);
  const flags: string[] = [];
  let phase: "spaces" | "word" | "quote" = "spaces";
  let word = "";
  let quote = "";
  let blankOK = false;
  // Offsets into `line` in UTF-16 units, to slice the rest.
  let offset = 0;
  for (let pos = 0; pos <= chars.length; pos++) {
    const ch = pos < chars.length ? chars[pos]! : "";
    const at = offset;
    offset += ch.length;
    if (phase === "spaces") {
      if (pos === chars.length) break;
      if (isSpace(ch)) continue;
      if (ch !== "-" || pos + 1 === chars.length || chars[pos + 1] !== "-") {
        return { rest: line.slice(at), flags };
      }
      phase = "word";
    }
    if (pos === chars.length) {
      if (word !== "--" && (blankOK || word.length > 0)) flags.push(word);
      break;
    }
    if (phase === "word") {
      if (isSpace(ch)) {
        phase = "spaces";
        if (word === "--") return { rest: line.slice(at), flags };
        if (blankOK || word.length > 0) flags.push(word);
        word = "";
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = "quote";
        continue;
      }
      if (ch === "\\") {
        if (pos + 1 === chars.length) continue;
        pos++;
        offset += chars[pos]!.length;
        word += chars[pos];
        continue;
      }
      word += ch;
      continue;
    }
    // inside quotes
    if (ch === quote) {
      phase = "word";
      continue;
    }
    if (ch === "\\") {
      if (pos + 1 === chars.length) {
        phase = "word";
        continue;
      }
      pos++;
      offset += chars[pos]!.length;
      word += chars[pos];
      continue;
    }
    word += ch;
  }
  return { rest: "", flags };
}

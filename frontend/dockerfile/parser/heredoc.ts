// Heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) in RUN, COPY and ADD: which words of a line open one,
// the delimiter, whether the body is expanded (not when any part of the delimiter is quoted),
// and tab stripping for `<<-`.
import { ShellLex } from "../shell/lex.ts";

/** One heredoc of an instruction. `content` is the body as written, newlines included. */
export interface Heredoc {
  name: string;
  fileDescriptor: number;
  expand: boolean;
  /** `<<-`: leading tabs are removed from every line of the body. */
  chomp: boolean;
  content: string;
}

const HEREDOC_RE = /^(\d*)<<(-?)([^<]*)$/;
const NO_ENV: readonly string[] = [];

/** The heredoc a single word opens, or undefined. Throws on an unparsable delimiter. */
export function parseHeredoc(word: string): Omit<Heredoc, "content"> | undefined {
  const m = HEREDOC_RE.exec(word);
  if (!m || m[3] === "") return undefined;
  const rest = m[3]!;
  const words = new ShellLex("\\", { skipUnsetEnv: true }).processWords(rest, NO_ENV);
  if (words.length !== 1) return undefined;
  const rawWords = new ShellLex("\\", { skipUnsetEnv: true, rawQuotes: true }).processWords(rest, NO_ENV);
  if (rawWords.length !== words.length) {
    throw new Error(`internal lexing of heredoc produced inconsistent results: ${rest}`);
  }
  const quotes = (s: string) => (s.match(/['"]/g) ?? []).length;
  return {
    name: words[0]!,
    fileDescriptor: m[1] === "" ? 0 : Number(m[1]),
    expand: quotes(words[0]!) === quotes(rawWords[0]!),
    chomp: m[2] === "-",
  };
}

/** The heredocs opened on a line, in order. */
export function heredocsFromLine(line: string): Omit<Heredoc, "content">[] {
  let words: string[];
  try {
    words = new ShellLex("\\", { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true }).processWords(
      line,
      NO_ENV,
    );
  } catch {
    words = [];
  }
  const docs: Omit<Heredoc, "content">[] = [];
  for (const word of words) {
    const doc = parseHeredoc(word);
    if (doc) docs.push(doc);
  }
  return docs;
}

/** `<<-` bodies: leading tabs removed from each line. */
export function chompHeredocContent(content: string): string {
  return content.replace(/(^|\n)\t+/g, "$1");
}

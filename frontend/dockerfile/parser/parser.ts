// The Dockerfile parser: bytes to a list of instructions with their flags, raw arguments,
// heredoc bodies and line ranges. Nothing is expanded or validated beyond syntax here; that is
// the job of instructions/ (typed commands) and convert/ (LLB).
import { Linter, parseCheckDirective } from "../lint.ts";
import { type Directive, DirectiveParser, type EscapeToken } from "./directives.ts";
import { DockerfileError, lineRange, type Range, withLocation } from "./errors.ts";
import { type Heredoc, heredocsFromLine } from "./heredoc.ts";
import {
  type KeyValue,
  type ParsedArgs,
  parseHealthConfig,
  parseMaybeJSON,
  parseMaybeJSONToList,
  parseNameVal,
  parseString,
  parseWhitespaceWords,
  parseWords,
} from "./line-parsers.ts";
import { splitCommand } from "./split-command.ts";

/** One instruction as written. */
export interface Instruction {
  /** Lowercase name: "run", "copy", "from"... */
  name: string;
  /** The name as written, for casing checks. */
  rawName: string;
  /** The logical line: continuation lines joined, comments inside them dropped. */
  original: string;
  /** `--name=value` flags, quotes removed. */
  flags: string[];
  /**
   * Arguments before expansion and quote removal: a JSON form's items; a shell form as one
   * string; ENV/LABEL as alternating keys and raw values; FROM, EXPOSE, COPY, ADD, VOLUME and
   * ARG as words; USER, WORKDIR, MAINTAINER, STOPSIGNAL as the rest of the line; ONBUILD as the
   * trigger's name followed by the trigger's arguments.
   */
  args: string[];
  /** The arguments were a JSON array. */
  json: boolean;
  /** ENV and LABEL pairs. */
  pairs?: KeyValue[];
  heredocs: Heredoc[];
  /** ONBUILD's trigger instruction. */
  sub?: Instruction;
  startLine: number;
  endLine: number;
  location: Range[];
  /** Comment lines right above the instruction, without "#". */
  comments: string[];
  /** Why arguments that looked like a JSON array were taken in shell form instead. */
  jsonError?: string;
}

/** A parsed Dockerfile. */
export interface ParseResult {
  instructions: Instruction[];
  escapeToken: EscapeToken;
  directives: Directive[];
  /** Warnings found while parsing, already filtered by `# check=`. */
  linter: Linter;
  source: string;
  file: string;
}

export interface ParseOptions {
  /** Name used in errors ("Dockerfile", "app/Dockerfile.dev"). */
  file?: string;
}

// bufio.Scanner's limit in BuildKit: a longer line is an error, which also bounds memory.
const MAX_LINE_BYTES = 64 * 1024;
const HEREDOC_INSTRUCTIONS = new Set(["run", "copy", "add"]);

type LineParser = (rest: string, escapeChar: EscapeToken, name: string) => ParsedArgs;

const LINE_PARSERS: Record<string, LineParser> = {
  add: parseMaybeJSONToList,
  arg: (rest, escapeChar) => ({ args: parseWords(rest, escapeChar), json: false }),
  cmd: parseMaybeJSON,
  copy: parseMaybeJSONToList,
  entrypoint: parseMaybeJSON,
  env: (rest, escapeChar) => parseNameVal(rest, "ENV", escapeChar),
  expose: parseWhitespaceWords,
  from: parseWhitespaceWords,
  healthcheck: parseHealthConfig,
  label: (rest, escapeChar) => parseNameVal(rest, "LABEL", escapeChar),
  maintainer: parseString,
  run: parseMaybeJSON,
  shell: parseMaybeJSON,
  stopsignal: parseString,
  user: parseString,
  volume: parseMaybeJSONToList,
  workdir: parseString,
};

/** Splits text into lines that keep their "\n", as BuildKit's scanner does. */
function splitLines(text: string): string[] {
  const lines: string[] = [];
  let start = 0;
  for (;;) {
    const nl = text.indexOf("\n", start);
    if (nl < 0) {
      if (start < text.length) lines.push(text.slice(start));
      return lines;
    }
    lines.push(text.slice(start, nl + 1));
    start = nl + 1;
  }
}

const trimNewline = (s: string) => s.replace(/[\r\n]+$/, "");
const trimLeadingSpace = (s: string) => s.replace(/^\p{White_Space}+/u, "");
const isComment = (s: string) => trimLeadingSpace(s).startsWith("#");
const isEmptyContinuation = (s: string) => trimLeadingSpace(trimNewline(s)) === "";

function continuationRegex(escapeChar: EscapeToken): RegExp {
  const e = escapeChar === "\\" ? "\\\\" : "`";
  return new RegExp(`([^${e}])${e}[ \\t]*$|^${e}[ \\t]*$`);
}

/** Parses Dockerfile text. Throws DockerfileError (with file and lines) on syntax errors. */
export function parseDockerfile(input: string | Uint8Array, opts: ParseOptions = {}): ParseResult {
  const file = opts.file ?? "Dockerfile";
  const source = typeof input === "string" ? input : new TextDecoder().decode(input);
  const lines = splitLines(source);
  const directives = new DirectiveParser();
  const instructions: Instruction[] = [];
  const pendingWarnings: ((l: Linter) => void)[] = [];
  const fail = (e: unknown, start: number, end = start, instruction?: string) =>
    withLocation(e, { file, ranges: lineRange(start, end), instruction, source });

  let comments: string[] = [];
  let currentLine = 0;
  let next = 0;
  const readLine = (): string => {
    const raw = lines[next++]!;
    if (Buffer.byteLength(raw) > MAX_LINE_BYTES) {
      throw fail(new Error(`dockerfile line greater than max allowed size of ${MAX_LINE_BYTES - 1}`), next);
    }
    return raw;
  };
  const processLine = (raw: string, stripLeft: boolean): { text: string; directive: boolean } => {
    let text = trimNewline(raw);
    if (stripLeft) text = trimLeadingSpace(text);
    let directive = false;
    try {
      directive = directives.parseLine(text) !== undefined;
    } catch (e) {
      throw fail(e, currentLine + 1);
    }
    return { text: isComment(text) ? "" : text, directive };
  };

  while (next < lines.length) {
    let raw = readLine();
    if (currentLine === 0) raw = raw.replace(/^\uFEFF/, "");
    if (isComment(raw)) {
      const comment = raw.slice(1).trim();
      if (comment === "") comments = [];
      else comments.push(comment);
    }
    const first = processLine(raw, true);
    if (first.directive) comments.pop();
    const continuation = continuationRegex(directives.escapeToken);
    currentLine++;
    const startLine = currentLine;
    let isEnd = !continuation.test(first.text);
    let line = first.text.replace(continuation, "$1");
    if (isEnd && line === "") continue;

    let hasEmptyContinuation = false;
    while (!isEnd && next < lines.length) {
      const more = readLine();
      const { text } = processLine(more, false);
      currentLine++;
      if (isComment(more)) continue;
      if (isEmptyContinuation(text)) {
        hasEmptyContinuation = true;
        continue;
      }
      isEnd = !continuation.test(text);
      line += text.replace(continuation, "$1");
    }
    if (hasEmptyContinuation) {
      const at = currentLine;
      pendingWarnings.push((l) => l.warn("NoEmptyContinuation", lineRange(at)));
    }

    let node: Instruction;
    try {
      node = nodeFromLine(line, directives.escapeToken, comments);
    } catch (e) {
      throw fail(e, startLine, currentLine, line.trim());
    }
    const heredocHolder = node.name === "onbuild" && node.sub ? node.sub : node;
    if (HEREDOC_INSTRUCTIONS.has(heredocHolder.name) && !heredocHolder.json && line.includes("<<")) {
      let docs: ReturnType<typeof heredocsFromLine>;
      try {
        docs = heredocsFromLine(line);
      } catch (e) {
        throw fail(e, startLine, currentLine, line.trim());
      }
      for (const doc of docs) {
        let content = "";
        let terminated = false;
        while (next < lines.length) {
          const body = readLine();
          currentLine++;
          let candidate = trimNewline(body);
          if (doc.chomp) candidate = candidate.replace(/^\t+/, "");
          if (candidate === doc.name) {
            terminated = true;
            break;
          }
          content += body;
        }
        if (!terminated) throw fail(new Error("unterminated heredoc"), startLine, currentLine, line.trim());
        heredocHolder.heredocs.push({ ...doc, content });
      }
    }
    setLines(node, startLine, currentLine);
    if (node.sub) setLines(node.sub, startLine, currentLine);
    for (const n of [node, node.sub]) {
      const why = n?.jsonError;
      if (n && why !== undefined) {
        const at = node.location;
        pendingWarnings.push((l) => l.warn("InvalidJSONArgs", at, n.name.toUpperCase(), why));
      }
    }
    instructions.push(node);
    comments = [];
  }

  const checkDirective = directives.directives.find((d) => d.name === "check");
  let linter: Linter;
  try {
    linter = new Linter(parseCheckDirective(checkDirective?.value));
  } catch (e) {
    throw new DockerfileError(`failed to parse check options: ${(e as Error).message}`, {
      file,
      ranges: checkDirective?.location,
      source,
    });
  }
  for (const w of pendingWarnings) w(linter);
  return {
    instructions,
    escapeToken: directives.escapeToken,
    directives: directives.directives,
    linter,
    source,
    file,
  };
}

function setLines(node: Instruction, start: number, end: number): void {
  node.startLine = start;
  node.endLine = end;
  node.location = lineRange(start, end);
}

/** Builds the instruction for one logical line; throws plain errors for the caller to locate. */
function nodeFromLine(line: string, escapeChar: EscapeToken, comments: string[]): Instruction {
  const { command, flags, rest } = splitCommand(line);
  const name = command.toLowerCase();
  const node: Instruction = {
    name,
    rawName: command,
    original: line,
    flags,
    args: [],
    json: false,
    heredocs: [],
    startLine: 0,
    endLine: 0,
    location: [],
    comments: [...comments],
  };
  if (name === "onbuild") {
    if (rest !== "") {
      node.sub = nodeFromLine(rest, escapeChar, []);
      node.args = [node.sub.rawName, ...node.sub.args];
    }
    return node;
  }
  const parse = LINE_PARSERS[name];
  // Unknown instructions parse (as words) and are refused when they are turned into commands.
  const parsed = parse ? parse(rest, escapeChar, name) : parseWhitespaceWords(rest);
  node.args = parsed.args;
  node.json = parsed.json;
  if (parsed.pairs) node.pairs = parsed.pairs;
  if (parsed.notJson !== undefined) node.jsonError = parsed.notJson;
  return node;
}

/** Parses one instruction from its text (ONBUILD triggers stored in an image config). */
export function parseInstructionText(text: string): Instruction[] {
  return parseDockerfile(text).instructions;
}

// Parser directives: `# syntax=`, `# escape=` and `# check=` comments at the very top of a
// Dockerfile. They stop at the first line that is not one (an instruction, another comment, a
// blank line), and each may appear once.
import { type Range, lineRange } from "./errors.ts";

export type EscapeToken = "\\" | "`";

/** A directive found at the top of the file. */
export interface Directive {
  name: "syntax" | "escape" | "check";
  value: string;
  location: Range[];
}

const DIRECTIVE_RE = /^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const KNOWN = new Set(["syntax", "escape", "check"]);

/** Reads directives line by line until the first line that is not one. */
export class DirectiveParser {
  private line = 0;
  private done = false;
  private readonly seen = new Set<string>();
  private readonly prefix: string;
  readonly directives: Directive[] = [];
  escapeToken: EscapeToken = "\\";

  constructor(commentPrefix = "#", firstLine = 0) {
    this.prefix = commentPrefix;
    this.line = firstLine;
  }

  /** Feeds one line (leading whitespace already removed); returns the directive it was, if any. */
  parseLine(text: string): Directive | undefined {
    this.line++;
    if (this.done) return undefined;
    if (!text.startsWith(this.prefix)) {
      this.done = true;
      return undefined;
    }
    const m = DIRECTIVE_RE.exec(text.slice(this.prefix.length).replace(/^\s+/, ""));
    const key = m?.[1]?.toLowerCase();
    if (!m || !key || !KNOWN.has(key)) {
      this.done = true;
      return undefined;
    }
    if (this.seen.has(key)) throw new Error(`only one ${key} parser directive can be used`);
    this.seen.add(key);
    const directive: Directive = {
      name: key as Directive["name"],
      value: m[2]!,
      location: lineRange(this.line),
    };
    if (key === "escape") {
      if (directive.value !== "`" && directive.value !== "\\") {
        throw new Error(`invalid escape token '${directive.value}' does not match \` or \\`);
      }
      this.escapeToken = directive.value;
    }
    this.directives.push(directive);
    return directive;
  }

  get finished(): boolean {
    return this.done;
  }
}

/**
 * The value of directive `name` in `text`, if set. `syntax` is also found in the `// syntax=`
 * and JSON (`{"syntax": "..."}`) forms, and a leading `#!` line is skipped, as BuildKit does
 * when it picks a frontend image.
 */
export function findDirective(name: Directive["name"], text: string): Directive | undefined {
  let body = text.replace(/^\uFEFF/, "");
  let first = 0;
  const nl = body.indexOf("\n");
  if (body.startsWith("#!")) {
    body = nl < 0 ? "" : body.slice(nl + 1);
    first = 1;
  }
  const prefixes = name === "syntax" ? ["#", "//"] : ["#"];
  for (const prefix of prefixes) {
    const p = new DirectiveParser(prefix, first);
    for (const line of body.split("\n")) {
      try {
        p.parseLine(line.replace(/\r$/, ""));
      } catch {
        break;
      }
      if (p.finished) break;
    }
    const found = p.directives.find((d) => d.name === name);
    if (found) return found;
  }
  if (name === "syntax") {
    try {
      const json = JSON.parse(body) as Record<string, unknown>;
      if (json && typeof json === "object" && typeof json[name] === "string") {
        return { name, value: json[name] as string, location: lineRange(first) };
      }
    } catch {
      // not JSON
    }
  }
  return undefined;
}

// Locations in a Dockerfile and errors that point at them, printed like a compiler does: the
// file and line, then the offending lines with a marker and a little context.

/** A position; lines count from 1, characters from 0 (BuildKit leaves characters at 0). */
export interface Position {
  line: number;
  character: number;
}

/** A span of lines, inclusive. */
export interface Range {
  start: Position;
  end: Position;
}

/** The range covering lines `start` to `end` (a missing end means the start line alone). */
export function lineRange(start: number, end = start): Range[] {
  return [{ start: { line: start, character: 0 }, end: { line: end, character: 0 } }];
}

/** The first and last line of some ranges, or undefined when there are none. */
export function rangeLines(ranges: readonly Range[]): { start: number; end: number } | undefined {
  if (ranges.length === 0) return undefined;
  let start = Number.MAX_SAFE_INTEGER;
  let end = 0;
  for (const r of ranges) {
    start = Math.min(start, r.start.line);
    end = Math.max(end, r.end.line);
  }
  return { start, end };
}

export interface DockerfileErrorInit {
  file?: string;
  ranges?: readonly Range[];
  /** The instruction as written ("COPY --foo a b"), when the error belongs to one. */
  instruction?: string;
  /** The Dockerfile text, so the error can show its lines. */
  source?: string;
  cause?: unknown;
}

/**
 * An error in a Dockerfile: parse errors, bad flags, failed expansions, conversion errors.
 * `message` is "FILE:LINE: detail"; `detail` is the bare reason; `format()` adds the source lines.
 */
export class DockerfileError extends Error {
  override name = "DockerfileError";
  readonly file: string;
  readonly ranges: readonly Range[];
  readonly instruction: string | undefined;
  readonly detail: string;
  source: string | undefined;

  constructor(detail: string, init: DockerfileErrorInit = {}) {
    const file = init.file ?? "Dockerfile";
    const lines = rangeLines(init.ranges ?? []);
    super(lines ? `${file}:${lines.start}: ${detail}` : `${file}: ${detail}`, { cause: init.cause });
    this.file = file;
    this.ranges = init.ranges ?? [];
    this.instruction = init.instruction;
    this.detail = detail;
    this.source = init.source;
  }

  /** The same error placed at other lines or in another file; keeps what is already known. */
  relocate(init: DockerfileErrorInit): DockerfileError {
    return new DockerfileError(this.detail, {
      file: init.file ?? this.file,
      ranges: this.ranges.length > 0 ? this.ranges : init.ranges,
      instruction: this.instruction ?? init.instruction,
      source: this.source ?? init.source,
      cause: this.cause,
    });
  }

  /** The error as a compiler prints it: message, then the lines it points at. */
  format(source = this.source): string {
    const excerpt = source === undefined ? "" : formatSourceLines(source, this.ranges, this.file);
    return excerpt === "" ? `${this.message}\n` : `${excerpt}${this.message}\n`;
  }
}

/**
 * Wraps any error as a DockerfileError at `ranges` (an existing DockerfileError keeps its own
 * location when it has one).
 */
export function withLocation(err: unknown, init: DockerfileErrorInit): DockerfileError {
  if (err instanceof DockerfileError) return err.relocate(init);
  const detail = err instanceof Error ? err.message : String(err);
  return new DockerfileError(detail, { ...init, cause: err });
}

/**
 * The lines of `source` covered by `ranges`, marked with ">>>", with up to two lines of context
 * around them, under a "FILE:LINE" header. Empty when the ranges fall outside the source.
 */
export function formatSourceLines(source: string, ranges: readonly Range[], file = "Dockerfile"): string {
  const lines = source.split("\n");
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const span = rangeLines(ranges);
  if (!span || span.start < 1 || span.start > lines.length) return "";
  const covered = (n: number) => ranges.some((r) => r.start.line <= n && n <= r.end.line);
  const context = span.start === span.end ? 2 : 1;
  const first = Math.max(1, span.start - context);
  const last = Math.min(lines.length, span.end + context);
  const width = String(last).length;
  const rule = "--------------------";
  let out = `${file}:${span.start === span.end ? span.start : `${span.start}-${span.end}`}\n${rule}\n`;
  for (let n = first; n <= last; n++) {
    const text = lines[n - 1]!.replace(/\r$/, "");
    out += ` ${String(n).padStart(Math.max(width, 3))} | ${covered(n) ? ">>>" : "   "} ${text}\n`;
  }
  return `${out}${rule}\n`;
}

// Formatting shared by the displays: byte counts and durations the way BuildKit prints them, and
// terminal-safe text (control sequences stripped, cut to a number of columns, not characters).

/** Bytes in decimal units with two decimals ("12.35MB"), plain below 1000 ("512B"), as BuildKit. */
export function formatBytes(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${Math.trunc(n)}B` : `${v.toFixed(2)}${units[i]}`;
}

/** A log line's offset from its step's start: more decimals for short offsets, as BuildKit. */
export function formatLogOffset(ms: number): string {
  const sec = Math.max(0, ms) / 1000;
  return sec.toFixed(sec < 10 ? 3 : sec < 100 ? 2 : 1);
}

/** A duration in seconds with one decimal ("1.2s"); negative (clock skew) shows as 0. */
export function formatDuration(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
}

/** True when a vertex error means the build was cancelled rather than the step failing. */
export function isCanceled(error: string): boolean {
  return /(context canceled|cancell?ed|operation was aborted)\.?$/i.test(error.trim());
}

// CSI (cursor movement, colors), OSC (titles, hyperlinks) and two-byte escapes.
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?/g;

/** Text without ANSI escape sequences: for measuring and for tests. */
export function stripAnsi(s: string): string {
  return s.replace(ESCAPES, "");
}

/**
 * One line as a terminal would show it, made safe to place on a redrawn display: escape
 * sequences and control characters removed (they could move the cursor and break the redraw),
 * a carriage return keeps only what was written after it (progress bars), tabs expanded.
 */
export function terminalSafe(s: string): string {
  const cr = s.replace(/\r+$/, "").lastIndexOf("\r");
  if (cr >= 0) s = s.slice(cr + 1);
  s = s.replace(ESCAPES, "");
  let out = "";
  let col = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === "\t") {
      const n = 8 - (col % 8);
      out += " ".repeat(n);
      col += n;
    } else if (cp >= 0x20 && (cp < 0x7f || cp >= 0xa0)) {
      out += ch;
      col += charWidth(cp);
    }
  }
  return out;
}

/** Columns a code point takes: 0 for combining marks, 2 for East Asian wide and emoji. */
export function charWidth(cp: number): number {
  if (
    (cp >= 0x300 && cp <= 0x36f) ||
    (cp >= 0x200b && cp <= 0x200f) ||
    (cp >= 0xfe00 && cp <= 0xfe0f) ||
    (cp >= 0x1ab0 && cp <= 0x1aff) ||
    (cp >= 0x20d0 && cp <= 0x20ff)
  ) {
    return 0;
  }
  if (
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2e80 && cp <= 0x303e) ||
    (cp >= 0x3041 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1f64f) ||
    (cp >= 0x1f900 && cp <= 0x1f9ff) ||
    (cp >= 0x20000 && cp <= 0x3fffd)
  ) {
    return 2;
  }
  return 1;
}

/** Columns a string (without escape sequences) takes on a terminal. */
export function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s) w += charWidth(ch.codePointAt(0)!);
  return w;
}

/** The longest prefix of `s` that fits in `cols` columns (never splits a wide character). */
export function cutToWidth(s: string, cols: number): string {
  if (s.length <= cols && displayWidth(s) <= cols) return s;
  let w = 0;
  let end = 0;
  for (const ch of s) {
    const cw = charWidth(ch.codePointAt(0)!);
    if (w + cw > cols) break;
    w += cw;
    end += ch.length;
  }
  return s.slice(0, end);
}

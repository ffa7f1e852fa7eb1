// Where displays write, and the options they share. A display takes the few members of a
// NodeJS.WriteStream it uses, so tests can hand it a fake terminal.

/** The parts of a write stream a display uses (process.stdout/stderr satisfy it). */
export interface DisplayOutput {
  write(chunk: string): boolean;
  once?(event: "drain" | "close" | "error", listener: () => void): unknown;
  removeListener?(event: "drain" | "close" | "error", listener: () => void): unknown;
  /** Set once the stream is closed or failed: nothing will drain it any more. */
  destroyed?: boolean;
  isTTY?: boolean;
  /** Terminal width and height, kept current by Node on resize. */
  columns?: number;
  rows?: number;
}

/** Options every display accepts. */
export interface DisplayOptions {
  /** Milliseconds since the epoch; injectable so output is deterministic in tests. */
  clock?: () => number;
  /** Lines of output kept per step for the failure report (default 20). */
  tailLines?: number;
  /** Environment consulted for TERM and NO_COLOR (default process.env). */
  env?: Record<string, string | undefined>;
  /** tty: the word in the header, "Building" by default. */
  phase?: string;
  /** tty: colors (default: on unless NO_COLOR is set). */
  color?: boolean;
  /** tty: minimum time between redraws in milliseconds (default 100, ~10 per second). */
  redrawIntervalMs?: number;
  /** tty: output lines shown under each running step (default 6). */
  runningLogLines?: number;
}

/**
 * Writes and, when the stream is full, waits for it to drain so a slow pipe is not buffered in
 * memory; a stream that closes or fails instead (a reader gone away) does not hang the display.
 */
export async function writeOut(out: DisplayOutput, text: string): Promise<void> {
  if (text === "") return;
  if (out.write(text) || !out.once || out.destroyed) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      for (const e of ["drain", "close", "error"] as const) out.removeListener?.(e, done);
      resolve();
    };
    for (const e of ["drain", "close", "error"] as const) out.once!(e, done);
  });
}

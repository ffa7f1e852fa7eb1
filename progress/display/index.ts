// The progress displays of `buildctl build --progress=...`, behind one function: each follows a
// SolveStatus stream to its end, writes to a stream, and says how the build went.
import type { SolveStatus } from "../types.ts";
import type { DisplayOptions, DisplayOutput } from "./output.ts";
import { displayPlain } from "./plain.ts";
import { displayQuiet } from "./quiet.ts";
import { displayRawJSON } from "./rawjson.ts";
import type { DisplaySummary } from "./state.ts";
import { displayTTY } from "./tty.ts";

export type { DisplayOptions, DisplayOutput } from "./output.ts";
export type { DisplaySummary, FailedStep } from "./state.ts";

export const DISPLAY_MODES = ["auto", "tty", "plain", "rawjson", "quiet"] as const;
export type DisplayMode = (typeof DISPLAY_MODES)[number];

/** True for the values `--progress` accepts. */
export function isDisplayMode(s: string): s is DisplayMode {
  return (DISPLAY_MODES as readonly string[]).includes(s);
}

/**
 * The display a mode means for this output: auto picks tty on a terminal, and a terminal that
 * cannot move its cursor (TERM=dumb) gets plain even when tty was asked for.
 */
export function resolveDisplayMode(
  mode: DisplayMode,
  out: DisplayOutput,
  env: Record<string, string | undefined> = process.env,
): Exclude<DisplayMode, "auto"> {
  if (mode !== "auto" && mode !== "tty") return mode;
  if (env.TERM === "dumb") return "plain";
  if (mode === "tty") return "tty";
  return out.isTTY ? "tty" : "plain";
}

/** Shows a build's progress in the given mode until the stream ends. */
export function display(
  mode: DisplayMode,
  stream: AsyncIterable<SolveStatus>,
  out: DisplayOutput,
  opts: DisplayOptions = {},
): Promise<DisplaySummary> {
  switch (resolveDisplayMode(mode, out, opts.env)) {
    case "tty":
      return displayTTY(stream, out, opts);
    case "plain":
      return displayPlain(stream, out, opts);
    case "rawjson":
      return displayRawJSON(stream, out, opts);
    case "quiet":
      return displayQuiet(stream, out, opts);
  }
}

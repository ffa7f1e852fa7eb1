// For scripts that want silence: nothing while the build runs, only the failure report after.
import type { SolveStatus } from "../types.ts";
import { type DisplayOptions, type DisplayOutput, writeOut } from "./output.ts";
import { failureReport } from "./report.ts";
import { type DisplaySummary, ProgressState } from "./state.ts";

/** Follows a build silently; prints the failed steps' output and errors, if any, at the end. */
export async function displayQuiet(
  stream: AsyncIterable<SolveStatus>,
  out: DisplayOutput,
  opts: DisplayOptions = {},
): Promise<DisplaySummary> {
  const state = new ProgressState({ tailLines: opts.tailLines });
  for await (const batch of stream) state.apply(batch);
  state.end();
  await writeOut(out, failureReport(state));
  return state.summary();
}

// The text every display prints after the build: the failed steps' last output with their
// errors (so the reason for a failure is never scrolled away), then the warnings.
import type { WarningUpdate } from "../types.ts";
import type { ProgressState, Step } from "./state.ts";
import { formatLogOffset, isCanceled } from "./text.ts";

/** For each failed (not cancelled) step: its output tail between rules, then its error. */
export function failureReport(state: ProgressState): string {
  let out = "";
  for (const step of state.steps.values()) {
    if (!step.error || isCanceled(step.error)) continue;
    out += "------\n";
    out += ` > ${step.name}:\n`;
    for (const l of step.tail)
      out += `${formatLogOffset(l.timestamp - (step.started ?? l.timestamp))} ${l.text}\n`;
    out += "------\n";
    out += `ERROR: ${step.error}\n`;
  }
  return out;
}

/** Every warning with its source location, details and link; empty when there were none. */
export function warningsReport(state: ProgressState): string {
  if (state.warnings.length === 0) return "";
  const n = state.warnings.length;
  let out = `\n${n} ${n === 1 ? "warning" : "warnings"} found:\n`;
  for (const w of state.warnings) out += warningText(w, state.steps.get(w.vertex));
  return out;
}

function warningText(w: WarningUpdate, step: Step | undefined): string {
  let where = "";
  if (w.source) {
    const line = w.source.ranges[0]?.start;
    where = ` (${w.source.filename}${line !== undefined ? `:${line}` : ""})`;
  } else if (step && step.number > 0) {
    where = ` (#${step.number} ${step.name})`;
  }
  let out = `WARNING: ${w.short}${where}\n`;
  for (const d of w.detail) out += `  ${d}\n`;
  if (w.url) out += `  More info: ${w.url}\n`;
  return out;
}

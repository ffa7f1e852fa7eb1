// Line-oriented progress for CI logs, in the shape of BuildKit's plain output: every step gets a
// number `#N` when it shows up, and everything about it is printed under that prefix, grouped,
// with a blank line between groups and `#N ...` when output moves away from a step still running.
// Output depends only on the stream (times come from its timestamps), so it can be snapshotted.
import type { SolveStatus, StatusUpdate } from "../types.ts";
import { type DisplayOptions, type DisplayOutput, writeOut } from "./output.ts";
import { failureReport, warningsReport } from "./report.ts";
import { type DisplaySummary, ProgressState, type Step, type StepChange } from "./state.ts";
import { formatBytes, formatDuration, formatLogOffset, isCanceled } from "./text.ts";

// A running counter is reprinted after 5% more progress or 5 seconds, as BuildKit does.
const MIN_PROGRESS_DELTA = 0.05;
const MIN_TIME_DELTA_MS = 5000;

/** Turns a build's changes into plain text; holds which step the output is currently under. */
export class PlainPrinter {
  private current: Step | undefined;
  private printedAny = false;
  private readonly lastPrinted = new Map<string, { current: number; timestamp: number; done: boolean }>();

  /** The text for one batch of changes. */
  print(changes: StepChange[]): string {
    // Stay with the step already being printed, so its group is not interrupted needlessly.
    const i = changes.findIndex((c) => c.step === this.current);
    if (i > 0) changes = [changes[i]!, ...changes.slice(0, i), ...changes.slice(i + 1)];
    let out = "";
    for (const c of changes) out += this.printChange(c);
    return out;
  }

  private printChange(c: StepChange): string {
    const step = c.step;
    if (step.number === 0) return "";
    const n = step.number;
    let body = "";
    for (const st of c.statuses) {
      const line = this.statusLine(st);
      if (line !== undefined) body += `#${n} ${line}\n`;
    }
    for (const l of c.lines) {
      body += `#${n} ${formatLogOffset(l.timestamp - (step.started ?? l.timestamp))} ${l.text}\n`;
    }
    if (c.completed) body += `#${n} ${completion(step)}\n`;
    if (body === "" && !c.shown) return "";
    const out = this.switchTo(step) + body;
    if (c.completed) this.current = undefined;
    return out;
  }

  private switchTo(step: Step): string {
    if (this.current === step) return "";
    let out = "";
    if (this.current && this.current.completed === undefined) out += `#${this.current.number} ...\n`;
    if (this.printedAny) out += "\n";
    this.printedAny = true;
    this.current = step;
    return out + `#${step.number} ${step.name}\n`;
  }

  /** `id 1.20MB / 5.00MB 0.4s done`, or undefined when too little changed to be worth a line. */
  private statusLine(st: StatusUpdate): string | undefined {
    const key = `${st.vertex}\0${st.id}`;
    const last = this.lastPrinted.get(key);
    const done = st.completed !== undefined;
    if (last?.done) return undefined;
    if (last && !done) {
      const progress = st.total > 0 ? (st.current - last.current) / st.total : 0;
      if (progress < MIN_PROGRESS_DELTA && st.timestamp - last.timestamp < MIN_TIME_DELTA_MS)
        return undefined;
    }
    this.lastPrinted.set(key, { current: st.current, timestamp: st.timestamp, done });
    return statusText(st);
  }
}

/** A counter as BuildKit prints it: id, bytes (of total), time since it started, "done". */
export function statusText(st: StatusUpdate): string {
  let bytes = "";
  if (st.total > 0) bytes = ` ${formatBytes(st.current)} / ${formatBytes(st.total)}`;
  else if (st.current !== 0) bytes = ` ${formatBytes(st.current)}`;
  let tm = "";
  if (st.started !== undefined) {
    const ms = (st.completed ?? st.timestamp) - st.started;
    if (ms > 10) tm = ` ${formatDuration(ms)}`;
  }
  if (st.completed !== undefined) tm += " done";
  return `${st.id}${bytes}${tm}`;
}

function completion(step: Step): string {
  if (step.error) return isCanceled(step.error) ? "CANCELED" : `ERROR: ${step.error}`;
  if (step.cached) return "CACHED";
  return `DONE ${formatDuration(step.completed! - (step.started ?? step.completed!))}`;
}

/** Prints a build's progress as plain lines; resolves when the stream ends. */
export async function displayPlain(
  stream: AsyncIterable<SolveStatus>,
  out: DisplayOutput,
  opts: DisplayOptions = {},
): Promise<DisplaySummary> {
  const state = new ProgressState({ tailLines: opts.tailLines });
  const printer = new PlainPrinter();
  for await (const batch of stream) await writeOut(out, printer.print(state.apply(batch)));
  let tail = printer.print(state.end());
  const failures = failureReport(state);
  if (failures !== "") tail += "\n" + failures;
  tail += warningsReport(state);
  await writeOut(out, tail);
  return state.summary();
}

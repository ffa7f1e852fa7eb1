// What every display knows about a build: the steps merged from their repeated updates, their
// byte counters, their output split into lines (with a short tail kept for error messages), and
// the warnings. `apply` also says what changed, so line-oriented displays print only news.
import type { SolveStatus, StatusUpdate, VertexUpdate, WarningUpdate } from "../types.ts";
import { LineSplitter, type LogLine } from "./lines.ts";
import { isCanceled } from "./text.ts";

/** Lines of output kept per step for the failure report, as BuildKit's error log tail. */
export const DEFAULT_TAIL_LINES = 20;

/** One vertex as displayed. */
export interface Step {
  digest: string;
  name: string;
  inputs: string[];
  started?: number;
  completed?: number;
  cached: boolean;
  error?: string;
  /** `#N` of the plain display: 1-based in the order steps first showed up, 0 until then. */
  number: number;
  /** Byte counters by id, in order of first appearance. */
  statuses: Map<string, StatusUpdate>;
  /** The last lines of output. */
  tail: LogLine[];
  splitters: Map<number, LineSplitter>;
  warnings: WarningUpdate[];
}

/** What one batch changed about one step. */
export interface StepChange {
  step: Step;
  /** The step showed up (started, or produced output before its start was reported). */
  shown: boolean;
  /** The step completed (successfully, cached, or with an error). */
  completed: boolean;
  statuses: StatusUpdate[];
  lines: LogLine[];
}

/** A step that failed, for the CLI's final error message. */
export interface FailedStep {
  digest: string;
  name: string;
  error: string;
  /** Its last lines of output. */
  logTail: string[];
}

/** How a build went, as the display saw it. */
export interface DisplaySummary {
  /** Every vertex reported, including ones that never started. */
  steps: number;
  /** Completed by running (not from cache, no error). */
  done: number;
  cached: number;
  errored: number;
  canceled: number;
  /** From the first start to the last completion reported, in milliseconds. */
  durationMs: number;
  /** The first step that failed (not cancelled), if any. */
  failed?: FailedStep;
  failures: FailedStep[];
  warnings: WarningUpdate[];
}

export class ProgressState {
  /** Every step, in order of first appearance in the stream. */
  readonly steps = new Map<string, Step>();
  /** Steps that showed up, in order of their `number`. */
  readonly shown: Step[] = [];
  readonly warnings: WarningUpdate[] = [];
  private readonly tailLines: number;

  constructor(opts: { tailLines?: number } = {}) {
    this.tailLines = opts.tailLines ?? DEFAULT_TAIL_LINES;
  }

  /** Merges a batch; returns the changes per step in the order the steps were touched. */
  apply(s: SolveStatus): StepChange[] {
    const changes = new Map<Step, StepChange>();
    const change = (step: Step): StepChange => {
      let c = changes.get(step);
      if (!c) {
        c = { step, shown: false, completed: false, statuses: [], lines: [] };
        changes.set(step, c);
      }
      return c;
    };
    for (const v of s.vertexes) {
      const step = this.merge(v, change);
      if (step.started !== undefined || step.completed !== undefined) this.show(step, change);
    }
    for (const st of s.statuses) {
      const step = this.stepFor(st.vertex);
      step.statuses.set(st.id, { ...step.statuses.get(st.id), ...st });
      this.show(step, change);
      change(step).statuses.push(st);
    }
    for (const log of s.logs) {
      const step = this.stepFor(log.vertex);
      let sp = step.splitters.get(log.stream);
      if (!sp) {
        sp = new LineSplitter(log.stream);
        step.splitters.set(log.stream, sp);
      }
      const lines = sp.push(log.data, log.timestamp);
      if (lines.length === 0) continue;
      this.show(step, change);
      this.addLines(step, change(step), lines);
    }
    for (const w of s.warnings) {
      this.warnings.push(w);
      this.steps.get(w.vertex)?.warnings.push(w);
    }
    // A completed step's unfinished last line belongs before its completion.
    for (const c of changes.values()) if (c.completed) this.flush(c.step, c);
    return [...changes.values()];
  }

  /** The stream ended: unfinished lines of every step become lines. */
  end(): StepChange[] {
    const out: StepChange[] = [];
    for (const step of this.shown) {
      const c: StepChange = { step, shown: false, completed: false, statuses: [], lines: [] };
      this.flush(step, c);
      if (c.lines.length > 0) out.push(c);
    }
    return out;
  }

  /** Counts and failures so far. */
  summary(): DisplaySummary {
    const s: DisplaySummary = {
      steps: this.steps.size,
      done: 0,
      cached: 0,
      errored: 0,
      canceled: 0,
      durationMs: 0,
      failures: [],
      warnings: [...this.warnings],
    };
    let first = Infinity;
    let last = -Infinity;
    for (const step of this.steps.values()) {
      if (step.started !== undefined) first = Math.min(first, step.started);
      if (step.completed !== undefined) last = Math.max(last, step.completed);
      if (step.error !== undefined && step.error !== "") {
        if (isCanceled(step.error)) s.canceled++;
        else {
          s.errored++;
          s.failures.push(failedStep(step));
        }
      } else if (step.completed !== undefined) {
        if (step.cached) s.cached++;
        else s.done++;
      }
    }
    if (last >= first) s.durationMs = last - first;
    if (s.failures.length > 0) s.failed = s.failures[0];
    return s;
  }

  /** The unfinished last line of a step's output (what a terminal would show under it). */
  partialLine(step: Step): string {
    let text = "";
    for (const sp of step.splitters.values()) text = sp.peek() || text;
    return text;
  }

  private merge(v: VertexUpdate, change: (s: Step) => StepChange): Step {
    let step = this.steps.get(v.digest);
    if (!step) {
      step = newStep(v.digest, v.name);
      this.steps.set(v.digest, step);
    }
    const wasCompleted = step.completed !== undefined;
    // A vertex that runs again (a new start, no completion) is open again.
    if (wasCompleted && v.completed === undefined && v.started !== undefined && v.started !== step.started) {
      step.completed = undefined;
      step.error = undefined;
      step.cached = false;
    }
    if (v.name !== undefined && v.name !== "") step.name = v.name;
    if (v.inputs !== undefined) step.inputs = v.inputs;
    if (v.started !== undefined) step.started = v.started;
    if (v.completed !== undefined) step.completed = v.completed;
    if (v.cached !== undefined) step.cached = v.cached;
    if (v.error !== undefined) step.error = v.error;
    if (!wasCompleted && step.completed !== undefined) change(step).completed = true;
    else change(step);
    return step;
  }

  /** The step a status or log names; a vertex not reported yet gets a placeholder. */
  private stepFor(digest: string): Step {
    let step = this.steps.get(digest);
    if (!step) {
      step = newStep(digest, digest);
      this.steps.set(digest, step);
    }
    return step;
  }

  private show(step: Step, change: (s: Step) => StepChange): void {
    if (step.number !== 0) return;
    this.shown.push(step);
    step.number = this.shown.length;
    change(step).shown = true;
  }

  private flush(step: Step, c: StepChange): void {
    const lines: LogLine[] = [];
    for (const sp of step.splitters.values()) {
      const l = sp.flush();
      if (l) lines.push(l);
    }
    if (lines.length > 0) this.addLines(step, c, lines);
  }

  private addLines(step: Step, c: StepChange, lines: LogLine[]): void {
    for (const l of lines) c.lines.push(l);
    const keep = lines.length > this.tailLines ? lines.slice(-this.tailLines) : lines;
    step.tail.push(...keep);
    if (step.tail.length > this.tailLines) step.tail.splice(0, step.tail.length - this.tailLines);
  }
}

function newStep(digest: string, name: string): Step {
  return {
    digest,
    name,
    inputs: [],
    cached: false,
    number: 0,
    statuses: new Map(),
    tail: [],
    splitters: new Map(),
    warnings: [],
  };
}

function failedStep(step: Step): FailedStep {
  return {
    digest: step.digest,
    name: step.name,
    error: step.error ?? "",
    logTail: step.tail.map((l) => l.text),
  };
}

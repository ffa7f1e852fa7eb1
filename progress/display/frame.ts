// One frame of the terminal display, as lines: a header with the elapsed time and the count of
// completed steps, then a line per step (with its byte counters, and the last output lines of
// running steps beneath it). A pure function of the state, the time and the terminal size, so
// the redraw loop stays small and frames can be tested directly.
import type { ProgressState, Step } from "./state.ts";
import { cutToWidth, displayWidth, formatBytes, formatDuration, isCanceled, terminalSafe } from "./text.ts";

export interface FrameOptions {
  now: number;
  /** Terminal columns; every line is kept narrower than this so the terminal never wraps. */
  width: number;
  /** Terminal rows; a frame that is not final stays shorter so it can be redrawn in place. */
  height: number;
  /** The build ended: show every step, no output, and FINISHED or ERROR in the header. */
  final: boolean;
  color: boolean;
  phase: string;
  runningLogLines: number;
}

const BLUE = "\x1b[34m";
const RED = "\x1b[31m";
const YELLOW = "\x1b[33m";
const DIM = "\x1b[2m";
const RESET = "\x1b[0m";

// Below this many columns for the name, the timer is dropped rather than the name.
const MIN_NAME_COLUMNS = 12;

interface Group {
  lines: string[];
  logs: string[];
  running: boolean;
}

/** The lines of one frame (with color codes when enabled); none is wider than width - 1. */
export function renderFrame(state: ProgressState, o: FrameOptions): string[] {
  const cols = Math.max(1, o.width - 1);
  const groups = state.shown.map((step) => stepGroup(state, step, o, cols));
  const header = cutToWidth(headerText(state, o), cols);
  if (o.final) return [header, ...groups.flatMap((g) => g.lines)];
  return [header, ...fit(groups, Math.max(1, o.height - 2))];
}

function headerText(state: ProgressState, o: FrameOptions): string {
  let first = Infinity;
  let last = -Infinity;
  let completed = 0;
  let failed = false;
  for (const step of state.steps.values()) {
    if (step.started !== undefined) first = Math.min(first, step.started);
    if (step.completed !== undefined) {
      completed++;
      last = Math.max(last, step.completed);
    }
    if (step.error && !isCanceled(step.error)) failed = true;
  }
  const all = completed === state.steps.size;
  const end = o.final && all && last >= first ? last : o.now;
  const elapsed = first === Infinity ? 0 : end - first;
  let text = `[+] ${o.phase} ${formatDuration(elapsed)} (${completed}/${state.steps.size})`;
  if (o.final) text += failed ? " ERROR" : all ? " FINISHED" : " CANCELED";
  return text;
}

function stepGroup(state: ProgressState, step: Step, o: FrameOptions, cols: number): Group {
  const running = step.completed === undefined;
  let prefix = "";
  let color = running ? "" : BLUE;
  if (step.error) {
    const canceled = isCanceled(step.error);
    prefix = canceled ? "CANCELED " : "ERROR ";
    color = canceled ? YELLOW : RED;
  } else if (step.cached) prefix = "CACHED ";
  const timer = step.started === undefined ? "" : elapsed(step.started, step.completed, o.now);
  const lines = [paint(row(` => ${prefix}${terminalSafe(step.name)}`, timer, cols), color, o.color)];
  for (const st of step.statuses.values()) {
    let bytes = "";
    if (st.total > 0) bytes = `${formatBytes(st.current)} / ${formatBytes(st.total)}`;
    else if (st.current !== 0) bytes = formatBytes(st.current);
    const t = st.started === undefined ? "" : elapsed(st.started, st.completed, o.now);
    const done = st.completed !== undefined;
    lines.push(paint(row(` => => ${terminalSafe(st.id)}`, t, cols, bytes), done ? BLUE : "", o.color));
  }
  const logs: string[] = [];
  if (running && !o.final && o.runningLogLines > 0) {
    const texts = step.tail.map((l) => l.text);
    const partial = state.partialLine(step);
    if (partial !== "") texts.push(partial);
    for (const t of texts.slice(-o.runningLogLines)) {
      logs.push(paint(cutToWidth(` => => # ${terminalSafe(t)}`, cols), DIM, o.color));
    }
  }
  return { lines, logs, running };
}

/**
 * Fits the groups into `limit` lines: output under running steps goes first (except under the
 * newest), then completed steps from the top; running steps are the last to go.
 */
function fit(groups: Group[], limit: number): string[] {
  const size = () => groups.reduce((n, g) => n + g.lines.length + g.logs.length, 0);
  if (size() > limit) {
    const newest = groups.findLastIndex((g) => g.running);
    groups = groups.map((g, i) => (i === newest ? g : { ...g, logs: [] }));
  }
  if (size() > limit) groups = groups.map((g) => ({ ...g, logs: [] }));
  let over = size() - limit;
  if (over > 0) {
    groups = groups.filter((g) => {
      if (over <= 0 || g.running) return true;
      over -= g.lines.length;
      return false;
    });
  }
  const lines = groups.flatMap((g) => [...g.lines, ...g.logs]);
  return lines.length > limit ? lines.slice(lines.length - limit) : lines;
}

function elapsed(started: number, completed: number | undefined, now: number): string {
  const ms = (completed ?? now) - started;
  return formatDuration(ms < 50 ? 0 : ms);
}

/**
 * `left` and `right` at the two ends of a line of `cols` columns, `extra` (bytes) after `left`
 * when there is room; `left` is cut to fit, the timer and then `extra` dropped on narrow screens.
 */
function row(left: string, right: string, cols: number, extra = ""): string {
  const rightWidth = right === "" ? 0 : right.length + 1;
  if (rightWidth > 0 && cols - rightWidth < MIN_NAME_COLUMNS) return row(left, "", cols, extra);
  let room = cols - rightWidth;
  if (extra !== "" && room - extra.length - 1 >= MIN_NAME_COLUMNS) room -= extra.length + 1;
  else extra = "";
  let l = cutToWidth(left, room);
  if (extra !== "") l += " " + extra;
  if (right === "") return l;
  return l + " ".repeat(cols - right.length - displayWidth(l)) + right;
}

function paint(line: string, color: string, enabled: boolean): string {
  return enabled && color !== "" ? color + line + RESET : line;
}

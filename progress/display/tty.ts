// The interactive display: one frame redrawn in place (cursor up, rewrite each line, clear what
// is left), at most ~10 times a second however fast progress arrives, and on a timer so running
// steps' clocks move. After the build: the final frame, then failures and warnings as text.
import type { SolveStatus } from "../types.ts";
import { renderFrame } from "./frame.ts";
import { type DisplayOptions, type DisplayOutput, writeOut } from "./output.ts";
import { failureReport, warningsReport } from "./report.ts";
import { type DisplaySummary, ProgressState } from "./state.ts";
import { displayWidth, stripAnsi } from "./text.ts";

const HIDE_CURSOR = "\x1b[?25l";
const SHOW_CURSOR = "\x1b[?25h";
const CLEAR_TO_EOL = "\x1b[K";
const CLEAR_BELOW = "\x1b[J";

/** Redraws frames of a ProgressState on a terminal; `draws` counts frames written. */
export class TtyRenderer {
  draws = 0;
  private readonly out: DisplayOutput;
  private readonly state: ProgressState;
  private readonly clock: () => number;
  private readonly interval: number;
  private readonly color: boolean;
  private readonly phase: string;
  private readonly runningLogLines: number;
  private lastDraw = -Infinity;
  /** Columns each line of the frame on screen takes, to know how far up it starts. */
  private onScreen: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  private ticker: NodeJS.Timeout | undefined;

  constructor(out: DisplayOutput, state: ProgressState, opts: DisplayOptions = {}) {
    this.out = out;
    this.state = state;
    this.clock = opts.clock ?? Date.now;
    this.interval = opts.redrawIntervalMs ?? 100;
    this.color = opts.color ?? !(opts.env ?? process.env).NO_COLOR;
    this.phase = opts.phase ?? "Building";
    this.runningLogLines = opts.runningLogLines ?? 6;
  }

  // A process that exits mid-build (Ctrl-C handled by exiting) must not leave the cursor hidden.
  private readonly restoreCursor = () => {
    this.out.write(SHOW_CURSOR);
  };

  /** Starts the timer that keeps running steps' clocks moving without new progress. */
  start(): void {
    this.out.write(HIDE_CURSOR);
    process.once("exit", this.restoreCursor);
    this.ticker = setInterval(() => this.schedule(), Math.max(this.interval, 150));
    this.ticker.unref();
  }

  /** Asks for a redraw: now if the last one is old enough, else once it is. */
  schedule(): void {
    if (this.timer) return;
    const wait = this.lastDraw + this.interval - this.clock();
    if (wait <= 0) {
      this.draw(false);
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.draw(false);
    }, wait);
    this.timer.unref();
  }

  /** Stops redrawing and writes the final frame. */
  async finish(): Promise<void> {
    clearTimeout(this.timer);
    clearInterval(this.ticker);
    process.removeListener("exit", this.restoreCursor);
    this.timer = undefined;
    await writeOut(this.out, this.frameText(true) + SHOW_CURSOR);
  }

  private draw(final: boolean): void {
    this.out.write(this.frameText(final));
  }

  private frameText(final: boolean): string {
    const width = this.out.columns && this.out.columns > 0 ? this.out.columns : 80;
    const height = this.out.rows && this.out.rows > 0 ? this.out.rows : 24;
    const lines = renderFrame(this.state, {
      now: this.clock(),
      width,
      height,
      final,
      color: this.color,
      phase: this.phase,
      runningLogLines: this.runningLogLines,
    });
    // A terminal that got narrower re-wrapped the old lines: each may now take several rows.
    let up = 0;
    for (const w of this.onScreen) up += Math.max(1, Math.ceil(w / width));
    let text = up > 0 ? `\x1b[${up}A\r` : "\r";
    for (const l of lines) text += l + CLEAR_TO_EOL + "\n";
    text += CLEAR_BELOW;
    this.onScreen = lines.map((l) => displayWidth(stripAnsi(l)));
    this.lastDraw = this.clock();
    this.draws++;
    return text;
  }
}

/** Shows a build's progress on a terminal; resolves when the stream ends. */
export async function displayTTY(
  stream: AsyncIterable<SolveStatus>,
  out: DisplayOutput,
  opts: DisplayOptions = {},
): Promise<DisplaySummary> {
  const state = new ProgressState({ tailLines: opts.tailLines });
  const tty = new TtyRenderer(out, state, opts);
  tty.start();
  try {
    for await (const batch of stream) {
      state.apply(batch);
      tty.schedule();
    }
  } finally {
    state.end();
    await tty.finish();
  }
  const failures = failureReport(state);
  await writeOut(out, (failures !== "" ? "\n" + failures : "") + warningsReport(state));
  return state.summary();
}

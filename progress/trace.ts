// A build's timings as a Chrome trace-event file (`{"traceEvents":[...]}`), which Perfetto and
// chrome://tracing open: a slice per step on tracks that show what ran in parallel, byte
// counters as counter tracks, output and warnings as instant events on their step's track.
import { rename, writeFile } from "node:fs/promises";
import type { SolveStatus } from "./types.ts";

/** One event of the Trace Event Format (times in microseconds). */
export interface TraceEvent {
  name: string;
  ph: "X" | "i" | "C" | "M";
  ts: number;
  pid: number;
  tid: number;
  dur?: number;
  cat?: string;
  /** Scope of an instant event: thread, process or global. */
  s?: "t" | "p" | "g";
  args?: Record<string, unknown>;
}

export interface TraceFile {
  traceEvents: TraceEvent[];
  displayTimeUnit: "ms";
  otherData: Record<string, string>;
}

export interface TraceOptions {
  /** "lanes" (default): steps packed onto as few tracks as ran in parallel; "steps": a track each. */
  tracks?: "lanes" | "steps";
  /** Output text kept per step; the rest is dropped with a marker event. Default 256 KiB. */
  maxLogCharsPerStep?: number;
  /** Text kept in one output event. Default 4 KiB. */
  maxLogCharsPerEvent?: number;
  processName?: string;
}

interface Interval {
  start: number;
  end?: number;
}

interface TracedStep {
  digest: string;
  name: string;
  inputs: string[];
  cached: boolean;
  error?: string;
  intervals: Interval[];
  logs: { ts: number; stream: number; text: string }[];
  logChars: number;
  clipped: boolean;
}

const PID = 1;

export class TraceRecorder {
  private readonly steps = new Map<string, TracedStep>();
  private readonly counters: { ts: number; id: string; vertex: string; current: number; total: number }[] =
    [];
  private readonly lastCounter = new Map<string, number>();
  private readonly warnings: { ts: number; vertex: string; short: string; detail: string[]; url?: string }[] =
    [];
  private readonly opts: Required<TraceOptions>;
  private first = Infinity;
  private last = -Infinity;

  constructor(opts: TraceOptions = {}) {
    this.opts = {
      tracks: opts.tracks ?? "lanes",
      maxLogCharsPerStep: opts.maxLogCharsPerStep ?? 256 * 1024,
      maxLogCharsPerEvent: opts.maxLogCharsPerEvent ?? 4096,
      processName: opts.processName ?? "buildd build",
    };
  }

  /** Records one batch. */
  add(batch: SolveStatus): void {
    for (const v of batch.vertexes) {
      const step = this.step(v.digest);
      if (v.name) step.name = v.name;
      if (v.inputs) step.inputs = v.inputs;
      if (v.cached !== undefined) step.cached = v.cached;
      if (v.error) step.error = v.error;
      if (v.started !== undefined) {
        this.seen(v.started);
        let iv = step.intervals.find((i) => i.start === v.started);
        if (!iv) {
          iv = { start: v.started };
          step.intervals.push(iv);
        }
        if (v.completed !== undefined) iv.end = v.completed;
      }
      if (v.completed !== undefined) {
        this.seen(v.completed);
        // Completed without a reported start: a zero-length run, so it still shows.
        if (step.intervals.length === 0) step.intervals.push({ start: v.completed, end: v.completed });
      }
    }
    for (const s of batch.statuses) {
      this.seen(s.timestamp);
      const key = `${s.vertex}\0${s.id}`;
      if (this.lastCounter.get(key) === s.current) continue;
      this.lastCounter.set(key, s.current);
      this.counters.push({ ts: s.timestamp, id: s.id, vertex: s.vertex, current: s.current, total: s.total });
    }
    for (const l of batch.logs) {
      this.seen(l.timestamp);
      this.addLog(this.step(l.vertex), l.timestamp, l.stream, l.data);
    }
    for (const w of batch.warnings) {
      this.warnings.push({ ts: this.last, vertex: w.vertex, short: w.short, detail: w.detail, url: w.url });
    }
  }

  /** Passes a stream through unchanged, recording every batch, so a display can follow it too. */
  async *tap(stream: AsyncIterable<SolveStatus>): AsyncGenerator<SolveStatus> {
    for await (const batch of stream) {
      this.add(batch);
      yield batch;
    }
  }

  /** The trace so far; steps still running end at the last time seen. */
  toJSON(): TraceFile {
    const origin = Number.isFinite(this.first) ? this.first : 0;
    const us = (ms: number) => Math.round((ms - origin) * 1000);
    const events: TraceEvent[] = [
      { name: "process_name", ph: "M", ts: 0, pid: PID, tid: 0, args: { name: this.opts.processName } },
    ];
    const placed = this.place();
    const trackNames = new Map<number, string>();
    for (const { step, interval, tid } of placed) {
      if (!trackNames.has(tid)) trackNames.set(tid, this.opts.tracks === "steps" ? step.name : `lane ${tid}`);
      const end = interval.end ?? this.last;
      const args: Record<string, unknown> = { digest: step.digest, cached: step.cached, inputs: step.inputs };
      if (step.error) args.error = step.error;
      if (interval.end === undefined) args.incomplete = true;
      events.push({
        name: step.name,
        cat: step.error ? "error" : step.cached ? "cached" : "step",
        ph: "X",
        ts: us(interval.start),
        dur: Math.max(0, us(end) - us(interval.start)),
        pid: PID,
        tid,
        args,
      });
    }
    for (const [tid, name] of trackNames) {
      events.push({ name: "thread_name", ph: "M", ts: 0, pid: PID, tid, args: { name } });
      events.push({ name: "thread_sort_index", ph: "M", ts: 0, pid: PID, tid, args: { sort_index: tid } });
    }
    const byDigest = new Map<string, typeof placed>();
    for (const p of placed) byDigest.set(p.step.digest, [...(byDigest.get(p.step.digest) ?? []), p]);
    const tidAt = (digest: string, ts: number): number => {
      const mine = byDigest.get(digest) ?? [];
      const hit = mine.find((p) => p.interval.start <= ts && ts <= (p.interval.end ?? this.last)) ?? mine[0];
      return hit?.tid ?? 0;
    };
    for (const step of this.steps.values()) {
      for (const l of step.logs) {
        const firstLine = l.text.split("\n", 1)[0]!.slice(0, 80);
        events.push({
          name: firstLine === "" ? (l.stream === 2 ? "stderr" : "stdout") : firstLine,
          cat: "log",
          ph: "i",
          s: "t",
          ts: us(l.ts),
          pid: PID,
          tid: tidAt(step.digest, l.ts),
          args: { stream: l.stream, text: l.text },
        });
      }
    }
    for (const c of this.counters) {
      events.push({
        name: c.id,
        cat: "bytes",
        ph: "C",
        ts: us(c.ts),
        pid: PID,
        tid: 0,
        args: { bytes: c.current },
      });
    }
    for (const w of this.warnings) {
      const args: Record<string, unknown> = { detail: w.detail, vertex: w.vertex };
      if (w.url) args.url = w.url;
      events.push({
        name: `WARNING: ${w.short}`,
        cat: "warning",
        ph: "i",
        s: "t",
        ts: us(Number.isFinite(w.ts) ? w.ts : origin),
        pid: PID,
        tid: tidAt(w.vertex, w.ts),
        args,
      });
    }
    // Metadata first, then by time: what the viewers expect, and a stable order to diff.
    const meta = events.filter((e) => e.ph === "M");
    const timed = events.filter((e) => e.ph !== "M").sort((a, b) => a.ts - b.ts);
    const otherData: Record<string, string> = { producer: "buildd" };
    if (Number.isFinite(this.first)) otherData.startTime = new Date(this.first).toISOString();
    return { traceEvents: [...meta, ...timed], displayTimeUnit: "ms", otherData };
  }

  /** Writes the trace to `path` (whole or not at all: through a temporary file and a rename). */
  async writeFile(path: string): Promise<void> {
    const tmp = `${path}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, JSON.stringify(this.toJSON()));
      await rename(tmp, path);
    } catch (e) {
      throw new Error(`writing the build trace to ${path}: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * Assigns each run of a step a track. Lanes: runs sorted by start go to the first lane free by
   * then, so slices on one track never overlap (the format requires them nested or disjoint).
   */
  private place(): { step: TracedStep; interval: Interval; tid: number }[] {
    const runs: { step: TracedStep; interval: Interval; order: number }[] = [];
    let order = 0;
    for (const step of this.steps.values()) {
      order++;
      const intervals =
        step.intervals.length > 0
          ? step.intervals
          : step.logs.length > 0
            ? [{ start: step.logs[0]!.ts, end: step.logs[step.logs.length - 1]!.ts }]
            : [];
      for (const interval of intervals) runs.push({ step, interval, order });
    }
    if (this.opts.tracks === "steps") return runs.map((r) => ({ ...r, tid: r.order }));
    runs.sort((a, b) => a.interval.start - b.interval.start || a.order - b.order);
    const laneEnds: number[] = [];
    return runs.map((r) => {
      const end = r.interval.end ?? this.last;
      let lane = laneEnds.findIndex((e) => e <= r.interval.start);
      if (lane < 0) lane = laneEnds.push(end) - 1;
      else laneEnds[lane] = end;
      return { step: r.step, interval: r.interval, tid: lane + 1 };
    });
  }

  private addLog(step: TracedStep, ts: number, stream: number, data: Uint8Array): void {
    if (step.clipped) return;
    const budget = this.opts.maxLogCharsPerStep - step.logChars;
    let text = Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8");
    if (text.length > this.opts.maxLogCharsPerEvent) {
      text = `${text.slice(0, this.opts.maxLogCharsPerEvent)}\n[${text.length - this.opts.maxLogCharsPerEvent} more characters not traced]`;
    }
    if (text.length > budget) {
      step.clipped = true;
      text = `[output not traced past ${this.opts.maxLogCharsPerStep} characters]`;
    }
    step.logChars += text.length;
    step.logs.push({ ts, stream, text });
  }

  private step(digest: string): TracedStep {
    let s = this.steps.get(digest);
    if (!s) {
      s = {
        digest,
        name: digest,
        inputs: [],
        cached: false,
        intervals: [],
        logs: [],
        logChars: 0,
        clipped: false,
      };
      this.steps.set(digest, s);
    }
    return s;
  }

  private seen(ts: number): void {
    if (ts < this.first) this.first = ts;
    if (ts > this.last) this.last = ts;
  }
}

// A vertex's voice in the progress stream: process output, byte counters and warnings. Output
// is capped per vertex so that a chatty step cannot exhaust the daemon's memory or the client's
// terminal; the cut is marked, never silent.
import type { LogChunk, SolveStatus, StatusUpdate } from "../progress/types.ts";

export type ProgressSink = (s: Partial<SolveStatus>) => void;

/** Default per-vertex output limit, BuildKit's default. */
export const DEFAULT_LOG_LIMIT = 2 << 20;

export class VertexLog {
  readonly vertex: string;
  private readonly sinks: Set<ProgressSink>;
  private readonly limit: number;
  private written = 0;
  private clipped = false;
  private readonly tail: Buffer[] = [];
  private readonly lastStatus = new Map<string, number>();
  private tailBytes = 0;

  constructor(vertex: string, sinks: Set<ProgressSink>, limit = DEFAULT_LOG_LIMIT) {
    this.vertex = vertex;
    this.sinks = sinks;
    this.limit = limit;
  }

  /** Process output; stream 1 is stdout, 2 stderr. */
  write(stream: 1 | 2, data: Uint8Array): void {
    this.keepTail(data);
    if (this.clipped) return;
    let chunk = data;
    if (this.written + chunk.length > this.limit) {
      chunk = chunk.subarray(0, Math.max(0, this.limit - this.written));
      this.clipped = true;
    }
    this.written += chunk.length;
    const logs: LogChunk[] = [];
    if (chunk.length > 0) logs.push({ vertex: this.vertex, stream, data: chunk, timestamp: Date.now() });
    if (this.clipped) {
      const note = `\n[output clipped, log limit ${Math.round(this.limit / (1 << 20))}MiB reached]\n`;
      logs.push({ vertex: this.vertex, stream, data: new TextEncoder().encode(note), timestamp: Date.now() });
    }
    this.emit({ logs });
  }

  /**
   * A byte counter (pull, push, transfer); call again with the same id to update it. Updates
   * of one counter are thinned to one per 100 ms (the first and the completion always go out).
   */
  status(update: Omit<StatusUpdate, "vertex" | "timestamp">): void {
    const now = Date.now();
    const last = this.lastStatus.get(update.id);
    if (last !== undefined && update.completed === undefined && now - last < 100) return;
    this.lastStatus.set(update.id, now);
    this.emit({ statuses: [{ ...update, vertex: this.vertex, timestamp: now }] });
  }

  warn(short: string, detail: string[] = []): void {
    this.emit({ warnings: [{ vertex: this.vertex, level: 1, short, detail }] });
  }

  /** The last lines of output, for error messages (kept even past the clip limit). */
  lastLines(n = 10): string[] {
    const text = Buffer.concat(this.tail).toString("utf8");
    return text
      .split("\n")
      .filter((l, i, all) => l !== "" || i < all.length - 1)
      .slice(-n);
  }

  private keepTail(data: Uint8Array): void {
    this.tail.push(Buffer.from(data));
    this.tailBytes += data.length;
    while (this.tailBytes > 8192 && this.tail.length > 1) this.tailBytes -= this.tail.shift()!.length;
  }

  private emit(s: Partial<SolveStatus>): void {
    for (const sink of this.sinks) sink(s);
  }
}

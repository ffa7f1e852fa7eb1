// A build's progress stream: writers append, any number of readers follow from the beginning
// (a client may attach after the build started) at their own pace. Writing never waits for a
// reader, so a slow or stuck client cannot stall a build; readers get batches of everything
// written since their last read.
import { emptyStatus, type SolveStatus } from "./types.ts";

type Event =
  | { kind: "vertex"; value: SolveStatus["vertexes"][number] }
  | { kind: "status"; value: SolveStatus["statuses"][number] }
  | { kind: "log"; value: SolveStatus["logs"][number] }
  | { kind: "warning"; value: SolveStatus["warnings"][number] };

export class ProgressBus {
  private readonly events: Event[] = [];
  private closed = false;
  private waiters: (() => void)[] = [];

  /** Appends a batch; ignored after close. */
  write(s: Partial<SolveStatus>): void {
    if (this.closed) return;
    for (const value of s.vertexes ?? []) this.events.push({ kind: "vertex", value });
    for (const value of s.statuses ?? []) this.events.push({ kind: "status", value });
    for (const value of s.logs ?? []) this.events.push({ kind: "log", value });
    for (const value of s.warnings ?? []) this.events.push({ kind: "warning", value });
    this.wake();
  }

  /** Ends the stream: readers drain what is left and stop. */
  close(): void {
    this.closed = true;
    this.wake();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Everything written so far, as one batch. */
  snapshot(): SolveStatus {
    return batch(this.events, 0, this.events.length);
  }

  /** Follows the stream from the start until it closes or `signal` aborts. */
  async *subscribe(signal?: AbortSignal): AsyncGenerator<SolveStatus> {
    let next = 0;
    while (!signal?.aborted) {
      if (next < this.events.length) {
        const end = this.events.length;
        yield batch(this.events, next, end);
        next = end;
        continue;
      }
      if (this.closed) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal?.removeEventListener("abort", done);
          resolve();
        };
        this.waiters.push(done);
        signal?.addEventListener("abort", done, { once: true });
      });
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

function batch(events: Event[], from: number, to: number): SolveStatus {
  const s = emptyStatus();
  for (let i = from; i < to; i++) {
    const e = events[i]!;
    if (e.kind === "vertex") s.vertexes.push(e.value);
    else if (e.kind === "status") s.statuses.push(e.value);
    else if (e.kind === "log") s.logs.push(e.value);
    else s.warnings.push(e.value);
  }
  return s;
}

// Builds by ref, so that Status (which the client opens at the same time as Solve, and may open
// first) finds the progress of the build it names, and can still read it shortly after the end.
import type { ProgressBus } from "../progress/bus.ts";

interface Entry {
  progress: ProgressBus;
  timer?: NodeJS.Timeout;
}

export class JobRegistry {
  private readonly jobs = new Map<string, Entry>();
  private readonly waiters = new Map<string, Set<(p: ProgressBus) => void>>();
  private readonly keepMs: number;

  constructor(keepMs = 30_000) {
    this.keepMs = keepMs;
  }

  add(ref: string, progress: ProgressBus): void {
    if (this.jobs.has(ref)) throw new Error(`a build with ref ${JSON.stringify(ref)} is already running`);
    this.jobs.set(ref, { progress });
    for (const w of this.waiters.get(ref) ?? []) w(progress);
    this.waiters.delete(ref);
  }

  /** Keeps a finished build's progress readable for a while, then forgets it. */
  finish(ref: string): void {
    const e = this.jobs.get(ref);
    if (!e) return;
    e.timer = setTimeout(() => this.jobs.delete(ref), this.keepMs);
    e.timer.unref();
  }

  /** The progress of build `ref`, waiting up to `timeoutMs` for it to start. */
  async get(ref: string, signal: AbortSignal, timeoutMs = 30_000): Promise<ProgressBus | undefined> {
    const e = this.jobs.get(ref);
    if (e) return e.progress;
    return new Promise((resolve) => {
      let set = this.waiters.get(ref);
      if (!set) {
        set = new Set();
        this.waiters.set(ref, set);
      }
      const done = (p: ProgressBus | undefined) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        set.delete(got);
        if (set.size === 0 && this.waiters.get(ref) === set) this.waiters.delete(ref);
        resolve(p);
      };
      const got = (p: ProgressBus) => done(p);
      const onAbort = () => done(undefined);
      const timer = setTimeout(() => done(undefined), timeoutMs);
      set.add(got);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  get running(): number {
    return [...this.jobs.values()].filter((e) => !e.progress.isClosed).length;
  }

  close(): void {
    for (const e of this.jobs.values()) clearTimeout(e.timer);
    this.jobs.clear();
  }
}

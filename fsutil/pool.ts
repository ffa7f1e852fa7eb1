// Bounded parallelism for filesystem work: enough requests in flight to keep libuv's threadpool and
// the disk busy, few enough that a tree of a million files does not become a million promises.

/** Runs async tasks with at most `limit` at a time; the first failure stops new work and is rethrown. */
export class TaskPool {
  readonly #limit: number;
  #running = 0;
  #failure: { error: unknown } | undefined;
  #waiters: Array<() => void> = [];

  constructor(limit: number) {
    if (!(limit >= 1)) throw new Error(`task pool limit must be at least 1, got ${limit}`);
    this.#limit = limit;
  }

  /** Starts `task` once a slot is free; resolves when it has started (not finished). */
  async add(task: () => Promise<void>): Promise<void> {
    while (this.#running >= this.#limit) await new Promise<void>((r) => this.#waiters.push(r));
    this.throwIfFailed();
    this.#running++;
    task()
      .catch((error: unknown) => {
        this.#failure ??= { error };
      })
      .finally(() => {
        this.#running--;
        this.#waiters.shift()?.();
      });
  }

  /** Waits for every started task; throws the first failure. */
  async drain(): Promise<void> {
    while (this.#running > 0) await new Promise<void>((r) => this.#waiters.push(r));
    this.throwIfFailed();
  }

  /** Throws the first failure so far, so a producer stops early. */
  throwIfFailed(): void {
    if (this.#failure) throw this.#failure.error;
  }
}

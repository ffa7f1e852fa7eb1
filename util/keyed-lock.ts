// Mutual exclusion per key inside one process: work on one git remote or one URL runs one at a
// time, while work on different keys runs in parallel.
type Queue = { tail: Promise<void>; users: number };

export class KeyedLock {
  readonly #queues = new Map<string, Queue>();

  /** Runs `fn` once every earlier holder of `key` is done; a waiter whose signal aborts gives up. */
  async run<T>(key: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    let queue = this.#queues.get(key);
    if (queue === undefined) {
      queue = { tail: Promise.resolve(), users: 0 };
      this.#queues.set(key, queue);
    }
    const previous = queue.tail;
    const { promise: done, resolve: release } = Promise.withResolvers<void>();
    // The chain waits for every holder, including waiters that gave up, so order is kept.
    queue.tail = previous.then(() => done);
    queue.users++;
    try {
      await waitOrAbort(previous, signal);
      return await fn();
    } finally {
      release();
      if (--queue.users === 0 && this.#queues.get(key) === queue) this.#queues.delete(key);
    }
  }

  /** True while someone holds or waits for `key` (for tests and status). */
  busy(key: string): boolean {
    return this.#queues.has(key);
  }
}

function waitOrAbort(p: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (!signal) return p;
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

// A fair readers-writer lock for async sections: commits and deletes run shared, gc's
// mark-and-sweep runs exclusive, so a blob published during gc is never swept by it.

type Waiter = { exclusive: boolean; grant: () => void };

/** Shared sections run together; an exclusive section runs alone. Waiters are served in order. */
export class RwLock {
  #shared = 0;
  #exclusive = false;
  #queue: Waiter[] = [];

  /** Runs `fn` while no exclusive section runs. */
  async shared<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(false);
    try {
      return await fn();
    } finally {
      this.#shared--;
      this.#drain();
    }
  }

  /** Runs `fn` alone. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire(true);
    try {
      return await fn();
    } finally {
      this.#exclusive = false;
      this.#drain();
    }
  }

  #acquire(exclusive: boolean): Promise<void> {
    if (this.#queue.length === 0 && this.#canGrant(exclusive)) {
      this.#take(exclusive);
      return Promise.resolve();
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#queue.push({ exclusive, grant: resolve });
    return promise;
  }

  #canGrant(exclusive: boolean): boolean {
    return exclusive ? !this.#exclusive && this.#shared === 0 : !this.#exclusive;
  }

  #take(exclusive: boolean): void {
    if (exclusive) this.#exclusive = true;
    else this.#shared++;
  }

  #drain(): void {
    while (this.#queue.length > 0 && this.#canGrant(this.#queue[0]!.exclusive)) {
      const next = this.#queue.shift()!;
      this.#take(next.exclusive);
      next.grant();
    }
  }
}

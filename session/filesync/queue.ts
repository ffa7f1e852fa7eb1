// A bounded async queue between producers (a directory walk, file readers, the packet loop) and
// one consumer (the outgoing side of a gRPC stream): push() waits while the queue is full, so a
// slow network holds the producers back instead of filling memory.

/** Items in order, then either a clean end or the failure that ended it. */
export class PacketQueue<T> {
  readonly #limit: number;
  readonly #items: T[] = [];
  #closed = false;
  #failure: { error: unknown } | undefined;
  #wakeConsumer: (() => void) | undefined;
  readonly #wakeProducers: Array<() => void> = [];

  /** `limit` items may wait; one more push() waits for the consumer. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Adds an item, waiting for room; throws once the queue is closed or failed. */
  async push(item: T): Promise<void> {
    while (this.#items.length >= this.#limit && !this.#closed) {
      await new Promise<void>((r) => this.#wakeProducers.push(r));
    }
    if (this.#closed) throw new Error("file sync: the stream is already closed");
    this.#items.push(item);
    this.#wake();
  }

  /** Ends the queue once the items already in it are taken. */
  close(): void {
    this.#closed = true;
    this.#wake();
    this.#releaseProducers();
  }

  /** Ends the queue with an error, raised by the consumer after the items already queued. */
  fail(error: unknown): void {
    if (this.#closed) return;
    this.#failure = { error };
    this.close();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The one consumer; when it stops early (the stream ended), waiting producers are let go. */
  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    try {
      for (;;) {
        const item = this.#items.shift();
        if (item !== undefined) {
          this.#wakeProducers.shift()?.();
          yield item;
          continue;
        }
        if (this.#closed) {
          if (this.#failure) throw this.#failure.error;
          return;
        }
        await new Promise<void>((r) => {
          this.#wakeConsumer = r;
        });
      }
    } finally {
      this.#closed = true;
      this.#items.length = 0;
      this.#releaseProducers();
    }
  }

  #wake(): void {
    const w = this.#wakeConsumer;
    this.#wakeConsumer = undefined;
    w?.();
  }

  #releaseProducers(): void {
    for (const w of this.#wakeProducers.splice(0)) w();
  }
}

// Exact-length reads over an async byte stream, for parsers of block formats such as tar.

/** Pulls chunks from `source` on demand and hands out exactly the bytes asked for. */
export class ByteReader {
  #iterator: AsyncIterator<Uint8Array>;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #done = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#iterator = source[Symbol.asyncIterator]();
  }

  /** Up to `n` bytes, fewer only at the end of the stream. */
  async readUpTo(n: number): Promise<Buffer> {
    while (this.#pendingBytes < n && (await this.#pull()));
    return this.#take(Math.min(n, this.#pendingBytes));
  }

  /** Between 1 and `max` bytes without waiting for more than one chunk; empty only at the end. */
  async readSome(max: number): Promise<Buffer> {
    if (this.#pendingBytes === 0) await this.#pull();
    return this.#take(Math.min(max, this.#pendingBytes));
  }

  /** Skips up to `n` bytes; returns how many were skipped (fewer only at the end). */
  async skip(n: number): Promise<number> {
    let skipped = 0;
    while (skipped < n) {
      const chunk = await this.readSome(n - skipped);
      if (chunk.length === 0) break;
      skipped += chunk.length;
    }
    return skipped;
  }

  /** Reads and discards everything left. */
  async drain(): Promise<void> {
    this.#pending = [];
    this.#pendingBytes = 0;
    while (await this.#pull()) {
      this.#pending = [];
      this.#pendingBytes = 0;
    }
  }

  async #pull(): Promise<boolean> {
    if (this.#done) return false;
    const next = await this.#iterator.next();
    if (next.done) {
      this.#done = true;
      return false;
    }
    const chunk = Buffer.isBuffer(next.value)
      ? next.value
      : Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
    if (chunk.length > 0) {
      this.#pending.push(chunk);
      this.#pendingBytes += chunk.length;
    }
    return true;
  }

  #take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.#pending[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.#pending.shift();
      else this.#pending[0] = first.subarray(n);
      this.#pendingBytes -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const chunk = this.#pending[0]!;
      const part = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, part);
      filled += part;
      if (part === chunk.length) this.#pending.shift();
      else this.#pending[0] = chunk.subarray(part);
    }
    this.#pendingBytes -= n;
    return out;
  }
}

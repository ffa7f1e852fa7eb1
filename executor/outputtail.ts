// The last lines of a process' output, kept in bounded memory for the error a failed run reports.

const DEFAULT_MAX_BYTES = 16 * 1024;
const DEFAULT_MAX_LINES = 10;
const MAX_LINE_CHARS = 512;

/** Keeps the last `maxBytes` of stdout and stderr as they interleave. */
export class OutputTail {
  #chunks: Buffer[] = [];
  #bytes = 0;
  #dropped = false;
  readonly #maxBytes: number;

  constructor(maxBytes = DEFAULT_MAX_BYTES) {
    this.#maxBytes = maxBytes;
  }

  /** Records a chunk of output, dropping the oldest bytes beyond the bound. */
  push(chunk: Buffer): void {
    if (chunk.length >= this.#maxBytes) {
      this.#chunks = [chunk.subarray(chunk.length - this.#maxBytes)];
      this.#bytes = this.#maxBytes;
      this.#dropped = true;
      return;
    }
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    while (this.#bytes - this.#chunks[0]!.length >= this.#maxBytes) {
      this.#bytes -= this.#chunks.shift()!.length;
      this.#dropped = true;
    }
  }

  /** The last non-empty lines, each cut to a readable length. */
  lines(maxLines = DEFAULT_MAX_LINES): string[] {
    let text = Buffer.concat(this.#chunks).toString("utf8");
    // The first line may have been cut by the byte bound: drop it unless it is all we have.
    if (this.#dropped && text.includes("\n")) text = text.slice(text.indexOf("\n") + 1);
    return text
      .split(/\r?\n/)
      .filter((l) => l.trim() !== "")
      .slice(-maxLines)
      .map((l) => (l.length > MAX_LINE_CHARS ? l.slice(0, MAX_LINE_CHARS) + "…" : l));
  }
}

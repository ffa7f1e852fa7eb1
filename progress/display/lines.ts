// Process output arrives in chunks cut anywhere: in the middle of a line, even in the middle of
// a UTF-8 character. Displays work on whole lines, so a splitter per output stream joins the
// pieces back together.

/** A complete line of output, stamped with the time its first byte arrived. */
export interface LogLine {
  text: string;
  timestamp: number;
  stream: number;
}

/** Longest line kept in one piece; a longer one is broken so a newline-free stream cannot grow memory. */
export const MAX_LINE_CHARS = 64 * 1024;

export class LineSplitter {
  private readonly stream: number;
  private readonly decoder = new TextDecoder("utf-8");
  private pending: string[] = [];
  private pendingChars = 0;
  private pendingSince = 0;

  constructor(stream: number) {
    this.stream = stream;
  }

  /** Feeds a chunk; returns the lines it completed, in order. */
  push(data: Uint8Array, timestamp: number): LogLine[] {
    const text = this.decoder.decode(data, { stream: true });
    const out: LogLine[] = [];
    let from = 0;
    while (from < text.length) {
      const nl = text.indexOf("\n", from);
      if (nl < 0) {
        this.keep(text.slice(from), timestamp, out);
        break;
      }
      const piece = text.slice(from, nl);
      const since = this.pending.length > 0 ? this.pendingSince : timestamp;
      const line = this.pending.length > 0 ? this.pending.join("") + piece : piece;
      this.pending = [];
      this.pendingChars = 0;
      this.emit(line.endsWith("\r") ? line.slice(0, -1) : line, since, out);
      from = nl + 1;
    }
    return out;
  }

  /** The unfinished last line, if any, without consuming it (a prompt, a progress bar). */
  peek(): string {
    return this.pending.join("");
  }

  /** Ends the stream: the unfinished last line, if any, becomes a line. */
  flush(): LogLine | undefined {
    const rest = this.pending.join("") + this.decoder.decode();
    this.pending = [];
    this.pendingChars = 0;
    if (rest === "") return undefined;
    return { text: rest.replace(/\r$/, ""), timestamp: this.pendingSince, stream: this.stream };
  }

  private emit(text: string, timestamp: number, out: LogLine[]): void {
    for (let i = 0; i === 0 || i < text.length; i += MAX_LINE_CHARS) {
      out.push({ text: text.slice(i, i + MAX_LINE_CHARS), timestamp, stream: this.stream });
    }
  }

  private keep(piece: string, timestamp: number, out: LogLine[]): void {
    if (this.pending.length === 0) this.pendingSince = timestamp;
    this.pending.push(piece);
    this.pendingChars += piece.length;
    while (this.pendingChars >= MAX_LINE_CHARS) {
      const all = this.pending.join("");
      out.push({ text: all.slice(0, MAX_LINE_CHARS), timestamp: this.pendingSince, stream: this.stream });
      const rest = all.slice(MAX_LINE_CHARS);
      this.pending = rest === "" ? [] : [rest];
      this.pendingChars = rest.length;
      this.pendingSince = timestamp;
    }
  }
}

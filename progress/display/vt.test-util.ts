// A tiny terminal for tests: it interprets exactly the control sequences the tty display uses
// (cursor up, carriage return, newline with the tty's CR, erase line/below, cursor show/hide,
// colors) on a grid with scrollback, and records the two things that corrupt a redrawn display:
// a line wrapping at the right margin, and the cursor asked to move above the visible screen.
import { charWidth } from "./text.ts";

export class VirtualTerminal {
  readonly width: number;
  readonly height: number;
  /** Every row ever written, scrollback included. */
  private rows: string[][] = [[]];
  private row = 0;
  private col = 0;
  private wrapPending = false;
  wrapped = 0;
  clampedUp = 0;

  constructor(width: number, height: number) {
    this.width = width;
    this.height = height;
  }

  /** Back to an empty screen. */
  reset(): void {
    this.rows = [[]];
    this.row = 0;
    this.col = 0;
    this.wrapPending = false;
    this.wrapped = 0;
    this.clampedUp = 0;
  }

  write(data: string): void {
    let i = 0;
    while (i < data.length) {
      const ch = data[i]!;
      if (ch === "\x1b") {
        const m = /^\x1b\[(\??)([0-9;]*)([A-Za-z])/.exec(data.slice(i, i + 32));
        if (!m) throw new Error(`unexpected escape sequence ${JSON.stringify(data.slice(i, i + 10))}`);
        this.csi(m[1]!, m[2]!, m[3]!);
        i += m[0].length;
        continue;
      }
      const cp = data.codePointAt(i)!;
      const s = String.fromCodePoint(cp);
      i += s.length;
      if (s === "\n") {
        this.row++;
        this.col = 0;
        this.wrapPending = false;
        this.ensureRow();
      } else if (s === "\r") {
        this.col = 0;
        this.wrapPending = false;
      } else if (cp < 0x20 || cp === 0x7f) {
        throw new Error(`unexpected control character ${cp} written to the terminal`);
      } else {
        this.put(s, charWidth(cp));
      }
    }
  }

  /** All rows, scrollback included, with trailing spaces removed and trailing empty rows dropped. */
  transcript(): string[] {
    const out = this.rows.map((r) => r.join("").trimEnd());
    while (out.length > 0 && out[out.length - 1] === "") out.pop();
    return out;
  }

  private put(s: string, w: number): void {
    if (w === 0) return;
    if (this.wrapPending || this.col + w > this.width) {
      this.wrapped++;
      this.row++;
      this.col = 0;
      this.wrapPending = false;
      this.ensureRow();
    }
    const r = this.rows[this.row]!;
    while (r.length < this.col) r.push(" ");
    r[this.col] = s;
    if (w === 2) r[this.col + 1] = "";
    this.col += w;
    if (this.col >= this.width) {
      this.col = this.width - 1;
      this.wrapPending = true;
    }
  }

  private csi(priv: string, params: string, cmd: string): void {
    const n = params === "" ? 1 : Number(params);
    if (priv === "?") return; // cursor visibility
    switch (cmd) {
      case "m":
        return;
      case "A": {
        const top = Math.max(0, this.rows.length - this.height);
        if (this.row - n < top) this.clampedUp++;
        this.row = Math.max(top, this.row - n);
        this.wrapPending = false;
        return;
      }
      case "K":
        this.rows[this.row]!.length = Math.min(this.rows[this.row]!.length, this.col);
        return;
      case "J":
        this.rows[this.row]!.length = Math.min(this.rows[this.row]!.length, this.col);
        for (let r = this.row + 1; r < this.rows.length; r++) this.rows[r] = [];
        return;
      default:
        throw new Error(`unexpected CSI ${priv}${params}${cmd}`);
    }
  }

  private ensureRow(): void {
    while (this.rows.length <= this.row) this.rows.push([]);
  }
}

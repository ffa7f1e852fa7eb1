// Assembling archive bytes on a worker thread: the writer hands over a batch of pieces (tar
// headers and padding it made, and ranges of files to read) and gets the batch's bytes back in
// one buffer, ready to stream. Read one by one on the event loop, each small file costs an open,
// a read and a close, each a hop through the thread pool; while compression keeps every core
// busy those hops wait for the scheduler and the archive crawls. The worker reads synchronously,
// which is what it is there for, and the event loop copies nothing.
import { Worker } from "node:worker_threads";

/** A byte range of one file; `name` names it in errors. */
export type FileSegment = { path: string; offset: number; length: number; name: string };

/** One piece of a batch: bytes as they are, or a file range to read. */
export type BatchPiece = Uint8Array | FileSegment;

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const fs = require("node:fs");
parentPort.on("message", ({ id, pieces, total }) => {
  const buf = Buffer.allocUnsafeSlow(total);
  let at = 0;
  for (const s of pieces) {
    if (s instanceof Uint8Array) {
      buf.set(s, at);
      at += s.length;
      continue;
    }
    let fd;
    try {
      fd = fs.openSync(s.path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      let got = 0;
      while (got < s.length) {
        const n = fs.readSync(fd, buf, at + got, s.length - got, s.offset + got);
        if (n === 0) {
          throw new Error("it has " + (s.offset + got) + " bytes, not the " + (s.offset + s.length) +
            " it had when listed (the tree changed while being archived)");
        }
        got += n;
      }
    } catch (e) {
      parentPort.postMessage({ id, error: "reading " + JSON.stringify(s.name) + " for the archive: " + (e && e.message ? e.message : e) });
      return;
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
    at += s.length;
  }
  const out = new Uint8Array(buf.buffer, 0, total);
  parentPort.postMessage({ id, buf: out }, [buf.buffer]);
});
`;

/** One worker thread reading file segments in batches; it does not keep the process alive when idle. */
export class FileReader {
  private worker: Worker | undefined;
  private readonly pending = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  /** The pieces' bytes (files read), one after the other, in one buffer. */
  read(pieces: BatchPiece[]): Promise<Buffer> {
    const w = this.start();
    const id = this.nextId++;
    const total = pieces.reduce((n, s) => n + s.length, 0);
    return new Promise<Buffer>((resolve, reject) => {
      if (this.pending.size === 0) w.ref();
      this.pending.set(id, { resolve, reject });
      w.postMessage({ id, pieces, total });
    });
  }

  /** Stops the worker; reads in flight fail. */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    await w?.terminate();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(WORKER_SOURCE, { eval: true });
    w.unref();
    w.on("message", (m: { id: number; buf?: Uint8Array; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) w.unref();
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(Buffer.from(m.buf!.buffer, m.buf!.byteOffset, m.buf!.byteLength));
    });
    const fail = (e: Error) => {
      if (this.worker === w) this.worker = undefined;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new Error(`reading files for an archive: the reader thread failed: ${e.message}`));
      }
    };
    w.on("error", fail);
    w.on("exit", (code) => fail(new Error(`it exited with code ${code}`)));
    this.worker = w;
    return w;
  }
}

let shared: FileReader | undefined;

/** The process-wide reader. */
export function sharedFileReader(): FileReader {
  shared ??= new FileReader();
  return shared;
}

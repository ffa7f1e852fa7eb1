// A pool of worker threads that compress blocks: the image exporter compresses layers on every
// core (pigz-style gzip, zstd frames) while the event loop keeps serving. The worker's code is
// a string, so the pool works the same from the sources and from the bundled binaries.
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";

/** One block to compress. */
export type CompressJob =
  | {
      kind: "deflate";
      data: Uint8Array;
      /** The 32 KiB before `data`, which its matches may refer to (pigz's dictionary). */
      dictionary?: Uint8Array;
      /** The last block ends the deflate stream; the others end with a sync flush. */
      last: boolean;
      level: number;
    }
  | { kind: "zstd"; data: Uint8Array; level: number };

/** A compressed block, and the CRC-32 of its input (deflate only). */
export type CompressResult = { out: Uint8Array; crc: number };

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const zlib = require("node:zlib");
parentPort.on("message", (job) => {
  try {
    let out;
    let crc = 0;
    if (job.kind === "deflate") {
      const opts = {
        level: job.level,
        finishFlush: job.last ? zlib.constants.Z_FINISH : zlib.constants.Z_SYNC_FLUSH,
      };
      if (job.dictionary && job.dictionary.length > 0) opts.dictionary = job.dictionary;
      out = zlib.deflateRawSync(job.data, opts);
      crc = zlib.crc32(job.data);
    } else {
      out = zlib.zstdCompressSync(job.data, {
        params: { [zlib.constants.ZSTD_c_compressionLevel]: job.level },
      });
    }
    // Only a buffer that owns its memory can be transferred instead of copied.
    if (out.byteOffset !== 0 || out.byteLength !== out.buffer.byteLength) out = new Uint8Array(out);
    parentPort.postMessage({ id: job.id, out, crc }, [out.buffer]);
  } catch (e) {
    parentPort.postMessage({ id: job.id, error: String(e && e.message ? e.message : e) });
  }
});
`;

type Pending = { resolve: (r: CompressResult) => void; reject: (e: Error) => void };
type Slot = { worker: Worker; busy: number };

/** Worker threads compressing blocks; workers start on first use and do not keep the process alive when idle. */
export class CompressPool {
  readonly size: number;
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, Pending & { slot: Slot }>();
  private nextId = 1;
  private closed = false;

  constructor(size = availableParallelism()) {
    this.size = Math.max(1, size);
  }

  /** Compresses one block on the least busy worker. Input buffers are transferred: do not reuse them. */
  run(job: CompressJob): Promise<CompressResult> {
    if (this.closed) return Promise.reject(new Error("compressing a block: the compression pool is closed"));
    const slot = this.pick();
    const id = this.nextId++;
    return new Promise<CompressResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, slot });
      if (slot.busy++ === 0) slot.worker.ref();
      const transfer = transferable(job.data) ? [job.data.buffer as ArrayBuffer] : [];
      slot.worker.postMessage({ ...job, id }, transfer);
    });
  }

  /** Stops the workers; jobs in flight fail. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.splice(0).map((s) => s.worker.terminate()));
  }

  private pick(): Slot {
    const idle = this.slots.find((s) => s.busy === 0);
    if (idle) return idle;
    if (this.slots.length < this.size) return this.spawn();
    return this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    const slot: Slot = { worker, busy: 0 };
    worker.unref();
    worker.on("message", (m: { id: number; out?: Uint8Array; crc?: number; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (--slot.busy === 0) worker.unref();
      if (m.error !== undefined) p.reject(new Error(`compressing a block: ${m.error}`));
      else p.resolve({ out: m.out!, crc: m.crc ?? 0 });
    });
    const fail = (e: Error) => {
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      for (const [id, p] of this.pending) {
        if (p.slot !== slot) continue;
        this.pending.delete(id);
        p.reject(new Error(`compressing a block: the worker thread failed: ${e.message}`));
      }
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`it exited with code ${code}`)));
    this.slots.push(slot);
    return slot;
  }
}

/** Whether a buffer owns its whole ArrayBuffer (a pooled Buffer slice must be copied, not moved). */
function transferable(b: Uint8Array): boolean {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer;
}

let shared: CompressPool | undefined;

/** The process-wide pool, one worker per core. */
export function sharedCompressPool(): CompressPool {
  shared ??= new CompressPool();
  return shared;
}

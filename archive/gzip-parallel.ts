// gzip on every core, the way pigz does it: the input is cut into fixed-size blocks, each block
// is deflated on a worker thread with the 32 KiB before it as dictionary and ends with a sync
// flush (the last one with a final block), so the pieces join into ONE ordinary deflate stream
// that any gzip reader accepts. The CRC-32 of each block is computed beside it and combined.
// Blocks have a fixed size whatever the number of cores, so the output (and a layer's digest)
// is the same on every machine.
import { type CompressPool, type CompressResult, sharedCompressPool } from "./compress-pool.ts";

/** Options of {@link gzipParallel}. */
export type GzipOptions = {
  /** 0 (store) to 9 (best); default 6, like gzip and Go's DefaultCompression. */
  level?: number;
  pool?: CompressPool;
  signal?: AbortSignal;
};

/** Input bytes per block. Changing it changes the output bytes (and so layer digests). */
export const GZIP_BLOCK_SIZE = 256 * 1024;
const DICTIONARY_SIZE = 32 * 1024;

/** A gzip stream (one member) of `source`, compressed in parallel. */
export async function* gzipParallel(
  source: AsyncIterable<Uint8Array>,
  opts: GzipOptions = {},
): AsyncGenerator<Buffer> {
  const level = opts.level ?? 6;
  if (!Number.isInteger(level) || level < 0 || level > 9) {
    throw new Error(`gzip compression level ${level} is out of range: want 0 (none) to 9 (best)`);
  }
  const pool = opts.pool ?? sharedCompressPool();
  yield gzipHeader(level);
  let crc = 0;
  let total = 0;
  const inFlight: { result: Promise<CompressResult>; length: number }[] = [];
  const maxInFlight = pool.size * 2;
  let dictionary: Uint8Array | undefined;
  let held: Buffer | undefined;
  const submit = (block: Buffer, last: boolean) => {
    const next = block.length >= DICTIONARY_SIZE ? block.subarray(block.length - DICTIONARY_SIZE) : undefined;
    const dict = dictionary;
    // The next block's dictionary is copied before the block's memory moves to the worker.
    dictionary = next ? new Uint8Array(next) : tailOf(dict, block);
    // Read before the block's memory moves to the worker (a transferred buffer reads as empty).
    const length = block.length;
    const result = pool.run({ kind: "deflate", data: block, dictionary: dict, last, level });
    result.catch(() => {});
    inFlight.push({ result, length });
  };
  const finished = async function* (): AsyncGenerator<Buffer> {
    const { result, length } = inFlight.shift()!;
    const r = await result;
    crc = crc32Combine(crc, r.crc, length);
    total += length;
    yield Buffer.from(r.out.buffer, r.out.byteOffset, r.out.byteLength);
  };
  try {
    for await (const block of blocks(source, GZIP_BLOCK_SIZE)) {
      opts.signal?.throwIfAborted();
      // One block is held back: only the end of the input says which block is the last.
      if (held) submit(held, false);
      held = block;
      while (inFlight.length >= maxInFlight) yield* finished();
    }
    submit(held ?? Buffer.alloc(0), true);
    while (inFlight.length > 0) yield* finished();
  } finally {
    // Results of an abandoned stream are still collected so no worker answer is left unhandled.
    await Promise.allSettled(inFlight.map((f) => f.result));
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(total % 2 ** 32, 4);
  yield trailer;
}

/** The 32 KiB before the next block when this one is shorter than that. */
function tailOf(dict: Uint8Array | undefined, block: Buffer): Uint8Array {
  const joined = Buffer.concat([dict ?? Buffer.alloc(0), block]);
  return new Uint8Array(joined.subarray(Math.max(0, joined.length - DICTIONARY_SIZE)));
}

/** The 10-byte gzip header Go writes: no name, no time, OS unknown; XFL says fastest or best. */
function gzipHeader(level: number): Buffer {
  const xfl = level === 9 ? 2 : level === 1 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff]);
}

/**
 * Regroups a stream into blocks of exactly `size` bytes (the last one shorter), each in its own
 * memory so that it can move to a worker thread.
 */
export async function* blocks(source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  let block = Buffer.allocUnsafeSlow(size);
  let fill = 0;
  for await (const chunk of source) {
    let off = 0;
    while (off < chunk.length) {
      const n = Math.min(size - fill, chunk.length - off);
      block.set(chunk.subarray(off, off + n), fill);
      fill += n;
      off += n;
      if (fill === size) {
        yield block;
        block = Buffer.allocUnsafeSlow(size);
        fill = 0;
      }
    }
  }
  if (fill > 0) {
    const last = Buffer.allocUnsafeSlow(fill);
    block.copy(last, 0, 0, fill);
    yield last;
  }
}

// CRC-32 combination (zlib's crc32_combine): the CRC of A+B from crc(A), crc(B) and len(B), by
// multiplying crc(A) by x^(8·len(B)) in GF(2) with 32×32 bit matrices.

function gf2Times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  for (let i = 0; vec !== 0; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i]!;
  return sum >>> 0;
}

function gf2Square(square: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) square[n] = gf2Times(mat, mat[n]!);
}

/** The CRC-32 of two concatenated inputs, given each one's CRC and the second one's length. */
export function crc32Combine(crc1: number, crc2: number, len2: number): number {
  if (len2 <= 0) return crc1 >>> 0;
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  odd[0] = 0xedb88320; // the CRC-32 polynomial: the operator for one zero bit
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) odd[n] = row;
  gf2Square(even, odd); // two zero bits
  gf2Square(odd, even); // four zero bits
  let c = crc1 >>> 0;
  let len = len2;
  for (;;) {
    gf2Square(even, odd);
    if (len % 2 === 1) c = gf2Times(even, c);
    len = Math.floor(len / 2);
    if (len === 0) break;
    gf2Square(odd, even);
    if (len % 2 === 1) c = gf2Times(odd, c);
    len = Math.floor(len / 2);
    if (len === 0) break;
  }
  return (c ^ crc2) >>> 0;
}

// Compressing layer tars for export: gzip (pigz-style, parallel), zstd (independent frames
// compressed in parallel; a zstd reader decodes concatenated frames as one stream) or none.
import { type CompressPool, type CompressResult, sharedCompressPool } from "./compress-pool.ts";
import { blocks, gzipParallel } from "./gzip-parallel.ts";

/** How a layer is compressed, as the `compression` exporter attribute names it. */
export type Compression = "gzip" | "zstd" | "uncompressed";

/** Options of {@link compressStream}. */
export type CompressOptions = {
  compression: Compression;
  /** gzip 0-9 (default 6), zstd 1-22 (default 3); ignored for uncompressed. */
  level?: number;
  pool?: CompressPool;
  signal?: AbortSignal;
};

/** Input bytes per zstd frame: big enough that the ratio barely suffers, small enough to spread. */
export const ZSTD_FRAME_SIZE = 4 * 1024 * 1024;

/** The valid levels per compression, for attribute checks. */
export const COMPRESSION_LEVELS: Record<Compression, [number, number]> = {
  gzip: [0, 9],
  zstd: [1, 22],
  uncompressed: [0, 0],
};

/** `source` compressed as asked. */
export function compressStream(
  source: AsyncIterable<Uint8Array>,
  opts: CompressOptions,
): AsyncIterable<Buffer> {
  switch (opts.compression) {
    case "gzip":
      return gzipParallel(source, { level: opts.level, pool: opts.pool, signal: opts.signal });
    case "zstd":
      return zstdParallel(source, opts);
    case "uncompressed":
      return asBuffers(source);
  }
}

async function* asBuffers(source: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  for await (const c of source)
    yield Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
}

async function* zstdParallel(
  source: AsyncIterable<Uint8Array>,
  opts: CompressOptions,
): AsyncGenerator<Buffer> {
  const level = opts.level ?? 3;
  const [min, max] = COMPRESSION_LEVELS.zstd;
  if (!Number.isInteger(level) || level < min || level > max) {
    throw new Error(`zstd compression level ${level} is out of range: want ${min} to ${max}`);
  }
  const pool = opts.pool ?? sharedCompressPool();
  const inFlight: Promise<CompressResult>[] = [];
  let any = false;
  try {
    for await (const block of blocks(source, ZSTD_FRAME_SIZE)) {
      opts.signal?.throwIfAborted();
      any = true;
      const r = pool.run({ kind: "zstd", data: block, level });
      r.catch(() => {});
      inFlight.push(r);
      while (inFlight.length >= pool.size * 2) yield out(await inFlight.shift()!);
    }
    // An empty input is still one (empty) frame, so readers see a zstd stream.
    if (!any) inFlight.push(pool.run({ kind: "zstd", data: Buffer.allocUnsafeSlow(0), level }));
    while (inFlight.length > 0) yield out(await inFlight.shift()!);
  } finally {
    await Promise.allSettled(inFlight);
  }
}

function out(r: CompressResult): Buffer {
  return Buffer.from(r.out.buffer, r.out.byteOffset, r.out.byteLength);
}

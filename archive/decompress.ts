// Layer blobs come gzip'd, zstd'd or as plain tar, and the media type is not always honest
// (docker's "tar.gzip" layers that are plain tar exist), so the first bytes decide.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createZstdDecompress } from "node:zlib";

/** How a layer blob is compressed. */
export type LayerCompression = "gzip" | "zstd" | "none";

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/** The compression the first bytes of a blob announce ("none" when they announce nothing). */
export function detectCompression(head: Uint8Array): LayerCompression {
  const starts = (magic: number[]) => magic.every((b, i) => head[i] === b);
  if (head.length >= GZIP_MAGIC.length && starts(GZIP_MAGIC)) return "gzip";
  if (head.length >= ZSTD_MAGIC.length && starts(ZSTD_MAGIC)) return "zstd";
  return "none";
}

/**
 * The uncompressed bytes of a layer blob, whatever its compression, and which one it was.
 * Errors of the source or of decompression (a truncated gzip stream) surface while reading.
 */
export async function decompressLayer(
  source: AsyncIterable<Uint8Array>,
): Promise<{ compression: LayerCompression; stream: Readable }> {
  const iterator = source[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headBytes = 0;
  let ended = false;
  while (headBytes < ZSTD_MAGIC.length) {
    const next = await iterator.next();
    if (next.done) {
      ended = true;
      break;
    }
    head.push(Buffer.from(next.value));
    headBytes += next.value.byteLength;
  }
  const rest = (async function* () {
    try {
      yield* head;
      if (ended) return;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    } finally {
      // A reader that gives up early (a bad entry) must not leave the download running.
      if (!ended) await iterator.return?.();
    }
  })();
  const compression = detectCompression(Buffer.concat(head));
  if (compression === "none") return { compression, stream: Readable.from(rest, { objectMode: false }) };
  const decompressor = compression === "gzip" ? createGunzip() : createZstdDecompress();
  pipeline(Readable.from(rest, { objectMode: false }), decompressor).catch((e: unknown) => {
    // pipeline has already destroyed the decompressor with this error, so readers see it.
    void e;
  });
  return { compression, stream: decompressor };
}

// Parallel compression: what gzip(1), zstd(1) and zlib read back, and the same bytes whatever
// the number of workers (layer digests must not depend on the machine).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { promisify } from "node:util";
import { crc32, gunzipSync } from "node:zlib";
import { compressStream } from "./compress.ts";
import { CompressPool } from "./compress-pool.ts";
import { crc32Combine, GZIP_BLOCK_SIZE, gzipParallel } from "./gzip-parallel.ts";

const run = promisify(execFile);
const one = new CompressPool(1);
const three = new CompressPool(3);
after(() => Promise.all([one.close(), three.close()]));

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

async function* pieces(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size);
}

/** Text-like data with long-range repeats, so that dictionaries across blocks matter. */
function sample(bytes: number): Buffer {
  const words = Array.from({ length: 500 }, (_, i) => `word${i * 7919}`);
  let s = "";
  let x = 1;
  while (s.length < bytes) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    s += `${words[x % words.length]} `;
  }
  return Buffer.from(s.slice(0, bytes));
}

async function tool(cmd: string, args: string[], input: Buffer): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), "buildd-compress-"));
  try {
    await writeFile(join(dir, "in"), input);
    const { stdout } = await run(cmd, [...args, join(dir, "in")], { encoding: "buffer", maxBuffer: 1 << 30 });
    return stdout;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

describe("gzipParallel", () => {
  test("gives one gzip member gzip(1) and zlib read back, for empty, tiny and multi-block inputs", async () => {
    for (const size of [0, 1, 1000, GZIP_BLOCK_SIZE, GZIP_BLOCK_SIZE + 1, 5 * GZIP_BLOCK_SIZE + 17]) {
      const data = Buffer.concat([sample(Math.ceil(size / 2)), randomBytes(Math.floor(size / 2))]);
      const gz = await collect(gzipParallel(pieces(data, 70_001), { pool: three }));
      assert.equal(sha(gunzipSync(gz)), sha(data), `zlib, ${size} bytes`);
      assert.equal(sha(await tool("gzip", ["-dc"], gz)), sha(data), `gzip(1), ${size} bytes`);
      await tool("gzip", ["-t"], gz);
    }
  });

  test("is the same bytes with one worker or three, and compresses like gzip does", async () => {
    const data = sample(3 * 1024 * 1024);
    const a = await collect(gzipParallel(pieces(data, 1 << 20), { pool: one, level: 6 }));
    const b = await collect(gzipParallel(pieces(data, 12345), { pool: three, level: 6 }));
    assert.equal(sha(a), sha(b));
    const reference = await tool("gzip", ["-6", "-c"], data);
    // Dictionaries carry matches across blocks: within a few percent of single-threaded gzip.
    assert.ok(a.length < reference.length * 1.05, `${a.length} vs gzip's ${reference.length}`);
    const fast = await collect(gzipParallel(pieces(data, 1 << 20), { pool: three, level: 1 }));
    assert.ok(fast.length > a.length, "level 1 compresses less than level 6");
  });

  test("refuses an out-of-range level", async () => {
    await assert.rejects(
      collect(gzipParallel(pieces(Buffer.from("x"), 1), { level: 10 })),
      /level 10 is out of range/,
    );
  });

  test("crc32Combine matches the CRC of the concatenation", () => {
    const a = randomBytes(1000);
    const b = randomBytes(123_457);
    assert.equal(crc32Combine(crc32(a), crc32(b), b.length), crc32(Buffer.concat([a, b])));
    assert.equal(crc32Combine(crc32(a), crc32(Buffer.alloc(0)), 0), crc32(a));
  });
});

describe("compressStream", () => {
  test("zstd frames decode as one stream with zstd(1); uncompressed passes through", async () => {
    const data = Buffer.concat([sample(9 * 1024 * 1024), randomBytes(1000)]);
    const z = await collect(compressStream(pieces(data, 1 << 20), { compression: "zstd", pool: three }));
    assert.equal(sha(await tool("zstd", ["-dc"], z)), sha(data));
    const z1 = await collect(compressStream(pieces(data, 333_333), { compression: "zstd", pool: one }));
    assert.equal(sha(z1), sha(z), "same bytes whatever the workers");
    const empty = await collect(
      compressStream(pieces(Buffer.alloc(0), 1), { compression: "zstd", pool: one }),
    );
    assert.equal((await tool("zstd", ["-dc"], empty)).length, 0);
    const raw = await collect(compressStream(pieces(data, 1 << 20), { compression: "uncompressed" }));
    assert.equal(sha(raw), sha(data));
  });
});

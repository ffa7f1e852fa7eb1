// What several benchmarks share: a reproducible source of sizes, a generated tree of files, and
// the summaries they print.
import { randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** A seeded linear congruential generator in [0, 1): the same sizes on every run and machine. */
export function seededRandom(seed = 42): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
}

/**
 * `files` files of random bytes (sizes uniform around an average, about `totalMB` in all) in
 * 100-file directories under `root`. Random bytes: source trees compress, but a context with
 * binaries does not; the benchmarks measure the worst.
 */
export async function generateTree(root: string, files: number, totalMB: number): Promise<void> {
  const avg = (totalMB * 1024 * 1024) / files;
  const pool = randomBytes(Math.ceil(avg * 2) + 4096);
  const next = seededRandom();
  const perDir = 100;
  for (let i = 0; i < files; i++) {
    const dir = join(root, `d${Math.floor(i / perDir) % 10}`, `sub${Math.floor(i / perDir)}`);
    if (i % perDir === 0) await mkdir(dir, { recursive: true });
    const size = Math.floor(next() * avg * 2);
    const off = Math.floor(next() * 4096);
    await writeFile(join(dir, `file${i}.bin`), pool.subarray(off, off + size));
  }
}

/** The upper median (the middle value; of two middles, the larger). */
export function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
}

/** The best and the median of some timings. */
export function summary(times: number[]): { best: number; median: number } {
  return { best: Math.min(...times), median: median(times) };
}

/** Runs `fn` and says how long it took, in milliseconds. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

// Benchmark (not a test): copy() against `cp -a` on a generated tree of about 200 MB in 5,000 files.
//
//   node bench/copy.ts [dir] [files] [totalMB] [runs]
//
// `dir` (default the OS temp dir) picks the filesystem: /dev/shm (tmpfs) shows our overhead without
// disk noise. Runs alternate between the two tools; prints best and median of each, and the ratio.
// Set UV_THREADPOOL_SIZE to try more I/O threads.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copy } from "../fsutil/copy.ts";

const parent = process.argv[2] || tmpdir();
const files = Number(process.argv[3] ?? 5000);
const totalMB = Number(process.argv[4] ?? 200);
const runs = Number(process.argv[5] ?? 5);

async function generate(root: string): Promise<void> {
  const avg = (totalMB * 1024 * 1024) / files;
  const pool = randomBytes(Math.ceil(avg * 2) + 4096);
  let seed = 42;
  const next = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const perDir = 100;
  for (let i = 0; i < files; i++) {
    const dir = join(root, `d${Math.floor(i / perDir) % 10}`, `sub${Math.floor(i / perDir)}`);
    if (i % perDir === 0) await mkdir(dir, { recursive: true });
    const size = Math.floor(next() * avg * 2);
    const off = Math.floor(next() * 4096);
    await writeFile(join(dir, `file${i}.bin`), pool.subarray(off, off + size));
  }
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function summary(times: number[]): { best: number; median: number } {
  const sorted = [...times].sort((a, b) => a - b);
  return { best: sorted[0]!, median: sorted[Math.floor(sorted.length / 2)]! };
}

const base = await mkdtemp(join(parent, "buildd-bench-copy-"));
try {
  const src = join(base, "src");
  const dst = join(base, "dst");
  await mkdir(src);
  await mkdir(dst);
  console.log(`generating ${files} files, ~${totalMB} MB in ${src}`);
  await generate(join(src, "tree"));
  execFileSync("sync");
  const du = execFileSync("du", ["-sm", join(src, "tree")], { encoding: "utf8" }).split("\t")[0];
  console.log(`tree is ${du} MB; threadpool ${process.env.UV_THREADPOOL_SIZE ?? "4 (default)"}`);
  const reset = async () => {
    await rm(join(dst, "tree"), { recursive: true, force: true });
    execFileSync("sync");
  };
  const cpTimes: number[] = [];
  const ourTimes: number[] = [];
  for (let i = 0; i < runs; i++) {
    await reset();
    cpTimes.push(
      await timed(async () => void execFileSync("cp", ["-a", join(src, "tree"), join(dst, "tree")])),
    );
    await reset();
    ourTimes.push(await timed(() => copy(src, "/tree", dst, "/tree")));
    console.log(`  run ${i + 1}: cp -a ${cpTimes[i]!.toFixed(0)} ms, copy() ${ourTimes[i]!.toFixed(0)} ms`);
  }
  const cp = summary(cpTimes);
  const ours = summary(ourTimes);
  console.log(
    `cp -a best ${cp.best.toFixed(0)} ms median ${cp.median.toFixed(0)} ms; ` +
      `copy() best ${ours.best.toFixed(0)} ms median ${ours.median.toFixed(0)} ms; ` +
      `ratio copy/cp best ${(ours.best / cp.best).toFixed(2)} median ${(ours.median / cp.median).toFixed(2)}`,
  );
} finally {
  await rm(base, { recursive: true, force: true });
}

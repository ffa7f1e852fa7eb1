// Benchmark (not a test): copy() against `cp -a` on a generated tree of about 200 MB in 5,000 files.
//
//   node bench/copy.ts [dir] [files] [totalMB] [runs]
//
// `dir` (default the OS temp dir) picks the filesystem: /dev/shm (tmpfs) shows our overhead without
// disk noise. Runs alternate between the two tools; prints best and median of each, and the ratio.
// Set UV_THREADPOOL_SIZE to try more I/O threads.
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copy } from "../fsutil/copy.ts";
import { generateTree, summary, timed } from "./common.ts";

const parent = process.argv[2] || tmpdir();
const files = Number(process.argv[3] ?? 5000);
const totalMB = Number(process.argv[4] ?? 200);
const runs = Number(process.argv[5] ?? 5);

const base = await mkdtemp(join(parent, "buildd-bench-copy-"));
try {
  const src = join(base, "src");
  const dst = join(base, "dst");
  await mkdir(src);
  await mkdir(dst);
  console.log(`generating ${files} files, ~${totalMB} MB in ${src}`);
  await generateTree(join(src, "tree"), files, totalMB);
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
      (await timed(async () => void execFileSync("cp", ["-a", join(src, "tree"), join(dst, "tree")]))).ms,
    );
    await reset();
    ourTimes.push((await timed(() => copy(src, "/tree", dst, "/tree"))).ms);
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

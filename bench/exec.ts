// Benchmark (not a test): N runs of /bin/true through RuncExecutor against `runc run` of a bundle
// prepared by hand (`runc spec`, rootfs in place), both spawned from this Node process.
//
//   node bench/exec.ts [N]
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tempBusyboxRootfs } from "../test/busybox.ts";
import { mustRunTool } from "../executor/command.ts";
import { RuncExecutor } from "../executor/runc.ts";
import type { Mount, ProcessSpec } from "../executor/types.ts";
import { median } from "./common.ts";

const runs = Number(process.argv[2] ?? 30);
const warmup = 3;

function runcRun(runcRoot: string, bundle: string, id: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("runc", ["--root", runcRoot, "run", "--bundle", bundle, id], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.resume();
    child.stderr.resume();
    child.once("error", reject);
    child.once("close", (code) => (code === 0 ? resolve() : reject(new Error(`runc run exited ${code}`))));
  });
}

/** Per-call milliseconds of each variant, interleaved so that load changes hit all alike. */
async function timeAll(
  variants: Record<string, (i: number) => Promise<unknown>>,
): Promise<Map<string, number[]>> {
  const times = new Map<string, number[]>(Object.keys(variants).map((k) => [k, []]));
  for (let i = -warmup; i < runs; i++) {
    for (const [name, fn] of Object.entries(variants)) {
      const start = process.hrtime.bigint();
      await fn(i + warmup);
      if (i >= 0) times.get(name)!.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }
  return times;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const rootfs = await tempBusyboxRootfs();
const dir = await mkdtemp(join(tmpdir(), "buildd-bench-exec-"));
const executor = await RuncExecutor.open({ root: join(dir, "executor") });
try {
  // The hand-prepared bundle: runc's own template, made non-interactive, on the busybox dir.
  const bundle = join(dir, "bundle");
  await mkdir(bundle);
  await mustRunTool("runc", ["spec", "--bundle", bundle], "writing runc's template spec");
  const spec = JSON.parse(await readFile(join(bundle, "config.json"), "utf8"));
  spec.process.terminal = false;
  spec.process.args = ["/bin/true"];
  spec.root = { path: rootfs.dir, readonly: true };
  await writeFile(join(bundle, "config.json"), JSON.stringify(spec));
  const runcRoot = join(dir, "runc");
  const proc: ProcessSpec = { args: ["/bin/true"], env: [], cwd: "/", network: "none", security: "sandbox" };
  const plainRoot: Mount[] = [{ type: "bind", source: rootfs.dir, options: ["rbind", "ro"] }];
  const upper = join(dir, "upper");
  const work = join(dir, "work");
  await mkdir(upper);
  await mkdir(work);
  const overlay: Mount[] = [
    {
      type: "overlay",
      source: "overlay",
      options: [`lowerdir=${rootfs.dir}`, `upperdir=${upper}`, `workdir=${work}`],
    },
  ];
  const times = await timeAll({
    "runc run, hand-prepared bundle": (i) => runcRun(runcRoot, bundle, `bench-${i}`),
    "RuncExecutor, rootfs a plain dir": (i) => executor.run(`dir-${i}`, plainRoot, [], proc, {}),
    "RuncExecutor, rootfs an overlay": (i) => executor.run(`ovl-${i}`, overlay, [], proc, {}),
  });
  const base = times.get("runc run, hand-prepared bundle")!;
  console.log(`${runs} interleaved runs of /bin/true per variant (after ${warmup} warm-up rounds)`);
  console.log(`${"".padEnd(34)} ${"median".padStart(9)} ${"mean".padStart(9)}  ratio of medians`);
  for (const [name, xs] of times) {
    console.log(
      `${name.padEnd(34)} ${median(xs).toFixed(1).padStart(6)} ms ${mean(xs).toFixed(1).padStart(6)} ms  ${(median(xs) / median(base)).toFixed(2)}`,
    );
  }
} finally {
  await executor.close();
  await rm(dir, { recursive: true, force: true });
  await rootfs.cleanup();
}

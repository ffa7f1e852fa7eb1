// Benchmark (not a test): inline build cache through a registry, buildd next to the BuildKit
// inside Debian's dockerd 20.10, on the same 5-step Dockerfile (one step writes a 200 MB layer of
// random bytes, so it does not compress). docker 20.10's `docker build` cannot export a registry
// cache (that needs buildx), but it can do inline cache, so both tools do that:
//
//   A build   cold build of an image with the inline cache in its config (docker: into dockerd's
//             image store; buildd: a fresh daemon, `--output type=image,push=false`)
//   A push    the image to the registry (docker push; buildd: the same build again, push=true)
//   B cold    an emptied builder (docker: `builder prune -af` and rmi of the image and of its
//             base, so the base is pulled again as on a fresh daemon; buildd: a second daemon with
//             an empty state dir) rebuilds with the pushed image as the cache source
//   B again   the same build once more, nothing changed
//
// Every phase goes through the same counting proxy in front of a loopback docker-registry
// (docker treats 127.0.0.0/8 registries as plain http without daemon config), so the bytes per
// phase are counted for both tools: the app's repository and the base image's apart.
// B must show every RUN as CACHED and none of their output; on top of that its image must have A's
// layers (diff ids), which a step that ran again could not give (random bytes, new mtimes).
//
//   node bench/remotecache-docker.ts [--mb 200] [--runs 1]
//
// Needs root, /usr/bin/docker (override with DOCKER) and a running dockerd. It runs
// `docker builder prune -af`, which also drops build cache that others left in that dockerd.
import { execFile } from "node:child_process";
import { glob, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { pushBusyboxImage } from "../test/busybox-image.ts";
import { startTestDaemon, type TestDaemon } from "../test/daemon.ts";
import { type Registry, startRegistry } from "../test/registry.ts";

const { values } = parseArgs({
  options: { mb: { type: "string", default: "200" }, runs: { type: "string", default: "1" } },
});
const MB = Number(values.mb);
const RUNS = Number(values.runs);
const DOCKER = process.env.DOCKER ?? "/usr/bin/docker";
const STEPS = 5;
const PHASES = ["A build", "A push", "B cold", "B again"] as const;
type Phase = (typeof PHASES)[number];
const TOOLS = ["docker", "buildd"] as const;
type Tool = (typeof TOOLS)[number];

type Traffic = {
  appIn: number;
  appOut: number;
  appRequests: number;
  appBlobGets: number;
  baseOut: number;
  other: number;
};
type Measure = { seconds: number; traffic: Traffic };
type RunResult = Record<Tool, Record<Phase, Measure>>;

/**
 * The step's output is printed with printf so that the marker ("RAN1") is in the output only,
 * never in the step's name, which the progress also prints.
 */
function dockerfile(base: string): string {
  const lines = [
    `FROM ${base}`,
    `RUN dd if=/dev/urandom of=/big bs=1M count=${MB} 2>/dev/null && printf 'RAN%s\\n' 1`,
  ];
  for (let i = 2; i <= STEPS; i++) lines.push(`RUN echo step ${i} > /step${i} && printf 'RAN%s\\n' ${i}`);
  return `${lines.join("\n")}\n`;
}

type Output = { code: number; stdout: string; stderr: string };

/** Async on purpose: the registry proxy runs in this process and a sync exec would stall it. */
function exec(file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Output> {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...process.env, ...env }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function docker(what: string, args: string[]): Promise<Output> {
  const r = await exec(DOCKER, args, { DOCKER_BUILDKIT: "1" });
  if (r.code !== 0)
    throw new Error(`docker ${what}: docker ${args.join(" ")} exited ${r.code}:\n${r.stderr}`);
  return r;
}

/** Registry traffic since the last call, split by repository. */
function takeTraffic(registry: Registry, appRepo: string): Traffic {
  const t: Traffic = { appIn: 0, appOut: 0, appRequests: 0, appBlobGets: 0, baseOut: 0, other: 0 };
  for (const [path, st] of Object.entries(registry.stats())) {
    if (path.startsWith(`/v2/${appRepo}/`)) {
      t.appIn += st.bytesIn;
      t.appOut += st.bytesOut;
      t.appRequests += st.requests;
      if (path.includes("/blobs/sha256:")) t.appBlobGets += st.methods.GET ?? 0;
    } else if (path.startsWith("/v2/busybox/")) t.baseOut += st.bytesOut;
    else t.other += st.bytesIn + st.bytesOut;
  }
  registry.resetStats();
  return t;
}

async function timed(registry: Registry, appRepo: string, work: () => Promise<unknown>): Promise<Measure> {
  takeTraffic(registry, appRepo);
  const started = performance.now();
  await work();
  const seconds = (performance.now() - started) / 1000;
  return { seconds, traffic: takeTraffic(registry, appRepo) };
}

/**
 * Problems with B's progress: a RUN step without a CACHED line, or a step's output (which only a
 * step that ran prints). Both tools print BuildKit's plain progress: "#7 [3/6] RUN ..." then "#7 CACHED".
 */
function uncachedSteps(progress: string): string[] {
  const runs = [...progress.matchAll(/^#(\d+) \[[^\]]*\d+\/\d+\] RUN /gm)].map((m) => m[1]!);
  const problems: string[] = [];
  if (runs.length !== STEPS) problems.push(`${runs.length} RUN steps in the progress, not ${STEPS}`);
  for (const n of runs) {
    if (!new RegExp(`^#${n} CACHED$`, "m").test(progress)) problems.push(`step #${n} not CACHED`);
  }
  for (const m of progress.matchAll(/RAN\d/g)) problems.push(`a step ran (printed ${m[0]})`);
  return problems;
}

async function dockerLayers(ref: string): Promise<string[]> {
  return JSON.parse(
    (await docker("inspect", ["image", "inspect", "-f", "{{json .RootFS.Layers}}", ref])).stdout,
  );
}

async function dockerRun(
  registry: Registry,
  ctx: string,
  run: number,
): Promise<[Record<Phase, Measure>, string[]]> {
  const appRepo = `bench/docker${run}`;
  const app = `${registry.host}/${appRepo}:latest`;
  const base = `${registry.host}/busybox:latest`;
  // A cold start for A too, as buildd's A is a fresh daemon.
  await docker("prune", ["builder", "prune", "-af"]);
  const build = (extra: string[]) => docker("build", ["build", "--progress=plain", ...extra, "-t", app, ctx]);
  const m = {} as Record<Phase, Measure>;
  m["A build"] = await timed(registry, appRepo, () => build(["--build-arg", "BUILDKIT_INLINE_CACHE=1"]));
  m["A push"] = await timed(registry, appRepo, () => docker("push", ["push", app]));
  const layersA = await dockerLayers(app);
  await docker("prune", ["builder", "prune", "-af"]);
  await docker("rmi", ["rmi", app]);
  // Not checked: BuildKit in dockerd may pull a base without tagging it (the prune freed its layers).
  await exec(DOCKER, ["rmi", base]);
  let progress = "";
  m["B cold"] = await timed(registry, appRepo, async () => {
    progress = (await build(["--cache-from", app])).stderr;
  });
  const problems = uncachedSteps(progress).map((p) => `B cold: ${p}`);
  if (JSON.stringify(await dockerLayers(app)) !== JSON.stringify(layersA))
    problems.push("B's layers differ from A's");
  m["B again"] = await timed(registry, appRepo, async () => {
    progress = (await build(["--cache-from", app])).stderr;
  });
  problems.push(...uncachedSteps(progress).map((p) => `B again: ${p}`));
  return [m, problems];
}

/** The image's diff ids, from the config blob in the daemon's content store. */
async function builddLayers(d: TestDaemon, metadataFile: string): Promise<string[]> {
  const md = JSON.parse(await readFile(metadataFile, "utf8"));
  const hex = String(md["containerimage.config.digest"]).replace(/^sha256:/, "");
  for await (const path of glob(`**/blobs/sha256/${hex}`, { cwd: d.root })) {
    return JSON.parse(await readFile(join(d.root, path), "utf8")).rootfs.diff_ids;
  }
  throw new Error(`buildd: config ${hex} not found under ${d.root}`);
}

async function builddRun(
  registry: Registry,
  ctx: string,
  run: number,
): Promise<[Record<Phase, Measure>, string[]]> {
  const appRepo = `bench/buildd${run}`;
  const app = `${registry.host}/${appRepo}:latest`;
  const metadata = join(ctx, "..", `metadata-${run}.json`);
  const build = async (d: TestDaemon, what: string, extra: string[]) => {
    const r = await d.buildctl([
      "build",
      "--progress=plain",
      "--frontend",
      "dockerfile.v0",
      "--local",
      `context=${ctx}`,
      "--local",
      `dockerfile=${ctx}`,
      ...extra,
    ]);
    if (r.code !== 0) throw new Error(`buildd ${what}: ${r.stderr}`);
    return r.stderr;
  };
  const a = await startTestDaemon(undefined);
  const b = await startTestDaemon(undefined);
  try {
    const m = {} as Record<Phase, Measure>;
    const image = (push: boolean) => ["--output", `type=image,name=${app},push=${push}`];
    const inline = ["--export-cache", "type=inline"];
    const local = ["--metadata-file", metadata];
    m["A build"] = await timed(registry, appRepo, () =>
      build(a, "A build", [...image(false), ...inline, ...local]),
    );
    const layersA = await builddLayers(a, metadata);
    m["A push"] = await timed(registry, appRepo, () => build(a, "A push", [...image(true), ...inline]));
    const fromCache = ["--import-cache", `type=registry,ref=${app}`];
    let progress = "";
    m["B cold"] = await timed(registry, appRepo, async () => {
      progress = await build(b, "B cold", [...image(false), ...fromCache, ...local]);
    });
    const problems = uncachedSteps(progress).map((p) => `B cold: ${p}`);
    const layersB = await builddLayers(b, metadata);
    if (JSON.stringify(layersB) !== JSON.stringify(layersA)) problems.push("B's layers differ from A's");
    m["B again"] = await timed(registry, appRepo, async () => {
      progress = await build(b, "B again", [...image(false), ...fromCache]);
    });
    problems.push(...uncachedSteps(progress).map((p) => `B again: ${p}`));
    return [m, problems];
  } finally {
    await a.close();
    await b.close();
  }
}

const mib = (n: number) => (n / 1024 / 1024).toFixed(n < 1024 * 1024 ? 3 : 1);
const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function describeTraffic(t: Traffic): string {
  const parts = [
    `app ↑${mib(t.appIn)} ↓${mib(t.appOut)} MiB (${t.appRequests} requests, ${t.appBlobGets} blob GETs)`,
  ];
  if (t.baseOut) parts.push(`base ↓${mib(t.baseOut)} MiB`);
  if (t.other) parts.push(`other ${t.other} B`);
  return parts.join(", ");
}

function report(title: string, r: RunResult): void {
  console.log(title);
  const rows: [string, number, number][] = PHASES.map((p) => [p, r.docker[p].seconds, r.buildd[p].seconds]);
  const total = (t: Tool) => r[t]["A build"].seconds + r[t]["A push"].seconds;
  rows.splice(2, 0, ["A total", total("docker"), total("buildd")]);
  console.log("  phase      docker s  buildd s  buildd/docker");
  for (const [p, d, b] of rows) {
    console.log(
      `  ${p.padEnd(9)} ${d.toFixed(2).padStart(9)} ${b.toFixed(2).padStart(9)} ${(b / d).toFixed(2).padStart(14)}`,
    );
  }
  for (const t of TOOLS) {
    console.log(`  ${t} registry bytes:`);
    for (const p of PHASES) console.log(`    ${p.padEnd(8)} ${describeTraffic(r[t][p].traffic)}`);
  }
}

const ctx = await mkdtemp(join(tmpdir(), "bench-rc-docker-"));
const results: RunResult[] = [];
const problems: string[] = [];
try {
  const dir = join(ctx, "context");
  for (let run = 1; run <= RUNS; run++) {
    const registry = await startRegistry();
    const toClean: string[] = [];
    try {
      await pushBusyboxImage(registry);
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "Dockerfile"), dockerfile(`${registry.host}/busybox:latest`));
      toClean.push(`${registry.host}/bench/docker${run}:latest`, `${registry.host}/busybox:latest`);
      // Alternated, so that neither tool always runs on the warmer (or the noisier) machine.
      const dockerFirst = run % 2 === 1;
      const [dm, dp] = dockerFirst ? await dockerRun(registry, dir, run) : [undefined, []];
      const [bm, bp] = await builddRun(registry, dir, run);
      const [dm2, dp2] = dockerFirst ? [dm!, dp] : await dockerRun(registry, dir, run);
      results.push({ docker: dm2, buildd: bm });
      problems.push(...dp2.map((p) => `run ${run} docker ${p}`), ...bp.map((p) => `run ${run} buildd ${p}`));
      report(
        `run ${run}: 5-step Dockerfile, ${MB} MB layer, inline cache (load ${loadavg()[0]!.toFixed(1)})`,
        results.at(-1)!,
      );
    } finally {
      // Only what this run made: its two tags, then the build cache (prune cannot tell whose).
      await exec(DOCKER, ["rmi", ...toClean]);
      await exec(DOCKER, ["builder", "prune", "-af"]);
      await registry.stop();
    }
  }
  if (RUNS > 1) {
    const med = {} as RunResult;
    for (const t of TOOLS) {
      med[t] = {} as Record<Phase, Measure>;
      for (const p of PHASES) {
        med[t][p] = {
          seconds: median(results.map((r) => r[t][p].seconds)),
          traffic: results[0]![t][p].traffic,
        };
      }
    }
    report(`medians of ${RUNS} runs (registry bytes of run 1)`, med);
  }
  console.log(
    problems.length ? `NOT ALL CACHED ON B:\n  ${problems.join("\n  ")}` : "B: every step cached, both tools",
  );
} finally {
  await rm(ctx, { recursive: true, force: true });
}

// Benchmark (not a test): pulling and unpacking a multi-layer image (200 MB in 4,000 files over
// 4 layers by default) from a loopback registry, as a build does it (the worker's docker-image
// source: resolve, fetch the blobs into an empty content store, unpack them into snapshots),
// against `skopeo copy docker://… oci:DIR` followed by `umoci unpack`.
//
//   node bench/pull.ts [--mb 200] [--layers 4] [--files 4000] [--runs 3]
//
// Every run starts cold: a fresh worker state dir for buildd, a fresh layout and bundle for the
// reference tools. File contents are hex text, which gzip halves, so decompression is real work.
// buildd fetches and unpacks layer by layer; its "fetch" figure is the sum of the per-layer
// download times from the build's progress, "unpack" the rest of the build (resolve included).
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { promisify } from "node:util";
import { parseArgs } from "node:util";
import { image } from "../llb/index.ts";
import { buildImage, hostPlatform } from "../test/oci-image.ts";
import { buildLayer, type Layer, type LayerEntry } from "../test/oci-layer.ts";
import { pushImage } from "../test/oci-push.ts";
import { startRegistry } from "../test/registry.ts";
import { openTestWorker } from "../worker/testing.ts";
import { median, seededRandom } from "./common.ts";

const run = promisify(execFile);

const { values } = parseArgs({
  options: {
    mb: { type: "string", default: "200" },
    layers: { type: "string", default: "4" },
    files: { type: "string", default: "4000" },
    runs: { type: "string", default: "3" },
  },
});
const MB = Number(values.mb);
const LAYERS = Number(values.layers);
const FILES = Number(values.files);
const RUNS = Number(values.runs);

/** The entries of layer `n`: FILES/LAYERS files of random size (mean MB*2^20/FILES) in 100-file dirs. */
function layerEntries(n: number, pool: Buffer, next: () => number): LayerEntry[] {
  const perLayer = Math.ceil(FILES / LAYERS);
  const avg = (MB * 1024 * 1024) / FILES;
  const entries: LayerEntry[] = [{ path: `layer${n}`, dir: true }];
  for (let i = 0; i < perLayer; i++) {
    if (i % 100 === 0) entries.push({ path: `layer${n}/d${i / 100}`, dir: true });
    const size = Math.floor(next() * avg * 2);
    const off = Math.floor(next() * 4096);
    entries.push({
      path: `layer${n}/d${Math.floor(i / 100)}/f${i}.txt`,
      content: pool.subarray(off, off + size),
    });
  }
  return entries;
}

async function makeLayers(): Promise<Layer[]> {
  const avg = (MB * 1024 * 1024) / FILES;
  const pool = Buffer.from(randomBytes(Math.ceil(avg) + 2048).toString("hex"));
  const next = seededRandom();
  const layers: Layer[] = [];
  for (let n = 0; n < LAYERS; n++) layers.push(await buildLayer(layerEntries(n, pool, next)));
  return layers;
}

/** `host` is the registry to pull from, "127.0.0.1:PORT". */
async function pullWithBuildd(host: string, ref: string) {
  const afters: (() => Promise<unknown>)[] = [];
  const t = { after: (fn: () => Promise<unknown>) => afters.push(fn) } as unknown as TestContext;
  const w = await openTestWorker(t);
  try {
    const t0 = performance.now();
    const result = await w.build(image(`${host}/${ref}`));
    const total = performance.now() - t0;
    // One status per layer download; its last update carries started and completed.
    const downloads = new Map<string, { id: string; started?: number; completed?: number }>();
    for (const s of result.progress.statuses) if (s.total > 0) downloads.set(s.id, s);
    let fetch = 0;
    for (const s of downloads.values()) {
      if (s.started === undefined || s.completed === undefined)
        throw new Error(`the download of ${s.id} did not complete`);
      fetch += s.completed - s.started;
    }
    if (downloads.size !== LAYERS)
      throw new Error(`expected ${LAYERS} layer downloads, saw ${downloads.size}`);
    return { total, fetch, unpack: total - fetch };
  } finally {
    for (const f of afters.reverse()) await f();
  }
}

async function pullWithSkopeoUmoci(host: string, ref: string) {
  const dir = await mkdtemp(join(tmpdir(), "buildd-bench-pull-ref-"));
  try {
    const layout = join(dir, "layout");
    const t0 = performance.now();
    await run("skopeo", [
      "copy",
      "--quiet",
      "--insecure-policy",
      "--src-tls-verify=false",
      `docker://${host}/${ref}`,
      `oci:${layout}:bench`,
    ]);
    const t1 = performance.now();
    await run("umoci", ["unpack", "--image", `${layout}:bench`, join(dir, "bundle")]);
    const t2 = performance.now();
    return { total: t2 - t0, fetch: t1 - t0, unpack: t2 - t1 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const sec = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

const registry = await startRegistry();
try {
  console.log(`building ${LAYERS} layers, ${FILES} files, ~${MB} MB`);
  const layers = await makeLayers();
  const tarMB = layers.reduce((a, l) => a + l.size, 0) / 1e6;
  const img = buildImage({ layers, platform: hostPlatform() });
  await pushImage(registry.url, "bench/pull:latest", img);
  console.log(`pushed: ${LAYERS} gzip layers, ${tarMB.toFixed(0)} MB compressed`);
  // Both tools pull from docker-registry itself rather than the helper's counting proxy, which
  // runs in this process and would take CPU from buildd's pull but not from skopeo's.
  const config = await readFile(join(registry.dir, "config.yml"), "utf8");
  const host = /^\s*addr: (127\.0\.0\.1:\d+)$/m.exec(config)?.[1] ?? registry.host;
  console.log(`pulling from ${host}${host === registry.host ? " (the proxy: no addr in config.yml)" : ""}`);
  const sync = () => run("sync");
  const ours: { total: number; fetch: number; unpack: number }[] = [];
  const theirs: { total: number; fetch: number; unpack: number }[] = [];
  for (let i = 0; i < RUNS; i++) {
    await sync();
    const r = await pullWithSkopeoUmoci(host, "bench/pull:latest");
    theirs.push(r);
    await sync();
    const b = await pullWithBuildd(host, "bench/pull:latest");
    ours.push(b);
    console.log(
      `  run ${i + 1}: skopeo+umoci ${sec(r.total)} (copy ${sec(r.fetch)}, unpack ${sec(r.unpack)}); ` +
        `buildd ${sec(b.total)} (fetch ${sec(b.fetch)}, unpack+rest ${sec(b.unpack)})`,
    );
  }
  const m = (xs: { total: number; fetch: number; unpack: number }[]) => ({
    total: median(xs.map((x) => x.total)),
    fetch: median(xs.map((x) => x.fetch)),
    unpack: median(xs.map((x) => x.unpack)),
  });
  const a = m(theirs);
  const b = m(ours);
  console.log(
    `medians of ${RUNS}: skopeo+umoci ${sec(a.total)} (copy ${sec(a.fetch)}, unpack ${sec(a.unpack)}); ` +
      `buildd ${sec(b.total)} (fetch ${sec(b.fetch)}, unpack+rest ${sec(b.unpack)})`,
  );
  console.log(
    `ratio buildd/(skopeo+umoci) ${(b.total / a.total).toFixed(2)}; ` +
      `fetch/copy ${(b.fetch / a.fetch).toFixed(2)}, unpack ${(b.unpack / a.unpack).toFixed(2)}`,
  );
} finally {
  await registry.stop();
}

// Benchmark (not a test): exporting one 200 MB / 5,000-file layer with gzip, zstd and no
// compression, against `tar c | gzip` and `tar c | zstd` on the same tree; and pushing a
// 3-layer image to a registry that already has 2 of the layers (bytes sent).
//
//   node bench/export-layer.ts [--mb 200] [--files 5000] [--runs 3]
//
// Our numbers include what the exporter really does: the tar stream, its sha256 (diff id),
// compression, and the sha256 of the blob. The reference pipelines only compress.
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { type Compression, compressStream } from "../archive/compress.ts";
import { sharedCompressPool } from "../archive/compress-pool.ts";
import { treeTar } from "../archive/write.ts";
import { ContentStore } from "../content/store.ts";
import type { BuiltImage } from "../exporter/image-build.ts";
import { pushImage } from "../exporter/push.ts";
import { type Descriptor, MediaTypes, RegistryClient } from "../source/registry/index.ts";
import { startRegistry } from "../test/registry.ts";
import { VertexLog } from "../worker/vertex-log.ts";

const { values } = parseArgs({
  options: {
    mb: { type: "string", default: "200" },
    files: { type: "string", default: "5000" },
    runs: { type: "string", default: "3" },
  },
});
const TOTAL = Number(values.mb) * 1024 * 1024;
const FILES = Number(values.files);
const RUNS = Number(values.runs);

/** A tree like a real layer: mostly small files, a few big ones; text-like and binary-like content. */
async function makeTree(dir: string): Promise<void> {
  let seed = 42;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const weights = Array.from({ length: FILES }, () => Math.exp(rand() * Math.log(4096)));
  const sum = weights.reduce((a, b) => a + b, 0);
  const words = Array.from({ length: 2000 }, (_, i) => `sym_${(i * 2654435761) % 1000003}`);
  for (let i = 0; i < FILES; i++) {
    const size = Math.max(1, Math.round((weights[i]! / sum) * TOTAL));
    const sub = join(dir, `d${i % 50}`, `e${i % 7}`);
    await mkdir(sub, { recursive: true });
    let content: Buffer;
    if (i % 3 === 0) {
      content = randomBytes(size); // binaries, compressed assets
    } else {
      const parts: string[] = [];
      let n = 0;
      while (n < size) {
        const w = words[Math.floor(rand() * words.length)]!;
        parts.push(w);
        n += w.length + 1;
      }
      content = Buffer.from(parts.join(i % 2 ? "\n" : " ")).subarray(0, size);
    }
    await writeFile(join(sub, `f${i}.dat`), content);
  }
}

async function time<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, value };
}

async function best<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  let b: { ms: number; value: T } | undefined;
  for (let i = 0; i < RUNS; i++) {
    const r = await time(fn);
    if (!b || r.ms < b.ms) b = r;
  }
  return b!;
}

/** What the exporter does for one layer, minus the disk write of the blob. */
async function ours(dir: string, compression: Compression): Promise<{ tar: number; blob: number }> {
  const diffID = createHash("sha256");
  const blob = createHash("sha256");
  let tar = 0;
  let size = 0;
  const counted = (async function* () {
    for await (const c of treeTar(dir)) {
      diffID.update(c);
      tar += c.length;
      yield c;
    }
  })();
  for await (const c of compressStream(counted, { compression })) {
    blob.update(c);
    size += c.length;
  }
  diffID.digest();
  blob.digest();
  return { tar, blob: size };
}

function shell(script: string): Promise<number> {
  return new Promise((resolve, reject) =>
    execFile("bash", ["-o", "pipefail", "-c", script], { maxBuffer: 1 << 20 }, (err, stdout) =>
      err ? reject(err) : resolve(Number(stdout.trim())),
    ),
  );
}

const mbps = (bytes: number, ms: number) => `${((bytes / 1024 / 1024) * 1000) / ms}`.slice(0, 6);

async function layerBench(dir: string): Promise<void> {
  console.log(
    `\n## Layer export: ${values.mb} MB in ${FILES} files, ${availableParallelism()} cores, best of ${RUNS}\n`,
  );
  console.log("| pipeline | time (ms) | output (MB) | input MB/s |");
  console.log("| --- | ---: | ---: | ---: |");
  const rows: [string, number, number][] = [];
  const tarOnly = await best(() => shell(`tar -C ${dir} -cf - . | wc -c`));
  const row = (name: string, ms: number, out: number, input: number) => {
    rows.push([name, ms, out]);
    console.log(`| ${name} | ${ms.toFixed(0)} | ${(out / 1024 / 1024).toFixed(1)} | ${mbps(input, ms)} |`);
  };
  row("tar c > /dev/null (reference: reading only)", tarOnly.ms, tarOnly.value, tarOnly.value);
  for (const c of ["uncompressed", "gzip", "zstd"] as const) {
    const r = await best(() => ours(dir, c));
    row(
      `buildd ${c} (tar + 2×sha256${c === "uncompressed" ? "" : ` + parallel ${c}`})`,
      r.ms,
      r.value.blob,
      r.value.tar,
    );
  }
  const gz = await best(() => shell(`tar -C ${dir} -cf - . | gzip -6 | wc -c`));
  row("tar c | gzip -6", gz.ms, gz.value, tarOnly.value);
  const zs = await best(() => shell(`tar -C ${dir} -cf - . | zstd -3 -T1 -q | wc -c`));
  row("tar c | zstd -3 (one thread)", zs.ms, zs.value, tarOnly.value);
  const zsAll = await best(() => shell(`tar -C ${dir} -cf - . | zstd -3 -T0 -q | wc -c`));
  row("tar c | zstd -3 -T0 (all cores)", zsAll.ms, zsAll.value, tarOnly.value);
}

async function pushBench(): Promise<void> {
  const registry = await startRegistry();
  const dir = await mkdtemp(join(tmpdir(), "buildd-bench-push-"));
  const db = new DatabaseSync(join(dir, "db"));
  const content = await ContentStore.open({ root: join(dir, "content"), db });
  const client = new RegistryClient({ store: content });
  try {
    const layer = async (mb: number): Promise<Descriptor> => {
      const data = randomBytes(mb * 1024 * 1024);
      const parts: Buffer[] = [];
      for await (const c of compressStream(
        (async function* () {
          yield data;
        })(),
        { compression: "gzip" },
      ))
        parts.push(c);
      const c = await content.writeBlob(Buffer.concat(parts));
      return { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: c.digest, size: c.size };
    };
    const image = async (layers: Descriptor[], tag: string): Promise<BuiltImage> => {
      const configBytes = Buffer.from(
        JSON.stringify({ architecture: "amd64", os: "linux", tag, rootfs: {} }),
      );
      const cc = await content.writeBlob(configBytes);
      const config = { mediaType: MediaTypes.ociConfig, digest: cc.digest, size: cc.size };
      const mb = Buffer.from(
        JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociManifest, config, layers }),
      );
      const mc = await content.writeBlob(mb);
      const root = { mediaType: MediaTypes.ociManifest, digest: mc.digest, size: mc.size };
      return {
        root,
        manifests: [{ descriptor: root, config, layers, platform: { os: "linux", architecture: "amd64" } }],
        blobs: [...layers, config, root],
      };
    };
    const [a, b, c] = [await layer(20), await layer(20), await layer(20)];
    const log = new VertexLog("bench", new Set());
    const signal = AbortSignal.timeout(600_000);
    await pushImage(client, content, `${registry.host}/bench/app:base`, await image([a!, b!], "base"), {
      byDigest: false,
      log,
      signal,
    });
    registry.resetStats();
    const full = await image([a!, b!, c!], "full");
    const t = await time(() =>
      pushImage(client, content, `${registry.host}/bench/app:full`, full, { byDigest: false, log, signal }),
    );
    const bytesIn = Object.values(registry.stats()).reduce((s, p) => s + p.bytesIn, 0);
    const total = full.blobs.reduce((s, d) => s + d.size, 0);
    console.log("\n## Push of a 3-layer image whose first 2 layers the registry has\n");
    console.log(`- image: ${(total / 1024 / 1024).toFixed(1)} MB in ${full.blobs.length} blobs`);
    console.log(
      `- sent: ${(bytesIn / 1024 / 1024).toFixed(1)} MB (uploaded ${t.value.uploaded.length} blobs, skipped ${t.value.existing.length} the registry had), ${t.ms.toFixed(0)} ms`,
    );
  } finally {
    client.close();
    db.close();
    await registry.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

const tree = await mkdtemp(join(tmpdir(), "buildd-bench-layer-"));
try {
  await makeTree(tree);
  await layerBench(tree);
  await pushBench();
} finally {
  await rm(tree, { recursive: true, force: true });
  await sharedCompressPool().close();
}

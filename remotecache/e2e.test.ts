// Cache export and import between two real daemons: A builds and exports, B starts empty and
// imports. Steps fetch from a counting http server (a side effect outside the container), so
// "no RUN executed" is checked by requests, not by timing or output alone.
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { copy, image, local, type State } from "../llb/index.ts";
import { pushBusyboxImage } from "../test/busybox-image.ts";
import { startTestDaemon } from "../test/daemon.ts";
import { type HttpServer, startHttpServer } from "../test/http.ts";
import { type Registry, startRegistry } from "../test/registry.ts";

let registry: Registry;
let http: HttpServer;
let busybox = "";
const stop = new AbortController();
before(async () => {
  registry = await startRegistry({ signal: stop.signal });
  await pushBusyboxImage(registry);
  busybox = `${registry.host}/busybox:latest`;
  const routes: Record<string, { body: string }> = {};
  for (let i = 0; i < 20; i++) routes[`/s${i}`] = { body: `step ${i}\n` };
  http = await startHttpServer(routes, { signal: stop.signal });
});
after(async () => {
  stop.abort();
  await http?.stop();
});

const llb = (s: State) => s.marshal().bytes;
/** A RUN whose execution is visible outside: it fetches `/sN` from the test http server. */
const fetchStep = (base: State, n: number, more = "") =>
  base.run({ shell: `wget -q -O /s${n} ${http.url}/s${n}${more}` }).root();
const hits = (n: number) => http.stats()[`/s${n}`]?.requests ?? 0;
/** Layer blob GETs by the registry's blob path. */
function blobGets(repo: string): string[] {
  return Object.entries(registry.stats())
    .filter(([p, s]) => p.startsWith(`/v2/${repo}/blobs/`) && (s.methods.GET ?? 0) > 0)
    .map(([p]) => p.slice(`/v2/${repo}/blobs/`.length));
}

/** Three linear steps on busybox. */
function linear(tag: number): State {
  const s1 = fetchStep(image(busybox), tag);
  const s2 = fetchStep(s1, tag + 1);
  return fetchStep(s2, tag + 2, " && cat /s[0-9]* > /all");
}

/** A builder stage whose file the final stage copies: min leaves the builder out, max keeps it. */
function twoStage(tag: number): { builder: State; final: State } {
  const builder = fetchStep(image(busybox), tag, ` && echo built-${tag} > /out`);
  const final = fetchStep(image(busybox).file(copy(builder, "/out", "/out")), tag + 1);
  return { builder, final };
}

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "buildd-cache-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Every exec step of a plain progress log ended CACHED. */
function assertAllCached(stderr: string): void {
  const steps = [...stderr.matchAll(/^#(\d+) exec /gm)].map((m) => m[1]!);
  assert.ok(steps.length > 0, stderr);
  for (const n of steps)
    assert.match(stderr, new RegExp(`^#${n} CACHED$`, "m"), `step #${n} is cached\n${stderr}`);
}

describe("remote cache between two daemons", () => {
  test("registry, mode=max: B with an empty state rebuilds with every step cached, lazily", async (t) => {
    const a = await startTestDaemon(t);
    const def = llb(linear(0));
    const ref = `${registry.host}/cache/linear:max`;
    const built = await a.buildctl(
      ["build", "--progress=plain", "--export-cache", `type=registry,ref=${ref},mode=max`],
      { input: def },
    );
    assert.equal(built.code, 0, built.stderr);
    assert.match(built.stderr, /exporting cache to registry/);
    assert.deepEqual([hits(0), hits(1), hits(2)], [1, 1, 1]);

    const b = await startTestDaemon(t);
    registry.resetStats();
    const rebuilt = await b.buildctl(
      ["build", "--progress=plain", "--import-cache", `type=registry,ref=${ref}`],
      { input: def },
    );
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    assert.deepEqual([hits(0), hits(1), hits(2)], [1, 1, 1], "no step ran on B");
    assertAllCached(rebuilt.stderr);
    // Only the final step's chain was fetched: busybox's layer and the three step layers.
    const fetched = blobGets("cache/linear");
    assert.equal(fetched.length, 1 + 4, `config + 4 layers, got ${fetched.join(" ")}`);

    // No change on B: its own records answer; the cache is not even read.
    registry.resetStats();
    const again = await b.buildctl(
      ["build", "--progress=plain", "--import-cache", `type=registry,ref=${ref}`],
      { input: def },
    );
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(blobGets("cache/linear"), []);
    assert.equal(registry.stats()["/v2/cache/linear/manifests/max"], undefined);
  });

  test("local dir: changing one source file re-runs only the steps after it on B", async (t) => {
    const dir = await tempDir(t);
    const ctxA = join(dir, "ctx-a");
    const ctxB = join(dir, "ctx-b");
    const cache = join(dir, "cache");
    for (const c of [ctxA, ctxB]) {
      await rm(c, { recursive: true, force: true });
      await import("node:fs/promises").then((fs) => fs.mkdir(c));
    }
    await writeFile(join(ctxA, "a.txt"), "one\n");
    await writeFile(join(ctxB, "a.txt"), "two\n");
    const s3 = fetchStep(image(busybox), 3);
    const withFile = s3.file(copy(local("context"), "/a.txt", "/a.txt"));
    const def = llb(fetchStep(withFile, 4, " && cat /a.txt"));
    const a = await startTestDaemon(t);
    const built = await a.buildctl(
      [
        "build",
        "--progress=plain",
        "--local",
        `context=${ctxA}`,
        "--export-cache",
        `type=local,dest=${cache},mode=max`,
      ],
      { input: def },
    );
    assert.equal(built.code, 0, built.stderr);
    assert.match(await readFile(join(cache, "index.json"), "utf8"), /org.opencontainers.image.ref.name/);
    assert.deepEqual([hits(3), hits(4)], [1, 1]);

    const b = await startTestDaemon(t);
    const same = await b.buildctl(
      [
        "build",
        "--progress=plain",
        "--local",
        `context=${ctxA}`,
        "--import-cache",
        `type=local,src=${cache}`,
      ],
      { input: def },
    );
    assert.equal(same.code, 0, same.stderr);
    assert.deepEqual([hits(3), hits(4)], [1, 1], "nothing ran on B");
    assertAllCached(same.stderr);

    const b2 = await startTestDaemon(t);
    const changed = await b2.buildctl(
      [
        "build",
        "--progress=plain",
        "--local",
        `context=${ctxB}`,
        "--import-cache",
        `type=local,src=${cache}`,
      ],
      { input: def },
    );
    assert.equal(changed.code, 0, changed.stderr);
    assert.deepEqual(
      [hits(3), hits(4)],
      [1, 2],
      "the step before the copy came from the cache, the one after ran",
    );
  });

  test("mode=min keeps only the result's chain, mode=max every step", async (t) => {
    const dir = await tempDir(t);
    const { builder, final } = twoStage(6);
    const a = await startTestDaemon(t);
    for (const mode of ["min", "max"]) {
      const r = await a.buildctl(
        ["build", "--progress=quiet", "--export-cache", `type=local,dest=${join(dir, mode)},mode=${mode}`],
        { input: llb(final) },
      );
      assert.equal(r.code, 0, r.stderr);
    }
    assert.deepEqual([hits(6), hits(7)], [1, 1]);
    const configOf = async (d: string) => {
      const index = JSON.parse(await readFile(join(d, "index.json"), "utf8"));
      const root = JSON.parse(
        await readFile(join(d, "blobs/sha256", index.manifests[0].digest.slice(7)), "utf8"),
      );
      const cfg = root.manifests.find((m: { mediaType: string }) => /cacheconfig/.test(m.mediaType));
      return JSON.parse(await readFile(join(d, "blobs/sha256", cfg.digest.slice(7)), "utf8"));
    };
    const min = await configOf(join(dir, "min"));
    const max = await configOf(join(dir, "max"));
    assert.ok(max.records.length > min.records.length, `${max.records.length} > ${min.records.length}`);
    assert.ok(max.layers.length > min.layers.length);
    const minBlobs = new Set(min.layers.map((l: { blob: string }) => l.blob));
    const onlyMax = max.layers.filter((l: { blob: string }) => !minBlobs.has(l.blob));
    assert.equal(onlyMax.length, 1, "the builder's layer is only in max");
    const files = await readdir(join(dir, "min/blobs/sha256"));
    assert.ok(!files.includes(onlyMax[0].blob.slice(7)));

    // B: the final image is cached either way; the builder stage alone only with max.
    for (const [mode, builderRuns] of [
      ["min", 1],
      ["max", 0],
    ] as const) {
      const b = await startTestDaemon(t);
      const before6 = hits(6);
      const f = await b.buildctl(
        ["build", "--progress=plain", "--import-cache", `type=local,src=${join(dir, mode)}`],
        { input: llb(final) },
      );
      assert.equal(f.code, 0, f.stderr);
      assert.equal(hits(7), 1, `final step cached from ${mode}`);
      const bb = await b.buildctl(
        ["build", "--progress=plain", "--import-cache", `type=local,src=${join(dir, mode)}`],
        { input: llb(builder) },
      );
      assert.equal(bb.code, 0, bb.stderr);
      assert.equal(hits(6) - before6, builderRuns, `builder from ${mode}`);
    }
  });

  test("inline cache: the pushed image is the cache source", async (t) => {
    const def = llb(linear(8));
    const name = `${registry.host}/app/inline:1`;
    const a = await startTestDaemon(t);
    const built = await a.buildctl(
      [
        "build",
        "--progress=plain",
        "--output",
        `type=image,name=${name},push=true`,
        "--export-cache",
        "type=inline",
      ],
      { input: def },
    );
    assert.equal(built.code, 0, built.stderr);
    const b = await startTestDaemon(t);
    registry.resetStats();
    const rebuilt = await b.buildctl(
      ["build", "--progress=plain", "--import-cache", `type=registry,ref=${name}`],
      { input: def },
    );
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    assert.deepEqual([hits(8), hits(9), hits(10)], [1, 1, 1], "no step ran on B");
    assertAllCached(rebuilt.stderr);
    assert.equal(blobGets("app/inline").length, 1 + 4, "the image config and the layers of the chain");
  });

  test("registry formats (image manifest, Docker media types), several imports, ignore-error", async (t) => {
    const def = llb(linear(14));
    const manifestRef = `${registry.host}/cache/formats:manifest`;
    const dockerRef = `${registry.host}/cache/formats:docker`;
    const a = await startTestDaemon(t);
    const built = await a.buildctl(
      [
        "build",
        "--progress=plain",
        "--export-cache",
        `type=registry,ref=${manifestRef},image-manifest=true,mode=max`,
        "--export-cache",
        `type=registry,ref=${dockerRef},oci-mediatypes=false`,
        "--export-cache",
        "type=registry,ref=127.0.0.1:1/unreachable:x,ignore-error=true",
      ],
      { input: def },
    );
    assert.equal(built.code, 0, built.stderr);
    assert.match(built.stderr, /ignored: ignore-error=true/);
    const manifest = JSON.parse(
      (await fetch(`${registry.url}/v2/cache/formats/manifests/manifest`, {
        headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
      }).then((r) => r.text())) || "{}",
    );
    assert.equal(manifest.config.mediaType, "application/vnd.buildkit.cacheconfig.v0");
    assert.equal(manifest.layers.length, 4);

    for (const ref of [manifestRef, dockerRef]) {
      const b = await startTestDaemon(t);
      const rebuilt = await b.buildctl(
        [
          "build",
          "--progress=plain",
          "--import-cache",
          `type=registry,ref=${registry.host}/cache/none:missing`,
          "--import-cache",
          `type=registry,ref=${ref}`,
        ],
        { input: def },
      );
      assert.equal(rebuilt.code, 0, rebuilt.stderr);
      assert.match(rebuilt.stderr, /importing cache: .*cache\/none/);
      assertAllCached(rebuilt.stderr);
    }
    assert.deepEqual([hits(14), hits(15), hits(16)], [1, 1, 1], "nothing ran on the B daemons");

    const failed = await a.buildctl(
      ["build", "--progress=plain", "--export-cache", "type=registry,ref=127.0.0.1:1/unreachable:x"],
      { input: def },
    );
    assert.equal(failed.code, 1);
    assert.match(
      failed.stderr,
      /exporting cache to registry: pushing the cache to 127.0.0.1:1\/unreachable:x/,
    );
  });

  test("corrupt and missing blobs are warnings, and the step runs", async (t) => {
    const dir = await tempDir(t);
    const def = llb(linear(11));
    const a = await startTestDaemon(t);
    const cache = join(dir, "cache");
    const r = await a.buildctl(
      ["build", "--progress=quiet", "--export-cache", `type=local,dest=${cache},mode=max`],
      {
        input: def,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    // The top layer of the final step: the last layer in the config.
    const index = JSON.parse(await readFile(join(cache, "index.json"), "utf8"));
    const root = JSON.parse(
      await readFile(join(cache, "blobs/sha256", index.manifests[0].digest.slice(7)), "utf8"),
    );
    const cfgDesc = root.manifests.find((m: { mediaType: string }) => /cacheconfig/.test(m.mediaType));
    const cfg = JSON.parse(await readFile(join(cache, "blobs/sha256", cfgDesc.digest.slice(7)), "utf8"));
    const top = cfg.layers[cfg.layers.length - 1].blob.slice(7);
    const blob = join(cache, "blobs/sha256", top);
    const good = await readFile(blob);

    await writeFile(blob, Buffer.concat([good.subarray(0, good.length - 8), Buffer.alloc(8)]));
    const b = await startTestDaemon(t);
    const corrupt = await b.buildctl(
      ["build", "--progress=plain", "--import-cache", `type=local,src=${cache}`],
      { input: def },
    );
    assert.equal(corrupt.code, 0, corrupt.stderr);
    assert.match(corrupt.stderr, /could not be used/);
    assert.deepEqual(
      [hits(11), hits(12), hits(13)],
      [1, 1, 2],
      "the last step ran, the one before it came from the cache",
    );

    await rm(blob);
    const b2 = await startTestDaemon(t);
    const missing = await b2.buildctl(
      ["build", "--progress=plain", "--import-cache", `type=local,src=${cache}`],
      { input: def },
    );
    assert.equal(missing.code, 0, missing.stderr);
    assert.match(missing.stderr, /missing/);
    assert.deepEqual([hits(11), hits(12), hits(13)], [1, 1, 3]);

    const bad = await b2.buildctl(["build", "--import-cache", "type=local,src=relative/dir"], { input: def });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /give an absolute path/);
    const unknown = await b2.buildctl(["build", "--export-cache", "type=s3,bucket=x"], { input: def });
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown cache type/);
  });
});

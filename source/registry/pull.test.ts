import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { type TestContext, test } from "node:test";
import { promisify } from "node:util";
import { applyLayerBlob } from "../../archive/apply.ts";
import { tempContentStore } from "../../content/testing.ts";
import { busyboxImage, pushBusyboxImage } from "../../test/busybox-image.ts";
import {
  buildImage,
  buildIndex,
  buildLayer,
  corruptedLayer,
  type Image,
  lyingManifest,
  MEDIA_TYPES,
  pushImage,
  truncatedLayer,
} from "../../test/oci.ts";
import { freePort, tempDir } from "../../test/process.ts";
import { startRegistry } from "../../test/registry.ts";
import type { Digest } from "../../util/digest.ts";
import { setLogSink } from "../../util/log.ts";
import { type RegistryClientOptions, RegistryClient } from "./client.ts";
import { isRegistryError } from "./errors.ts";
import { startFakeRegistry } from "./testing.ts";

function client(t: TestContext, opts: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient({ retry: { baseDelayMs: 5 }, ...opts });
  t.after(() => c.close());
  return c;
}

async function rejectsWith(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isRegistryError(e), `not a RegistryError: ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    return true;
  });
}

test("resolve by tag and by digest; a digest-pinned resolve is served from the store", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  const digest = await pushBusyboxImage(registry);
  const image = await busyboxImage();
  const { store } = await tempContentStore(t);
  const c = client(t, { store });

  const byTag = await c.resolve(`${registry.host}/busybox:latest`);
  assert.equal(byTag.ref, `${registry.host}/busybox:latest`);
  assert.equal(byTag.digest, digest);
  assert.equal(byTag.rootDigest, digest);
  assert.equal(byTag.indexDigest, undefined);
  assert.equal(byTag.mediaType, MEDIA_TYPES.oci.manifest);
  assert.deepEqual(byTag.config.config?.Cmd, ["sh"]);
  assert.deepEqual(
    byTag.layers.map((l) => l.digest),
    image.layers.map((l) => l.digest),
  );
  assert.ok(await store.has(digest), "the manifest is cached");
  assert.ok(await store.has(image.configDescriptor.digest), "the config is cached");

  registry.resetStats();
  const byDigest = await c.resolve(`${registry.host}/busybox@${digest}`);
  assert.equal(byDigest.digest, digest);
  assert.deepEqual(byDigest.config, byTag.config);
  assert.deepEqual(registry.stats(), {}, "no request for a digest the store has");
});

test("Docker media types: a manifest list and schema 2 manifests", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  const layer = await buildLayer([{ path: "hello", content: "docker\n" }]);
  const amd = buildImage({ layers: [layer], mediaTypes: "docker", config: { Env: ["A=1"] } });
  const arm = buildImage({
    layers: [layer],
    mediaTypes: "docker",
    platform: { os: "linux", architecture: "arm64", variant: "v8" },
    config: { Env: ["A=2"] },
  });
  const list = buildIndex([amd, arm], { mediaTypes: "docker" });
  await pushImage(registry.url, "docker-app:1", list);
  const c = client(t);
  const r = await c.resolve(`${registry.host}/docker-app:1`, { platform: "linux/arm64" });
  assert.equal(r.mediaType, MEDIA_TYPES.docker.manifest);
  assert.equal(r.digest, arm.digest);
  assert.equal(r.indexDigest, list.digest);
  assert.equal(r.rootDigest, list.digest);
  assert.deepEqual(r.config.config?.Env, ["A=2"]);
  assert.equal(r.layers[0]!.mediaType, "application/vnd.docker.image.rootfs.diff.tar.gzip");
});

test("platform selection in an OCI index: exact match, default variants, older arm variants, no match", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  const layer = await buildLayer([{ path: "x", content: "x" }]);
  const img = (architecture: string, variant?: string) =>
    buildImage({
      layers: [layer],
      platform: { os: "linux", architecture, ...(variant ? { variant } : {}) },
      config: { Env: [`ARCH=${architecture}${variant ?? ""}`] },
    });
  const amd64 = img("amd64");
  const arm64 = img("arm64");
  const armv6 = img("arm", "v6");
  const attestation: Image = {
    ...img("unknown"),
    descriptor: {
      ...img("unknown").descriptor,
      platform: { os: "unknown", architecture: "unknown" },
      annotations: { "vnd.docker.reference.type": "attestation-manifest" },
    },
  };
  const index = buildIndex([attestation, amd64, arm64, armv6]);
  await pushImage(registry.url, "multi:1", index);
  const c = client(t);
  const ref = `${registry.host}/multi:1`;
  assert.equal((await c.resolve(ref, { platform: "linux/amd64" })).digest, amd64.digest);
  // arm64 without a variant is v8, which is what linux/arm64/v8 asks for.
  assert.equal((await c.resolve(ref, { platform: "linux/arm64/v8" })).digest, arm64.digest);
  assert.equal(
    (await c.resolve(ref, { platform: { os: "linux", architecture: "aarch64" } })).digest,
    arm64.digest,
  );
  // An arm/v7 machine runs v6 when there is no v7.
  const arm = await c.resolve(ref, { platform: "linux/arm/v7" });
  assert.equal(arm.digest, armv6.digest);
  assert.deepEqual(arm.platform, { os: "linux", architecture: "arm", variant: "v6" });
  await rejectsWith(
    c.resolve(ref, { platform: "linux/s390x" }),
    "no-match",
    new RegExp(
      `no image for linux/s390x in the index ${index.digest}; it has linux/amd64, linux/arm64, linux/arm/v6$`,
    ),
  );
});

test("token auth: anonymous is refused with the image named, credentials from the callback work", async (t) => {
  const creds = { username: "alice", password: "s3cret" };
  const registry = await startRegistry({ auth: { ...creds, mode: "token" }, signal: t.signal });
  await pushBusyboxImage(registry, "app");
  const ref = `${registry.host}/app:latest`;

  await rejectsWith(
    client(t).resolve(ref),
    "unauthorized",
    new RegExp(
      `^resolving ${registry.host}/app:latest: unauthorized: authentication required for ${registry.host}/app \\(no credentials for ${registry.host}`,
    ),
  );
  await rejectsWith(
    client(t, { credentials: async () => ({ username: "alice", password: "wrong" }) }).resolve(ref),
    "unauthorized",
    /token server .* refused the credentials/,
  );

  const asked: string[] = [];
  const c = client(t, {
    credentials: async (host) => {
      asked.push(host);
      return creds;
    },
  });
  const image = await c.resolve(ref);
  assert.equal(image.digest, (await busyboxImage()).digest);
  assert.deepEqual([...new Set(asked)], [registry.host]);
  // The token is cached per scope: another resolve needs no new one.
  registry.resetStats();
  await c.resolve(ref);
  assert.equal(registry.stats()["/token"], undefined);
  // Another operation's credentials (another build's session) never reuse that token.
  await rejectsWith(c.resolve(ref, { credentials: async () => undefined }), "unauthorized", /no credentials/);
});

test("token auth with anonymous pull: public images need no login", async (t) => {
  const registry = await startRegistry({
    auth: { username: "u", password: "p", mode: "token", anonymousPull: true },
    signal: t.signal,
  });
  await pushBusyboxImage(registry, "public");
  const r = await client(t).resolve(`${registry.host}/public`);
  assert.equal(r.digest, (await busyboxImage()).digest);
});

test("basic auth", async (t) => {
  const creds = { username: "bob", password: "pw" };
  const registry = await startRegistry({ auth: { ...creds, mode: "basic" }, signal: t.signal });
  await pushBusyboxImage(registry, "basic");
  const ref = `${registry.host}/basic:latest`;
  await rejectsWith(
    client(t).resolve(ref),
    "unauthorized",
    /authentication required for 127\.0\.0\.1:\d+\/basic/,
  );
  const r = await client(t, { credentials: async () => creds }).resolve(ref);
  assert.equal(r.digest, (await busyboxImage()).digest);
});

test("an unreachable registry fails at once with a clear error", async (t) => {
  const port = await freePort();
  await rejectsWith(
    client(t).resolve(`127.0.0.1:${port}/app:1`),
    "unreachable",
    new RegExp(
      `^resolving 127\\.0\\.0\\.1:${port}/app:1: cannot reach the registry 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`,
    ),
  );
});

test("a missing tag is not-found and names tag and image", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  await pushBusyboxImage(registry, "app");
  await rejectsWith(
    client(t).resolve(`${registry.host}/app:nope`),
    "not-found",
    new RegExp(`not found: manifest for tag "nope" in ${registry.host}/app`),
  );
});

test("a manifest that lies about its digest is refused, by tag and by digest", async (t) => {
  const fake = await startFakeRegistry(t.signal);
  const image = buildImage({ layers: [await buildLayer([{ path: "a", content: "a" }])] });
  const liar = lyingManifest(image);
  const served = { body: liar.manifest, contentType: image.mediaType, digestHeader: image.digest };
  fake.resources.set("/v2/app/manifests/latest", served);
  fake.resources.set(`/v2/app/manifests/${image.digest}`, served);
  const c = client(t);
  await rejectsWith(
    c.resolve(`${fake.host}/app:latest`),
    "digest-mismatch",
    new RegExp(`resolving ${fake.host}/app:latest: the manifest ${image.digest} .*does not match its digest`),
  );
  await rejectsWith(
    c.resolve(`${fake.host}/app@${image.digest}`),
    "digest-mismatch",
    /does not match its digest/,
  );
  // Without a digest header the tag's bytes define the digest, but a wrong header is caught.
  fake.resources.set("/v2/app/manifests/other", { ...served, digestHeader: image.digest });
  await rejectsWith(c.resolve(`${fake.host}/app:other`), "digest-mismatch", /expected sha256/);
});

test("schema 1 manifests are refused with what to do", async (t) => {
  const fake = await startFakeRegistry(t.signal);
  const body = Buffer.from(JSON.stringify({ schemaVersion: 1, name: "app", tag: "old", fsLayers: [] }));
  fake.resources.set("/v2/app/manifests/old", {
    body,
    contentType: "application/vnd.docker.distribution.manifest.v1+prettyjws",
  });
  await rejectsWith(
    client(t).resolve(`${fake.host}/app:old`),
    "unsupported",
    /schema 1 manifest.*push the image again/,
  );
});

test("a truncated or corrupted layer is an error naming image and layer, and leaves no blob", async (t) => {
  const fake = await startFakeRegistry(t.signal);
  const layer = await buildLayer([{ path: "big", content: Buffer.alloc(50_000, 1) }], {
    compression: "none",
  });
  const desc = { mediaType: layer.mediaType, digest: layer.digest, size: layer.size };
  const { store } = await tempContentStore(t);
  const c = client(t);
  for (const bad of [truncatedLayer(layer), corruptedLayer(layer)]) {
    fake.resources.set(`/v2/app/blobs/${layer.digest}`, { body: bad.blob });
    await rejectsWith(
      c.fetchBlob(`${fake.host}/app:1`, desc, { store }),
      "digest-mismatch",
      new RegExp(
        `^pulling layer ${layer.digest} of ${fake.host}/app:1: .*(size|digest) mismatch.*nothing was stored`,
      ),
    );
    assert.equal(await store.has(layer.digest), false);
    assert.deepEqual(await store.listIngests(), [], "a wrong blob is not kept for resuming");
  }
});

test("ten concurrent pulls of one layer download it once", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  await pushBusyboxImage(registry);
  const image = await busyboxImage();
  const layer = image.layerDescriptors[0]!;
  const { store } = await tempContentStore(t);
  const c = client(t);
  registry.resetStats();
  const progress: number[][] = Array.from({ length: 10 }, () => []);
  const results = await Promise.all(
    progress.map((seen) =>
      c.fetchBlob(`${registry.host}/busybox:latest`, layer, { store, onProgress: (n) => seen.push(n) }),
    ),
  );
  for (const r of results) assert.deepEqual(r, { digest: layer.digest, size: layer.size });
  assert.deepEqual(registry.stats()[`/v2/busybox/blobs/${layer.digest}`]?.methods, { GET: 1 });
  for (const seen of progress) assert.equal(seen.at(-1), layer.size);
  const info = await store.info(layer.digest);
  assert.equal(info?.labels[`containerd.io/distribution.source.${registry.host}`], "busybox");
});

test("a dropped connection is resumed with a Range request; nothing is fetched twice", async (t) => {
  const fake = await startFakeRegistry(t.signal);
  const layer = await buildLayer([{ path: "big", content: Buffer.alloc(300_000, 3) }], {
    compression: "none",
  });
  const path = `/v2/app/blobs/${layer.digest}`;
  fake.resources.set(path, { body: layer.blob });
  fake.faults.set(path, [{ truncateAfterBytes: 100_000 }]);
  const { store } = await tempContentStore(t);
  const desc = { mediaType: layer.mediaType, digest: layer.digest, size: layer.size };
  await client(t).fetchBlob(`${fake.host}/app:1`, desc, { store });
  assert.ok(await store.has(layer.digest));
  const gets = fake.server.log().filter((r) => r.path === path);
  assert.equal(gets.length, 2);
  assert.equal(gets[0]!.headers.range, undefined);
  const resumedAt = Number(/^bytes=(\d+)-$/.exec(String(gets[1]!.headers.range))?.[1]);
  assert.ok(resumedAt > 0 && resumedAt <= 100_000, `resumed at ${resumedAt}`);
  assert.equal(gets[1]!.status, 206);
});

test("an aborted pull keeps its bytes, and the next pull resumes them", async (t) => {
  const fake = await startFakeRegistry(t.signal);
  const layer = await buildLayer([{ path: "big", content: Buffer.alloc(200_000, 5) }], {
    compression: "none",
  });
  const path = `/v2/app/blobs/${layer.digest}`;
  fake.resources.set(path, { body: layer.blob });
  fake.faults.set(path, [{ stallAfterBytes: 80_000 }]);
  const { store } = await tempContentStore(t);
  const desc = { mediaType: layer.mediaType, digest: layer.digest, size: layer.size };
  const c = client(t);
  const controller = new AbortController();
  const pulling = c.fetchBlob(`${fake.host}/app:1`, desc, {
    store,
    signal: controller.signal,
    onProgress: (n) => {
      if (n >= 80_000) controller.abort();
    },
  });
  await assert.rejects(pulling, { name: "AbortError" });
  const [partial] = await store.listIngests();
  assert.ok(partial !== undefined && partial.offset > 0, "the partial download is kept");

  await c.fetchBlob(`${fake.host}/app:1`, desc, { store });
  assert.ok(await store.has(layer.digest));
  const last = fake.server
    .log()
    .filter((r) => r.path === path)
    .at(-1)!;
  assert.equal(last.headers.range, `bytes=${partial.offset}-`);
});

test("5xx answers are retried with backoff, then reported", async (t) => {
  const fake = await startFakeRegistry(t.signal);
  const image = buildImage({ layers: [await buildLayer([{ path: "a", content: "a" }])] });
  fake.resources.set("/v2/app/manifests/1", {
    body: image.manifest,
    contentType: image.mediaType,
    digestHeader: image.digest,
  });
  fake.resources.set(`/v2/app/manifests/${image.digest}`, {
    body: image.manifest,
    contentType: image.mediaType,
  });
  fake.resources.set(`/v2/app/blobs/${image.configDescriptor.digest}`, { body: image.config });
  fake.faults.set("/v2/app/manifests/1", [{ status: 503 }, { status: 502 }]);
  const r = await client(t).resolve(`${fake.host}/app:1`);
  assert.equal(r.digest, image.digest);
  fake.faults.set("/v2/app/manifests/1", [
    { status: 500 },
    { status: 500 },
    { status: 500 },
    { status: 500 },
  ]);
  await rejectsWith(client(t).resolve(`${fake.host}/app:1`), "server", /the registry answered 500/);
});

test("mirrors are tried first, and the registry itself when a mirror fails", async (t) => {
  const origin = await startRegistry({ signal: t.signal });
  const mirror = await startRegistry({ signal: t.signal });
  const deadMirror = `127.0.0.1:${await freePort()}`;
  const only = await pushBusyboxImage(mirror, "app", "mirrored");
  await pushBusyboxImage(origin, "app", "origin-only");
  const hosts = {
    [origin.host]: { http: true, insecure: false, ca: [], mirrors: [deadMirror, mirror.host] },
    [mirror.host]: { http: true, insecure: false, ca: [], mirrors: [] },
  };
  const c = client(t, { hosts });
  const logged: string[] = [];
  setLogSink((line) => logged.push(line));
  t.after(() => setLogSink((line) => process.stderr.write(line)));
  const r = await c.resolve(`${origin.host}/app:mirrored`);
  assert.equal(r.digest, only);
  // Not on the mirror: the registry answers.
  const o = await c.resolve(`${origin.host}/app:origin-only`);
  assert.equal(o.digest, only);
  assert.ok(origin.stats()["/v2/app/manifests/origin-only"]);
  assert.equal(origin.stats()["/v2/app/manifests/mirrored"], undefined);
  const warnings = logged.map((l) => JSON.parse(l)).filter((l) => l.level === "warn");
  assert.ok(
    warnings.length > 0 && warnings.every((w) => w.mirror === deadMirror),
    "a dead mirror is warned about",
  );
});

test("resolveImageConfig returns what frontends read", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  const image = buildImage({
    layers: [await buildLayer([{ path: "app", content: "x" }])],
    config: {
      Env: ["PATH=/bin", "LANG=C"],
      Cmd: ["serve", "--port", "80"],
      Entrypoint: ["/app"],
      WorkingDir: "/srv",
      User: "1000:1000",
      OnBuild: ["RUN echo child"],
      Labels: { "org.example": "yes" },
    },
  });
  const index = buildIndex([image]);
  await pushImage(registry.url, "cfg:1", index);
  const r = await client(t).resolveImageConfig(`${registry.host}/cfg:1`, { platform: "linux/amd64" });
  assert.equal(r.digest, index.digest as Digest);
  assert.equal(r.manifestDigest, image.digest);
  const cfg = r.config.config!;
  assert.deepEqual(cfg.Env, ["PATH=/bin", "LANG=C"]);
  assert.deepEqual(cfg.Cmd, ["serve", "--port", "80"]);
  assert.deepEqual(cfg.Entrypoint, ["/app"]);
  assert.equal(cfg.WorkingDir, "/srv");
  assert.equal(cfg.User, "1000:1000");
  assert.deepEqual(cfg.OnBuild, ["RUN echo child"]);
  assert.deepEqual(cfg.Labels, { "org.example": "yes" });
});

test("an invalid reference or platform is refused before any request", async (t) => {
  const c = client(t);
  await rejectsWith(c.resolve("127.0.0.1:5000/UPPER:1"), "invalid", /invalid image reference/);
  await rejectsWith(c.resolve("127.0.0.1:5000/app:1", { platform: "linux" }), "invalid", /invalid platform/);
});

test("a caller waiting on another caller's download can be cancelled on its own", async (t) => {
  const fake = await startFakeRegistry(t.signal);
  const layer = await buildLayer([{ path: "big", content: Buffer.alloc(100_000, 9) }], {
    compression: "none",
  });
  const path = `/v2/app/blobs/${layer.digest}`;
  fake.resources.set(path, { body: layer.blob });
  fake.faults.set(path, [{ stallAfterBytes: 10_000 }]);
  const { store } = await tempContentStore(t);
  const desc = { mediaType: layer.mediaType, digest: layer.digest, size: layer.size };
  const c = client(t);
  const first = new AbortController();
  t.after(() => first.abort());
  let started!: () => void;
  const downloading = new Promise<void>((resolve) => {
    started = resolve;
  });
  const a = c.fetchBlob(`${fake.host}/app:1`, desc, {
    store,
    signal: first.signal,
    onProgress: (n) => n > 0 && started(),
  });
  a.catch(() => {});
  await downloading;
  const second = new AbortController();
  const b = c.fetchBlob(`${fake.host}/app:1`, desc, { store, signal: second.signal });
  const reason = new Error("build B cancelled");
  second.abort(reason);
  await assert.rejects(b, (e: unknown) => e === reason);
  assert.equal(fake.server.log().filter((r) => r.path === path).length, 0, "A's request is still running");
  first.abort();
  await assert.rejects(a, { name: "AbortError" });
});

test("a pulled image unpacks into a root that runs, its diff IDs checked", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  await pushBusyboxImage(registry);
  const { store } = await tempContentStore(t);
  const c = client(t, { store });
  const ref = `${registry.host}/busybox:latest`;
  const image = await c.resolve(ref);
  const rootfs = await tempDir("pulled-rootfs");
  t.after(rootfs.cleanup);
  for (const [i, layer] of image.layers.entries()) {
    await c.fetchBlob(ref, layer, { store });
    const stats = await applyLayerBlob(await store.readStream(layer.digest), rootfs.dir, {
      format: "overlay",
      layer: `layer ${layer.digest} of ${image.ref}`,
    });
    assert.equal(stats.diffID, image.config.rootfs.diff_ids[i]);
  }
  const { stdout } = await promisify(execFile)("chroot", [
    rootfs.dir,
    "/bin/sh",
    "-c",
    "echo pulled && ls /etc",
  ]);
  assert.match(stdout, /^pulled\n.*passwd/s);
});

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { link, mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { gunzipSync, zstdDecompressSync } from "node:zlib";
import { extract, type Header } from "tar-stream";
import { digestOf } from "../util/digest.ts";
import {
  buildImage,
  buildIndex,
  buildLayer,
  corruptedLayer,
  hostileLayer,
  type Layer,
  lyingManifest,
  MEDIA_TYPES,
  pushImage,
  truncatedLayer,
  whiteoutLayer,
  writeOCILayout,
} from "./oci.ts";
import { tempDir } from "./process.ts";
import { startRegistry } from "./registry.ts";

// Async only: the registry's proxy lives in this process, so a sync exec would deadlock it.
const run = promisify(execFile);

function untar(layer: Layer): Buffer {
  if (layer.compression === "gzip") return gunzipSync(layer.blob);
  if (layer.compression === "zstd") return zstdDecompressSync(layer.blob);
  return layer.blob;
}

async function headers(layer: Layer): Promise<(Header & { body: string })[]> {
  const ex = extract();
  const out: (Header & { body: string })[] = [];
  const done = (async () => {
    for await (const entry of ex) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      out.push({ ...entry.header, body: Buffer.concat(chunks).toString() });
    }
  })();
  ex.end(untar(layer));
  await done;
  return out;
}

test("layers are reproducible and every compression holds the same tar", async () => {
  const files = [
    { path: "etc", dir: true },
    { path: "etc/hello", content: "hi\n", mode: 0o600, uid: 1000, gid: 1000 },
    { path: "bin/run", content: "#!/bin/sh\n", mode: 0o755 },
  ];
  const gz = await buildLayer(files, { compression: "gzip" });
  assert.equal((await buildLayer(files, { compression: "gzip" })).digest, gz.digest);
  const zst = await buildLayer(files, { compression: "zstd" });
  const raw = await buildLayer(files, { compression: "none" });
  assert.equal(zst.diffID, gz.diffID);
  assert.equal(raw.diffID, gz.diffID);
  assert.equal(raw.digest, raw.diffID);
  assert.equal(gz.digest, digestOf(gz.blob));
  assert.equal(zst.mediaType, "application/vnd.oci.image.layer.v1.tar+zstd");
  const hello = (await headers(zst)).find((h) => h.name === "etc/hello")!;
  assert.deepEqual([hello.mode, hello.uid, hello.gid, hello.body], [0o600, 1000, 1000, "hi\n"]);
});

test("hostile entries are written exactly as given", async () => {
  const climbing = await headers(await hostileLayer("pathEscape"));
  assert.deepEqual(
    climbing.map((h) => h.name),
    ["a/", "../escape", "a/../../escape2", "/abs-escape"],
  );
  const links = await headers(await hostileLayer("absoluteSymlink", "none"));
  assert.deepEqual(
    links.filter((h) => h.type === "symlink").map((h) => [h.name, h.linkname]),
    [
      ["etc/root-link", "/"],
      ["up", "../../../../.."],
    ],
  );
  const hard = await headers(await hostileLayer("hardlinkEscape"));
  assert.deepEqual(
    hard.map((h) => [h.type, h.linkname]),
    [
      ["link", "../../../../etc/passwd"],
      ["link", "/etc/shadow"],
    ],
  );
  const devices = await headers(await hostileLayer("devices"));
  assert.deepEqual(
    devices.map((h) => [h.type, h.devmajor, h.devminor]),
    [
      ["character-device", 1, 3],
      ["block-device", 8, 0],
      ["fifo", 0, 0],
    ],
  );
  const wh = await headers(await whiteoutLayer({ remove: ["etc/passwd", "top"], opaque: ["home"] }));
  assert.deepEqual(
    wh.map((h) => h.name),
    ["etc/.wh.passwd", ".wh.top", "home/", "home/.wh..wh..opq"],
  );
});

test("broken blobs and lying manifests keep their claimed digests", async () => {
  const layer = await hostileLayer("hardlinks");
  const truncated = truncatedLayer(layer);
  assert.equal(truncated.digest, layer.digest);
  assert.ok(truncated.blob.length < layer.size);
  const corrupted = corruptedLayer(layer);
  assert.equal(corrupted.blob.length, layer.size);
  assert.notEqual(digestOf(corrupted.blob), layer.digest);
  const image = buildImage({ layers: [layer] });
  const liar = lyingManifest(image);
  assert.equal(liar.digest, image.digest);
  assert.notEqual(digestOf(liar.manifest), liar.digest);
});

test("a layer from a directory keeps modes, symlinks and hard links", async (t) => {
  const { dir, cleanup } = await tempDir("oci");
  t.after(cleanup);
  await mkdir(join(dir, "sub"));
  await writeFile(join(dir, "sub/tool"), "x", { mode: 0o750 });
  await link(join(dir, "sub/tool"), join(dir, "tool-link"));
  await symlink("sub/tool", join(dir, "sym"));
  const entries = await headers(await buildLayer({ fromDir: dir, mtime: new Date(0) }));
  assert.deepEqual(
    entries.map((h) => [h.name, h.type, h.mode, h.linkname ?? null]),
    [
      ["sub/", "directory", 0o755, null],
      ["sub/tool", "file", 0o750, null],
      ["sym", "symlink", 0o777, "sub/tool"],
      ["tool-link", "link", 0o750, "sub/tool"],
    ],
  );
});

test("an OCI layout made here unpacks with umoci, whiteouts applied; lies are refused", async (t) => {
  const { dir, cleanup } = await tempDir("oci");
  t.after(cleanup);
  const base = await buildLayer([
    { path: "etc", dir: true },
    { path: "etc/passwd", content: "root:x:0:0::/root:/bin/sh\n" },
    { path: "etc/keep", content: "kept\n" },
    { path: "home", dir: true },
    { path: "home/old", content: "hidden by the opaque dir\n" },
  ]);
  const top = await whiteoutLayer({
    remove: ["etc/passwd"],
    opaque: ["home"],
    extra: [{ path: "home/new", content: "new\n" }],
  });
  const image = buildImage({ layers: [base, top], config: { Cmd: ["sh"] } });
  const layout = join(dir, "layout");
  await writeOCILayout(layout, image, { tag: "v1" });
  await writeOCILayout(layout, image, { tag: "v1" });
  const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8"));
  assert.equal(index.manifests.length, 1);

  await run("umoci", ["unpack", "--image", `${layout}:v1`, join(dir, "bundle")]);
  const rootfs = join(dir, "bundle/rootfs");
  assert.equal(existsSync(join(rootfs, "etc/passwd")), false);
  assert.equal(await readFile(join(rootfs, "etc/keep"), "utf8"), "kept\n");
  assert.deepEqual(await readdir(join(rootfs, "home")), ["new"]);

  await writeOCILayout(join(dir, "liar"), lyingManifest(image), { tag: "v1" });
  const mismatch = { stderr: /digest mismatch/ };
  await assert.rejects(
    run("umoci", ["unpack", "--image", `${join(dir, "liar")}:v1`, join(dir, "b2")]),
    mismatch,
  );
  const cut = buildImage({ layers: [truncatedLayer(base)] });
  await writeOCILayout(join(dir, "cut"), cut, { tag: "v1" });
  await assert.rejects(
    run("umoci", ["unpack", "--image", `${join(dir, "cut")}:v1`, join(dir, "b3")]),
    mismatch,
  );
});

test("multi-platform indexes and docker manifests push and resolve per platform", async (t) => {
  const registry = await startRegistry();
  t.after(registry.stop);
  const layerFor = (arch: string) => buildLayer([{ path: "arch", content: `${arch}\n` }]);
  const amd = buildImage({
    layers: [await layerFor("amd64")],
    platform: { os: "linux", architecture: "amd64" },
  });
  const arm = buildImage({
    layers: [await layerFor("arm64")],
    platform: { os: "linux", architecture: "arm64", variant: "v8" },
  });
  const index = buildIndex([amd, arm]);
  assert.equal(await pushImage(registry.url, "multi:1", index), index.digest);
  const ref = `docker://${registry.host}/multi:1`;
  const raw = JSON.parse((await run("skopeo", ["inspect", "--raw", "--tls-verify=false", ref])).stdout);
  assert.equal(raw.mediaType, MEDIA_TYPES.oci.index);
  assert.deepEqual(
    raw.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture),
    ["amd64", "arm64"],
  );
  const armInspect = await run("skopeo", ["--override-arch", "arm64", "inspect", "--tls-verify=false", ref]);
  assert.deepEqual(JSON.parse(armInspect.stdout).Layers, [arm.layers[0]!.digest]);

  const docker = buildImage({
    layers: [await layerFor("amd64")],
    mediaTypes: "docker",
    config: { User: "1000" },
  });
  await pushImage(registry.url, "dockerish", docker);
  const dockerRef = `docker://${registry.host}/dockerish:latest`;
  const manifest = JSON.parse(
    (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", dockerRef])).stdout,
  );
  assert.equal(manifest.mediaType, MEDIA_TYPES.docker.manifest);
  assert.equal(manifest.layers[0].mediaType, "application/vnd.docker.image.rootfs.diff.tar.gzip");
  const config = JSON.parse(
    (await run("skopeo", ["inspect", "--config", "--tls-verify=false", dockerRef])).stdout,
  );
  assert.equal(config.config.User, "1000");
});

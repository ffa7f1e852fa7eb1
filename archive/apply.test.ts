import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { lstat, mkdir, readdir, readFile, readlink, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { type TestContext, test } from "node:test";
import { promisify } from "node:util";
import { pack } from "tar-stream";
import { busyboxImage } from "../test/busybox-image.ts";
import {
  buildLayer,
  hostileEntries,
  type LayerEntry,
  packTar,
  truncatedLayer,
  whiteoutLayer,
} from "../test/oci.ts";
import { tempDir } from "../test/process.ts";
import {
  type ApplyLayerOptions,
  applyLayer,
  applyLayerBlob,
  LayerApplyError,
  type LayerFormat,
} from "./apply.ts";
import { SyscallHelper } from "./syscalls.ts";

const run = promisify(execFile);

async function scratch(t: TestContext): Promise<string> {
  const tmp = await tempDir("archive");
  t.after(tmp.cleanup);
  return tmp.dir;
}

/** A target dir inside a parent dir, so a test can check the parent stays untouched. */
async function target(t: TestContext, name = "rootfs"): Promise<{ parent: string; dir: string }> {
  const parent = await scratch(t);
  const dir = join(parent, name);
  await mkdir(dir);
  return { parent, dir };
}

async function applyEntries(entries: LayerEntry[], dir: string, opts: ApplyLayerOptions) {
  return applyLayer(Readable.from([await packTar(entries)]), dir, opts);
}

/** Mounts overlayfs read-only over `lowers` (top-most first); unmounted after the test. */
async function mountOverlay(t: TestContext, lowers: string[]): Promise<string> {
  const tmp = await tempDir("archive-merged");
  let mounted = false;
  // One hook, so the unmount always comes before the removal.
  t.after(async () => {
    if (mounted) await run("umount", [tmp.dir]);
    await tmp.cleanup();
  });
  await run("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lowers.join(":")}`, tmp.dir]);
  mounted = true;
  return tmp.dir;
}

async function tree(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(join(dir, rel))).sort()) {
    const path = rel === "" ? name : `${rel}/${name}`;
    const st = await lstat(join(dir, path));
    out.push(st.isDirectory() ? `${path}/` : path);
    if (st.isDirectory()) out.push(...(await tree(dir, path)));
  }
  return out;
}

test("the busybox layer unpacks into a root that runs under chroot", async (t) => {
  const { dir } = await target(t);
  const image = await busyboxImage();
  const layer = image.layers[0]!;
  const stats = await applyLayerBlob(Readable.from([layer.blob]), dir, { format: "plain", layer: "busybox" });
  assert.equal(stats.compression, "gzip");
  assert.equal(stats.diffID, layer.diffID);
  assert.ok(stats.files >= 3 && stats.symlinks > 100, JSON.stringify(stats));
  const { stdout } = await run("chroot", [
    dir,
    "/bin/sh",
    "-c",
    "echo hello from $(/bin/busybox basename /bin/sh)",
  ]);
  assert.equal(stdout, "hello from sh\n");
  assert.equal((await stat(join(dir, "tmp"))).mode & 0o7777, 0o1777);
});

test("modes, owners and times are kept; directory times are set after their content", async (t) => {
  const { dir } = await target(t);
  const mtime = new Date("2001-02-03T04:05:06Z");
  await applyEntries(
    [
      { path: "d", dir: true, mode: 0o750, uid: 12, gid: 34, mtime },
      { path: "d/suid", content: "x", mode: 0o4755, uid: 1000, gid: 1000, mtime },
      { path: "d/link", symlink: "suid", uid: 5, gid: 6, mtime },
    ],
    dir,
    { format: "plain" },
  );
  const d = await lstat(join(dir, "d"));
  assert.deepEqual([d.mode & 0o7777, d.uid, d.gid, d.mtime.getTime()], [0o750, 12, 34, mtime.getTime()]);
  const f = await lstat(join(dir, "d/suid"));
  assert.deepEqual([f.mode & 0o7777, f.uid, f.gid, f.mtime.getTime()], [0o4755, 1000, 1000, mtime.getTime()]);
  const l = await lstat(join(dir, "d/link"));
  assert.deepEqual([l.isSymbolicLink(), l.uid, l.gid, l.mtime.getTime()], [true, 5, 6, mtime.getTime()]);
});

test("zstd and uncompressed layers are detected by their first bytes", async (t) => {
  for (const compression of ["zstd", "none"] as const) {
    const { dir } = await target(t);
    const layer = await buildLayer([{ path: "hello", content: "hi\n" }], { compression });
    const stats = await applyLayerBlob(Readable.from([layer.blob]), dir, { format: "plain" });
    assert.equal(stats.compression, compression);
    assert.equal(stats.diffID, layer.diffID);
    assert.equal(await readFile(join(dir, "hello"), "utf8"), "hi\n");
  }
});

const lowerEntries: LayerEntry[] = [
  { path: "a", dir: true },
  { path: "a/keep", content: "keep" },
  { path: "a/gone", content: "gone" },
  { path: "a/gone-dir", dir: true },
  { path: "a/gone-dir/deep", content: "deep" },
  { path: "c", dir: true },
  { path: "c/old", content: "old" },
  { path: "c/sub", dir: true },
  { path: "c/sub/older", content: "older" },
  { path: "f", content: "file" },
];
const upperLayer = () =>
  whiteoutLayer({
    remove: ["a/gone", "a/gone-dir", "f", "no-such-dir/x"],
    opaque: ["c"],
    extra: [
      { path: "c/new", content: "new" },
      { path: "c/sub", dir: true },
      { path: "c/sub/newer", content: "newer" },
    ],
  });
const expectedMerged = ["a/", "a/keep", "c/", "c/new", "c/sub/", "c/sub/newer"];

test("plain: whiteouts delete lower entries and opaque markers empty a directory", async (t) => {
  const { dir } = await target(t);
  await applyEntries(lowerEntries, dir, { format: "plain" });
  const upper = await upperLayer();
  const stats = await applyLayerBlob(Readable.from([upper.blob]), dir, { format: "plain" });
  assert.equal(stats.whiteouts, 4);
  assert.deepEqual(await tree(dir), expectedMerged);
});

test("plain: an opaque marker after the directory's new entries keeps them", async (t) => {
  const { dir } = await target(t);
  await applyEntries(lowerEntries, dir, { format: "plain" });
  await applyEntries(
    [
      { path: "c", dir: true },
      { path: "c/new", content: "new" },
      { path: "c/.wh..wh..opq", content: "" },
    ],
    dir,
    { format: "plain" },
  );
  assert.deepEqual(
    (await tree(dir)).filter((p) => p.startsWith("c")),
    ["c/", "c/new"],
  );
});

test("overlay: whiteouts become 0:0 devices and opaque dirs an xattr; overlayfs shows the plain result", async (t) => {
  const lower = await scratch(t);
  const upperDir = await scratch(t);
  await applyEntries(lowerEntries, lower, { format: "overlay" });
  const upper = await upperLayer();
  const stats = await applyLayerBlob(Readable.from([upper.blob]), upperDir, {
    format: "overlay",
    lowers: [lower],
  });
  assert.equal(stats.whiteouts, 4);
  const wh = await lstat(join(upperDir, "a/gone"));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0, "a whiteout is a 0:0 char device");
  assert.ok((await lstat(join(upperDir, "f"))).isCharacterDevice());
  // Nothing to hide: no whiteout, and no directory made for it.
  assert.equal(existsSync(join(upperDir, "no-such-dir")), false);
  const helper = new SyscallHelper();
  t.after(() => helper.close());
  assert.equal((await helper.getXattr(join(upperDir, "c"), "trusted.overlay.opaque"))?.toString(), "y");
  assert.equal(await helper.getXattr(join(upperDir, "a"), "trusted.overlay.opaque"), undefined);

  const merged = await mountOverlay(t, [upperDir, lower]);
  assert.deepEqual(await tree(merged), expectedMerged);
  assert.equal(await readFile(join(merged, "a/keep"), "utf8"), "keep");
});

test("overlay: implicit parents copy the lower directory's metadata", async (t) => {
  const lower = await scratch(t);
  const upperDir = await scratch(t);
  const mtime = new Date("2010-01-01T00:00:00Z");
  await applyEntries([{ path: "srv", dir: true, mode: 0o710, uid: 7, gid: 8, mtime }], lower, {
    format: "plain",
  });
  await applyEntries([{ path: "srv/x", content: "x" }], upperDir, { format: "overlay", lowers: [lower] });
  const st = await lstat(join(upperDir, "srv"));
  assert.deepEqual([st.mode & 0o7777, st.uid, st.gid, st.mtime.getTime()], [0o710, 7, 8, mtime.getTime()]);
});

test("hard links inside a layer share one inode, in both formats", async (t) => {
  for (const format of ["plain", "overlay"] as LayerFormat[]) {
    const { dir } = await target(t);
    const stats = await applyEntries(hostileEntries.hardlinks, dir, { format });
    assert.equal(stats.hardlinks, 2);
    const a = await lstat(join(dir, "data"));
    const b = await lstat(join(dir, "data-link"));
    const c = await lstat(join(dir, "sub/data-link2"));
    assert.equal(a.ino, b.ino);
    assert.equal(a.ino, c.ino);
    assert.equal(a.nlink, 3);
  }
});

test("hard links to a file of a lower layer: linked in plain, copied up in overlay", async (t) => {
  const { dir } = await target(t);
  await applyEntries(
    [
      { path: "bin", dir: true },
      { path: "bin/tool", content: "tool", mode: 0o755 },
    ],
    dir,
    {
      format: "plain",
    },
  );
  await applyEntries([{ path: "bin/alias", hardlink: "bin/tool", mode: 0o755 }], dir, { format: "plain" });
  assert.equal((await lstat(join(dir, "bin/alias"))).ino, (await lstat(join(dir, "bin/tool"))).ino);

  const lower = dir;
  const upperDir = await scratch(t);
  const before = await lstat(join(lower, "bin/tool"));
  await applyEntries([{ path: "bin/alias2", hardlink: "/bin/tool", mode: 0o755 }], upperDir, {
    format: "overlay",
    lowers: [lower],
  });
  const up = await lstat(join(upperDir, "bin/tool"));
  assert.equal(up.ino, (await lstat(join(upperDir, "bin/alias2"))).ino);
  assert.notEqual(up.ino, before.ino, "the lower file is copied, never linked into the new layer");
  assert.equal(await readFile(join(upperDir, "bin/alias2"), "utf8"), "tool");
  assert.equal((await lstat(join(lower, "bin/tool"))).nlink, before.nlink);
});

test("device files and fifos are created as root", async (t) => {
  const { dir } = await target(t);
  const stats = await applyEntries(hostileEntries.devices, dir, { format: "plain" });
  assert.equal(stats.devices, 3);
  const nul = await lstat(join(dir, "dev-null"));
  assert.ok(nul.isCharacterDevice());
  assert.equal(nul.rdev, (1 << 8) | 3);
  const sda = await lstat(join(dir, "dev-sda"));
  assert.ok(sda.isBlockDevice());
  assert.equal(sda.rdev, 8 << 8);
  assert.ok((await lstat(join(dir, "fifo"))).isFIFO());
});

test("xattrs from PAX headers are set; overlay's own are refused with a warning", async (t) => {
  const { dir } = await target(t);
  const p = pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of p) chunks.push(c as Buffer);
  })();
  p.entry(
    {
      name: "tagged",
      size: 1,
      pax: { "SCHILY.xattr.user.note": "hello", "SCHILY.xattr.trusted.overlay.opaque": "y" },
    },
    "x",
  );
  p.finalize();
  await done;
  const warnings: string[] = [];
  const stats = await applyLayer(Readable.from([Buffer.concat(chunks)]), dir, {
    format: "overlay",
    layer: "layer x",
    onWarning: (w) => warnings.push(w),
  });
  const helper = new SyscallHelper();
  t.after(() => helper.close());
  assert.equal((await helper.getXattr(join(dir, "tagged"), "user.note"))?.toString(), "hello");
  assert.equal(await helper.getXattr(join(dir, "tagged"), "trusted.overlay.opaque"), undefined);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /layer x: "tagged": ignored xattr trusted\.overlay\.opaque/);
  assert.deepEqual(stats.warnings, warnings);
});

/** Applies entries that must fail; checks the error names layer and entry and nothing leaked out. */
async function assertRefused(
  t: TestContext,
  entries: LayerEntry[],
  format: LayerFormat,
  entry: string,
  why: RegExp,
): Promise<string> {
  const { parent, dir } = await target(t);
  const err = await applyEntries(entries, dir, { format, layer: "layer sha256:bad of evil/image" }).then(
    () => assert.fail(`applying ${entry} succeeded`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof LayerApplyError, String(err));
  assert.equal(err.entry, entry);
  assert.match(err.message, /^applying layer sha256:bad of evil\/image: entry /);
  assert.match(err.message, why);
  assert.deepEqual(await readdir(parent), ["rootfs"], "nothing is written next to the target");
  return dir;
}

test("hostile layers: names that climb out are refused", async (t) => {
  for (const format of ["plain", "overlay"] as LayerFormat[]) {
    await assertRefused(t, hostileEntries.pathEscape, format, "../escape", /escapes from the layer root/);
    await assertRefused(t, [{ path: "a/../../escape2", content: "x" }], format, "a/../../escape2", /escapes/);
  }
  // An absolute name is read relative to the root, as docker and containerd do.
  const { parent, dir } = await target(t);
  await applyEntries([{ path: "/abs-escape", content: "inside" }], dir, { format: "plain" });
  assert.equal(await readFile(join(dir, "abs-escape"), "utf8"), "inside");
  assert.deepEqual(await readdir(parent), ["rootfs"]);
});

test("hostile layers: files are never written through symlinks that leave the root", async (t) => {
  const [absLink, absFile, upLink, upFile] = hostileEntries.absoluteSymlink.slice(1);
  for (const format of ["plain", "overlay"] as LayerFormat[]) {
    const dir = await assertRefused(
      t,
      hostileEntries.absoluteSymlink,
      format,
      "etc/root-link/tmp/pwned",
      /absolute symlink "etc\/root-link" -> "\/"/,
    );
    // The symlink itself is stored as is: it is data, never followed.
    assert.equal(await readlink(join(dir, "etc/root-link")), "/");
    await assertRefused(t, [upLink!, upFile!], format, "up/pwned-too", /climbs above the layer root/);
    // A symlink from a lower layer is no way out either.
    const { parent, dir: root } = await target(t);
    await applyEntries([{ path: "etc", dir: true }, absLink!], root, { format: "plain" });
    await assert.rejects(
      applyEntries([absFile!], root, { format: "plain", layer: "top" }),
      /entry "etc\/root-link\/tmp\/pwned"/,
    );
    assert.deepEqual(await readdir(parent), ["rootfs"]);
  }
  assert.equal(existsSync("/tmp/pwned"), false);
  assert.equal(existsSync("/pwned-too"), false);
});

test("relative symlinks that stay inside the root are followed by hand", async (t) => {
  const { dir } = await target(t);
  // Merged /usr: lib -> usr/lib, and a later layer that writes lib/x.
  await applyEntries(
    [
      { path: "usr", dir: true },
      { path: "usr/lib", dir: true },
      { path: "lib", symlink: "usr/lib" },
    ],
    dir,
    { format: "plain" },
  );
  await applyEntries([{ path: "lib/libx.so", content: "x" }], dir, { format: "plain" });
  assert.equal(await readFile(join(dir, "usr/lib/libx.so"), "utf8"), "x");
  assert.ok((await lstat(join(dir, "lib"))).isSymbolicLink());
});

test("hostile layers: hard links to outside the root are refused", async (t) => {
  for (const format of ["plain", "overlay"] as LayerFormat[]) {
    await assertRefused(
      t,
      hostileEntries.hardlinkEscape,
      format,
      "passwd-link",
      /hard link target .*escapes/,
    );
    await assertRefused(
      t,
      [hostileEntries.hardlinkEscape[1]!],
      format,
      "shadow-link",
      /hard link target "\/etc\/shadow" does not exist in this layer or below/,
    );
  }
});

test("a truncated layer fails with the entry it stopped in", async (t) => {
  const { dir } = await target(t);
  const big = await buildLayer([{ path: "big", content: Buffer.alloc(100_000, 7) }], { compression: "none" });
  const err = await applyLayer(Readable.from([big.blob.subarray(0, 50_000)]), dir, {
    format: "plain",
    layer: "layer L",
  }).catch((e: unknown) => e);
  assert.ok(err instanceof LayerApplyError);
  assert.equal(err.entry, "big");
  assert.match(
    err.message,
    /applying layer L: entry "big": .*ended in the middle of entry "big" .*truncated/,
  );

  const gz = await buildLayer([{ path: "big", content: Buffer.alloc(100_000, 7) }], { compression: "gzip" });
  const { dir: dir2 } = await target(t);
  await assert.rejects(
    applyLayerBlob(Readable.from([truncatedLayer(gz).blob]), dir2, { format: "plain", layer: "layer G" }),
    (e: unknown) =>
      e instanceof LayerApplyError &&
      /^applying layer G: decompressing failed \(unexpected end of file\); the layer blob is truncated or corrupt$/.test(
        e.message,
      ),
  );
});

test("an aborted apply stops with the abort reason", async (t) => {
  const { dir } = await target(t);
  const controller = new AbortController();
  controller.abort(new Error("build cancelled"));
  await assert.rejects(
    applyEntries([{ path: "x", content: "x" }], dir, { format: "plain", signal: controller.signal }),
    /build cancelled/,
  );
});

test("a file replaces a directory and a directory replaces a file", async (t) => {
  const { dir } = await target(t);
  await applyEntries(
    [
      { path: "x", dir: true },
      { path: "x/y", content: "y" },
      { path: "z", content: "z" },
    ],
    dir,
    {
      format: "plain",
    },
  );
  await applyEntries(
    [
      { path: "x", content: "now a file" },
      { path: "z", dir: true },
    ],
    dir,
    { format: "plain" },
  );
  assert.equal(await readFile(join(dir, "x"), "utf8"), "now a file");
  assert.ok((await lstat(join(dir, "z"))).isDirectory());
  await writeFile(join(dir, "z", "check"), "ok");
});

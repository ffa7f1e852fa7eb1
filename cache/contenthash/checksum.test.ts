import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { contentChecksum, FileHashCache } from "./checksum.ts";

async function tree(t: { after: (fn: () => Promise<void>) => void }) {
  const root = await mkdtemp(join(tmpdir(), "buildd-ch-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, "src/sub"), { recursive: true });
  await writeFile(join(root, "src/a.go"), "package a\n");
  await writeFile(join(root, "src/b.go"), "package b\n");
  await writeFile(join(root, "src/sub/c.txt"), "c\n");
  await writeFile(join(root, "README"), "readme\n");
  return root;
}

test("a checksum covers the selected files only, and ignores times", async (t) => {
  const root = await tree(t);
  const sum = () => contentChecksum(root, { path: "/src" }, new FileHashCache());
  const before = await sum();
  assert.match(before, /^sha256:[0-9a-f]{64}$/);
  assert.equal(await sum(), before, "stable");
  await writeFile(join(root, "README"), "changed\n");
  assert.equal(await sum(), before, "a file outside the selection does not count");
  await utimes(join(root, "src/a.go"), new Date(1000), new Date(1000));
  assert.equal(await sum(), before, "touching a file does not count");
  await chmod(join(root, "src/a.go"), 0o755);
  const afterChmod = await sum();
  assert.notEqual(afterChmod, before, "modes count");
  await writeFile(join(root, "src/sub/c.txt"), "c2\n");
  assert.notEqual(await sum(), afterChmod, "contents count");
});

test("wildcards, include/exclude and missing paths", async (t) => {
  const root = await tree(t);
  const cache = new FileHashCache();
  const goFiles = await contentChecksum(root, { path: "/src/*.go", wildcard: true }, cache);
  await writeFile(join(root, "src/sub/c.txt"), "other\n");
  assert.equal(await contentChecksum(root, { path: "/src/*.go", wildcard: true }, cache), goFiles);
  await writeFile(join(root, "src/new.go"), "package n\n");
  assert.notEqual(
    await contentChecksum(root, { path: "/src/*.go", wildcard: true }, cache),
    goFiles,
    "a new match counts",
  );

  const noTxt = await contentChecksum(root, { path: "/src", exclude: ["**/*.txt"] }, cache);
  await writeFile(join(root, "src/sub/c.txt"), "again\n");
  assert.equal(
    await contentChecksum(root, { path: "/src", exclude: ["**/*.txt"] }, cache),
    noTxt,
    "excluded files do not count",
  );

  const missing = await contentChecksum(root, { path: "/nope" }, cache);
  assert.notEqual(
    missing,
    await contentChecksum(root, { path: "/nope2" }, cache),
    "different missing paths differ",
  );
  assert.equal(
    await contentChecksum(root, { path: "/x*", wildcard: true }, cache),
    await contentChecksum(root, { path: "/x*", wildcard: true }, cache),
  );
});

test("symlinks are hashed as links and never followed out of the root", async (t) => {
  const root = await tree(t);
  await symlink("/etc", join(root, "escape"));
  const linkOnly = await contentChecksum(root, { path: "/escape" }, new FileHashCache());
  // Followed inside the root: /etc there does not exist yet, so the host's /etc plays no part.
  const followed = await contentChecksum(root, { path: "/escape", followLinks: true }, new FileHashCache());
  assert.notEqual(linkOnly, followed);
  await mkdir(join(root, "etc"));
  await writeFile(join(root, "etc/passwd"), "root:x:0:0::/:/bin/sh\n");
  const followedNow = await contentChecksum(
    root,
    { path: "/escape", followLinks: true },
    new FileHashCache(),
  );
  assert.notEqual(followedNow, followed, "the link resolved to the root's /etc");
  assert.equal(await contentChecksum(root, { path: "/escape" }, new FileHashCache()), linkOnly);
});

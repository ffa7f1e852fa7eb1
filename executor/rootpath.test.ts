import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { mkdirAllInRoot, resolveInRoot } from "./rootpath.ts";

async function tree(t: import("node:test").TestContext): Promise<{ outside: string; root: string }> {
  const outside = await mkdtemp(join(tmpdir(), "buildd-rootpath-"));
  t.after(() => rm(outside, { recursive: true, force: true }));
  const root = join(outside, "a", "b", "root");
  await mkdir(join(root, "etc"), { recursive: true });
  await mkdir(join(root, "usr/lib"), { recursive: true });
  await symlink("/", join(root, "toroot"));
  await symlink("../../..", join(root, "up"));
  await symlink("/usr/lib", join(root, "abslib"));
  await symlink("usr/lib", join(root, "rellib"));
  await symlink("loop2", join(root, "loop1"));
  await symlink("loop1", join(root, "loop2"));
  await symlink("../../../../../etc/real", join(root, "etc/passwd"));
  await symlink("/etc/self", join(root, "etc/self"));
  return { outside, root };
}

test("symlinks resolve with the root as /, never above it", async (t) => {
  const { root } = await tree(t);
  assert.equal(await resolveInRoot(root, "/toroot/etc"), join(root, "etc"));
  assert.equal(await resolveInRoot(root, "/up/up/etc"), join(root, "etc"));
  assert.equal(await resolveInRoot(root, "../../../etc"), join(root, "etc"));
  assert.equal(await resolveInRoot(root, "/abslib/x"), join(root, "usr/lib/x"));
  assert.equal(await resolveInRoot(root, "/rellib/../lib/y"), join(root, "usr/lib/y"));
  assert.equal(await resolveInRoot(root, "/etc/passwd"), join(root, "etc/real"));
  assert.equal(await resolveInRoot(root, "/missing/../etc"), join(root, "etc"));
  assert.equal(await resolveInRoot(root, "/"), root);
  await assert.rejects(resolveInRoot(root, "/loop1/x"), /too many levels of symbolic links/);
  await assert.rejects(resolveInRoot(root, "/etc/self"), /too many levels of symbolic links/);
});

test("mkdirAllInRoot creates through symlinks inside the root only, owned by the user", async (t) => {
  const { outside, root } = await tree(t);
  const made = await mkdirAllInRoot(root, "/toroot/work/dir", 1000, 1000);
  assert.equal(made, join(root, "work/dir"));
  const st = await stat(made);
  assert.ok(st.isDirectory());
  assert.equal(st.uid, 1000);
  assert.equal(st.mode & 0o777, 0o755);
  await mkdirAllInRoot(root, "/up/up/escaped", 0, 0);
  await assert.rejects(stat(join(outside, "escaped")), { code: "ENOENT" });
  await stat(join(root, "escaped"));
  await writeFile(join(root, "file"), "x");
  await assert.rejects(mkdirAllInRoot(root, "/file/sub", 0, 0), /\/file is not a directory/);
});

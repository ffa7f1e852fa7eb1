import assert from "node:assert/strict";
import { constants } from "node:fs";
import { lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isInside, mkdirAllInRoot, openInRoot, relativeToRoot, resolveInRoot } from "./resolve.ts";

let root: string;
let outside: string;

before(async () => {
  outside = await mkdtemp(join(tmpdir(), "buildd-resolve-"));
  root = join(outside, "root");
  await mkdir(join(root, "etc"), { recursive: true });
  await mkdir(join(root, "a/b/c"), { recursive: true });
  await writeFile(join(root, "etc/passwd"), "inside\n");
  await writeFile(join(outside, "secret"), "outside\n");
  await symlink("/etc", join(root, "abs-etc"));
  await symlink("../../..", join(root, "a/b/up3"));
  await symlink("../../../../../../..", join(root, "a/way-up"));
  await symlink("b/c", join(root, "a/rel-c"));
  await symlink("/a/rel-c", join(root, "chain"));
  await symlink("loop2", join(root, "loop1"));
  await symlink("loop1", join(root, "loop2"));
  await symlink("self", join(root, "self"));
  await symlink("../secret", join(root, "to-secret"));
  await symlink("/nonexistent/deeper", join(root, "dangling"));
  await writeFile(join(root, "file"), "f");
});

after(() => rm(outside, { recursive: true, force: true }));

describe("resolveInRoot", () => {
  const cases: Array<{ name: string; path: string; want: string; followFinal?: boolean }> = [
    { name: "plain relative", path: "a/b", want: "a/b" },
    { name: "plain absolute", path: "/a/b/c", want: "a/b/c" },
    { name: "root", path: "/", want: "" },
    { name: "empty", path: "", want: "" },
    { name: "dots and slashes", path: "//a/./b//", want: "a/b" },
    { name: ".. stops at the root", path: "../../../etc/passwd", want: "etc/passwd" },
    { name: ".. in the middle", path: "/a/b/../../../../etc", want: "etc" },
    { name: "absolute symlink is re-rooted", path: "abs-etc/passwd", want: "etc/passwd" },
    { name: "relative symlink climbing out is clamped", path: "a/b/up3/etc", want: "etc" },
    { name: "relative symlink far out is clamped", path: "a/way-up/etc/passwd", want: "etc/passwd" },
    { name: "relative symlink inside", path: "a/rel-c", want: "a/b/c" },
    { name: "symlink chain", path: "chain/x", want: "a/b/c/x" },
    { name: "symlink to a file outside the root", path: "to-secret", want: "secret" },
    { name: "missing tail kept", path: "a/missing/deeper", want: "a/missing/deeper" },
    { name: "missing then .. then symlink", path: "missing/../abs-etc/passwd", want: "etc/passwd" },
    { name: "dangling absolute symlink", path: "dangling", want: "nonexistent/deeper" },
    { name: "below a file", path: "file/x", want: "file/x" },
    { name: "final symlink kept", path: "abs-etc", want: "abs-etc", followFinal: false },
    { name: "parents still followed", path: "a/rel-c/x", want: "a/b/c/x", followFinal: false },
    { name: "final .. still applies", path: "a/b/..", want: "a", followFinal: false },
    { name: "final dangling symlink kept", path: "/dangling", want: "dangling", followFinal: false },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const got = await resolveInRoot(root, c.path, { followFinal: c.followFinal ?? true });
      assert.equal(got, c.want === "" ? root : join(root, c.want));
      assert.ok(isInside(root, got), `${got} must be inside ${root}`);
    });
  }

  for (const p of ["loop1", "self/x", "a/loop1"]) {
    test(`symlink loop ${p} fails with ELOOP`, async () => {
      if (p === "a/loop1") await symlink("../loop1", join(root, "a/loop1")).catch(() => {});
      await assert.rejects(resolveInRoot(root, p), (err: NodeJS.ErrnoException) => err.code === "ELOOP");
    });
  }

  test("a symlink loop is fine when the final link is not followed", async () => {
    assert.equal(await resolveInRoot(root, "loop1", { followFinal: false }), join(root, "loop1"));
  });
});

describe("relativeToRoot and isInside", () => {
  test("give the root-relative form and refuse outside paths", () => {
    assert.equal(relativeToRoot(root, root), "");
    assert.equal(relativeToRoot(root, join(root, "a/b")), "a/b");
    assert.throws(() => relativeToRoot(root, outside), /outside of root/);
    assert.equal(isInside(root, `${root}-sibling`), false);
    assert.equal(isInside("/", "/anything"), true);
  });
});

describe("openInRoot", () => {
  test("opens a file through re-rooted symlinks", async () => {
    const fh = await openInRoot(root, "abs-etc/passwd", constants.O_RDONLY);
    try {
      assert.equal((await fh.readFile()).toString(), "inside\n");
    } finally {
      await fh.close();
    }
  });

  test("follows a final symlink inside the root when asked", async () => {
    await symlink("/etc/passwd", join(root, "pw-link"));
    const fh = await openInRoot(root, "pw-link", constants.O_RDONLY, { followFinal: true });
    try {
      assert.equal((await fh.readFile()).toString(), "inside\n");
    } finally {
      await fh.close();
    }
  });

  test("refuses a symlink as the final component", async () => {
    await assert.rejects(openInRoot(root, "to-secret", constants.O_RDONLY), (err: NodeJS.ErrnoException) => {
      return err.code === "ELOOP";
    });
    assert.equal(await readFile(join(outside, "secret"), "utf8"), "outside\n");
  });

  test("creates a file exclusively", async () => {
    const fh = await openInRoot(root, "/a/new", constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, {
      mode: 0o600,
    });
    await fh.close();
    assert.ok((await stat(join(root, "a/new"))).isFile());
    await assert.rejects(
      openInRoot(root, "/a/new", constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL),
      (err: NodeJS.ErrnoException) => err.code === "EEXIST",
    );
  });
});

describe("mkdirAllInRoot", () => {
  test("creates missing directories with exact mode, owner and time, inside the root", async () => {
    const time = new Date("2001-02-03T04:05:06Z");
    const { path, created } = await mkdirAllInRoot(root, "abs-etc/new/deeper", {
      mode: 0o751,
      owner: { uid: 1234, gid: 5678 },
      time,
    });
    assert.equal(path, join(root, "etc/new/deeper"));
    assert.deepEqual(created, [join(root, "etc/new"), join(root, "etc/new/deeper")]);
    for (const d of created) {
      const st = await lstat(d);
      assert.equal(st.mode & 0o7777, 0o751);
      assert.equal(st.uid, 1234);
      assert.equal(st.gid, 5678);
      assert.equal(st.mtime.getTime(), time.getTime());
    }
    // An existing directory is left alone.
    const again = await mkdirAllInRoot(root, "/etc/new", { mode: 0o700 });
    assert.deepEqual(again.created, []);
    assert.equal((await lstat(join(root, "etc/new"))).mode & 0o7777, 0o751);
  });

  test("fails with ENOTDIR when a component is a file", async () => {
    await assert.rejects(mkdirAllInRoot(root, "file/x", { mode: 0o755 }), (err: NodeJS.ErrnoException) => {
      return err.code === "ENOTDIR";
    });
  });
});

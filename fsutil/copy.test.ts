import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import type { BigIntStats } from "node:fs";
import {
  chmod,
  chown,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, type TestContext, test } from "node:test";
import { type CopyOptions, copy } from "./copy.ts";

interface Roots {
  base: string;
  src: string;
  dst: string;
  /** A directory outside both roots that hostile symlinks aim at. */
  outside: string;
}

async function roots(t: TestContext): Promise<Roots> {
  const base = await mkdtemp(join(tmpdir(), "buildd-copy-"));
  t.after(() => rm(base, { recursive: true, force: true }));
  const r = { base, src: join(base, "src"), dst: join(base, "dst"), outside: join(base, "outside") };
  for (const d of [r.src, r.dst, r.outside]) await mkdir(d);
  await writeFile(join(r.outside, "victim"), "untouched\n");
  return r;
}

/** Writes files (a string is content; null makes a directory) under `dir`. */
async function tree(dir: string, files: Record<string, string | null>): Promise<void> {
  for (const [p, content] of Object.entries(files)) {
    if (content === null) await mkdir(join(dir, p), { recursive: true });
    else {
      await mkdir(join(dir, p, ".."), { recursive: true });
      await writeFile(join(dir, p), content);
    }
  }
}

/** Every path below `dir`, sorted, directories with a trailing "/", symlinks as "name -> target". */
async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const rel = join(e.parentPath, e.name).slice(dir.length + 1);
    if (e.isDirectory()) out.push(rel + "/");
    else if (e.isSymbolicLink()) out.push(`${rel} -> ${await readlink(join(dir, rel))}`);
    else out.push(rel);
  }
  return out.sort();
}

const read = (p: string) => readFile(p, "utf8");
const st = (p: string): Promise<BigIntStats> => lstat(p, { bigint: true });

async function assertOutsideUntouched(r: Roots): Promise<void> {
  assert.deepEqual(await readdir(r.outside), ["victim"]);
  assert.equal(await read(join(r.outside, "victim")), "untouched\n");
}

describe("copy: Docker destination rules", () => {
  const cases: Array<{
    name: string;
    src: string;
    dest: string;
    opts?: CopyOptions;
    pre?: string[];
    want: string[];
  }> = [
    { name: "file to a new path", src: "f.txt", dest: "/out.txt", want: ["out.txt"] },
    {
      name: "file into an existing directory",
      src: "f.txt",
      dest: "/d",
      pre: ["d"],
      want: ["d/", "d/f.txt"],
    },
    { name: "dest ending in / is a directory", src: "f.txt", dest: "/new/", want: ["new/", "new/f.txt"] },
    {
      name: "missing parents with createDestPath",
      src: "f.txt",
      dest: "/a/b/c.txt",
      opts: { createDestPath: true },
      want: ["a/", "a/b/", "a/b/c.txt"],
    },
    {
      name: "dir to a new path becomes that path",
      src: "dir",
      dest: "/copy",
      want: ["copy/", "copy/x", "copy/sub/", "copy/sub/y"],
    },
    {
      name: "dir onto an existing dir goes inside",
      src: "dir",
      dest: "/d",
      pre: ["d"],
      want: ["d/", "d/dir/", "d/dir/sub/", "d/dir/sub/y", "d/dir/x"],
    },
    {
      name: "dir contents onto an existing dir merge",
      src: "dir",
      dest: "/d",
      pre: ["d", "d/old"],
      opts: { dirCopyContents: true },
      want: ["d/", "d/old/", "d/sub/", "d/sub/y", "d/x"],
    },
    {
      name: "dir contents to a missing dir create it",
      src: "/dir/",
      dest: "/m/n",
      opts: { dirCopyContents: true, createDestPath: true },
      want: ["m/", "m/n/", "m/n/sub/", "m/n/sub/y", "m/n/x"],
    },
    {
      name: "the whole source root",
      src: "/",
      dest: "/all/",
      opts: { dirCopyContents: true },
      want: ["all/", "all/dir/", "all/dir/sub/", "all/dir/sub/y", "all/dir/x", "all/f.txt", "all/g.md"],
    },
    {
      name: "the whole source root onto the destination root",
      src: "/",
      dest: "/",
      opts: { dirCopyContents: true },
      want: ["dir/", "dir/sub/", "dir/sub/y", "dir/x", "f.txt", "g.md"],
    },
    {
      name: "a file to the destination root",
      src: "/dir/x",
      dest: "/",
      want: ["x"],
    },
    {
      name: "wildcards copy each match into a directory",
      src: "/*.*",
      dest: "/w/",
      opts: { allowWildcard: true },
      want: ["w/", "w/f.txt", "w/g.md"],
    },
    {
      name: "a wildcard matching a directory copies it",
      src: "d?r",
      dest: "/w/",
      opts: { allowWildcard: true, dirCopyContents: true },
      want: ["w/", "w/sub/", "w/sub/y", "w/x"],
    },
    {
      name: ".. cannot leave either root",
      src: "../../../f.txt",
      dest: "../../../../x.txt",
      want: ["x.txt"],
    },
  ];
  for (const c of cases) {
    test(c.name, async (t) => {
      const r = await roots(t);
      await tree(r.src, { "f.txt": "f", "g.md": "g", "dir/x": "x", "dir/sub/y": "y" });
      for (const p of c.pre ?? []) await mkdir(join(r.dst, p), { recursive: true });
      await copy(r.src, c.src, r.dst, c.dest, c.opts);
      assert.deepEqual(await listing(r.dst), c.want.sort());
    });
  }

  test("a missing parent fails without createDestPath", async (t) => {
    const r = await roots(t);
    await tree(r.src, { "f.txt": "f" });
    await assert.rejects(
      copy(r.src, "f.txt", r.dst, "/no/such/f.txt"),
      /parent directory of "\/no\/such\/f.txt" does not exist/,
    );
  });

  test("a missing source fails and names it without host paths", async (t) => {
    const r = await roots(t);
    await assert.rejects(copy(r.src, "nope", r.dst, "/x"), (err: Error) => {
      assert.match(err.message, /copying "nope" to "\/x": .*source nope not found/);
      assert.ok(!err.message.includes(r.base), err.message);
      return true;
    });
  });

  test("wildcards that match nothing fail unless allowed to be empty", async (t) => {
    const r = await roots(t);
    await tree(r.src, { "f.txt": "f" });
    await assert.rejects(copy(r.src, "*.go", r.dst, "/", { allowWildcard: true }), /\*\.go not found/);
    await assert.rejects(copy(r.src, "nodir/*", r.dst, "/", { allowWildcard: true }), /not found/);
    await copy(r.src, "*.go", r.dst, "/", { allowWildcard: true, allowEmptyWildcard: true });
    assert.deepEqual(await listing(r.dst), []);
  });

  test("replacing a directory with a file fails unless alwaysReplaceExistingDestPaths", async (t) => {
    const r = await roots(t);
    await tree(r.src, { "dir/x": "new", "dir/sub": "now a file" });
    await tree(r.dst, { "out/x/inner": "old dir", "out/sub/deep": "old" });
    await assert.rejects(
      copy(r.src, "dir", r.dst, "/out", { dirCopyContents: true }),
      /cannot replace directory/,
    );
    await copy(r.src, "dir", r.dst, "/out", { dirCopyContents: true, alwaysReplaceExistingDestPaths: true });
    assert.deepEqual(await listing(r.dst), ["out/", "out/sub", "out/x"]);
    assert.equal(await read(join(r.dst, "out/x")), "new");
  });

  test("an existing file is overwritten", async (t) => {
    const r = await roots(t);
    await tree(r.src, { "f.txt": "new" });
    await tree(r.dst, { "f.txt": "old and longer" });
    await copy(r.src, "f.txt", r.dst, "/f.txt");
    assert.equal(await read(join(r.dst, "f.txt")), "new");
  });
});

describe("copy: metadata", () => {
  test("modes, owners and nanosecond-ish times are kept, directories included", async (t) => {
    const r = await roots(t);
    await tree(r.src, { "d/f": "f", "d/sub/g": "g" });
    await chown(join(r.src, "d/f"), 1234, 5678);
    await chmod(join(r.src, "d/f"), 0o4751);
    await chmod(join(r.src, "d/sub"), 0o701);
    await chown(join(r.src, "d/sub"), 42, 43);
    await symlink("f", join(r.src, "d/ln"));
    await lchown(join(r.src, "d/ln"), 7, 8);
    const time = 981173106.123456;
    for (const p of ["d/f", "d/sub/g", "d/sub", "d/ln", "d"]) await lutimes(join(r.src, p), time - 10, time);
    await copy(r.src, "d", r.dst, "/d");
    for (const p of ["d/f", "d/sub/g", "d/sub", "d/ln", "d"]) {
      const [a, b] = [await st(join(r.src, p)), await st(join(r.dst, p))];
      assert.equal(b.mode, a.mode, `${p} mode`);
      assert.equal(b.uid, a.uid, `${p} uid`);
      assert.equal(b.gid, a.gid, `${p} gid`);
      // lutimes takes a double: about a microsecond survives, not the last nanoseconds. (The source's
      // atime moved when it was read, so the copy is compared with what it was before.)
      assert.ok(Math.abs(Number(b.mtimeNs - a.mtimeNs)) < 1000, `${p} mtime ${b.mtimeNs} vs ${a.mtimeNs}`);
      assert.ok(Math.abs(Number(b.atimeNs) - (time - 10) * 1e9) < 1000, `${p} atime`);
    }
    assert.equal((await st(join(r.dst, "d/f"))).mode & 0o7777n, 0o4751n);
  });

  test("owner, mode, mode string and timestamp overrides apply to everything copied and created", async (t) => {
    const r = await roots(t);
    await tree(r.src, { "d/f": "f", "d/sub/g": "g" });
    await chmod(join(r.src, "d/f"), 0o4644);
    await symlink("f", join(r.src, "d/ln"));
    const time = new Date("2020-01-02T03:04:05Z");
    const owner = { uid: 1000, gid: 1001 };
    await copy(r.src, "d", r.dst, "/new/parent/d", {
      owner,
      mode: 0o750,
      timestamp: time,
      createDestPath: true,
    });
    for (const p of [
      "new",
      "new/parent",
      "new/parent/d",
      "new/parent/d/f",
      "new/parent/d/sub",
      "new/parent/d/sub/g",
      "new/parent/d/ln",
    ]) {
      const s = await st(join(r.dst, p));
      assert.deepEqual([s.uid, s.gid], [1000n, 1001n], p);
      assert.equal(s.mtimeNs, BigInt(time.getTime()) * 1_000_000n, p);
    }
    assert.equal((await st(join(r.dst, "new/parent"))).mode & 0o7777n, 0o755n);
    assert.equal((await st(join(r.dst, "new/parent/d/sub"))).mode & 0o7777n, 0o750n);
    // A numeric mode keeps set-id bits, as BuildKit does.
    assert.equal((await st(join(r.dst, "new/parent/d/f"))).mode & 0o7777n, 0o4750n);

    await copy(r.src, "d", r.dst, "/sym", { modeStr: "u+x,g-w,o=" });
    assert.equal((await st(join(r.dst, "sym/f"))).mode & 0o7777n, 0o4740n);
    assert.equal((await st(join(r.dst, "sym/sub"))).mode & 0o7777n, 0o750n);
    await assert.rejects(copy(r.src, "d", r.dst, "/bad", { modeStr: "u+q" }), /invalid chmod mode/);
  });

  test("hard links within the copied set stay hard links", async (t) => {
    const r = await roots(t);
    await tree(r.src, { "h/a": "shared", "h/other": "other", elsewhere: "x" });
    await link(join(r.src, "h/a"), join(r.src, "h/b"));
    await mkdir(join(r.src, "h/deep"));
    await link(join(r.src, "h/a"), join(r.src, "h/deep/c"));
    // Linked to a file outside the copied set: copied as a plain file.
    await link(join(r.src, "elsewhere"), join(r.src, "h/lone"));
    await copy(r.src, "h", r.dst, "/h");
    const [a, b, c, other, lone] = await Promise.all(
      ["a", "b", "deep/c", "other", "lone"].map((p) => st(join(r.dst, "h", p))),
    );
    assert.equal(a!.ino, b!.ino);
    assert.equal(a!.ino, c!.ino);
    assert.equal(a!.nlink, 3n);
    assert.notEqual(other!.ino, a!.ino);
    assert.equal(lone!.nlink, 1n);
    assert.equal(await read(join(r.dst, "h/deep/c")), "shared");
  });

  test("device files and fifos are recreated", async (t) => {
    const r = await roots(t);
    await mkdir(join(r.src, "dev"));
    execFileSync("mknod", ["-m", "640", join(r.src, "dev/null"), "c", "1", "3"]);
    execFileSync("mknod", ["-m", "600", join(r.src, "dev/loop9"), "b", "7", "9"]);
    execFileSync("mkfifo", ["-m", "620", join(r.src, "dev/fifo")]);
    await copy(r.src, "dev", r.dst, "/dev");
    for (const p of ["null", "loop9", "fifo"]) {
      const [a, b] = [await st(join(r.src, "dev", p)), await st(join(r.dst, "dev", p))];
      assert.equal(b.mode, a.mode, p);
      assert.equal(b.rdev, a.rdev, p);
    }
    assert.ok((await st(join(r.dst, "dev/null"))).isCharacterDevice());
    assert.ok((await st(join(r.dst, "dev/fifo"))).isFIFO());
    // A single device file too.
    await copy(r.src, "dev/null", r.dst, "/null");
    assert.ok((await st(join(r.dst, "null"))).isCharacterDevice());
  });
});

describe("copy: include and exclude patterns", () => {
  const files = {
    "a.go": "",
    "b.txt": "",
    "x/c.go": "",
    "x/d.md": "",
    "x/keep.md": "",
    "y/z/e.go": "",
    "empty/": null,
  };
  const cases: Array<{ name: string; opts: CopyOptions; want: string[] }> = [
    {
      name: "include a glob anywhere",
      opts: { includePatterns: ["**/*.go"] },
      want: ["a.go", "x/", "x/c.go", "y/", "y/z/", "y/z/e.go"],
    },
    {
      name: "include a directory",
      opts: { includePatterns: ["x"] },
      want: ["x/", "x/c.go", "x/d.md", "x/keep.md"],
    },
    {
      name: "exclude with an exception",
      opts: { excludePatterns: ["**/*.md", "!x/keep.md", "y"] },
      want: ["a.go", "b.txt", "empty/", "x/", "x/c.go", "x/keep.md"],
    },
    {
      name: "include and exclude",
      opts: { includePatterns: ["x", "*.go"], excludePatterns: ["x/*.md"] },
      want: ["a.go", "x/", "x/c.go"],
    },
  ];
  for (const c of cases) {
    test(c.name, async (t) => {
      const r = await roots(t);
      await tree(
        join(r.src, "p"),
        Object.fromEntries(Object.entries(files).map(([k, v]) => [k.replace(/\/$/, ""), v])),
      );
      await copy(r.src, "p", r.dst, "/out", { dirCopyContents: true, createDestPath: true, ...c.opts });
      assert.deepEqual(await listing(join(r.dst, "out")), c.want.sort());
    });
  }
});

describe("copy: hostile symlinks", () => {
  test("symlinks are copied as symlinks, never followed, wherever they point", async (t) => {
    const r = await roots(t);
    await mkdir(join(r.src, "d"));
    await symlink("/etc/passwd", join(r.src, "d/abs"));
    await symlink(join(r.outside, "victim"), join(r.src, "d/host"));
    await symlink("../../../../../../..", join(r.src, "d/up"));
    await symlink("loop", join(r.src, "d/loop"));
    await copy(r.src, "d", r.dst, "/d");
    assert.deepEqual(
      await listing(join(r.dst, "d")),
      [
        `host -> ${join(r.outside, "victim")}`,
        "abs -> /etc/passwd",
        "loop -> loop",
        "up -> ../../../../../../..",
      ].sort(),
    );
    await copy(r.src, "d/up", r.dst, "/single");
    assert.equal(await readlink(join(r.dst, "single")), "../../../../../../..");
    await assertOutsideUntouched(r);
  });

  test("followSymlink resolves the source inside its root", async (t) => {
    const r = await roots(t);
    await tree(r.src, { "data/file": "inside", "etc/hostname": "inside host" });
    await symlink("/data/file", join(r.src, "abs"));
    await symlink("../../../../data/file", join(r.src, "rel"));
    await symlink(join(r.outside, "victim"), join(r.src, "out"));
    await symlink("/etc/hostname", join(r.src, "host"));
    await symlink("l2", join(r.src, "l1"));
    await symlink("l1", join(r.src, "l2"));
    await copy(r.src, "abs", r.dst, "/a", { followSymlink: true });
    await copy(r.src, "rel", r.dst, "/b", { followSymlink: true });
    await copy(r.src, "host", r.dst, "/c", { followSymlink: true });
    assert.equal(await read(join(r.dst, "a")), "inside");
    assert.equal(await read(join(r.dst, "b")), "inside");
    assert.equal(await read(join(r.dst, "c")), "inside host");
    // The host path does not exist inside the source root: not found, and the host file is not read.
    await assert.rejects(copy(r.src, "out", r.dst, "/d", { followSymlink: true }), /not found/);
    await assert.rejects(
      copy(r.src, "l1", r.dst, "/e", { followSymlink: true }),
      (err: NodeJS.ErrnoException) => err.code === "ELOOP",
    );
    await assertOutsideUntouched(r);
  });

  test("a destination that is a symlink to /etc stays inside the destination root", async (t) => {
    const r = await roots(t);
    await tree(r.src, { passwd: "evil\n", "dir/x": "x" });
    await symlink("/etc", join(r.dst, "target"));
    await symlink(r.outside, join(r.dst, "host"));
    await symlink("../../../../../../../../etc", join(r.dst, "rel"));
    const hostPasswd = await read("/etc/passwd");
    await copy(r.src, "passwd", r.dst, "/target/", {});
    await copy(r.src, "passwd", r.dst, "/rel/passwd2", {});
    await copy(r.src, "dir", r.dst, "/host/", { dirCopyContents: true, createDestPath: true });
    await copy(r.src, "passwd", r.dst, "/host/victim", { createDestPath: true });
    assert.equal(await read(join(r.dst, "etc/passwd")), "evil\n");
    assert.equal(await read(join(r.dst, "etc/passwd2")), "evil\n");
    assert.equal(await read(join(r.dst, r.outside, "x")), "x");
    assert.equal(await read(join(r.dst, r.outside, "victim")), "evil\n");
    assert.equal(await read("/etc/passwd"), hostPasswd);
    await assertOutsideUntouched(r);
  });

  test("a symlink met inside a copied tree's destination is never written through", async (t) => {
    const r = await roots(t);
    await tree(r.src, { "p/sub/x": "x", "p/file": "new" });
    await mkdir(join(r.dst, "out"));
    await symlink("../../outside", join(r.dst, "out/sub"));
    await symlink(join(r.outside, "victim"), join(r.dst, "out/file"));
    await assert.rejects(copy(r.src, "p", r.dst, "/out", { dirCopyContents: true }), /is not a directory/);
    await assertOutsideUntouched(r);
    // The file symlink was replaced by the file (unlinked, not written through).
    assert.equal(await read(join(r.dst, "out/file")), "new");
    await copy(r.src, "p", r.dst, "/out", { dirCopyContents: true, alwaysReplaceExistingDestPaths: true });
    assert.deepEqual(await listing(join(r.dst, "out")), ["file", "sub/", "sub/x"]);
    await assertOutsideUntouched(r);
  });
});

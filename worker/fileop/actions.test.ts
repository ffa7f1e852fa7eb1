import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, type TestContext, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import {
  FileActionCopySchema,
  FileActionMkDirSchema,
  FileActionMkFileSchema,
  FileActionRmSchema,
  FileActionSymlinkSchema,
} from "../../proto/gen/pb/ops_pb.ts";
import { applyCopy, applyMkdir, applyMkfile, applyRm, applySymlink, timeFromNs } from "./actions.ts";

interface Env {
  root: string;
  outside: string;
}

/** A target root with some content, and an outside dir that must never change. */
async function env(t: TestContext): Promise<Env> {
  const base = await mkdtemp(join(tmpdir(), "buildd-fileop-"));
  t.after(() => rm(base, { recursive: true, force: true }));
  const root = join(base, "root");
  const outside = join(base, "outside");
  await mkdir(join(root, "etc"), { recursive: true });
  await mkdir(join(root, "var/log"), { recursive: true });
  await mkdir(outside);
  await writeFile(join(outside, "victim"), "untouched");
  await writeFile(join(root, "etc/hosts"), "hosts");
  await writeFile(join(root, "var/log/a.log"), "a");
  await writeFile(join(root, "var/log/b.log"), "b");
  await writeFile(join(root, "var/log/keep.txt"), "k");
  await symlink("/etc", join(root, "etc-link"));
  await symlink(outside, join(root, "host-dir"));
  await symlink(join(outside, "victim"), join(root, "host-file"));
  await symlink("../../../../../..", join(root, "up"));
  return { root, outside };
}

async function assertOutsideUntouched(e: Env): Promise<void> {
  assert.deepEqual(await readdir(e.outside), ["victim"]);
  assert.equal(await readFile(join(e.outside, "victim"), "utf8"), "untouched");
}

const T = 1577934245000000000n; // 2020-01-02T03:04:05Z in nanoseconds
const owner = { uid: 1000, gid: 1001 };

describe("applyMkdir", () => {
  test("creates with an exact mode, owner and time", async (t) => {
    const e = await env(t);
    await applyMkdir(
      e.root,
      create(FileActionMkDirSchema, { path: "/app", mode: 0o777, timestamp: T }),
      owner,
    );
    const st = await lstat(join(e.root, "app"));
    assert.equal(st.mode & 0o7777, 0o777);
    assert.deepEqual([st.uid, st.gid], [1000, 1001]);
    assert.equal(st.mtime.getTime(), 1577934245000);
  });

  test("makeParents creates every missing directory alike", async (t) => {
    const e = await env(t);
    await applyMkdir(
      e.root,
      create(FileActionMkDirSchema, { path: "a/b/c", mode: 0o750, makeParents: true, timestamp: T }),
      owner,
    );
    for (const p of ["a", "a/b", "a/b/c"]) {
      const st = await lstat(join(e.root, p));
      assert.equal(st.mode & 0o7777, 0o750, p);
      assert.equal(st.uid, 1000, p);
      assert.equal(st.mtime.getTime(), 1577934245000, p);
    }
  });

  test("an existing directory is fine; a file or a missing parent is not", async (t) => {
    const e = await env(t);
    await applyMkdir(e.root, create(FileActionMkDirSchema, { path: "/etc", mode: 0o700, timestamp: -1n }));
    assert.notEqual((await lstat(join(e.root, "etc"))).mode & 0o777, 0o700);
    await assert.rejects(
      applyMkdir(e.root, create(FileActionMkDirSchema, { path: "/etc/hosts", mode: 0o755, timestamp: -1n })),
      /mkdir \/etc\/hosts: .*not a directory/,
    );
    await assert.rejects(
      applyMkdir(e.root, create(FileActionMkDirSchema, { path: "/no/such", mode: 0o755, timestamp: -1n })),
      /parent directory does not exist/,
    );
  });

  test("paths through hostile symlinks and .. stay in the root", async (t) => {
    const e = await env(t);
    for (const path of ["/host-dir/new", "../../up/etc-link/new2", "/etc-link/new3"]) {
      await applyMkdir(
        e.root,
        create(FileActionMkDirSchema, { path, mode: 0o755, makeParents: true, timestamp: -1n }),
      );
    }
    assert.ok((await lstat(join(e.root, e.outside, "new"))).isDirectory());
    assert.ok((await lstat(join(e.root, "etc/new2"))).isDirectory());
    assert.ok((await lstat(join(e.root, "etc/new3"))).isDirectory());
    await assertOutsideUntouched(e);
  });
});

describe("applyMkfile", () => {
  test("writes data with an exact mode, owner and time, replacing old content", async (t) => {
    const e = await env(t);
    const action = create(FileActionMkFileSchema, {
      path: "/etc/hosts",
      mode: 0o640,
      data: Buffer.from("new"),
      timestamp: T,
    });
    await applyMkfile(e.root, action, owner);
    const st = await lstat(join(e.root, "etc/hosts"));
    assert.equal(await readFile(join(e.root, "etc/hosts"), "utf8"), "new");
    assert.equal(st.mode & 0o7777, 0o640);
    assert.deepEqual([st.uid, st.gid], [1000, 1001]);
    assert.equal(st.mtime.getTime(), 1577934245000);
  });

  test("a symlink at the path is followed inside the root only", async (t) => {
    const e = await env(t);
    const evil = create(FileActionMkFileSchema, {
      path: "/host-file",
      mode: 0o644,
      data: Buffer.from("evil"),
      timestamp: -1n,
    });
    // The link's target re-rooted: its directory does not exist inside the root.
    await assert.rejects(applyMkfile(e.root, evil), { code: "ENOENT" });
    await mkdir(join(e.root, e.outside), { recursive: true });
    await applyMkfile(e.root, evil);
    await applyMkfile(
      e.root,
      create(FileActionMkFileSchema, {
        path: "/etc-link/x",
        mode: 0o644,
        data: Buffer.from("x"),
        timestamp: -1n,
      }),
    );
    assert.equal(await readFile(join(e.root, e.outside, "victim"), "utf8"), "evil");
    assert.equal(await readFile(join(e.root, "etc/x"), "utf8"), "x");
    await assertOutsideUntouched(e);
  });

  test("a directory or the root cannot be written", async (t) => {
    const e = await env(t);
    for (const path of ["/etc", "/", "../.."]) {
      await assert.rejects(
        applyMkfile(e.root, create(FileActionMkFileSchema, { path, mode: 0o644, timestamp: -1n })),
        /mkfile/,
      );
    }
  });
});

describe("applyRm", () => {
  const cases: Array<{ name: string; path: string; wildcard?: boolean; gone: string[]; kept: string[] }> = [
    { name: "a file", path: "/etc/hosts", gone: ["etc/hosts"], kept: ["etc"] },
    { name: "a directory, recursively", path: "var", gone: ["var"], kept: ["etc"] },
    {
      name: "a symlink to a host directory is unlinked, not followed",
      path: "/host-dir",
      gone: ["host-dir"],
      kept: [],
    },
    { name: "a symlink to a host file is unlinked", path: "/host-file", gone: ["host-file"], kept: [] },
    {
      name: "through a symlinked parent, inside the root",
      path: "/etc-link/hosts",
      gone: ["etc/hosts"],
      kept: ["etc-link"],
    },
    {
      name: "through a climbing symlink, inside the root",
      path: "/up/var/log",
      gone: ["var/log"],
      kept: ["up", "var"],
    },
    { name: ".. cannot climb out", path: "../../../etc/hosts", gone: ["etc/hosts"], kept: [] },
    {
      name: "wildcards",
      path: "/var/log/*.log",
      wildcard: true,
      gone: ["var/log/a.log", "var/log/b.log"],
      kept: ["var/log/keep.txt"],
    },
  ];
  for (const c of cases) {
    test(c.name, async (t) => {
      const e = await env(t);
      await applyRm(e.root, create(FileActionRmSchema, { path: c.path, allowWildcard: c.wildcard ?? false }));
      for (const p of c.gone) await assert.rejects(lstat(join(e.root, p)), { code: "ENOENT" }, p);
      for (const p of c.kept) await lstat(join(e.root, p));
      await assertOutsideUntouched(e);
    });
  }

  test("a directory holding a symlink to the host is removed without touching the host", async (t) => {
    const e = await env(t);
    await mkdir(join(e.root, "d"));
    await symlink(e.outside, join(e.root, "d/out"));
    await applyRm(e.root, create(FileActionRmSchema, { path: "/d" }));
    await assertOutsideUntouched(e);
  });

  test("the root itself is refused", async (t) => {
    const e = await env(t);
    for (const path of ["/", "", "..", "/etc/../..", "up/.."]) {
      await assert.rejects(
        applyRm(e.root, create(FileActionRmSchema, { path, allowNotFound: true })),
        /refusing to remove the root/,
        path,
      );
    }
    await lstat(join(e.root, "etc/hosts"));
  });

  test("missing paths fail unless allowNotFound", async (t) => {
    const e = await env(t);
    await assert.rejects(
      applyRm(e.root, create(FileActionRmSchema, { path: "/nope" })),
      /rm \/nope: .*no such file/,
    );
    await assert.rejects(
      applyRm(e.root, create(FileActionRmSchema, { path: "/x/*.none", allowWildcard: true })),
      /no such file/,
    );
    await applyRm(e.root, create(FileActionRmSchema, { path: "/nope", allowNotFound: true }));
    await applyRm(
      e.root,
      create(FileActionRmSchema, { path: "/var/*.none", allowWildcard: true, allowNotFound: true }),
    );
  });
});

describe("applySymlink", () => {
  test("creates the link as given, with owner and time on the link itself", async (t) => {
    const e = await env(t);
    await applySymlink(
      e.root,
      create(FileActionSymlinkSchema, { oldpath: "/etc/passwd", newpath: "/etc-link/pw", timestamp: T }),
      owner,
    );
    const p = join(e.root, "etc/pw");
    assert.equal(await readlink(p), "/etc/passwd");
    const st = await lstat(p);
    assert.deepEqual([st.uid, st.gid], [1000, 1001]);
    assert.equal(st.mtime.getTime(), 1577934245000);
  });

  test("an existing path is not replaced or followed", async (t) => {
    const e = await env(t);
    await assert.rejects(
      applySymlink(
        e.root,
        create(FileActionSymlinkSchema, { oldpath: "x", newpath: "/host-dir", timestamp: -1n }),
      ),
      /EEXIST/,
    );
    await assert.rejects(
      applySymlink(e.root, create(FileActionSymlinkSchema, { oldpath: "x", newpath: "/", timestamp: -1n })),
      /EEXIST/,
    );
    await assertOutsideUntouched(e);
  });
});

describe("applyCopy", () => {
  test("maps every FileActionCopy field onto the copy", async (t) => {
    const e = await env(t);
    const src = join(e.root, "..", "src");
    await mkdir(join(src, "app/sub"), { recursive: true });
    await writeFile(join(src, "app/a.go"), "a");
    await writeFile(join(src, "app/sub/b.go"), "b");
    await writeFile(join(src, "app/readme.md"), "r");
    const action = create(FileActionCopySchema, {
      src: "/ap*",
      dest: "/opt/app/",
      mode: -1,
      modeStr: "go-rwx",
      allowWildcard: true,
      dirCopyContents: true,
      createDestPath: true,
      timestamp: T,
      excludePatterns: ["*.md"],
    });
    await applyCopy(src, e.root, action, owner);
    const names = (await readdir(join(e.root, "opt/app"), { recursive: true })).sort();
    assert.deepEqual(names, ["a.go", "sub", "sub/b.go"]);
    const st = await lstat(join(e.root, "opt/app/sub/b.go"));
    assert.equal(st.mode & 0o777, 0o600);
    assert.deepEqual([st.uid, st.gid], [1000, 1001]);
    assert.equal(st.mtime.getTime(), 1577934245000);
  });
});

test("timeFromNs", () => {
  assert.equal(timeFromNs(-1n), undefined);
  assert.equal(timeFromNs(0n)?.getTime(), 0);
  assert.equal(timeFromNs(T)?.toISOString(), "2020-01-02T03:04:05.000Z");
});

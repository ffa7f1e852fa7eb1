import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { compareNames, followLinks, type WalkOptions, walk } from "./walk.ts";

let root: string;

async function paths(opts: WalkOptions = {}, dir = root): Promise<string[]> {
  const out: string[] = [];
  for await (const e of walk(dir, opts)) out.push(e.path);
  return out;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), "buildd-walk-"));
  const files = [
    "a.txt",
    "a/b",
    "b/c.txt",
    "b/d/e.go",
    "b/d/f.txt",
    "docs/README.md",
    "docs/other.md",
    "vendor/x/y.go",
    "vendor/keep/z.go",
    ".git/config",
  ];
  for (const f of files) {
    await mkdir(join(root, f, ".."), { recursive: true });
    await writeFile(join(root, f), f);
  }
  await mkdir(join(root, "sub"));
  await symlink("/etc", join(root, "abs-link"));
  await symlink("../b", join(root, "sub/lnk"));
});

after(() => rm(root, { recursive: true, force: true }));

describe("walk", () => {
  test("yields everything depth-first in name order, symlinks unfollowed", async () => {
    const entries = [];
    for await (const e of walk(root)) entries.push(e);
    assert.deepEqual(
      entries.map((e) => e.path),
      [
        ".git",
        ".git/config",
        "a",
        "a/b",
        "a.txt",
        "abs-link",
        "b",
        "b/c.txt",
        "b/d",
        "b/d/e.go",
        "b/d/f.txt",
        "docs",
        "docs/README.md",
        "docs/other.md",
        "sub",
        "sub/lnk",
        "vendor",
        "vendor/keep",
        "vendor/keep/z.go",
        "vendor/x",
        "vendor/x/y.go",
      ],
    );
    const link = entries.find((e) => e.path === "abs-link")!;
    assert.equal(link.linkTarget, "/etc");
    assert.ok(link.stat.isSymbolicLink());
    assert.equal(typeof link.stat.ino, "bigint");
  });

  const cases: Array<{ name: string; opts: WalkOptions; want: string[] }> = [
    {
      name: "exclude a directory and a glob",
      opts: { exclude: ["vendor", "**/*.txt", ".git"] },
      want: [
        "a",
        "a/b",
        "abs-link",
        "b",
        "b/d",
        "b/d/e.go",
        "docs",
        "docs/README.md",
        "docs/other.md",
        "sub",
        "sub/lnk",
      ],
    },
    {
      name: "an exception re-includes a file of an excluded directory, which is yielded first",
      opts: { exclude: ["docs", "!docs/README.md", "vendor", "!vendor/keep", ".git", "b", "a*", "sub"] },
      want: ["docs", "docs/README.md", "vendor", "vendor/keep", "vendor/keep/z.go"],
    },
    {
      name: "a wildcard exception is found deep below",
      opts: { exclude: ["*", "!**/*.go"] },
      want: [
        "b",
        "b/d",
        "b/d/e.go",
        "vendor",
        "vendor/keep",
        "vendor/keep/z.go",
        "vendor/x",
        "vendor/x/y.go",
      ],
    },
    {
      name: "include a glob: parents come along",
      opts: { include: ["b/d/*.go"] },
      want: ["b", "b/d", "b/d/e.go"],
    },
    {
      name: "include a directory: everything below comes along",
      opts: { include: ["docs"] },
      want: ["docs", "docs/README.md", "docs/other.md"],
    },
    {
      name: "include and exclude together",
      opts: { include: ["b", "docs"], exclude: ["**/*.txt", "docs/other.md"] },
      want: ["b", "b/d", "b/d/e.go", "docs", "docs/README.md"],
    },
    {
      name: "followPaths take the symlinks on the way and their targets",
      opts: { followPaths: ["sub/lnk/c.txt"] },
      want: ["b", "b/c.txt", "sub", "sub/lnk"],
    },
    {
      name: "followPaths naming the root filter nothing",
      opts: { followPaths: ["docs/README.md", "."], exclude: ["vendor", ".git", "b", "a*", "sub"] },
      want: ["docs", "docs/README.md", "docs/other.md"],
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      assert.deepEqual(await paths(c.opts), c.want);
    });
  }

  test("an excluded directory without exceptions below is not entered at all", async () => {
    const dir = await mkdtemp(join(tmpdir(), "buildd-walk-prune-"));
    try {
      await mkdir(join(dir, "skip"));
      await writeFile(join(dir, "keep"), "");
      // Entering "skip" would fail on this name; pruning never reads it.
      await writeFile(Buffer.from(`${dir}/skip/\xff`, "latin1"), "");
      assert.deepEqual(await paths({ exclude: ["skip"] }, dir), ["keep"]);
      assert.deepEqual(await paths({ exclude: ["skip", "!other/x"] }, dir), ["keep"]);
      assert.deepEqual(await paths({ include: ["keep"] }, dir), ["keep"]);
      await assert.rejects(paths({}, dir), (err: NodeJS.ErrnoException) => err.code === "EILSEQ");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("refuses to walk a symlink or a file", async () => {
    await assert.rejects(paths({}, join(root, "abs-link")), /not a directory/);
    await assert.rejects(paths({}, join(root, "a.txt")), /not a directory/);
  });

  test("stops when aborted", async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(paths({ signal: ac.signal }), { name: "AbortError" });
  });
});

test("followLinks resolves links, wildcards and clamps escapes", async () => {
  assert.deepEqual(await followLinks(root, ["sub/lnk/d"]), ["b/d", "sub/lnk"]);
  assert.deepEqual(await followLinks(root, ["abs-link/passwd"]), ["abs-link", "etc/passwd"]);
  assert.deepEqual(await followLinks(root, ["sub/l*"]), ["b", "sub/l*"]);
  assert.deepEqual(await followLinks(root, ["b", "b/c.txt"]), ["b"]);
  assert.equal(await followLinks(root, ["/"]), undefined);
});

test("compareNames orders by UTF-8 bytes", () => {
  assert.ok(compareNames("a", "a.txt") < 0);
  assert.ok(compareNames("B", "a") < 0);
  // U+FF21 sorts before U+1F600 in UTF-8 but after it in UTF-16.
  assert.ok(compareNames("\uFF21", "\u{1F600}") < 0);
});

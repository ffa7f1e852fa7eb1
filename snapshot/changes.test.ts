import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { lstat, mkdir, readFile, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { applyChanges, type Change, walkChanges, writeLayer } from "./changes.ts";
import { describeTree, tempRoot } from "./testing.ts";

async function changes(lower: string | undefined, upper: string): Promise<Change[]> {
  const out: Change[] = [];
  await walkChanges(lower, upper, async (c) => {
    out.push(c);
  });
  return out;
}

test("walkChanges reports adds, modifies, deletions and directory metadata", async (t) => {
  const root = await tempRoot(t);
  const [l, u] = [join(root, "l"), join(root, "u")];
  for (const d of [l, u]) {
    await mkdir(join(d, "same"), { recursive: true });
    await writeFile(join(d, "same", "f"), "1");
    await utimes(join(d, "same", "f"), 1000.5, 1000.5);
    await utimes(join(d, "same"), 1000, 1000);
  }
  await writeFile(join(l, "gone"), "x");
  await writeFile(join(l, "typechange"), "file");
  await mkdir(join(u, "typechange"));
  await mkdir(join(u, "new", "deep"), { recursive: true });
  await writeFile(join(u, "new", "deep", "f"), "n");
  assert.deepEqual(await changes(l, u), [
    { kind: "delete", path: "gone" },
    { kind: "add", path: "new" },
    { kind: "add", path: "typechange" },
  ]);
});

test("a file with the same size and a whole-second mtime is compared by content", async (t) => {
  const root = await tempRoot(t);
  const [l, u] = [join(root, "l"), join(root, "u")];
  await mkdir(l);
  await mkdir(u);
  await writeFile(join(l, "f"), "aaaa");
  await writeFile(join(u, "f"), "bbbb");
  await writeFile(join(l, "g"), "same");
  await writeFile(join(u, "g"), "same");
  for (const d of [l, u]) {
    for (const f of ["f", "g"]) await utimes(join(d, f), 1000, 1000);
    await utimes(d, 1000, 1000);
  }
  assert.deepEqual(await changes(l, u), [{ kind: "modify", path: "f" }]);
});

test("writeLayer writes whiteouts for deletions and keeps metadata", async (t) => {
  const root = await tempRoot(t);
  const [l, u, out] = [join(root, "l"), join(root, "u"), join(root, "out")];
  await mkdir(join(l, "d"), { recursive: true });
  await mkdir(join(u, "d"), { recursive: true });
  await mkdir(out);
  await writeFile(join(l, "d", "gone"), "x");
  await writeFile(join(u, "d", "new"), "y", { mode: 0o640 });
  execFileSync("chown", ["123:456", join(u, "d", "new")]);
  await writeLayer(out, l, u);
  const st = await lstat(join(out, "d", "gone"));
  assert.ok(st.isCharacterDevice() && st.rdev === 0);
  assert.equal((await describeTree(out))["d/new"], "file 640 123:456 y");
});

test("applyChanges never writes through a symlink the target has where the upper tree has a dir", async (t) => {
  const root = await tempRoot(t);
  const [l, u, target, outside] = [join(root, "l"), join(root, "u"), join(root, "t"), join(root, "outside")];
  await mkdir(join(l, "a"), { recursive: true });
  await mkdir(join(u, "a"), { recursive: true });
  await writeFile(join(l, "a", "victim"), "lower");
  await writeFile(join(u, "a", "payload"), "upper");
  await mkdir(outside);
  await writeFile(join(outside, "victim"), "must survive");
  await mkdir(target);
  await symlink(outside, join(target, "a"));
  await applyChanges(target, l, u);
  assert.equal(await readFile(join(outside, "victim"), "utf8"), "must survive");
  assert.deepEqual(await describeTree(outside), { victim: "file 644 0:0 must survive" });
  assert.equal((await lstat(join(target, "a"))).isDirectory(), true);
  assert.equal(await readFile(join(target, "a", "payload"), "utf8"), "upper");
});

test("applyChanges keeps hard links among the files it copies", async (t) => {
  const root = await tempRoot(t);
  const [u, target] = [join(root, "u"), join(root, "t")];
  await mkdir(u);
  await mkdir(target);
  await writeFile(join(u, "one"), "x");
  execFileSync("ln", [join(u, "one"), join(u, "two")]);
  await applyChanges(target, undefined, u);
  assert.equal((await lstat(join(target, "one"))).ino, (await lstat(join(target, "two"))).ino);
});

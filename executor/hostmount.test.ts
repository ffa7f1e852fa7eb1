// Host-side mounting with real mounts: the mount(2) helper, the mount(8) fallback's arguments,
// mountinfo parsing and the removal that never deletes through a mount.
import assert from "node:assert/strict";
import { mkdir, open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { mustRunTool } from "./command.ts";
import {
  mountAll,
  mountArgs,
  mountPointsUnder,
  parseMountinfo,
  parseMountOptions,
  readMountinfo,
  removeUnmountedTree,
  unmountAll,
} from "./hostmount.ts";
import { defer, tempDir, unmountLeftovers } from "./testutil.ts";

async function mountedAt(target: string): Promise<string[]> {
  return (await readMountinfo()).filter((m) => m.mountPoint === target).map((m) => m.fsType);
}

test("mountinfo lines are parsed, escapes decoded; mounts below a dir come deepest first", () => {
  const text =
    "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n" +
    "37 36 0:5 / /mnt/with\\040space/sub rw - tmpfs tmpfs rw\n" +
    "38 26 0:6 / /mnt/other rw shared:2 - overlay overlay rw,lowerdir=/a\n";
  const mounts = parseMountinfo(text);
  assert.equal(mounts[0]!.mountPoint, "/mnt/with space");
  assert.equal(mounts[0]!.root, "/mnt1");
  assert.equal(mounts[0]!.fsType, "ext3");
  assert.equal(mounts[2]!.superOptions, "rw,lowerdir=/a");
  assert.deepEqual(mountPointsUnder(mounts, "/mnt"), [
    "/mnt/with space/sub",
    "/mnt/with space",
    "/mnt/other",
  ]);
});

test("mount options split into flags and filesystem data", () => {
  assert.deepEqual(parseMountOptions(["rbind", "ro"]), { flags: 0x1000 | 0x4000 | 0x1, data: "" });
  assert.deepEqual(parseMountOptions(["nosuid", "nodev", "size=1m", "mode=0755"]), {
    flags: 0x2 | 0x4,
    data: "size=1m,mode=0755",
  });
  assert.deepEqual(parseMountOptions(["ro", "rw", "lowerdir=/a:/b"]), { flags: 0, data: "lowerdir=/a:/b" });
});

test("tmpfs, read-only binds, overlays and stacked mounts mount and unmount", async (t) => {
  const dir = await tempDir(t);
  defer(t, () => unmountLeftovers(dir));
  for (const d of ["t", "src", "ro", "lower", "upper", "work", "ovl"]) await mkdir(join(dir, d));
  await writeFile(join(dir, "src/f"), "source\n");
  await writeFile(join(dir, "lower/l"), "lower\n");

  await mountAll(
    [{ type: "tmpfs", source: "test", options: ["size=1m", "mode=0700"] }],
    join(dir, "t"),
    "a tmpfs",
  );
  assert.deepEqual(await mountedAt(join(dir, "t")), ["tmpfs"]);

  await mountAll(
    [{ type: "bind", source: join(dir, "src"), options: ["rbind", "ro"] }],
    join(dir, "ro"),
    "a bind",
  );
  assert.equal(await readFile(join(dir, "ro/f"), "utf8"), "source\n");
  await assert.rejects(writeFile(join(dir, "ro/new"), "x"), { code: "EROFS" });

  const lowerOpts = [
    `lowerdir=${join(dir, "lower")}`,
    `upperdir=${join(dir, "upper")}`,
    `workdir=${join(dir, "work")}`,
  ];
  await mountAll(
    [{ type: "overlay", source: "overlay", options: lowerOpts }],
    join(dir, "ovl"),
    "an overlay",
  );
  await writeFile(join(dir, "ovl/new"), "upper\n");
  assert.equal(await readFile(join(dir, "upper/new"), "utf8"), "upper\n");
  assert.equal(await readFile(join(dir, "ovl/l"), "utf8"), "lower\n");

  // A list of two mounts stacks at one target; each unmount takes one off.
  await mountAll(
    [
      { type: "tmpfs", source: "first", options: [] },
      { type: "tmpfs", source: "second", options: [] },
    ],
    join(dir, "t"),
    "stacked tmpfs",
  );
  assert.equal((await mountedAt(join(dir, "t"))).length, 3);
  await unmountAll([join(dir, "t"), join(dir, "t")]);
  assert.equal((await mountedAt(join(dir, "t"))).length, 1);

  // A busy mount is detached lazily; a target that is not mounted is skipped.
  const busy = await open(join(dir, "ovl/l"));
  await unmountAll([join(dir, "t"), join(dir, "ro"), join(dir, "ovl"), join(dir, "src")]);
  await busy.close();
  assert.deepEqual(await mountPointsUnder(await readMountinfo(), dir), []);
  assert.equal(await readFile(join(dir, "upper/new"), "utf8"), "upper\n");
});

test("a failing mount says what, where and why", async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(
    mountAll(
      [{ type: "overlay", source: "overlay", options: ["lowerdir=/does/not/exist"] }],
      dir,
      "the root filesystem",
    ),
    /mounting the root filesystem \(overlay overlay\) at .*: ENOENT/,
  );
  assert.deepEqual(await mountedAt(dir), []);
});

test("the mount(8) fallback's arguments mount the same thing", async (t) => {
  const dir = await tempDir(t);
  defer(t, () => unmountLeftovers(dir));
  await mkdir(join(dir, "src"));
  await mkdir(join(dir, "ro"));
  await writeFile(join(dir, "src/f"), "source\n");
  await mustRunTool(
    "mount",
    mountArgs({ type: "bind", source: join(dir, "src"), options: ["ro"] }, join(dir, "ro")),
    "t",
  );
  await assert.rejects(writeFile(join(dir, "ro/new"), "x"), { code: "EROFS" });
  assert.equal(await readFile(join(dir, "ro/f"), "utf8"), "source\n");
});

test("removing a tree never deletes through a mount that is still there", async (t) => {
  const dir = await tempDir(t);
  defer(t, () => unmountLeftovers(dir));
  await mkdir(join(dir, "tree/mnt"), { recursive: true });
  await mkdir(join(dir, "data"));
  await writeFile(join(dir, "data/precious"), "keep\n");
  await writeFile(join(dir, "tree/file"), "x");
  // A bind of the same filesystem has the same device number: mountinfo is what tells.
  await mountAll(
    [{ type: "bind", source: join(dir, "data"), options: ["rbind"] }],
    join(dir, "tree/mnt"),
    "data",
  );
  await assert.rejects(removeUnmountedTree(join(dir, "tree")), /tree\/mnt is still a mount point/);
  await unmountAll([join(dir, "tree/mnt")]);
  await removeUnmountedTree(join(dir, "tree"));
  assert.equal(await readFile(join(dir, "data/precious"), "utf8"), "keep\n");
});

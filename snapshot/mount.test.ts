import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import {
  isMountPoint,
  mountAll,
  mountsUsing,
  readonlyMounts,
  relativeOverlayOptions,
  unmountAll,
  withMounted,
} from "./mount.ts";
import { tempRoot } from "./testing.ts";

test("relativeOverlayOptions rewrites layer dirs relative to their common parent", () => {
  const out = relativeOverlayOptions([
    "index=off",
    "lowerdir=/r/s/2/fs:/r/s/1/fs",
    "upperdir=/r/s/3/fs",
    "workdir=/r/s/3/work",
  ]);
  assert.deepEqual(out, {
    cwd: "/r/s",
    options: ["index=off", "lowerdir=2/fs:1/fs", "upperdir=3/fs", "workdir=3/work"],
  });
});

test("readonlyMounts makes binds ro and folds an overlay's upper dir into its lower dirs", () => {
  assert.deepEqual(
    readonlyMounts([
      { type: "bind", source: "/a", options: ["rbind", "rw"] },
      { type: "overlay", source: "overlay", options: ["lowerdir=/l2:/l1", "upperdir=/u", "workdir=/w"] },
    ]),
    [
      { type: "bind", source: "/a", options: ["rbind", "ro"] },
      { type: "overlay", source: "overlay", options: ["lowerdir=/u:/l2:/l1"] },
    ],
  );
});

test("withMounted mounts read-only binds and always unmounts, even when fn throws", async (t) => {
  const root = await tempRoot(t);
  await mkdir(join(root, "src"));
  await writeFile(join(root, "src", "f"), "x");
  let seen = "";
  await assert.rejects(
    withMounted(
      [{ type: "bind", source: join(root, "src"), options: ["rbind"] }],
      async (dir) => {
        seen = dir;
        assert.equal(await readFile(join(dir, "f"), "utf8"), "x");
        await assert.rejects(writeFile(join(dir, "g"), "y"), { code: "EROFS" });
        throw new Error("boom");
      },
      { readonly: true, base: root },
    ),
    /boom/,
  );
  assert.equal(await isMountPoint(seen), false);
  assert.deepEqual((await readdir(root)).sort(), ["src"]);
});

test("mountsUsing finds mounts inside a dir, overlays of its dirs and binds of its subdirs", async (t) => {
  const root = await tempRoot(t);
  const data = join(root, "data");
  const outside = join(root, "outside");
  for (const d of ["l1", "l2", "u", "w", "sub"]) await mkdir(join(data, d), { recursive: true });
  for (const d of ["ov", "bind"]) await mkdir(join(outside, d), { recursive: true });
  await mountAll(
    [
      {
        type: "overlay",
        source: "overlay",
        options: [`lowerdir=${data}/l2:${data}/l1`, `upperdir=${data}/u`, `workdir=${data}/w`],
      },
    ],
    join(outside, "ov"),
  );
  await mountAll(
    [{ type: "bind", source: join(data, "sub"), options: ["rbind", "ro"] }],
    join(outside, "bind"),
  );
  assert.deepEqual((await mountsUsing(data)).sort(), [join(outside, "bind"), join(outside, "ov")]);
  for (const mp of await mountsUsing(data)) await unmountAll(mp);
  assert.deepEqual(await mountsUsing(data), []);
});

test("mountAll mounts a tmpfs and reports mount failures with what it tried", async (t) => {
  const root = await tempRoot(t);
  await mkdir(join(root, "m"));
  await mountAll([{ type: "tmpfs", source: "tmpfs", options: ["size=1m"] }], join(root, "m"));
  await writeFile(join(root, "m", "f"), "x");
  await unmountAll(join(root, "m"));
  assert.deepEqual(await readdir(join(root, "m")), []);
  await assert.rejects(
    mountAll([{ type: "bind", source: join(root, "missing"), options: ["rbind"] }], join(root, "m")),
    /mounting .*missing/,
  );
});

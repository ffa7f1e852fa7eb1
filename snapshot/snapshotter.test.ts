import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, chown, lstat, mkdir, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, type TestContext, test } from "node:test";
import { makeBusyboxRootfs } from "../test/busybox.ts";
import { openSnapshotter } from "./index.ts";
import { mountAll, withMounted } from "./mount.ts";
import { describeMounts, describeTree, tempRoot, treeDifferences } from "./testing.ts";
import type { Snapshotter, SnapshotterDriver } from "./types.ts";

async function open(t: TestContext, driver: SnapshotterDriver): Promise<Snapshotter> {
  const root = await tempRoot(t);
  const sn = await openSnapshotter({ root: join(root, "snapshots"), driver });
  t.after(() => sn.close());
  return sn;
}

/** Prepares `key` on `parent`, lets `fn` change it through its mounts, commits it as `key`. */
async function layer(
  sn: Snapshotter,
  key: string,
  parent: string | undefined,
  fn: (dir: string) => Promise<void>,
) {
  const mounts = await sn.prepare(`${key}-active`, parent);
  await withMounted(mounts, fn, { base: join(sn.root, "mnt") });
  await sn.commit(key, `${key}-active`);
}

function du(dir: string): number {
  return Number(execFileSync("du", ["-s", "-B1", dir], { encoding: "utf8" }).split("\t")[0]);
}

for (const driver of ["overlayfs", "native"] as const) {
  describe(`${driver} snapshotter`, () => {
    test("prepare, commit and view a chain; each snapshot keeps its own contents", async (t) => {
      const sn = await open(t, driver);
      assert.equal(sn.driver, driver);
      await layer(sn, "a", undefined, async (d) => {
        await writeFile(join(d, "keep"), "a");
        await writeFile(join(d, "gone"), "a");
        await mkdir(join(d, "dir"));
        await writeFile(join(d, "dir", "f"), "a");
      });
      await layer(sn, "b", "a", async (d) => {
        await writeFile(join(d, "keep"), "b");
        await rm(join(d, "gone"));
        await rm(join(d, "dir"), { recursive: true });
        await mkdir(join(d, "dir"));
        await writeFile(join(d, "dir", "g"), "b");
        await symlink("/etc/passwd", join(d, "link"));
        await chown(join(d, "keep"), 1000, 1000);
        await chmod(join(d, "keep"), 0o600);
      });
      const a = await describeMounts(await sn.mounts("a"));
      assert.deepEqual(a, {
        dir: "dir 755 0:0",
        "dir/f": "file 644 0:0 a",
        gone: "file 644 0:0 a",
        keep: "file 644 0:0 a",
      });
      const vm = await sn.view("v", "b");
      assert.deepEqual(await describeMounts(vm), {
        dir: "dir 755 0:0",
        "dir/g": "file 644 0:0 b",
        keep: "file 600 1000:1000 b",
        link: "link 777 0:0 /etc/passwd",
      });
      assert.equal(sn.stat("v").kind, "view");
      assert.equal(sn.stat("b").parent, "a");
      assert.deepEqual(
        sn
          .list()
          .map((i) => i.key)
          .sort(),
        ["a", "b", "v"],
      );
    });

    test("a view is read-only and an active snapshot is writable", async (t) => {
      const sn = await open(t, driver);
      await layer(sn, "a", undefined, (d) => writeFile(join(d, "f"), "x"));
      const view = await sn.view("v", "a");
      await withMounted(view, async (d) => {
        await assert.rejects(writeFile(join(d, "new"), "x"), { code: "EROFS" });
      });
      const active = await sn.prepare("w", "a");
      await withMounted(active, async (d) => {
        await writeFile(join(d, "new"), "x");
        await assert.rejects(sn.commit("wc", "w"), /mounted at .*unmount it first/);
        await assert.rejects(sn.remove("w"), { code: "failed_precondition" });
      });
      assert.deepEqual(Object.keys(await describeMounts(await sn.mounts("w"))).sort(), ["f", "new"]);
      assert.deepEqual(Object.keys(await describeMounts(await sn.mounts("a"))), ["f"]);
    });

    test("usage is the real disk usage of the snapshot's own data", async (t) => {
      const sn = await open(t, driver);
      await layer(sn, "a", undefined, async (d) => {
        await writeFile(join(d, "big"), Buffer.alloc(300_000, 1));
        await writeFile(join(d, "small"), "x");
        execFileSync("ln", [join(d, "big"), join(d, "hardlink")]);
      });
      await layer(sn, "b", "a", (d) => writeFile(join(d, "more"), Buffer.alloc(100_000, 2)));
      const dirOf = async (key: string) => {
        const m = await sn.mounts(key);
        return sn.diffDir(key) ?? m[0]!.source;
      };
      const ua = await sn.usage("a");
      assert.equal(ua.size, du(await dirOf("a")));
      assert.ok(ua.size >= 300_000 && ua.size < 400_000, `a uses ${ua.size} bytes`);
      assert.equal(ua.inodes, 3, "the root, big (hard-linked twice) and small");
      const ub = await sn.usage("b");
      assert.equal(ub.size, du(await dirOf("b")));
      if (driver === "overlayfs") assert.ok(ub.size < 200_000, "an overlay layer holds only its changes");
      else assert.ok(ub.size >= 400_000, "a native snapshot is a full copy");
    });

    test("remove refuses while other snapshots depend on it", async (t) => {
      const sn = await open(t, driver);
      await layer(sn, "a", undefined, (d) => writeFile(join(d, "f"), "x"));
      await layer(sn, "b", "a", (d) => writeFile(join(d, "g"), "x"));
      await sn.view("v", "a");
      await assert.rejects(sn.remove("a"), { code: "failed_precondition" });
      await sn.remove("b");
      await assert.rejects(sn.remove("a"), /depend on it/);
      await sn.remove("v");
      await sn.remove("a");
      assert.deepEqual(sn.list(), []);
      assert.deepEqual(await readdir(join(sn.root, "s")), []);
      await assert.rejects(sn.remove("a"), { code: "not_found" });
    });

    test("commit and create refuse bad states and names", async (t) => {
      const sn = await open(t, driver);
      await layer(sn, "a", undefined, async () => {});
      await assert.rejects(sn.prepare("a"), { code: "already_exists" });
      await assert.rejects(sn.commit("x", "a"), { code: "failed_precondition" });
      await sn.prepare("p");
      await assert.rejects(sn.prepare("q", "p"), { code: "failed_precondition" });
      await assert.rejects(sn.prepare("q", "missing"), { code: "not_found" });
      await assert.rejects(sn.commit("a", "p"), { code: "already_exists" });
      await assert.rejects(sn.prepare(""), { code: "invalid_argument" });
    });

    test("merge stacks independent chains in order; a diff's deletions apply to what it is merged onto", async (t) => {
      const sn = await open(t, driver);
      await layer(sn, "a", undefined, async (d) => {
        await writeFile(join(d, "shared"), "from a");
        await writeFile(join(d, "only-a"), "a");
        await mkdir(join(d, "d"));
        await writeFile(join(d, "d", "gone"), "a");
      });
      await layer(sn, "x", undefined, async (d) => {
        await mkdir(join(d, "d"));
        await writeFile(join(d, "d", "gone"), "x");
        await writeFile(join(d, "d", "keep"), "x");
      });
      await layer(sn, "c", "x", async (d) => {
        await rm(join(d, "d", "gone"));
        await writeFile(join(d, "shared"), "from c");
      });
      await sn.merge("m", ["a", "c"]);
      assert.deepEqual(await describeMounts(await sn.mounts("m")), {
        d: "dir 755 0:0",
        "d/keep": "file 644 0:0 x",
        "only-a": "file 644 0:0 a",
        shared: "file 644 0:0 from c",
      });
      await sn.diff("dxc", "x", "c");
      // Alone, a diff shows what it adds; its whiteout must not show up as a broken entry.
      assert.deepEqual(await describeMounts(await sn.mounts("dxc")), {
        d: "dir 755 0:0",
        shared: "file 644 0:0 from c",
      });
      await sn.merge("m2", ["a", "dxc"]);
      assert.deepEqual(await describeMounts(await sn.mounts("m2")), {
        d: "dir 755 0:0",
        "only-a": "file 644 0:0 a",
        shared: "file 644 0:0 from c",
      });
      assert.deepEqual(sn.stat("m2").inputs.length > 0, true);
      // The merge keeps the layers it stacks, not the diff it took them from.
      await assert.rejects(sn.remove("c"), { code: "failed_precondition" });
      await sn.remove("dxc");
      // A writable snapshot on a merge.
      const w = await sn.prepare("w", "m2");
      await withMounted(w, async (d) => {
        await rm(join(d, "only-a"));
        await writeFile(join(d, "d", "new"), "w");
      });
      await sn.commit("wc", "w");
      assert.deepEqual(Object.keys(await describeMounts(await sn.mounts("wc"))).sort(), [
        "d",
        "d/new",
        "shared",
      ]);
    });

    test("merge(lower, diff(lower, upper)) reproduces upper, for a busybox tree", async (t) => {
      const sn = await open(t, driver);
      await layer(sn, "base", undefined, async (d) => {
        await makeBusyboxRootfs(d);
      });
      await layer(sn, "lower", "base", async (d) => {
        await writeFile(join(d, "etc", "motd"), "lower");
        await mkdir(join(d, "opt", "tool"), { recursive: true });
        await writeFile(join(d, "opt", "tool", "cfg"), "1");
      });
      await layer(sn, "upper", "base", async (d) => {
        await writeFile(join(d, "etc", "passwd"), "root:x:0:0::/root:/bin/sh\n");
        await rm(join(d, "bin", "vi"));
        await rm(join(d, "home"), { recursive: true });
        await writeFile(join(d, "home"), "now a file");
        await rm(join(d, "tmp"), { recursive: true });
        await mkdir(join(d, "tmp"), { mode: 0o700 });
        await writeFile(join(d, "tmp", "x"), "y");
        await chown(join(d, "etc", "group"), 1000, 1000);
        await mkdir(join(d, "opt"));
        await writeFile(join(d, "opt", "tool"), "a file where lower has a dir");
      });
      await sn.diff("d", "lower", "upper");
      const alone = await describeMounts(await sn.mounts("d"));
      assert.equal(alone["etc/passwd"], "file 644 0:0 root:x:0:0::/root:/bin/sh\n");
      assert.deepEqual(
        Object.entries(alone).filter(([, v]) => v.startsWith("node")),
        [],
        "deletions are not visible as whiteouts",
      );
      await sn.merge("rebuilt", ["lower", "d"]);
      const expected = await describeMounts(await sn.mounts("upper"));
      assert.deepEqual(treeDifferences(await describeMounts(await sn.mounts("rebuilt")), expected), []);
      assert.ok(expected["bin/busybox"]?.startsWith("file 755 0:0"));
      // The prefix case: diff(base, upper) is upper's own layer; on lower it keeps what lower added.
      await sn.diff("top", "base", "upper");
      await sn.merge("rebuilt2", ["lower", "top"]);
      assert.deepEqual(treeDifferences(await describeMounts(await sn.mounts("rebuilt2")), expected), [
        "etc/motd: file 644 0:0 lower | (missing)",
      ]);
      assert.equal(sn.layers("top").length, 1);
      assert.equal(sn.layers("rebuilt2").length, driver === "overlayfs" ? 3 : 3);
    });

    test("layers lists a snapshot's layers bottom first", async (t) => {
      const sn = await open(t, driver);
      await layer(sn, "a", undefined, (d) => writeFile(join(d, "f"), "a"));
      await layer(sn, "b", "a", (d) => rm(join(d, "f")));
      const layers = sn.layers("b");
      assert.deepEqual(
        layers.map((l) => [l.key, l.lower, l.upper]),
        [
          ["a", undefined, "a"],
          ["b", "a", "b"],
        ],
      );
      if (driver === "overlayfs") {
        const st = await lstat(join(layers[1]!.diffDir!, "f"));
        assert.ok(st.isCharacterDevice() && st.rdev === 0, "deletion is an overlay whiteout");
        assert.equal(sn.diffDir("b"), layers[1]!.diffDir);
      } else {
        assert.equal(layers[1]!.diffDir, undefined);
      }
    });
  });
}

test("auto picks overlayfs where it mounts, and reopening keeps the driver in use", async (t) => {
  const root = await tempRoot(t);
  const sn = await openSnapshotter({ root: join(root, "s1") });
  assert.equal(sn.driver, "overlayfs");
  sn.close();
  const native = await openSnapshotter({ root: join(root, "s2"), driver: "native" });
  await native.prepare("x");
  native.close();
  const again = await openSnapshotter({ root: join(root, "s2") });
  assert.equal(again.driver, "native");
  again.close();
  await assert.rejects(
    openSnapshotter({ root: join(root, "s2"), driver: "overlayfs" }),
    /holds native snapshots/,
  );
});

test("auto falls back to native where overlayfs cannot be mounted (its root on an overlay)", async (t) => {
  const root = await tempRoot(t);
  for (const d of ["l", "u", "w", "fs"]) await mkdir(join(root, d));
  await mountAll(
    [
      {
        type: "overlay",
        source: "overlay",
        options: [`lowerdir=${root}/l`, `upperdir=${root}/u`, `workdir=${root}/w`],
      },
    ],
    join(root, "fs"),
  );
  const sn = await openSnapshotter({ root: join(root, "fs", "snapshots") });
  t.after(() => sn.close());
  assert.equal(sn.driver, "native");
  await layer(sn, "a", undefined, (d) => writeFile(join(d, "f"), "on native"));
  assert.deepEqual(await describeMounts(await sn.mounts("a")), { f: "file 644 0:0 on native" });
  await assert.rejects(
    openSnapshotter({ root: join(root, "fs", "other"), driver: "overlayfs" }),
    /use driver native/,
  );
});

test("overlayfs mounts a chain too long for one page of mount options", async (t) => {
  const root = await tempRoot(t, "buildd-snapshot-with-a-rather-long-name-");
  const sn = await openSnapshotter({
    root: join(root, "a-long-directory-name-for-the-snapshotter"),
    driver: "overlayfs",
  });
  t.after(() => sn.close());
  let parent: string | undefined;
  for (let i = 0; i < 60; i++) {
    await layer(sn, `l${i}`, parent, (d) => writeFile(join(d, `f${i}`), String(i)));
    parent = `l${i}`;
  }
  const mounts = await sn.mounts(parent!);
  assert.ok(mounts[0]!.options.join(",").length > 4096);
  const tree = await describeMounts(mounts);
  assert.equal(Object.keys(tree).length, 60);
  assert.equal(tree.f59, "file 644 0:0 59");
  const w = await sn.prepare("w", parent);
  await withMounted(w, async (d) => {
    assert.equal(await readFile(join(d, "f0"), "utf8"), "0");
  });
});

test("cleanup removes what the metadata does not know and unmounts what is left mounted", async (t) => {
  const root = await tempRoot(t);
  const sroot = join(root, "s");
  let sn = await openSnapshotter({ root: sroot, driver: "overlayfs" });
  await layer(sn, "a", undefined, (d) => writeFile(join(d, "f"), "a"));
  const w = await sn.prepare("w", "a");
  await mkdir(join(sroot, "mnt", "left"));
  await mountAll(w, join(sroot, "mnt", "left"));
  await mkdir(join(sroot, "s", "999", "fs"), { recursive: true });
  await mkdir(join(sroot, "tmp", "c-half"), { recursive: true });
  sn.close();
  sn = await openSnapshotter({ root: sroot });
  t.after(() => sn.close());
  assert.deepEqual(await readdir(join(sroot, "mnt")), []);
  assert.deepEqual(await readdir(join(sroot, "tmp")), []);
  assert.deepEqual((await readdir(join(sroot, "s"))).sort(), ["1", "2"]);
  assert.deepEqual(await describeTree(join(sroot, "s", "1", "fs")), { f: "file 644 0:0 a" });
});

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { withMounted } from "../snapshot/mount.ts";
import { tempRoot } from "../snapshot/testing.ts";
import { openTestCache, readRef, writeRef } from "./testing.ts";

function du(dir: string): number {
  return Number(execFileSync("du", ["-s", "-B1", dir], { encoding: "utf8" }).split("\t")[0]);
}

for (const driver of ["overlayfs", "native"] as const) {
  describe(`cache manager on ${driver}`, () => {
    test("mutable refs commit into immutable refs that stack as layers", async (t) => {
      const c = await openTestCache(await tempRoot(t), { driver });
      t.after(c.close);
      const base = await writeRef(c.cm, undefined, { "a.txt": "a", "d/x": "x" }, { description: "base" });
      const top = await writeRef(c.cm, base, { "a.txt": "changed", "d/x": null, "b.txt": "b" });
      assert.equal(top.parent, base.id);
      assert.deepEqual(await readRef(top), {
        "a.txt": "file 644 0:0 changed",
        "b.txt": "file 644 0:0 b",
        d: "dir 755 0:0",
      });
      assert.deepEqual(await readRef(base), {
        "a.txt": "file 644 0:0 a",
        d: "dir 755 0:0",
        "d/x": "file 644 0:0 x",
      });
      assert.deepEqual(
        top.layers().map((l) => l.key),
        [base.id, top.id],
      );
      assert.equal(base.info().description, "base");
      assert.equal(base.info().mutable, false);
      // Immutable mounts are read-only.
      await withMounted(await top.mount(), async (d) => {
        await assert.rejects(writeFile(join(d, "new"), "x"), { code: "EROFS" });
      });
      await top.release();
      await base.release();
      await assert.rejects(base.mount(), /released/);
    });

    test("merge and diff refs", async (t) => {
      const c = await openTestCache(await tempRoot(t), { driver });
      t.after(c.close);
      const a = await writeRef(c.cm, undefined, { "a.txt": "a", "both.txt": "from a" });
      const x = await writeRef(c.cm, undefined, { "x.txt": "x", "gone.txt": "x" });
      const y = await writeRef(c.cm, x, { "gone.txt": null, "both.txt": "from y" });
      const d = await c.cm.diff(x, y);
      assert.deepEqual(d.parents, [x.id, y.id]);
      const m = await c.cm.merge([a, d], { description: "merged" });
      assert.deepEqual(await readRef(m), { "a.txt": "file 644 0:0 a", "both.txt": "file 644 0:0 from y" });
      const a2 = await writeRef(c.cm, undefined, { "gone.txt": "a2" });
      const m2 = await c.cm.merge([a2, d]);
      assert.deepEqual(
        await readRef(m2),
        { "both.txt": "file 644 0:0 from y" },
        "the diff's deletion applies",
      );
      const usage = await c.cm.du();
      const byId = new Map(usage.map((u) => [u.id, u]));
      assert.equal(byId.get(a.id)!.shared, true, "a merge input is shared");
      assert.equal(byId.get(x.id)!.shared, true, "so are the ancestors of a diff input");
      assert.equal(byId.get(m.id)!.shared, false);
      for (const r of [a, x, y, d, m, a2, m2]) await r.release();
      // Everything but the merges is depended on: prune removes merges first, then the rest.
      const removed: string[] = [];
      for await (const u of c.cm.prune({ all: true })) removed.push(u.id);
      assert.equal(removed.length, 7);
      assert.deepEqual(removed.slice(0, 2).sort(), [m.id, m2.id].sort());
      assert.deepEqual(c.sn.list(), []);
    });

    test("a ref in use or depended on is never pruned", async (t) => {
      const c = await openTestCache(await tempRoot(t), { driver });
      t.after(c.close);
      const base = await writeRef(c.cm, undefined, { f: "1" });
      const child = await writeRef(c.cm, base, { g: "2" });
      await base.release();
      const mutable = await c.cm.newMutable(child);
      const pruned: string[] = [];
      for await (const u of c.cm.prune({ all: true })) pruned.push(u.id);
      assert.equal(pruned.length, 0);
      const usage = await c.cm.du();
      assert.deepEqual(
        usage.map((u) => u.inUse),
        [true, true, true],
        "held refs and their ancestors are in use",
      );
      await child.release();
      for await (const u of c.cm.prune({ all: true })) pruned.push(u.id);
      assert.equal(pruned.length, 0, "the mutable ref on child still depends on it");
      await mutable.release();
      assert.equal((await c.cm.du()).length, 2, "releasing an unkeyed mutable ref removes it");
      for await (const u of c.cm.prune({ all: true })) pruned.push(u.id);
      assert.deepEqual(pruned, [child.id, base.id]);
      assert.throws(() => c.cm.get(base.id), { code: "not_found" });
    });

    test("keyed mutable refs and metadata survive a restart", async (t) => {
      const root = await tempRoot(t);
      let c = await openTestCache(root, { driver });
      const cacheMount = await c.cm.getMutableByKey("cache:/root/.cache", {
        recordType: "exec.cachemount",
        description: "go cache",
      });
      await withMounted(await cacheMount.mount(), (d) => writeFile(join(d, "cached"), "warm"));
      const again = await c.cm.getMutableByKey("cache:/root/.cache");
      assert.equal(again.id, cacheMount.id);
      await again.release();
      await cacheMount.release();
      const ref = await writeRef(c.cm, undefined, { f: "x" });
      ref.setMeta("checksum", { "/f": "sha256:abc" });
      const unkeyed = await c.cm.newMutable(undefined);
      const ids = { ref: ref.id, unkeyed: unkeyed.id, keyed: cacheMount.id };
      await c.close();
      c = await openTestCache(root, { driver });
      t.after(c.close);
      const back = await c.cm.getMutableByKey("cache:/root/.cache");
      assert.equal(back.id, ids.keyed);
      assert.equal(back.info().recordType, "exec.cachemount");
      await withMounted(await back.mount(), async (d) => {
        assert.deepEqual(await readdir(d), ["cached"]);
      });
      assert.deepEqual(c.cm.get(ids.ref).getMeta("checksum"), { "/f": "sha256:abc" });
      assert.equal(c.cm.exists(ids.unkeyed), false, "an unkeyed mutable ref does not outlive its process");
      await assert.rejects(back.commit(), { code: "failed_precondition" });
    });

    test("du reports each record's real disk usage", async (t) => {
      const c = await openTestCache(await tempRoot(t), { driver });
      t.after(c.close);
      const a = await writeRef(c.cm, undefined, { big: Buffer.alloc(1_000_000, 7), small: "s" });
      const b = await writeRef(c.cm, a, { more: Buffer.alloc(250_000, 8) });
      const keyed = await c.cm.getMutableByKey("k", { recordType: "source.local" });
      await withMounted(await keyed.mount(), (d) => writeFile(join(d, "synced"), Buffer.alloc(50_000, 1)));
      await keyed.release();
      const dataDir = async (id: string) => c.sn.diffDir(id) ?? (await c.sn.mounts(id))[0]!.source;
      const usage = new Map((await c.cm.du()).map((u) => [u.id, u]));
      for (const id of [a.id, b.id, keyed.id]) {
        assert.equal(usage.get(id)!.size, du(await dataDir(id)), `size of ${id}`);
      }
      assert.ok(usage.get(a.id)!.size >= 1_000_000);
      assert.equal(usage.get(keyed.id)!.mutable, true);
      assert.equal(usage.get(keyed.id)!.recordType, "source.local");
      assert.equal(await b.size(), usage.get(b.id)!.size);
      assert.deepEqual(
        (await c.cm.du({ filters: ["type==source.local"] })).map((u) => u.id),
        [keyed.id],
      );
    });
  });
}

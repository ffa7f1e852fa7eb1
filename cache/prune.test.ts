import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type TestContext, test } from "node:test";
import { withMounted } from "../snapshot/mount.ts";
import { tempRoot } from "../snapshot/testing.ts";
import { defaultGcPolicies, defaultGcSpace, gcOrder, keepBytes } from "./prune.ts";
import { openTestCache, type TestCache, writeRef } from "./testing.ts";
import type { GcPolicy, RecordOptions, UsageInfo } from "./types.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** A cache whose clock the test moves. */
async function clockedCache(t: TestContext, gcPolicies?: GcPolicy[]) {
  const clock = { now: 1_700_000_000_000 };
  const c = await openTestCache(await tempRoot(t), { now: () => clock.now, gcPolicies });
  t.after(c.close);
  return { c, clock };
}

/** A released ref of about `kb` KiB of real data. */
async function blob(c: TestCache, kb: number, opts: RecordOptions = {}): Promise<string> {
  const ref = await writeRef(c.cm, undefined, { data: Buffer.alloc(kb * 1024, 1) }, opts);
  await ref.release();
  return ref.id;
}

async function ids(it: AsyncIterable<UsageInfo>): Promise<string[]> {
  const out: string[] = [];
  for await (const u of it) out.push(u.id);
  return out;
}

async function total(c: TestCache): Promise<number> {
  return (await c.cm.du()).reduce((n, u) => n + u.size, 0);
}

test("keepBytes follows BuildKit: maxUsed, lowered to free disk space, never below reserved", () => {
  assert.equal(keepBytes(100, 50, { reserved: 0, maxUsed: 0, minFree: 0 }), 0);
  assert.equal(keepBytes(100, 50, { reserved: 0, maxUsed: 80, minFree: 0 }), 80);
  assert.equal(keepBytes(100, 50, { reserved: 0, maxUsed: 90, minFree: 70 }), 80);
  assert.equal(keepBytes(100, 50, { reserved: 0, maxUsed: 0, minFree: 70 }), 80);
  assert.equal(keepBytes(100, 50, { reserved: 0, maxUsed: 60, minFree: 90 }), 60);
  assert.equal(keepBytes(100, 50, { reserved: 0, maxUsed: 0, minFree: 200 }), 0, "nothing to keep");
  assert.equal(keepBytes(100, 50, { reserved: 30, maxUsed: 0, minFree: 200 }), 30);
  assert.equal(keepBytes(100, 50, { reserved: 30, maxUsed: 10, minFree: 0 }), 30);
});

test("default policies are BuildKit's four rules with its default space limits", () => {
  const tb = 1e12;
  assert.deepEqual(defaultGcSpace(tb), { reservedSpace: 10e9, minFreeSpace: 200e9, maxUsedSpace: 100e9 });
  assert.deepEqual(defaultGcSpace(50e9), { reservedSpace: 5e9, minFreeSpace: 10e9, maxUsedSpace: 40e9 });
  const p = defaultGcPolicies(50e9);
  assert.equal(p.length, 4);
  assert.deepEqual(p[0], {
    filters: ["type==source.local", "type==exec.cachemount", "type==source.git.checkout"],
    keepDuration: "48h",
    maxUsedSpace: 512e6,
  });
  assert.equal(p[1]!.keepDuration, "1440h");
  assert.equal(p[2]!.all, undefined);
  assert.equal(p[3]!.all, true);
  assert.equal(p[3]!.reservedSpace, 5e9);
});

test("gcOrder removes the least recently and least often used first", () => {
  const u = (id: string, lastUsedAt: number, usageCount: number) =>
    ({ id, lastUsedAt, usageCount, createdAt: 0 }) as UsageInfo;
  assert.deepEqual(
    gcOrder([u("new", 30, 1), u("old", 10, 1), u("mid", 20, 1)]).map((x) => x.id),
    ["old", "mid", "new"],
  );
  assert.deepEqual(
    gcOrder([u("old-popular", 10, 9), u("mid", 20, 1), u("new", 30, 1)]).map((x) => x.id),
    ["mid", "old-popular", "new"],
  );
});

test("prune filters by type and description, and keeps internal records unless all", async (t) => {
  const { c } = await clockedCache(t);
  const local = await blob(c, 4, { recordType: "source.local", description: "local source for context" });
  const regular = await blob(c, 4, { description: "RUN make" });
  const internal = await blob(c, 4, { recordType: "internal" });
  assert.deepEqual(await ids(c.cm.prune({ filters: ["type==source.local"] })), [local]);
  assert.deepEqual(await ids(c.cm.prune({ filters: ["description~=^RUN"] })), [regular]);
  assert.deepEqual(await ids(c.cm.prune()), []);
  assert.deepEqual(await ids(c.cm.prune({ all: true })), [internal]);
});

test("prune keeps what was used within keep-duration", async (t) => {
  const { c, clock } = await clockedCache(t);
  const old = await blob(c, 4);
  clock.now += 10 * DAY;
  const b = await blob(c, 4);
  clock.now += 3 * DAY;
  const cc = await blob(c, 4);
  clock.now += DAY;
  await c.cm.get(old).release(); // used again: now it is the most recent
  clock.now += HOUR;
  // Last used: old 1h ago, cc 25h ago, b 4 days ago.
  assert.deepEqual(await ids(c.cm.prune({ keepDuration: "48h" })), [b]);
  assert.deepEqual(await ids(c.cm.prune({ keepDuration: 2 * 3600 })), [cc]);
  assert.deepEqual(await ids(c.cm.prune({ keepDuration: "30m" })), [old]);
});

test("keep-storage, max-used-space and min-free-space prune the least recently used down to a size", async (t) => {
  const { c, clock } = await clockedCache(t);
  const made: string[] = [];
  for (let i = 0; i < 5; i++) {
    made.push(await blob(c, 256));
    clock.now += HOUR;
  }
  const each = (await c.cm.du())[0]!.size;
  assert.ok(each >= 256 * 1024, `a record of 256KiB uses ${each} bytes`);
  // Keep about three records' worth: the two least recently used go.
  const keep = Math.floor(3.5 * each);
  assert.deepEqual(await ids(c.cm.prune({ keepStorage: keep })), made.slice(0, 2));
  assert.ok((await total(c)) <= keep);
  assert.deepEqual(await ids(c.cm.prune({ maxUsedSpace: `${2 * each}` })), [made[2]]);
  assert.deepEqual(await ids(c.cm.prune({ maxUsedSpace: 2 * each })), [], "already small enough");
  // Asking for 100% of the disk free can never be met: prune down to the reserved space.
  assert.deepEqual(await ids(c.cm.prune({ minFreeSpace: "100%", reservedSpace: each })), [made[3]]);
  assert.deepEqual(
    (await c.cm.du()).map((u) => u.id),
    [made[4]],
  );
});

test("GC applies policies in order and never touches what a build holds", async (t) => {
  const { c, clock } = await clockedCache(t);
  const held = await writeRef(c.cm, undefined, { f: Buffer.alloc(64 * 1024) });
  const building = await c.cm.newMutable(held);
  const local = await blob(c, 64, { recordType: "source.local" });
  const ancient = await blob(c, 64);
  clock.now += 90 * DAY;
  const fresh1 = await blob(c, 64);
  clock.now += HOUR;
  const fresh2 = await blob(c, 64);
  clock.now += HOUR;
  const internal = await blob(c, 64, { recordType: "internal" });
  clock.now += 3 * DAY;
  const policies: GcPolicy[] = [
    // Old local sources go first, then anything older than 60 days, then the rest but internal
    // records, then everything: each rule until the cache is (at most) one byte.
    { filters: ["type==source.local", "type==exec.cachemount"], keepDuration: "48h", maxUsedSpace: 1 },
    { keepDuration: "60d", reservedSpace: 1 },
    { maxUsedSpace: 1 },
    { all: true, maxUsedSpace: 1 },
  ];
  const removed = (await c.cm.gc(policies)).map((u) => u.id);
  assert.deepEqual(removed, [local, ancient, fresh1, fresh2, internal]);
  const left = (await c.cm.du()).map((u) => u.id);
  assert.deepEqual(left.sort(), [held.id, building.id].sort());
  await building.release();
  await held.release();
});

test("gcAfterBuild and the GC timer run the configured policies", async (t) => {
  const { c } = await clockedCache(t, [{ all: true }]);
  const a = await blob(c, 4);
  const kept = await writeRef(c.cm, undefined, { f: "x" });
  await c.cm.gcAfterBuild();
  assert.deepEqual(
    (await c.cm.du()).map((u) => u.id),
    [kept.id],
  );
  assert.equal(c.cm.exists(a), false);
  await kept.release();
  const stop = c.cm.startGcTimer(10);
  t.after(stop);
  for (let i = 0; i < 500 && c.cm.exists(kept.id); i++) await sleep(10);
  assert.equal(c.cm.exists(kept.id), false, "the timer's GC removed the released ref");
});

test("a keyed mutable ref (cache mount) is pruned only when no handle holds it", async (t) => {
  const { c } = await clockedCache(t);
  const m = await c.cm.getMutableByKey("cache:apt", { recordType: "exec.cachemount" });
  await withMounted(await m.mount(), (d) => writeFile(join(d, "pkg.deb"), Buffer.alloc(10_000)));
  assert.deepEqual(await ids(c.cm.prune({ filters: ["type==exec.cachemount"] })), []);
  await m.release();
  assert.deepEqual(await ids(c.cm.prune({ filters: ["type==exec.cachemount"] })), [m.id]);
  const again = await c.cm.getMutableByKey("cache:apt");
  assert.notEqual(again.id, m.id, "a pruned cache mount starts empty");
  await again.release();
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { digestOf } from "../util/digest.ts";
import { isContentError } from "./errors.ts";
import { tempContentStore, testBytes } from "./testing.ts";

test("gc removes blobs nothing holds and keeps roots and leased blobs", async (t) => {
  const { store } = await tempContentStore(t);
  const root = await store.writeBlob(testBytes(100, 1));
  const leased = await store.writeBlob(testBytes(200, 2));
  const loose = await store.writeBlob(testBytes(300, 3), { labels: { k: "v" } });
  const lease = store.createLease({ labels: { purpose: "test" } });
  store.addLeaseResource(lease, leased.digest);
  const result = await store.gc({ roots: [root.digest] });
  assert.deepEqual(result.removed, [loose.digest]);
  assert.equal(result.freedBytes, 300);
  assert.deepEqual(result.expiredLeases, []);
  assert.equal(await store.has(root.digest), true);
  assert.equal(await store.has(leased.digest), true);
  assert.equal(await store.has(loose.digest), false);
  assert.equal(await store.info(loose.digest), undefined);

  // Once released, the leased blob goes too.
  assert.equal(store.removeLeaseResource(lease, leased.digest), true);
  assert.equal(store.removeLeaseResource(lease, leased.digest), false);
  assert.deepEqual((await store.gc({ roots: [root.digest] })).removed, [leased.digest]);
  assert.deepEqual((await store.gc({ roots: [] })).removed, [root.digest]);
  assert.deepEqual(await store.list(), []);
});

test("a blob written under a lease is held from its commit on", async (t) => {
  const { store } = await tempContentStore(t);
  const lease = store.createLease();
  const a = await store.writeBlob(testBytes(10, 1), { lease });
  const w = await store.writer("under-lease", { lease });
  await w.write(testBytes(20, 2));
  const b = await w.commit();
  assert.deepEqual((await store.gc({ roots: [] })).removed, []);
  assert.deepEqual(
    store
      .listLeases()
      .find((l) => l.id === lease)
      ?.resources.sort(),
    [a.digest, b.digest].sort(),
  );
  assert.equal(store.deleteLease(lease), true);
  assert.equal(store.deleteLease(lease), false);
  assert.deepEqual((await store.gc({ roots: [] })).removed.sort(), [a.digest, b.digest].sort());
});

test("a lease can hold a digest before the blob exists", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(500);
  const lease = store.createLease();
  store.addLeaseResource(lease, digestOf(data));
  await store.writeBlob(data);
  assert.deepEqual((await store.gc({ roots: [] })).removed, []);
});

test("expired leases hold nothing and are dropped at gc", async (t) => {
  let now = Date.now();
  const { store } = await tempContentStore(t, { now: () => now });
  const blob = await store.writeBlob(testBytes(100));
  const shortLived = store.createLease({ id: "build-1", expiresAt: now + 60_000 });
  const forever = store.createLease({ id: "build-2" });
  store.addLeaseResource(shortLived, blob.digest);
  assert.deepEqual((await store.gc({ roots: [] })).removed, []);

  now += 60_001;
  assert.throws(
    () => store.addLeaseResource(shortLived, blob.digest),
    (e) => isContentError(e, "not-found"),
  );
  assert.equal(store.listLeases().length, 2, "an expired lease is listed until gc drops it");
  const result = await store.gc({ roots: [] });
  assert.deepEqual(result.removed, [blob.digest]);
  assert.deepEqual(result.expiredLeases, [shortLived]);
  assert.deepEqual(
    store.listLeases().map((l) => l.id),
    [forever],
  );
});

test("leases survive a restart", async (t) => {
  const tmp = await tempContentStore(t);
  const blob = await tmp.store.writeBlob(testBytes(100));
  const expiresAt = Date.now() + 3_600_000;
  const lease = tmp.store.createLease({ expiresAt: new Date(expiresAt), labels: { build: "abc" } });
  tmp.store.addLeaseResource(lease, blob.digest);
  const store = await tmp.reopen();
  const [listed] = store.listLeases();
  assert.equal(listed?.id, lease);
  assert.equal(listed?.expiresAt, expiresAt);
  assert.deepEqual(listed?.labels, { build: "abc" });
  assert.deepEqual(listed?.resources, [blob.digest]);
  assert.deepEqual((await store.gc({ roots: [] })).removed, []);
});

test("lease ids and expiry are checked", async (t) => {
  const { store } = await tempContentStore(t);
  assert.match(store.createLease(), /^lease-[0-9a-f-]{36}$/);
  store.createLease({ id: "mine" });
  assert.throws(
    () => store.createLease({ id: "mine" }),
    (e) => isContentError(e, "already-exists"),
  );
  for (const id of ["", "../x", "a b", "-lead", "x".repeat(300)]) {
    assert.throws(
      () => store.createLease({ id }),
      (e) => isContentError(e, "invalid-argument"),
      id,
    );
  }
  // Seconds where milliseconds were meant is a past date: refused, not silently dead.
  assert.throws(
    () => store.createLease({ expiresAt: Math.floor(Date.now() / 1000) + 60 }),
    (e) => isContentError(e, "invalid-argument") && /not in the future/.test(String(e)),
  );
  assert.throws(
    () => store.addLeaseResource("absent", digestOf("x")),
    (e) => isContentError(e, "not-found"),
  );
  assert.throws(
    () => store.createLease({ labels: { k: 1 } as never }),
    (e) => isContentError(e, "invalid-argument"),
  );
});

test("gc removes abandoned ingests but never one a writer has open", async (t) => {
  let now = Date.now();
  const { store } = await tempContentStore(t, { now: () => now });
  const open = await store.writer("open-one");
  await open.write(testBytes(100, 1));
  const abandoned = await store.writer("abandoned");
  await abandoned.write(testBytes(50, 2));
  await abandoned.close();

  // Recent ingests are kept under the default age of a day.
  assert.deepEqual((await store.gc({ roots: [] })).removedIngests, []);

  now += 25 * 60 * 60 * 1000;
  const result = await store.gc({ roots: [] });
  assert.deepEqual(result.removedIngests, ["abandoned"]);
  assert.equal(result.freedBytes, 50);
  assert.deepEqual(
    (await store.listIngests()).map((i) => i.ref),
    ["open-one"],
  );
  await open.write(testBytes(1, 3));
  assert.equal((await open.commit()).size, 101, "the open ingest was not disturbed");

  const again = await store.writer("abandoned");
  assert.equal(again.offset, 0);
  await again.close();
  assert.deepEqual((await store.gc({ roots: [], ingestMaxAgeMs: 0 })).removedIngests, ["abandoned"]);
});

test("commits racing with gc keep their blobs, leases and labels", async (t) => {
  const { store } = await tempContentStore(t);
  const lease = store.createLease();
  // Enough held blobs that every gc sweep spans many turns of the event loop.
  for (let i = 0; i < 100; i++) await store.writeBlob(testBytes(100, 1000 + i), { lease });
  let writing = true;
  const collector = (async () => {
    const removed: string[] = [];
    while (writing) removed.push(...(await store.gc({ roots: [] })).removed);
    return removed;
  })();
  const written = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      store.writeBlob(testBytes(10_000, i + 1), { lease, labels: { n: String(i) } }),
    ),
  );
  writing = false;
  assert.deepEqual(await collector, []);
  for (const [i, w] of written.entries()) {
    assert.deepEqual((await store.info(w.digest))?.labels, { n: String(i) }, w.digest);
  }
  assert.equal(store.listLeases()[0]?.resources.length, 120);
});

test("a reader holding a blob open keeps reading it even if gc removes it", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(1024 * 1024, 11);
  const { digest } = await store.writeBlob(data);
  const stream = await store.readStream(digest);
  assert.deepEqual((await store.gc({ roots: [] })).removed, [digest]);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  assert.deepEqual(Buffer.concat(chunks), data);
});

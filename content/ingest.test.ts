import assert from "node:assert/strict";
import { setImmediate as nextTurn } from "node:timers/promises";
import { test } from "node:test";
import { digestOf } from "../util/digest.ts";
import { isContentError } from "./errors.ts";
import { tempContentStore, testBytes } from "./testing.ts";

/** Yields `data` in chunks, giving other callers a turn between chunks, optionally failing after `failAt` bytes. */
async function* slowly(data: Uint8Array, opts: { chunk?: number; failAt?: number } = {}) {
  const step = opts.chunk ?? 4096;
  for (let i = 0; i < data.length; i += step) {
    if (opts.failAt !== undefined && i >= opts.failAt) throw new Error("connection reset by peer");
    await nextTurn();
    yield data.subarray(i, i + step);
  }
}

test("ten concurrent ingests of one digest open the source once and all get the blob", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(256 * 1024, 3);
  const desc = { digest: digestOf(data), size: data.length };
  let opened = 0;
  const open = async (offset: number) => {
    opened++;
    assert.equal(offset, 0);
    return slowly(data);
  };
  const leases = Array.from({ length: 10 }, () => store.createLease());
  const results = await Promise.all(leases.map((lease) => store.ingest(desc, open, { lease })));
  assert.equal(opened, 1);
  for (const r of results) assert.deepEqual(r, desc);
  assert.deepEqual(await store.readAll(desc.digest, { maxBytes: data.length }), data);
  for (const lease of store.listLeases()) assert.deepEqual(lease.resources, [desc.digest], lease.id);
  assert.deepEqual(await store.listIngests(), []);
});

test("an ingest of a blob the store has returns at once and checks the size", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(100);
  await store.writeBlob(data);
  const never = async () => assert.fail("the source must not be opened");
  assert.deepEqual(await store.ingest({ digest: digestOf(data), size: 100 }, never), {
    digest: digestOf(data),
    size: 100,
  });
  await assert.rejects(
    store.ingest({ digest: digestOf(data), size: 99 }, never),
    (e) => isContentError(e, "mismatch") && /99/.test(String(e)),
  );
});

test("a failed download keeps its bytes and the next ingest resumes from them", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(100_000, 4);
  const desc = { digest: digestOf(data), size: data.length };
  await assert.rejects(
    store.ingest(desc, async () => slowly(data, { failAt: 40_960 })),
    /connection reset/,
  );
  const [partial] = await store.listIngests();
  assert.equal(partial?.offset, 40_960);
  assert.equal(partial?.expectedDigest, desc.digest);

  const offsets: number[] = [];
  const result = await store.ingest(desc, async (offset) => {
    offsets.push(offset);
    return { body: slowly(data.subarray(offset)), startsAt: offset };
  });
  assert.deepEqual(offsets, [40_960]);
  assert.deepEqual(result, desc);
  assert.deepEqual(await store.readAll(desc.digest, { maxBytes: data.length }), data);
});

test("a source that cannot seek starts the ingest over", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(50_000, 5);
  const desc = { digest: digestOf(data), size: data.length };
  await assert.rejects(store.ingest(desc, async () => slowly(data, { failAt: 8192 })));
  const result = await store.ingest(desc, async (offset) => {
    assert.equal(offset, 8192);
    return slowly(data);
  });
  assert.deepEqual(result, desc);
  assert.deepEqual(await store.readAll(desc.digest), data);
});

test("when the first download fails, a waiting ingest fetches with its own source", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(64 * 1024, 6);
  const desc = { digest: digestOf(data), size: data.length };
  const calls: string[] = [];
  const leading = Promise.withResolvers<void>();
  const failNow = Promise.withResolvers<void>();
  const failing = store.ingest(desc, async () => {
    calls.push("first");
    leading.resolve();
    return (async function* () {
      yield data.subarray(0, 16_384);
      await failNow.promise;
      throw new Error("connection reset by peer");
    })();
  });
  await leading.promise;
  const waiting = store.ingest(desc, async (offset) => {
    calls.push(`second@${offset}`);
    return { body: slowly(data.subarray(offset)), startsAt: offset };
  });
  // gc queues behind the second ingest's look for the blob, so once it is done, that ingest waits.
  await store.gc({ roots: [] });
  assert.deepEqual(calls, ["first"]);
  failNow.resolve();
  await assert.rejects(failing, /connection reset/);
  assert.deepEqual(await waiting, desc);
  assert.deepEqual(calls, ["first", "second@16384"]);
});

test("a download of the wrong bytes is discarded and reported as a digest mismatch", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(10_000, 9);
  const desc = { digest: digestOf(data), size: data.length };
  await assert.rejects(
    store.ingest(desc, async () => slowly(testBytes(10_000, 10))),
    (e) => isContentError(e, "mismatch") && String(e).includes(desc.digest),
  );
  await assert.rejects(
    store.ingest(desc, async () => slowly(testBytes(10_001, 10))),
    (e) => isContentError(e, "mismatch") && /expected 10000 bytes/.test(String(e)),
  );
  assert.deepEqual(await store.listIngests(), []);
  assert.equal(await store.has(desc.digest), false);
});

test("an opener that starts at a byte the ingest does not have is refused", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(1000);
  await assert.rejects(
    store.ingest({ digest: digestOf(data), size: 1000 }, async () => ({ body: slowly(data), startsAt: 10 })),
    (e) => isContentError(e, "invalid-argument") && /started at byte 10/.test(String(e)),
  );
});

test("an ingest with an unknown lease fails before opening the source", async (t) => {
  const { store } = await tempContentStore(t);
  await assert.rejects(
    store.ingest({ digest: digestOf("x"), size: 1 }, async () => assert.fail("opened"), { lease: "nope" }),
    (e) => isContentError(e, "not-found") && /lease nope/.test(String(e)),
  );
});

import assert from "node:assert/strict";
import { lstat, readdir, readFile, symlink, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { text } from "node:stream/consumers";
import { test } from "node:test";
import { digestHex, digestOf } from "../util/digest.ts";
import { isContentError } from "./errors.ts";
import { ContentStore } from "./store.ts";
import { tempContentStore, testBytes } from "./testing.ts";

const code = (c: string) => (e: unknown) => isContentError(e) && e.code === c;

test("a written blob reads back by digest, as a whole, a range or a file", async (t) => {
  const { store, root } = await tempContentStore(t);
  const data = Buffer.from("hello, content store\n");
  const { digest, size } = await store.writeBlob(data);
  assert.equal(digest, digestOf(data));
  assert.equal(size, data.length);
  assert.equal(await store.has(digest), true);
  assert.deepEqual(await store.readAll(digest), data);
  assert.equal(await text(await store.readStream(digest, { start: 7, end: 14 })), "content");
  assert.equal(await text(await store.readStream(digest, { start: 3, end: 3 })), "");
  assert.equal(store.blobPath(digest), join(root, "blobs", "sha256", digestHex(digest)));
  assert.deepEqual(await readFile(store.blobPath(digest)), data);
  assert.equal((await lstat(store.blobPath(digest))).mode & 0o777, 0o444);
  const info = await store.info(digest);
  assert.equal(info?.size, data.length);
  assert.deepEqual(info?.labels, {});
  assert.deepEqual(await store.listIngests(), [], "a committed ingest leaves nothing behind");
});

test("a blob written from a stream in chunks has the digest of all its bytes", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(3 * 1024 * 1024 + 17);
  async function* chunks() {
    for (let i = 0; i < data.length; i += 65536) yield data.subarray(i, i + 65536);
  }
  const { digest, size } = await store.writeBlob(chunks(), {
    expectedDigest: digestOf(data),
    expectedSize: data.length,
  });
  assert.equal(digest, digestOf(data));
  assert.equal(size, data.length);
  assert.deepEqual(await store.readAll(digest), data);
});

test("the empty blob is a blob", async (t) => {
  const { store } = await tempContentStore(t);
  const { digest, size } = await store.writeBlob(new Uint8Array());
  assert.equal(size, 0);
  assert.equal((await store.readAll(digest)).length, 0);
  assert.equal(await text(await store.readStream(digest)), "");
});

test("reads of missing blobs, bad ranges and oversized readAll fail with a code", async (t) => {
  const { store } = await tempContentStore(t);
  const missing = digestOf("never written");
  assert.equal(await store.has(missing), false);
  assert.equal(await store.info(missing), undefined);
  await assert.rejects(store.readAll(missing), code("not-found"));
  await assert.rejects(store.readStream(missing), code("not-found"));
  const { digest } = await store.writeBlob(testBytes(100));
  await assert.rejects(store.readStream(digest, { start: 50, end: 101 }), code("invalid-argument"));
  await assert.rejects(store.readStream(digest, { start: 60, end: 50 }), code("invalid-argument"));
  await assert.rejects(store.readStream(digest, { start: -1 }), code("invalid-argument"));
  await assert.rejects(
    store.readAll(digest, { maxBytes: 99 }),
    (e) => code("too-large")(e) && /100 bytes/.test(String(e)),
  );
  assert.equal((await store.readAll(digest, { maxBytes: 100 })).length, 100);
});

test("a wrong size fails commit, names both sizes and leaves nothing", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(1000);
  const w = await store.writer("wrong-size", { expectedSize: 1001 });
  await w.write(data);
  await assert.rejects(
    w.commit(),
    (e) => code("mismatch")(e) && /expected 1001 bytes, got 1000/.test(String(e)),
  );
  await assert.rejects(w.write(data), code("closed"));
  assert.deepEqual(await store.list(), []);
  assert.deepEqual(await store.listIngests(), []);
  assert.equal(await store.has(digestOf(data)), false);
});

test("a wrong digest fails commit, names both digests and leaves nothing", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(1000);
  const claimed = digestOf("something else");
  const w = await store.writer("wrong-digest");
  await w.write(data);
  await assert.rejects(
    w.commit({ expectedDigest: claimed }),
    (e) => code("mismatch")(e) && String(e).includes(claimed) && String(e).includes(digestOf(data)),
  );
  assert.deepEqual(await store.list(), []);
  assert.deepEqual(await store.listIngests(), []);
  await assert.rejects(store.writeBlob(data, { expectedDigest: claimed }), code("mismatch"));
  await assert.rejects(store.writeBlob([data], { expectedDigest: claimed }), code("mismatch"));
  assert.deepEqual(await store.list(), []);
  assert.deepEqual(await store.listIngests(), [], "writeBlob discards its ingest on failure");
});

test("writing past the expected size fails at once and discards the ingest", async (t) => {
  const { store } = await tempContentStore(t);
  const w = await store.writer("too-long", { expectedSize: 10 });
  await w.write(testBytes(6));
  await assert.rejects(
    w.write(testBytes(6)),
    (e) => code("mismatch")(e) && /expected 10 bytes/.test(String(e)),
  );
  assert.deepEqual(await store.listIngests(), []);
});

test("a closed ingest resumes where it stopped, with the bytes already there rehashed", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(200_000, 7);
  const half = 123_457;
  const w1 = await store.writer("resume-me", { expectedDigest: digestOf(data), expectedSize: data.length });
  assert.equal(w1.offset, 0);
  await w1.write(data.subarray(0, half));
  await w1.close();
  const [status] = await store.listIngests();
  assert.equal(status?.ref, "resume-me");
  assert.equal(status?.offset, half);
  assert.equal(status?.expectedDigest, digestOf(data));

  // A writer without expectations inherits the ingest's: a wrong tail fails the commit.
  const wrong = await store.writer("resume-me");
  assert.equal(wrong.offset, half);
  await wrong.write(testBytes(data.length - half, 8));
  await assert.rejects(wrong.commit(), code("mismatch"));

  const w2 = await store.writer("resume-me", { expectedDigest: digestOf(data) });
  assert.equal(w2.offset, 0, "the failed commit discarded the ingest");
  await w2.write(data.subarray(0, half));
  await w2.close();
  const w3 = await store.writer("resume-me");
  assert.equal(w3.offset, half);
  await w3.write(data.subarray(half));
  assert.deepEqual(await w3.commit(), { digest: digestOf(data), size: data.length });
  assert.deepEqual(await store.readAll(digestOf(data), { maxBytes: data.length }), data);
});

test("an ingest reopened for different content starts over", async (t) => {
  const { store } = await tempContentStore(t);
  const w1 = await store.writer("reused", { expectedDigest: digestOf("a") });
  await w1.write(Buffer.from("a"));
  await w1.close();
  const w2 = await store.writer("reused", { expectedDigest: digestOf("bb") });
  assert.equal(w2.offset, 0);
  await w2.write(Buffer.from("bb"));
  assert.equal((await w2.commit()).digest, digestOf("bb"));
});

test("reset throws away what was written", async (t) => {
  const { store } = await tempContentStore(t);
  const w = await store.writer("reset");
  await w.write(Buffer.from("garbage"));
  await w.reset();
  assert.equal(w.offset, 0);
  await w.write(Buffer.from("good"));
  assert.equal((await w.commit()).digest, digestOf("good"));
});

test("a second writer of an open ref gets an ingest-locked error until the first is done", async (t) => {
  const { store } = await tempContentStore(t);
  const w1 = await store.writer("shared-ref");
  await assert.rejects(
    store.writer("shared-ref"),
    (e) => code("locked")(e) && /ingest locked/.test(String(e)),
  );
  await w1.write(Buffer.from("x"));
  await w1.close();
  await w1.close(); // idempotent
  const w2 = await store.writer("shared-ref");
  assert.equal(w2.offset, 1);
  await w2.abort();
  assert.deepEqual(await store.listIngests(), []);
  await using w3 = await store.writer("shared-ref");
  assert.equal(w3.offset, 0, "abort deleted the bytes");
});

test("committing a blob the store already has succeeds without rewriting it", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(4096);
  const first = await store.writeBlob(data, { labels: { a: "1" } });
  const before = await lstat(store.blobPath(first.digest));
  const w = await store.writer("again");
  await w.write(data);
  assert.deepEqual(await w.commit({ labels: { b: "2" } }), first);
  const after = await lstat(store.blobPath(first.digest));
  assert.equal(after.ino, before.ino, "the existing file was kept");
  assert.deepEqual((await store.info(first.digest))?.labels, { a: "1", b: "2" });
  assert.deepEqual(await store.listIngests(), []);
  assert.deepEqual(await store.writeBlob(data), first);
});

test("writeBlob with a known expectedDigest does not read the source", async (t) => {
  const { store } = await tempContentStore(t);
  const data = testBytes(64);
  await store.writeBlob(data);
  let read = false;
  async function* source() {
    read = true;
    yield data;
  }
  assert.deepEqual(await store.writeBlob(source(), { expectedDigest: digestOf(data) }), {
    digest: digestOf(data),
    size: 64,
  });
  assert.equal(read, false);
});

test("labels merge, an empty value deletes, and they survive a restart", async (t) => {
  const tmp = await tempContentStore(t);
  const { digest } = await tmp.store.writeBlob(Buffer.from("layer"), {
    labels: { "buildd.io/uncompressed": digestOf("diff") },
  });
  assert.deepEqual(await tmp.store.setLabels(digest, { "buildd.io/gc.ref": "x", other: "y" }), {
    "buildd.io/uncompressed": digestOf("diff"),
    "buildd.io/gc.ref": "x",
    other: "y",
  });
  assert.deepEqual(await tmp.store.setLabels(digest, { other: "" }), {
    "buildd.io/uncompressed": digestOf("diff"),
    "buildd.io/gc.ref": "x",
  });
  const again = await tmp.reopen();
  assert.deepEqual((await again.info(digest))?.labels, {
    "buildd.io/uncompressed": digestOf("diff"),
    "buildd.io/gc.ref": "x",
  });
  assert.deepEqual(Object.keys(await again.setLabels(digest, JSON.parse('{"__proto__": "odd"}'))).sort(), [
    "__proto__",
    "buildd.io/gc.ref",
    "buildd.io/uncompressed",
  ]);
  await assert.rejects(again.setLabels(digestOf("absent"), { a: "b" }), code("not-found"));
  await assert.rejects(again.setLabels(digest, { a: 1 } as never), code("invalid-argument"));
  await assert.rejects(again.setLabels(digest, { "": "v" }), code("invalid-argument"));
  await assert.rejects(again.setLabels(digest, { k: "v".repeat(5000) }), code("invalid-argument"));
});

test("list, usage and delete see blobs and ingests", async (t) => {
  const { store } = await tempContentStore(t);
  const a = await store.writeBlob(testBytes(10, 1));
  const b = await store.writeBlob(testBytes(20, 2));
  const w = await store.writer("pending");
  await w.write(testBytes(5));
  assert.deepEqual((await store.list()).map((i) => i.digest).sort(), [a.digest, b.digest].sort());
  assert.deepEqual(await store.usage(), { blobs: 2, blobBytes: 30, ingests: 1, ingestBytes: 5 });
  assert.equal(await store.delete(a.digest), true);
  assert.equal(await store.delete(a.digest), false);
  assert.equal(await store.has(a.digest), false);
  assert.deepEqual(
    (await store.list()).map((i) => i.digest),
    [b.digest],
  );
  await w.abort();
});

test("the filesystem is the truth: rows without files vanish, files without rows are blobs", async (t) => {
  const tmp = await tempContentStore(t);
  const { digest } = await tmp.store.writeBlob(Buffer.from("labelled"), { labels: { k: "v" } });
  await unlink(tmp.store.blobPath(digest));
  assert.equal(await tmp.store.info(digest), undefined);
  assert.deepEqual(await tmp.store.list(), []);

  const orphan = Buffer.from("put here by hand");
  await writeFile(tmp.store.blobPath(digestOf(orphan)), orphan);
  await tmp.reopen();
  const db = new DatabaseSync(tmp.dbPath);
  t.after(() => db.close());
  assert.deepEqual(
    db.prepare("SELECT digest FROM content_blobs").all(),
    [],
    "reopening dropped the row of the deleted blob",
  );
  const store = await ContentStore.open({ root: tmp.root, db });
  const info = await store.info(digestOf(orphan));
  assert.equal(info?.size, orphan.length);
  assert.deepEqual(info?.labels, {});
});

test("hostile digests are refused before they reach a path", async (t) => {
  const { store } = await tempContentStore(t);
  const bad = [
    "",
    "sha256:",
    "sha256:../../../../etc/passwd",
    `sha256:${"A".repeat(64)}`,
    `sha512:${"a".repeat(128)}`,
    `md5:${"a".repeat(32)}`,
    `sha256:${"a".repeat(64)}/../x`,
    `sha256:${"a".repeat(63)}\u0000`,
  ];
  for (const d of bad) {
    await assert.rejects(store.info(d), code("invalid-argument"), d);
    await assert.rejects(store.readAll(d), code("invalid-argument"), d);
    await assert.rejects(store.delete(d), code("invalid-argument"), d);
    assert.throws(() => store.blobPath(d), /invalid digest/, d);
    await assert.rejects(store.writer("r", { expectedDigest: d as never }), code("invalid-argument"), d);
    await assert.rejects(
      store.ingest({ digest: d, size: 1 }, async () => assert.fail("opened")),
      code("invalid-argument"),
      d,
    );
    await assert.rejects(store.gc({ roots: [d] }), code("invalid-argument"), d);
    assert.throws(() => store.addLeaseResource(store.createLease(), d), code("invalid-argument"), d);
  }
  await assert.rejects(store.info(42 as never), code("invalid-argument"));
  await assert.rejects(store.writer("r", { expectedSize: -1 }), code("invalid-argument"));
  await assert.rejects(store.writer("r", { expectedSize: 1.5 }), code("invalid-argument"));
});

test("path-like refs stay inside the ingest dir; unprintable or huge refs are refused", async (t) => {
  const { store, root, dir } = await tempContentStore(t);
  const before = (await readdir(dir)).sort();
  for (const ref of ["../../../../tmp/escape", "/etc/passwd", "..", "a/b/../../c", "ingest-sha256:x"]) {
    const w = await store.writer(ref);
    await w.write(Buffer.from(ref));
    await w.close();
  }
  const names = await readdir(join(root, "ingest"));
  assert.equal(names.length, 5);
  for (const name of names) assert.match(name, /^[0-9a-f]{64}$/);
  assert.deepEqual((await readdir(dir)).sort(), before, "nothing appeared beside the store");
  assert.deepEqual((await store.listIngests()).map((i) => i.ref).sort(), [
    "..",
    "../../../../tmp/escape",
    "/etc/passwd",
    "a/b/../../c",
    "ingest-sha256:x",
  ]);
  for (const ref of ["", "a\u0000b", "line\nbreak", "x".repeat(1025), 7 as never]) {
    await assert.rejects(store.writer(ref), code("invalid-argument"), JSON.stringify(ref));
  }
});

test("a symlink planted in the blob dir is not a blob and is never followed", async (t) => {
  const { store, dir } = await tempContentStore(t);
  const target = join(dir, "secret");
  await writeFile(target, "secret");
  const digest = digestOf("secret");
  await symlink(target, store.blobPath(digest));
  assert.equal(await store.has(digest), false);
  assert.equal(await store.info(digest), undefined);
  await assert.rejects(store.readAll(digest), code("not-found"));
  await assert.rejects(store.readStream(digest), code("not-found"));
  const { removed } = await store.gc({ roots: [] });
  assert.deepEqual(removed, [digest]);
  assert.equal(await readFile(target, "utf8"), "secret", "gc removed the link, not its target");
});

test("the store refuses a relative root", async () => {
  const db = new DatabaseSync(":memory:");
  try {
    await assert.rejects(ContentStore.open({ root: "relative/dir", db }), code("invalid-argument"));
  } finally {
    db.close();
  }
});

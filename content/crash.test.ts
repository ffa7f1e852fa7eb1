// A SIGKILL may hit the daemon at any moment. These tests kill a child process that writes
// through a store on the same root and database, then check what the parent finds.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { test } from "node:test";
import { pathToFileURL } from "node:url";
import { digestOf } from "../util/digest.ts";
import { tempContentStore, testBytes } from "./testing.ts";

const STORE_URL = pathToFileURL(join(import.meta.dirname, "store.ts")).href;
const TESTING_URL = pathToFileURL(join(import.meta.dirname, "testing.ts")).href;

/** Starts `script` (an ES module body) in a child Node with `args`; killed after the test. */
function startChild(t: { after: (fn: () => void) => void }, script: string, args: string[]): ChildProcess {
  const child = spawn(process.execPath, ["--input-type=module", "-e", script, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return child;
}

/** Resolves with the first `count` lines the child prints. */
async function readLines(child: ChildProcess, count: number): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of createInterface({ input: child.stdout! })) {
    lines.push(line);
    if (lines.length === count) return lines;
  }
  throw new Error(`the child exited after ${lines.length} of ${count} lines (code ${child.exitCode})`);
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}

const HALF_WRITER = `
import { readFile } from "node:fs/promises";
import { DatabaseSync } from "node:sqlite";
import { setImmediate as nextTurn } from "node:timers/promises";
import { ContentStore } from ${JSON.stringify(STORE_URL)};
const [root, dbPath, dataPath] = process.argv.slice(1);
const data = await readFile(dataPath);
const store = await ContentStore.open({ root, db: new DatabaseSync(dbPath) });
const w = await store.writer("layer", { expectedSize: data.length });
const half = data.length / 2;
await w.write(data.subarray(0, half));
console.log("half");
// Keep writing slowly so the kill lands in the middle of the rest.
for (let i = half; i < data.length; i += 1000) {
  await w.write(data.subarray(i, Math.min(i + 1000, data.length)));
  await nextTurn();
}
setInterval(() => {}, 1000);
`;

test("an ingest killed half-way resumes in another process and commits the right blob", async (t) => {
  const tmp = await tempContentStore(t);
  const data = testBytes(2 * 1024 * 1024, 21);
  const dataPath = join(tmp.dir, "source");
  await writeFile(dataPath, data);
  const child = startChild(t, HALF_WRITER, [tmp.root, tmp.dbPath, dataPath]);
  assert.deepEqual(await readLines(child, 1), ["half"]);
  await kill(child);

  const [status] = await tmp.store.listIngests();
  assert.equal(status?.ref, "layer");
  assert.ok(status.offset >= data.length / 2 && status.offset <= data.length, String(status.offset));
  const w = await tmp.store.writer("layer", { expectedDigest: digestOf(data) });
  assert.equal(w.offset, status.offset);
  await w.write(data.subarray(w.offset));
  assert.deepEqual(await w.commit(), { digest: digestOf(data), size: data.length });
  assert.deepEqual(await tmp.store.readAll(digestOf(data), { maxBytes: data.length }), data);
});

const COMMIT_LOOP = `
import { DatabaseSync } from "node:sqlite";
import { ContentStore } from ${JSON.stringify(STORE_URL)};
import { testBytes } from ${JSON.stringify(TESTING_URL)};
const [root, dbPath] = process.argv.slice(1);
const store = await ContentStore.open({ root, db: new DatabaseSync(dbPath) });
const lease = store.createLease({ id: "crash-loop" });
for (let i = 1; ; i++) {
  const data = testBytes(4096 + ((i * 7919) % 200_000), i);
  const w = await store.writer("blob-" + i, { lease });
  for (let at = 0; at < data.length; at += 8192) await w.write(data.subarray(at, at + 8192));
  const { digest } = await w.commit({ labels: { n: String(i) } });
  console.log(digest);
}
`;

test("a store killed while committing blobs in a loop holds only complete, verified blobs", async (t) => {
  const tmp = await tempContentStore(t);
  const child = startChild(t, COMMIT_LOOP, [tmp.root, tmp.dbPath]);
  const reported = await readLines(child, 8);
  await kill(child);

  const store = await tmp.reopen();
  const blobs = await store.list();
  assert.ok(blobs.length >= reported.length);
  for (const blob of blobs) {
    const bytes = await store.readAll(blob.digest);
    assert.equal(digestOf(bytes), blob.digest, "a blob's bytes hash to its name");
    assert.equal(bytes.length, blob.size);
  }
  for (const [i, digest] of reported.entries()) {
    const info = await store.info(digest);
    assert.equal(info?.labels["n"], String(i + 1), "every reported commit is there with its labels");
  }
  const lease = store.listLeases().find((l) => l.id === "crash-loop");
  for (const digest of reported) assert.ok(lease?.resources.includes(digest as never), digest);

  // What was in flight is either resumable or collectable.
  for (const ingest of await store.listIngests()) {
    const w = await store.writer(ingest.ref);
    assert.equal(w.offset, ingest.offset);
    await w.close();
  }
  await store.gc({ roots: [], ingestMaxAgeMs: 0 });
  assert.deepEqual(await store.listIngests(), []);
  assert.deepEqual(await store.usage().then((u) => u.blobs), blobs.length, "the lease kept every blob");
});

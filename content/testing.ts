// A content store in a temporary directory for tests, with a file database so a test can
// reopen it (a daemon restart) or hand it to a child process (a crash).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { TestContext } from "node:test";
import { ContentStore } from "./store.ts";

/** A temporary store; `reopen` opens the same root and database again, as a restart would. */
export type TempContentStore = {
  dir: string;
  root: string;
  dbPath: string;
  store: ContentStore;
  reopen: () => Promise<ContentStore>;
};

/** Makes a store under a fresh temporary dir, removed after the test. */
export async function tempContentStore(
  t: TestContext,
  opts: { now?: () => number } = {},
): Promise<TempContentStore> {
  const dir = await mkdtemp(join(tmpdir(), "buildd-content-"));
  const root = join(dir, "store");
  const dbPath = join(dir, "meta.db");
  const dbs: DatabaseSync[] = [];
  t.after(async () => {
    for (const db of dbs) if (db.isOpen) db.close();
    // An aborted download may still be writing its last bytes into its ingest (kept for the
    // resume) when the test ends: retry what it refills.
    await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 });
  });
  const reopen = async () => {
    const db = new DatabaseSync(dbPath);
    dbs.push(db);
    return ContentStore.open({ root, db, ...(opts.now ? { now: opts.now } : {}) });
  };
  return { dir, root, dbPath, store: await reopen(), reopen };
}

/** Deterministic bytes that differ per seed, so tests need no fixtures. */
export function testBytes(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let x = Math.imul(seed, 2654435761) >>> 0;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

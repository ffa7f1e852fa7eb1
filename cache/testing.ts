// Test helpers: a whole cache stack (database, snapshotter, manager) in one directory, and refs
// written from a map of files. Used by the tests and by the crash child process.
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { openSnapshotter } from "../snapshot/index.ts";
import { withMounted } from "../snapshot/mount.ts";
import { describeMounts } from "../snapshot/testing.ts";
import type { Hooks, Logger, Snapshotter, SnapshotterDriver } from "../snapshot/types.ts";
import { CacheManager } from "./manager.ts";
import type { GcPolicy, ImmutableRef, RecordOptions } from "./types.ts";

/** Logs nothing: tests assert on state, not on log lines. */
export const quietLogger: Logger = { info: () => {}, warn: () => {} };

/** An opened cache stack; close() closes all of it. */
export type TestCache = {
  cm: CacheManager;
  sn: Snapshotter;
  db: DatabaseSync;
  root: string;
  close: () => Promise<void>;
};

/** Opens (or reopens, after a crash) the cache stack kept in `root`. */
export async function openTestCache(
  root: string,
  opts: { driver?: SnapshotterDriver; now?: () => number; hooks?: Hooks; gcPolicies?: GcPolicy[] } = {},
): Promise<TestCache> {
  await mkdir(root, { recursive: true });
  const db = new DatabaseSync(join(root, "buildd.db"));
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
  const sn = await openSnapshotter({
    root: join(root, "snapshots"),
    db,
    driver: opts.driver,
    hooks: opts.hooks,
    log: quietLogger,
  });
  const cm = await CacheManager.open({
    root: join(root, "cache"),
    db,
    snapshotter: sn,
    now: opts.now,
    hooks: opts.hooks,
    gcPolicies: opts.gcPolicies,
    log: quietLogger,
  });
  return {
    cm,
    sn,
    db,
    root,
    close: async () => {
      await cm.close();
      sn.close();
      db.close();
    },
  };
}

/** A committed ref on `parent` holding `files` (path → content; null deletes the path). */
export async function writeRef(
  cm: CacheManager,
  parent: ImmutableRef | undefined,
  files: Record<string, string | Buffer | null>,
  opts: RecordOptions = {},
): Promise<ImmutableRef> {
  const m = await cm.newMutable(parent, opts);
  try {
    // Mounted beside the cache, not in /tmp: a crash test kills writers mid-write.
    await withMounted(
      await m.mount(),
      async (dir) => {
        for (const [path, content] of Object.entries(files)) {
          if (content === null) await rm(join(dir, path), { recursive: true, force: true });
          else {
            await mkdir(dirname(join(dir, path)), { recursive: true });
            await writeFile(join(dir, path), content);
          }
        }
      },
      { base: cm.root },
    );
  } catch (e) {
    await m.release();
    throw e;
  }
  return m.commit();
}

/** The files a ref shows, described as in snapshot/testing.ts. */
export async function readRef(ref: ImmutableRef): Promise<Record<string, string>> {
  return describeMounts(await ref.mount());
}

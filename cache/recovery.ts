// Making records and snapshots agree again after a crash (run on open, after the snapshotter's own
// cleanup). Every step is idempotent, so a crash during recovery is recovered by the next open.
import type { Logger, Snapshotter } from "../snapshot/types.ts";
import { type CacheDb, transaction } from "./db.ts";

/**
 * 1. finishes commits whose snapshot was committed, undoes other unfinished creations;
 * 2. drops unkeyed mutable records (their writer is gone);
 * 3. drops records whose snapshot is missing or not in the expected state, and their descendants;
 * 4. removes snapshots no record owns, dependents first.
 * Returns the ids of the records and snapshots it removed.
 */
export async function recoverRecords(records: CacheDb, sn: Snapshotter, log: Logger): Promise<string[]> {
  const removed: string[] = [];
  const db = records.db;
  const snapshots = new Map(sn.list().map((s) => [s.key, s]));
  const drop = (id: string, why: string, warn = false) => {
    transaction(db, () => records.delete(id));
    removed.push(id);
    (warn ? log.warn : log.info)(`dropping cache record: ${why}`, { id });
  };

  for (const r of records.all()) {
    if (r.state !== "creating") continue;
    if (r.pendingFrom !== null && snapshots.get(r.id)?.kind === "committed") {
      const size = (await sn.usage(r.id)).size;
      transaction(db, () => {
        records.markReady(r.id, size);
        records.delete(r.pendingFrom!);
      });
      log.info("finished a commit interrupted by a crash", { id: r.id, from: r.pendingFrom });
    } else drop(r.id, "its creation was interrupted by a crash");
  }

  for (const r of records.all()) {
    if (r.mutable && !r.persistent) drop(r.id, "unkeyed mutable ref left by a crash");
  }

  const rows = records.all();
  const ids = new Set(rows.map((r) => r.id));
  const bad = new Set<string>();
  for (const r of rows) {
    const s = snapshots.get(r.id);
    if (!s || s.kind !== (r.mutable ? "active" : "committed")) bad.add(r.id);
  }
  for (let changed = true; changed; ) {
    changed = false;
    for (const r of rows) {
      if (!bad.has(r.id) && r.parents.some((p) => bad.has(p) || !ids.has(p))) {
        bad.add(r.id);
        changed = true;
      }
    }
  }
  for (const r of rows) {
    if (bad.has(r.id)) drop(r.id, "its snapshot (or a parent's) is missing", !r.mutable || r.persistent);
  }

  const owned = new Set(records.all().map((r) => r.id));
  let pending = sn
    .list()
    .filter((s) => !owned.has(s.key))
    .map((s) => s.key);
  while (pending.length > 0) {
    const left: string[] = [];
    for (const key of pending) {
      try {
        await sn.remove(key);
        removed.push(key);
      } catch {
        left.push(key);
      }
    }
    if (left.length === pending.length) {
      log.warn("snapshots no cache record owns could not be removed", { keys: left });
      break;
    }
    pending = left;
  }
  if (removed.length > 0) log.info("cache recovery", { removed });
  return removed;
}

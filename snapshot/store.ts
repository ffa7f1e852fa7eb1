// Snapshot metadata in SQLite (tables prefixed `snapshot_`): one row per snapshot, the numeric id
// names its directory, and `snapshot_deps` records every snapshot a merge or diff keeps alive.
import type { DatabaseSync } from "node:sqlite";
import { SnapshotError, type SnapshotKind, type SnapshotOp } from "./types.ts";

/** One snapshot as stored. */
export type SnapshotRow = {
  id: number;
  key: string;
  kind: SnapshotKind;
  op: SnapshotOp;
  parentId: number | null;
  /** overlayfs merge/diff: the layer ids it stacks, bottom first. */
  stack: number[] | null;
  /** native merge/diff: (lower, upper) snapshot id pairs whose changes, applied in order, make it. */
  changes: [number | null, number][] | null;
  /** Directories of its own layer that hold overlay whiteouts ("" is the root). */
  whiteoutDirs: string[];
  size: number | null;
  inodes: number | null;
  createdAt: number;
  updatedAt: number;
  labels: Record<string, string>;
};

const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshot_config (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshot_snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  op TEXT NOT NULL,
  parent_id INTEGER,
  stack TEXT,
  changes TEXT,
  whiteout_dirs TEXT NOT NULL DEFAULT '[]',
  size INTEGER,
  inodes INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS snapshot_snapshots_parent ON snapshot_snapshots(parent_id);
CREATE TABLE IF NOT EXISTS snapshot_deps (
  owner_id INTEGER NOT NULL,
  dep_id INTEGER NOT NULL,
  PRIMARY KEY (owner_id, dep_id)
);
CREATE INDEX IF NOT EXISTS snapshot_deps_dep ON snapshot_deps(dep_id);
`;

type RawRow = {
  id: number;
  key: string;
  kind: string;
  op: string;
  parent_id: number | null;
  stack: string | null;
  changes: string | null;
  whiteout_dirs: string;
  size: number | null;
  inodes: number | null;
  created_at: number;
  updated_at: number;
  labels: string;
};

function fromRaw(r: RawRow): SnapshotRow {
  return {
    id: r.id,
    key: r.key,
    kind: r.kind as SnapshotKind,
    op: r.op as SnapshotOp,
    parentId: r.parent_id,
    stack: r.stack === null ? null : (JSON.parse(r.stack) as number[]),
    changes: r.changes === null ? null : (JSON.parse(r.changes) as [number | null, number][]),
    whiteoutDirs: JSON.parse(r.whiteout_dirs) as string[],
    size: r.size,
    inodes: r.inodes,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    labels: JSON.parse(r.labels) as Record<string, string>,
  };
}

let savepointSeq = 0;

/**
 * Runs `fn` atomically. Savepoints nest inside a transaction someone else holds on the shared
 * database, and start one otherwise. `fn` must be synchronous: nothing else may interleave.
 */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  const name = `sp${++savepointSeq}`;
  db.exec(`SAVEPOINT ${name}`);
  try {
    const out = fn();
    db.exec(`RELEASE ${name}`);
    return out;
  } catch (e) {
    db.exec(`ROLLBACK TO ${name}`);
    db.exec(`RELEASE ${name}`);
    throw e;
  }
}

/** New snapshot fields; the store assigns id and times. */
export type NewSnapshot = Omit<SnapshotRow, "id" | "createdAt" | "updatedAt">;

/** Typed access to the snapshot tables. */
export class SnapshotStore {
  readonly db: DatabaseSync;
  private readonly now: () => number;

  constructor(db: DatabaseSync, now: () => number = Date.now) {
    this.db = db;
    this.now = now;
    db.exec(SCHEMA);
  }

  config(name: string): string | undefined {
    const r = this.db.prepare("SELECT value FROM snapshot_config WHERE name = ?").get(name) as
      | { value: string }
      | undefined;
    return r?.value;
  }

  setConfig(name: string, value: string): void {
    this.db
      .prepare(
        "INSERT INTO snapshot_config(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = ?",
      )
      .run(name, value, value);
  }

  byKey(key: string): SnapshotRow | undefined {
    const r = this.db.prepare("SELECT * FROM snapshot_snapshots WHERE key = ?").get(key) as
      | RawRow
      | undefined;
    return r && fromRaw(r);
  }

  byId(id: number): SnapshotRow | undefined {
    const r = this.db.prepare("SELECT * FROM snapshot_snapshots WHERE id = ?").get(id) as RawRow | undefined;
    return r && fromRaw(r);
  }

  /** The row of `key`, or a not_found error naming what was being done. */
  mustGet(key: string, doing: string): SnapshotRow {
    const row = this.byKey(key);
    if (!row)
      throw new SnapshotError("not_found", `${doing}: snapshot ${JSON.stringify(key)} does not exist`);
    return row;
  }

  all(): SnapshotRow[] {
    return (this.db.prepare("SELECT * FROM snapshot_snapshots ORDER BY id").all() as RawRow[]).map(fromRaw);
  }

  insert(s: NewSnapshot, deps: number[] = []): SnapshotRow {
    const now = this.now();
    const res = this.db
      .prepare(
        `INSERT INTO snapshot_snapshots(key, kind, op, parent_id, stack, changes, whiteout_dirs, size, inodes,
           created_at, updated_at, labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        s.key,
        s.kind,
        s.op,
        s.parentId,
        s.stack === null ? null : JSON.stringify(s.stack),
        s.changes === null ? null : JSON.stringify(s.changes),
        JSON.stringify(s.whiteoutDirs),
        s.size,
        s.inodes,
        now,
        now,
        JSON.stringify(s.labels),
      );
    const id = Number(res.lastInsertRowid);
    const dep = this.db.prepare("INSERT OR IGNORE INTO snapshot_deps(owner_id, dep_id) VALUES (?, ?)");
    for (const d of deps) dep.run(id, d);
    return this.byId(id)!;
  }

  /** Marks `row` committed under `name` with its measured usage. */
  markCommitted(
    row: SnapshotRow,
    name: string,
    u: { size: number; inodes: number; whiteoutDirs: string[] },
    labels: Record<string, string>,
  ): void {
    this.db
      .prepare(
        `UPDATE snapshot_snapshots SET key = ?, kind = 'committed', size = ?, inodes = ?, whiteout_dirs = ?,
           labels = ?, updated_at = ? WHERE id = ?`,
      )
      .run(
        name,
        u.size,
        u.inodes,
        JSON.stringify(u.whiteoutDirs),
        JSON.stringify(labels),
        this.now(),
        row.id,
      );
  }

  /** Keys of snapshots that depend on `id`: children prepared on it and merges/diffs using it. */
  dependents(id: number): string[] {
    const children = this.db.prepare("SELECT key FROM snapshot_snapshots WHERE parent_id = ?").all(id) as {
      key: string;
    }[];
    const users = this.db
      .prepare(
        "SELECT s.key FROM snapshot_deps d JOIN snapshot_snapshots s ON s.id = d.owner_id WHERE d.dep_id = ?",
      )
      .all(id) as { key: string }[];
    return [...children, ...users].map((r) => r.key);
  }

  deps(id: number): number[] {
    return (
      this.db.prepare("SELECT dep_id FROM snapshot_deps WHERE owner_id = ?").all(id) as { dep_id: number }[]
    ).map((r) => r.dep_id);
  }

  delete(id: number): void {
    this.db.prepare("DELETE FROM snapshot_deps WHERE owner_id = ?").run(id);
    this.db.prepare("DELETE FROM snapshot_snapshots WHERE id = ?").run(id);
  }
}

// Cache records in SQLite (tables prefixed `cache_`). A record's id is also its snapshot's key.
// state "creating" marks a record whose snapshot is being made (a commit names the mutable record
// it consumes in pending_from); recovery finishes or undoes those.
import type { DatabaseSync } from "node:sqlite";
import { transaction } from "../snapshot/store.ts";
import type { RecordInfo, RecordOp, RecordType } from "./types.ts";

export { transaction };

/** One record as stored. */
export type RecordRow = {
  id: string;
  mutable: boolean;
  state: "ready" | "creating";
  op: RecordOp;
  mutableKey: string | null;
  persistent: boolean;
  size: number | null;
  recordType: RecordType;
  description: string;
  createdAt: number;
  lastUsedAt: number | null;
  usageCount: number;
  pendingFrom: string | null;
  parents: string[];
};

const SCHEMA = `
CREATE TABLE IF NOT EXISTS cache_records (
  id TEXT PRIMARY KEY,
  mutable INTEGER NOT NULL,
  state TEXT NOT NULL,
  op TEXT NOT NULL,
  mutable_key TEXT UNIQUE,
  persistent INTEGER NOT NULL,
  size INTEGER,
  record_type TEXT NOT NULL,
  description TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_used_at INTEGER,
  usage_count INTEGER NOT NULL,
  pending_from TEXT
);
CREATE TABLE IF NOT EXISTS cache_parents (
  child TEXT NOT NULL,
  pos INTEGER NOT NULL,
  parent TEXT NOT NULL,
  PRIMARY KEY (child, pos)
);
CREATE INDEX IF NOT EXISTS cache_parents_parent ON cache_parents(parent);
CREATE TABLE IF NOT EXISTS cache_meta (
  id TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (id, key)
);
`;

type RawRecord = {
  id: string;
  mutable: number;
  state: string;
  op: string;
  mutable_key: string | null;
  persistent: number;
  size: number | null;
  record_type: string;
  description: string;
  created_at: number;
  last_used_at: number | null;
  usage_count: number;
  pending_from: string | null;
};

/** Typed access to the cache tables. */
export class CacheDb {
  readonly db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.db = db;
    db.exec(SCHEMA);
  }

  private parentsOf(id: string): string[] {
    const rows = this.db.prepare("SELECT parent FROM cache_parents WHERE child = ? ORDER BY pos").all(id) as {
      parent: string;
    }[];
    return rows.map((r) => r.parent);
  }

  private fromRaw(r: RawRecord, parents: string[]): RecordRow {
    return {
      id: r.id,
      mutable: r.mutable === 1,
      state: r.state as RecordRow["state"],
      op: r.op as RecordOp,
      mutableKey: r.mutable_key,
      persistent: r.persistent === 1,
      size: r.size,
      recordType: r.record_type as RecordType,
      description: r.description,
      createdAt: r.created_at,
      lastUsedAt: r.last_used_at,
      usageCount: r.usage_count,
      pendingFrom: r.pending_from,
      parents,
    };
  }

  get(id: string): RecordRow | undefined {
    const r = this.db.prepare("SELECT * FROM cache_records WHERE id = ?").get(id) as RawRecord | undefined;
    return r && this.fromRaw(r, this.parentsOf(id));
  }

  byMutableKey(key: string): RecordRow | undefined {
    const r = this.db.prepare("SELECT * FROM cache_records WHERE mutable_key = ?").get(key) as
      | RawRecord
      | undefined;
    return r && this.fromRaw(r, this.parentsOf(r.id));
  }

  all(): RecordRow[] {
    const parents = new Map<string, string[]>();
    const prow = this.db.prepare("SELECT child, parent FROM cache_parents ORDER BY child, pos").all() as {
      child: string;
      parent: string;
    }[];
    for (const p of prow) parents.set(p.child, [...(parents.get(p.child) ?? []), p.parent]);
    const rows = this.db.prepare("SELECT * FROM cache_records ORDER BY created_at, id").all() as RawRecord[];
    return rows.map((r) => this.fromRaw(r, parents.get(r.id) ?? []));
  }

  insert(r: RecordRow): void {
    this.db
      .prepare(
        `INSERT INTO cache_records(id, mutable, state, op, mutable_key, persistent, size, record_type, description,
           created_at, last_used_at, usage_count, pending_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        r.id,
        r.mutable ? 1 : 0,
        r.state,
        r.op,
        r.mutableKey,
        r.persistent ? 1 : 0,
        r.size,
        r.recordType,
        r.description,
        r.createdAt,
        r.lastUsedAt,
        r.usageCount,
        r.pendingFrom,
      );
    const ins = this.db.prepare("INSERT INTO cache_parents(child, pos, parent) VALUES (?, ?, ?)");
    r.parents.forEach((p, i) => {
      ins.run(r.id, i, p);
    });
  }

  /** Marks a record made: ready, with its measured size. */
  markReady(id: string, size: number | null): void {
    this.db
      .prepare("UPDATE cache_records SET state = 'ready', size = ?, pending_from = NULL WHERE id = ?")
      .run(size, id);
  }

  setSize(id: string, size: number | null): void {
    this.db.prepare("UPDATE cache_records SET size = ? WHERE id = ?").run(size, id);
  }

  /** Records a use: the time, and one more use when `count` is set. */
  touch(id: string, now: number, count: boolean): void {
    this.db
      .prepare("UPDATE cache_records SET last_used_at = ?, usage_count = usage_count + ? WHERE id = ?")
      .run(now, count ? 1 : 0, id);
  }

  /** Ids of records that have `id` as a parent. */
  children(id: string): string[] {
    return (
      this.db.prepare("SELECT DISTINCT child FROM cache_parents WHERE parent = ?").all(id) as {
        child: string;
      }[]
    ).map((r) => r.child);
  }

  delete(id: string): void {
    this.db.prepare("DELETE FROM cache_meta WHERE id = ?").run(id);
    this.db.prepare("DELETE FROM cache_parents WHERE child = ?").run(id);
    this.db.prepare("DELETE FROM cache_records WHERE id = ?").run(id);
  }

  getMeta(id: string, key: string): string | undefined {
    const r = this.db.prepare("SELECT value FROM cache_meta WHERE id = ? AND key = ?").get(id, key) as
      | { value: string }
      | undefined;
    return r?.value;
  }

  setMeta(id: string, key: string, value: string | undefined): void {
    if (value === undefined) this.db.prepare("DELETE FROM cache_meta WHERE id = ? AND key = ?").run(id, key);
    else
      this.db
        .prepare(
          "INSERT INTO cache_meta(id, key, value) VALUES (?, ?, ?) ON CONFLICT(id, key) DO UPDATE SET value = ?",
        )
        .run(id, key, value, value);
  }

  copyMeta(from: string, to: string): void {
    this.db
      .prepare(
        "INSERT OR REPLACE INTO cache_meta(id, key, value) SELECT ?, key, value FROM cache_meta WHERE id = ?",
      )
      .run(to, from);
  }
}

/** The public view of a row. */
export function recordInfo(r: RecordRow): RecordInfo {
  return {
    id: r.id,
    mutable: r.mutable,
    op: r.op,
    parents: r.parents,
    recordType: r.recordType,
    description: r.description,
    createdAt: r.createdAt,
    lastUsedAt: r.lastUsedAt ?? undefined,
    usageCount: r.usageCount,
    size: r.size ?? undefined,
    key: r.mutableKey ?? undefined,
  };
}

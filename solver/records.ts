// Cache records: which results a cache key produced. Persisted in SQLite so a daemon restart
// keeps the cache; a record whose result has since been pruned is dropped on lookup.
import type { DatabaseSync, StatementSync } from "node:sqlite";

export class CacheRecords {
  private readonly getStmt: StatementSync;
  private readonly putStmt: StatementSync;
  private readonly delKeyStmt: StatementSync;
  private readonly delRefStmt: StatementSync;
  private readonly db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.db = db;
    db.exec(`CREATE TABLE IF NOT EXISTS solver_records (
      key TEXT NOT NULL,
      output INTEGER NOT NULL,
      ref_id TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      PRIMARY KEY (key, output)
    ) WITHOUT ROWID`);
    db.exec("CREATE INDEX IF NOT EXISTS solver_records_ref ON solver_records (ref_id)");
    this.getStmt = db.prepare("SELECT output, ref_id FROM solver_records WHERE key = ? ORDER BY output");
    this.putStmt = db.prepare(
      "INSERT OR REPLACE INTO solver_records (key, output, ref_id, created_at) VALUES (?, ?, ?, ?)",
    );
    this.delKeyStmt = db.prepare("DELETE FROM solver_records WHERE key = ?");
    this.delRefStmt = db.prepare("DELETE FROM solver_records WHERE ref_id = ?");
  }

  /** The result ids of `key`, one per output, or undefined when there is no complete record. */
  get(key: string, outputs: number): string[] | undefined {
    const rows = this.getStmt.all(key) as { output: number; ref_id: string }[];
    if (rows.length !== outputs || rows.some((r, i) => r.output !== i)) return undefined;
    return rows.map((r) => r.ref_id);
  }

  /** Records the results of `key`, replacing any earlier record, atomically. */
  put(key: string, refIds: string[]): void {
    const now = Date.now();
    this.db.exec("BEGIN");
    try {
      this.delKeyStmt.run(key);
      for (const [i, id] of refIds.entries()) this.putStmt.run(key, i, id, now);
      this.db.exec("COMMIT");
    } catch (e) {
      this.db.exec("ROLLBACK");
      throw e;
    }
  }

  deleteKey(key: string): void {
    this.delKeyStmt.run(key);
  }

  /** Forgets every record that points at a result, e.g. after it was pruned. */
  deleteRef(refId: string): void {
    this.delRefStmt.run(refId);
  }
}

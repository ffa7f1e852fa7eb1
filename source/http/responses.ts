// What the http source remembers per URL between builds: the last response's validators (ETag,
// Last-Modified) and the blob its body became, so the next fetch can be a conditional GET. In
// the daemon's shared SQLite database under the `source_http_` prefix.
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { type Digest, isDigest } from "../../util/digest.ts";

/** The last successful response for a URL. */
export type StoredResponse = {
  url: string;
  digest: Digest;
  size: number;
  etag?: string;
  lastModified?: string;
  filename?: string;
  fetchedAt: number;
};

const SCHEMA = `
CREATE TABLE IF NOT EXISTS source_http_responses (
  url TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  size INTEGER NOT NULL,
  etag TEXT,
  last_modified TEXT,
  filename TEXT,
  fetched_at INTEGER NOT NULL
) WITHOUT ROWID;
`;

/** The `source_http_responses` table. */
export class ResponseTable {
  #get: StatementSync;
  #put: StatementSync;
  #delete: StatementSync;

  constructor(db: DatabaseSync) {
    db.exec(SCHEMA);
    this.#get = db.prepare(
      "SELECT url, digest, size, etag, last_modified, filename, fetched_at FROM source_http_responses WHERE url = ?",
    );
    this.#put = db.prepare(
      `INSERT OR REPLACE INTO source_http_responses (url, digest, size, etag, last_modified, filename, fetched_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#delete = db.prepare("DELETE FROM source_http_responses WHERE url = ?");
  }

  get(url: string): StoredResponse | undefined {
    const row = this.#get.get(url);
    if (row === undefined) return undefined;
    const digest = String(row["digest"]);
    if (!isDigest(digest)) return undefined;
    const r: StoredResponse = {
      url,
      digest,
      size: Number(row["size"]),
      fetchedAt: Number(row["fetched_at"]),
    };
    if (row["etag"] !== null) r.etag = String(row["etag"]);
    if (row["last_modified"] !== null) r.lastModified = String(row["last_modified"]);
    if (row["filename"] !== null) r.filename = String(row["filename"]);
    return r;
  }

  put(r: StoredResponse): void {
    this.#put.run(
      r.url,
      r.digest,
      r.size,
      r.etag ?? null,
      r.lastModified ?? null,
      r.filename ?? null,
      r.fetchedAt,
    );
  }

  delete(url: string): void {
    this.#delete.run(url);
  }
}

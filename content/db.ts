// The content store's SQLite tables and the small helpers around them. The database is shared
// with other components of the daemon, so every table has the `content_` prefix and every
// transaction is a savepoint (valid whether or not the caller already opened one).
import type { DatabaseSync } from "node:sqlite";
import { ContentError } from "./errors.ts";

/** Blob labels: free-form metadata such as `buildd.io/uncompressed=<diffID>`. */
export type Labels = Record<string, string>;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS content_blobs (
  digest TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS content_leases (
  id TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  labels TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS content_lease_resources (
  lease_id TEXT NOT NULL,
  digest TEXT NOT NULL,
  PRIMARY KEY (lease_id, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS content_lease_resources_by_digest ON content_lease_resources (digest);
`;

/** Creates the content tables when they are missing. */
export function createContentTables(db: DatabaseSync): void {
  inTransaction(db, () => db.exec(SCHEMA));
}

/** Runs `fn` atomically: all of its statements land, or none. */
export function inTransaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec("SAVEPOINT content_tx");
  try {
    const result = fn();
    db.exec("RELEASE content_tx");
    return result;
  } catch (e) {
    db.exec("ROLLBACK TO content_tx");
    db.exec("RELEASE content_tx");
    throw e;
  }
}

const MAX_LABEL_BYTES = 4096;
const MAX_LABELS = 256;

/** Checks labels given by a caller: string keys and values, bounded in size and number. */
export function validateLabels(labels: unknown, what: string): Labels {
  if (labels === null || typeof labels !== "object" || Array.isArray(labels)) {
    throw new ContentError("invalid-argument", `${what}: labels must be an object of strings`);
  }
  const entries = Object.entries(labels);
  if (entries.length > MAX_LABELS) {
    throw new ContentError("invalid-argument", `${what}: ${entries.length} labels, at most ${MAX_LABELS}`);
  }
  for (const [key, value] of entries) {
    if (key === "" || typeof value !== "string") {
      throw new ContentError(
        "invalid-argument",
        `${what}: label ${JSON.stringify(key)} needs a non-empty key and a string value`,
      );
    }
    if (Buffer.byteLength(key) + Buffer.byteLength(value) > MAX_LABEL_BYTES) {
      throw new ContentError(
        "invalid-argument",
        `${what}: label ${JSON.stringify(key.slice(0, 64))} is longer than ${MAX_LABEL_BYTES} bytes`,
      );
    }
  }
  return labels as Labels;
}

/** Applies `update` to `labels`: values replace, "" removes the key. */
export function mergeLabels(labels: Labels, update: Labels): Labels {
  // A Map, so that a key such as "__proto__" is a label like any other.
  const merged = new Map(Object.entries(labels));
  for (const [key, value] of Object.entries(update)) {
    if (value === "") merged.delete(key);
    else merged.set(key, value);
  }
  return Object.fromEntries(merged);
}

/** Labels as stored in a row; a corrupt column reads as no labels rather than failing reads. */
export function parseLabels(json: unknown): Labels {
  if (typeof json !== "string") return {};
  try {
    const parsed: unknown = JSON.parse(json);
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return {};
    return Object.fromEntries(Object.entries(parsed).filter(([, v]) => typeof v === "string")) as Labels;
  } catch {
    return {};
  }
}

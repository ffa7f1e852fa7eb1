// The daemon's images by name: what the image exporter made, so that the image outlives the
// build (its blobs are held by a content lease per name) and can be found again. A small SQLite
// table in the daemon's database, like containerd's image store.
import { createHash } from "node:crypto";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { ContentStore } from "../content/store.ts";
import type { Descriptor } from "../source/registry/index.ts";
import type { Digest } from "../util/digest.ts";

/** One named image. Times are milliseconds since the epoch. */
export type ImageRecord = {
  name: string;
  digest: Digest;
  mediaType: string;
  size: number;
  createdAt: number;
  updatedAt: number;
};

/** Named images in the daemon's database; each name's blobs are kept by a lease. */
export class ImageStore {
  private readonly db: DatabaseSync;
  private readonly content: ContentStore;
  private readonly getStmt: StatementSync;
  private readonly putStmt: StatementSync;
  private readonly delStmt: StatementSync;
  private readonly listStmt: StatementSync;

  constructor(db: DatabaseSync, content: ContentStore) {
    this.db = db;
    this.content = content;
    db.exec(`CREATE TABLE IF NOT EXISTS images_images (
      name TEXT PRIMARY KEY,
      digest TEXT NOT NULL,
      media_type TEXT NOT NULL,
      size INTEGER NOT NULL,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL
    ) WITHOUT ROWID`);
    this.getStmt = db.prepare("SELECT * FROM images_images WHERE name = ?");
    this.putStmt = db.prepare(
      `INSERT INTO images_images (name, digest, media_type, size, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(name) DO UPDATE SET digest = excluded.digest, media_type = excluded.media_type,
         size = excluded.size, updated_at = excluded.updated_at`,
    );
    this.delStmt = db.prepare("DELETE FROM images_images WHERE name = ?");
    this.listStmt = db.prepare("SELECT * FROM images_images ORDER BY name");
  }

  /** Records `name` as `root`, holding `blobs` (every blob of the image) under the name's lease. */
  put(name: string, root: Descriptor, blobs: Digest[]): ImageRecord {
    const now = Date.now();
    const lease = leaseId(name);
    this.db.exec("SAVEPOINT images_put");
    try {
      this.content.deleteLease(lease);
      this.content.createLease({ id: lease, labels: { "buildd.image": name.slice(0, 4000) } });
      for (const d of blobs) this.content.addLeaseResource(lease, d);
      this.putStmt.run(name, root.digest, root.mediaType, root.size, now, now);
      this.db.exec("RELEASE images_put");
    } catch (e) {
      this.db.exec("ROLLBACK TO images_put");
      this.db.exec("RELEASE images_put");
      throw new Error(`recording image ${name}: ${(e as Error).message}`);
    }
    return this.get(name)!;
  }

  get(name: string): ImageRecord | undefined {
    const row = this.getStmt.get(name);
    return row ? toRecord(row) : undefined;
  }

  list(): ImageRecord[] {
    return this.listStmt.all().map(toRecord);
  }

  /** Forgets `name`; its blobs become collectable unless another image holds them. */
  delete(name: string): boolean {
    this.content.deleteLease(leaseId(name));
    return Number(this.delStmt.run(name).changes) > 0;
  }
}

/** Image names hold characters lease ids may not (`@`), so the lease is named by a hash. */
function leaseId(name: string): string {
  return `image-${createHash("sha256").update(name).digest("hex")}`;
}

function toRecord(row: Record<string, unknown>): ImageRecord {
  return {
    name: String(row.name),
    digest: String(row.digest) as Digest,
    mediaType: String(row.media_type),
    size: Number(row.size),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

// Leases: named, optionally expiring sets of digests that garbage collection must keep. A build
// takes a lease before it pulls or writes blobs and drops it when the result is referenced
// elsewhere (an image record, a cache record), so nothing in use is collected in between.
import { randomUUID } from "node:crypto";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { Digest } from "../util/digest.ts";
import { inTransaction, type Labels, parseLabels, validateLabels } from "./db.ts";
import { ContentError, requireDigest } from "./errors.ts";

/** A lease as stored: times are milliseconds since the epoch. */
export type Lease = {
  id: string;
  createdAt: number;
  expiresAt?: number;
  labels: Labels;
  resources: Digest[];
};

/** How to create a lease; without `expiresAt` it lives until deleted. */
export type LeaseOptions = { id?: string; expiresAt?: number | Date; labels?: Labels };

const LEASE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$/;

/** Throws unless `id` is a lease id this store could have issued or accepted. */
export function validateLeaseId(id: unknown): string {
  if (typeof id !== "string" || !LEASE_ID_RE.test(id)) {
    throw new ContentError(
      "invalid-argument",
      `invalid lease id ${JSON.stringify(id)}: want 1-255 characters of [A-Za-z0-9._:/-], starting alphanumeric`,
    );
  }
  return id;
}

/** The lease tables, with statements prepared once. `now` is the store's clock. */
export class LeaseTable {
  #db: DatabaseSync;
  #now: () => number;
  #get: StatementSync;
  #insert: StatementSync;
  #addResource: StatementSync;
  #removeResource: StatementSync;
  #delete: StatementSync;
  #deleteResources: StatementSync;
  #all: StatementSync;
  #allResources: StatementSync;
  #expired: StatementSync;
  #protects: StatementSync;

  constructor(db: DatabaseSync, now: () => number) {
    this.#db = db;
    this.#now = now;
    this.#get = db.prepare("SELECT id, expires_at FROM content_leases WHERE id = ?");
    this.#insert = db.prepare(
      "INSERT INTO content_leases (id, created_at, expires_at, labels) VALUES (?, ?, ?, ?)",
    );
    this.#addResource = db.prepare(
      "INSERT OR IGNORE INTO content_lease_resources (lease_id, digest) VALUES (?, ?)",
    );
    this.#removeResource = db.prepare(
      "DELETE FROM content_lease_resources WHERE lease_id = ? AND digest = ?",
    );
    this.#delete = db.prepare("DELETE FROM content_leases WHERE id = ?");
    this.#deleteResources = db.prepare("DELETE FROM content_lease_resources WHERE lease_id = ?");
    this.#all = db.prepare(
      "SELECT id, created_at, expires_at, labels FROM content_leases ORDER BY created_at, id",
    );
    this.#allResources = db.prepare(
      "SELECT lease_id, digest FROM content_lease_resources ORDER BY lease_id, digest",
    );
    this.#expired = db.prepare(
      "SELECT id FROM content_leases WHERE expires_at IS NOT NULL AND expires_at <= ?",
    );
    this.#protects = db.prepare(
      `SELECT 1 FROM content_lease_resources r JOIN content_leases l ON l.id = r.lease_id
       WHERE r.digest = ? AND (l.expires_at IS NULL OR l.expires_at > ?) LIMIT 1`,
    );
  }

  /** Creates a lease and returns its id (a random one unless `opts.id` is given). */
  create(opts: LeaseOptions = {}): string {
    const id = opts.id === undefined ? `lease-${randomUUID()}` : validateLeaseId(opts.id);
    const labels = validateLabels(opts.labels ?? {}, `creating lease ${id}`);
    const now = this.#now();
    let expiresAt: number | null = null;
    if (opts.expiresAt !== undefined) {
      expiresAt = opts.expiresAt instanceof Date ? opts.expiresAt.getTime() : opts.expiresAt;
      if (!Number.isSafeInteger(expiresAt) || expiresAt <= now) {
        throw new ContentError(
          "invalid-argument",
          `creating lease ${id}: expiresAt ${String(opts.expiresAt)} is not in the future; pass a Date or milliseconds since the epoch`,
        );
      }
    }
    inTransaction(this.#db, () => {
      if (this.#get.get(id) !== undefined) {
        throw new ContentError(
          "already-exists",
          `creating lease ${id}: a lease with this id exists; pick another id or reuse it`,
        );
      }
      this.#insert.run(id, now, expiresAt, JSON.stringify(labels));
    });
    return id;
  }

  /** Throws unless lease `id` exists and has not expired; `doing` names the caller's operation. */
  assertLive(id: string, doing: string): void {
    validateLeaseId(id);
    const row = this.#get.get(id);
    if (row === undefined) {
      throw new ContentError("not-found", `${doing}: lease ${id} does not exist; create it first`);
    }
    const expiresAt = row["expires_at"];
    if (typeof expiresAt === "number" && expiresAt <= this.#now()) {
      throw new ContentError("not-found", `${doing}: lease ${id} has expired; create a new lease`);
    }
  }

  /** Makes lease `id` protect `digest` (which need not exist yet). Must run inside a transaction or alone. */
  addResource(id: string, digest: string): void {
    const d = requireDigest(digest, `adding a resource to lease ${id}`);
    inTransaction(this.#db, () => {
      this.assertLive(id, `adding ${d} to lease ${id}`);
      this.#addResource.run(id, d);
    });
  }

  /** Stops lease `id` from protecting `digest`; true when it did. */
  removeResource(id: string, digest: string): boolean {
    validateLeaseId(id);
    const d = requireDigest(digest, `removing a resource from lease ${id}`);
    return Number(this.#removeResource.run(id, d).changes) > 0;
  }

  /** Deletes lease `id` and its resources; true when it existed. */
  delete(id: string): boolean {
    validateLeaseId(id);
    return inTransaction(this.#db, () => {
      this.#deleteResources.run(id);
      return Number(this.#delete.run(id).changes) > 0;
    });
  }

  /** Every lease with its resources, expired ones included until gc drops them. */
  list(): Lease[] {
    const resources = new Map<string, Digest[]>();
    for (const row of this.#allResources.all()) {
      const id = String(row["lease_id"]);
      const list = resources.get(id) ?? [];
      list.push(String(row["digest"]) as Digest);
      resources.set(id, list);
    }
    return this.#all.all().map((row) => {
      const id = String(row["id"]);
      const lease: Lease = {
        id,
        createdAt: Number(row["created_at"]),
        labels: parseLabels(row["labels"]),
        resources: resources.get(id) ?? [],
      };
      if (typeof row["expires_at"] === "number") lease.expiresAt = row["expires_at"];
      return lease;
    });
  }

  /** Deletes every expired lease; returns their ids. */
  dropExpired(): string[] {
    return inTransaction(this.#db, () => {
      const ids = this.#expired.all(this.#now()).map((row) => String(row["id"]));
      for (const id of ids) {
        this.#deleteResources.run(id);
        this.#delete.run(id);
      }
      return ids;
    });
  }

  /** True when some live lease holds `digest`. */
  protects(digest: string): boolean {
    return this.#protects.get(digest, this.#now()) !== undefined;
  }
}

// The content store: blobs named by their sha256 digest, written through verified ingests,
// kept while a lease or a caller-given root holds them.
//
// On disk: `<root>/blobs/sha256/<hex>` (read-only, complete and verified, or absent) and
// `<root>/ingest/<sha256 of ref>/{data,ref.json}` for writes in progress. The filesystem is the
// truth about which blobs exist and how big they are: a blob is there when its file is. SQLite
// (shared with the rest of the daemon) holds only what a file cannot: creation time, labels and
// leases. A row whose file is missing is ignored on read and dropped on open and at gc, so the
// database can never make the store claim a blob it does not have.
import { createHash, randomUUID } from "node:crypto";
import { constants, type Stats, unlinkSync } from "node:fs";
import { chmod, type FileHandle, lstat, mkdir, open, readdir, rename, rm, unlink } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { Readable } from "node:stream";
import { type Digest, digestHex, digestOf } from "../util/digest.ts";
import {
  createContentTables,
  inTransaction,
  type Labels,
  mergeLabels,
  parseLabels,
  validateLabels,
} from "./db.ts";
import { ContentError, requireDigest, requireSize } from "./errors.ts";
import { type Lease, type LeaseOptions, LeaseTable } from "./lease.ts";
import { RwLock } from "./rwlock.ts";
import {
  type Committed,
  type ContentWriter,
  describeMismatch,
  INGEST_DATA,
  INGEST_RECORD,
  type IngestExpectation,
  openIngest,
  readIngestRecord,
} from "./writer.ts";

/** Downloaded bytes are written to the ingest in batches of about this size. */
const WRITE_BATCH_BYTES = 1 << 20;

/** What the store knows about one blob; times are milliseconds since the epoch. */
export type ContentInfo = { digest: Digest; size: number; createdAt: number; labels: Labels };

/** Options of `writer`: expectations checked at commit, and a lease the blob joins at commit. */
export type WriterOptions = IngestExpectation & { lease?: string };

/** Options of `writeBlob`. */
export type WriteBlobOptions = WriterOptions & { labels?: Labels };

/** Options of `ingest`. */
export type IngestOptions = { lease?: string; labels?: Labels };

/**
 * What an `ingest` opener returns: a body from byte 0, or `{ body, startsAt }` when it could
 * start at the offset it was asked for (an HTTP range request that the server honoured).
 */
export type IngestSource = AsyncIterable<Uint8Array> | { body: AsyncIterable<Uint8Array>; startsAt: number };

/** Opens the bytes of a blob being ingested, ideally from `offset` (what a resumed ingest has). */
export type IngestOpener = (offset: number) => Promise<IngestSource>;

/** An ingest as `listIngests` sees it. */
export type IngestStatus = {
  ref: string;
  offset: number;
  expectedDigest?: Digest;
  expectedSize?: number;
  startedAt: number;
  updatedAt: number;
};

/** Options of `gc`: blobs in `roots` are kept, as are blobs held by a live lease. */
export type GcOptions = { roots: Iterable<string>; ingestMaxAgeMs?: number };

/** What `gc` removed. */
export type GcResult = {
  removed: Digest[];
  removedIngests: string[];
  expiredLeases: string[];
  freedBytes: number;
};

/** Bytes on disk, split by committed blobs and ingests in progress. */
export type ContentUsage = { blobs: number; blobBytes: number; ingests: number; ingestBytes: number };

/** How to open a store; `now` is the clock for timestamps and lease expiry (tests pass their own). */
export type ContentStoreOptions = { root: string; db: DatabaseSync; now?: () => number };

/** Default of `readAll`'s `maxBytes`: manifests and configs are far smaller. */
export const READ_ALL_DEFAULT_LIMIT = 16 * 1024 * 1024;
/** Default of `gc`'s `ingestMaxAgeMs`: an ingest untouched for a day is abandoned. */
export const INGEST_DEFAULT_MAX_AGE_MS = 24 * 60 * 60 * 1000;
const MAX_REF_LENGTH = 1024;
const HEX_NAME = /^[0-9a-f]{64}$/;
const NOFOLLOW = constants.O_NOFOLLOW;

type IngestHold = { by: "writer" | "gc"; released: Promise<void> };

/**
 * Content-addressed blob storage for one root. Open one store per root per process: ingest
 * locks, download coalescing and the gc lock live in this object.
 */
export class ContentStore {
  readonly root: string;
  #blobsDir: string;
  #ingestDir: string;
  #db: DatabaseSync;
  #now: () => number;
  #leases: LeaseTable;
  #gcLock = new RwLock();
  #holds = new Map<string, IngestHold>();
  #fetches = new Map<Digest, Promise<Committed>>();
  #getRow: StatementSync;
  #putRow: StatementSync;
  #deleteRow: StatementSync;
  #allRows: StatementSync;

  private constructor(root: string, db: DatabaseSync, now: () => number) {
    this.root = root;
    this.#blobsDir = join(root, "blobs", "sha256");
    this.#ingestDir = join(root, "ingest");
    this.#db = db;
    this.#now = now;
    this.#leases = new LeaseTable(db, now);
    this.#getRow = db.prepare("SELECT created_at, labels FROM content_blobs WHERE digest = ?");
    this.#putRow = db.prepare(
      "INSERT OR REPLACE INTO content_blobs (digest, created_at, labels) VALUES (?, ?, ?)",
    );
    this.#deleteRow = db.prepare("DELETE FROM content_blobs WHERE digest = ?");
    this.#allRows = db.prepare("SELECT digest, created_at, labels FROM content_blobs");
  }

  /** Opens (creating when needed) the store under `root`, with its tables in `db`. */
  static async open(opts: ContentStoreOptions): Promise<ContentStore> {
    if (typeof opts.root !== "string" || !isAbsolute(opts.root)) {
      throw new ContentError(
        "invalid-argument",
        `opening the content store: root ${JSON.stringify(opts.root)} must be an absolute path`,
      );
    }
    await mkdir(join(opts.root, "blobs", "sha256"), { recursive: true, mode: 0o700 });
    await mkdir(join(opts.root, "ingest"), { recursive: true, mode: 0o700 });
    createContentTables(opts.db);
    const store = new ContentStore(opts.root, opts.db, opts.now ?? Date.now);
    await store.#dropRowsWithoutBlobs();
    return store;
  }

  // ---- reading ----

  /** The blob's size, creation time and labels; undefined when the store does not have it. */
  async info(digest: string): Promise<ContentInfo | undefined> {
    const d = requireDigest(digest, "reading blob info");
    const st = await this.#blobStat(d);
    if (st === undefined) return undefined;
    const row = this.#row(d);
    return {
      digest: d,
      size: st.size,
      createdAt: row?.createdAt ?? Math.floor(st.mtimeMs),
      labels: row?.labels ?? {},
    };
  }

  /** True when the store has the blob. */
  async has(digest: string): Promise<boolean> {
    return (await this.#blobStat(requireDigest(digest, "checking for a blob"))) !== undefined;
  }

  /**
   * Where the blob's file is (or would be), for readers that need a path. The file is
   * read-only; hold a lease on the digest while using it, or gc may remove it.
   */
  blobPath(digest: string): string {
    return join(this.#blobsDir, digestHex(requireDigest(digest, "locating a blob")));
  }

  /** A stream of the blob's bytes in [start, end) (default: all); throws not-found when absent. */
  async readStream(digest: string, range: { start?: number; end?: number } = {}): Promise<Readable> {
    const d = requireDigest(digest, "reading a blob");
    const fh = await this.#openBlob(d, "reading");
    try {
      const size = (await fh.stat()).size;
      const start = range.start ?? 0;
      const end = range.end ?? size;
      if (
        !Number.isSafeInteger(start) ||
        !Number.isSafeInteger(end) ||
        start < 0 ||
        start > end ||
        end > size
      ) {
        throw new ContentError(
          "invalid-argument",
          `reading ${d}: range [${start}, ${end}) is not within the blob's ${size} bytes`,
        );
      }
      if (start === end) {
        await fh.close();
        return Readable.from([]);
      }
      return fh.createReadStream({ start, end: end - 1 });
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
  }

  /** The whole blob in memory; refuses blobs over `maxBytes` (16 MiB unless given). */
  async readAll(digest: string, opts: { maxBytes?: number } = {}): Promise<Buffer> {
    const d = requireDigest(digest, "reading a blob");
    const maxBytes = requireSize(opts.maxBytes ?? READ_ALL_DEFAULT_LIMIT, `reading ${d}`);
    const fh = await this.#openBlob(d, "reading");
    try {
      const size = (await fh.stat()).size;
      if (size > maxBytes) {
        throw new ContentError(
          "too-large",
          `reading ${d} into memory: it has ${size} bytes, more than the limit of ${maxBytes}; stream it with readStream`,
        );
      }
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  }

  /** Every blob in the store, by digest. */
  async list(): Promise<ContentInfo[]> {
    const rows = new Map<string, { createdAt: number; labels: Labels }>();
    for (const row of this.#allRows.all()) {
      rows.set(String(row["digest"]), {
        createdAt: Number(row["created_at"]),
        labels: parseLabels(row["labels"]),
      });
    }
    const infos: ContentInfo[] = [];
    for (const name of (await readdir(this.#blobsDir)).sort()) {
      if (!HEX_NAME.test(name)) continue;
      const digest: Digest = `sha256:${name}`;
      const st = await this.#blobStat(digest);
      if (st === undefined) continue;
      const row = rows.get(digest);
      infos.push({
        digest,
        size: st.size,
        createdAt: row?.createdAt ?? Math.floor(st.mtimeMs),
        labels: row?.labels ?? {},
      });
    }
    return infos;
  }

  /** Bytes used by blobs and by ingests in progress. */
  async usage(): Promise<ContentUsage> {
    const blobs = await this.list();
    const ingests = await this.listIngests();
    return {
      blobs: blobs.length,
      blobBytes: blobs.reduce((sum, b) => sum + b.size, 0),
      ingests: ingests.length,
      ingestBytes: ingests.reduce((sum, i) => sum + i.offset, 0),
    };
  }

  // ---- writing ----

  /**
   * Opens the ingest `ref` for writing, resuming its bytes when it exists. One writer per ref
   * at a time: a second one gets a "locked" error. With `lease`, commit adds the blob to it.
   */
  async writer(ref: string, opts: WriterOptions = {}): Promise<ContentWriter> {
    const r = requireRef(ref);
    const doing = `opening ingest ${JSON.stringify(r)}`;
    const expected: IngestExpectation = {};
    if (opts.expectedDigest !== undefined)
      expected.expectedDigest = requireDigest(opts.expectedDigest, doing);
    if (opts.expectedSize !== undefined) expected.expectedSize = requireSize(opts.expectedSize, doing);
    const lease = opts.lease;
    if (lease !== undefined) this.#leases.assertLive(lease, doing);
    const name = sha256Hex(r);
    const release = await this.#holdIngest(name, r);
    try {
      return await openIngest(join(this.#ingestDir, name), r, expected, this.#now(), {
        publish: (dataPath, committed, labels) => this.#publish(dataPath, committed, labels, lease),
        release,
      });
    } catch (e) {
      release();
      throw e;
    }
  }

  /**
   * Writes a whole blob from bytes or a stream and commits it. When `expectedDigest` names a
   * blob the store has, the source is not read (a stream is left for the caller to discard).
   */
  async writeBlob(
    source: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array> | NodeJS.ReadableStream,
    opts: WriteBlobOptions = {},
  ): Promise<Committed> {
    const doing = "writing a blob";
    const expectedDigest =
      opts.expectedDigest === undefined ? undefined : requireDigest(opts.expectedDigest, doing);
    const expectedSize = opts.expectedSize === undefined ? undefined : requireSize(opts.expectedSize, doing);
    const labels = validateLabels(opts.labels ?? {}, doing);
    if (opts.lease !== undefined) this.#leases.assertLive(opts.lease, doing);
    if (source instanceof Uint8Array) {
      const digest = digestOf(source);
      const problem = describeMismatch([{ expectedDigest, expectedSize }], digest, source.byteLength);
      if (problem !== undefined)
        throw new ContentError("mismatch", `${doing}: ${problem}; nothing was written`);
      const have = await this.#adoptExisting(digest, source.byteLength, labels, opts.lease, doing);
      if (have !== undefined) return have;
      source = [source];
    } else if (expectedDigest !== undefined) {
      const have = await this.#adoptExisting(expectedDigest, expectedSize, labels, opts.lease, doing);
      if (have !== undefined) return have;
    }
    const w = await this.writer(`write-${randomUUID()}`, { expectedDigest, expectedSize, lease: opts.lease });
    try {
      for await (const chunk of source as AsyncIterable<Uint8Array>) await w.write(chunk);
      return await w.commit({ labels });
    } catch (e) {
      await w.abort();
      throw e;
    }
  }

  /**
   * Makes sure the store has the blob `expected` describes, fetching it with `open` only when
   * needed: at once when it is present; by waiting when another `ingest` of the same digest is
   * running in this process (so concurrent pulls of one layer download it once); else by
   * writing it, resuming a partial ingest left by an earlier failure or crash.
   */
  async ingest(
    expected: { digest: string; size: number },
    open: IngestOpener,
    opts: IngestOptions = {},
  ): Promise<Committed> {
    const digest = requireDigest(expected?.digest, "ingesting a blob");
    const doing = `ingesting ${digest}`;
    const size = requireSize(expected.size, doing);
    const labels = validateLabels(opts.labels ?? {}, doing);
    if (opts.lease !== undefined) this.#leases.assertLive(opts.lease, doing);
    for (;;) {
      const have = await this.#adoptExisting(digest, size, labels, opts.lease, doing);
      if (have !== undefined) return have;
      const running = this.#fetches.get(digest);
      if (running !== undefined) {
        // Success means the blob is there on the next turn; failure means this caller tries itself.
        await running.catch(() => {});
        continue;
      }
      const fetching = this.#fetch(digest, size, open, labels, opts.lease);
      this.#fetches.set(digest, fetching);
      try {
        return await fetching;
      } finally {
        if (this.#fetches.get(digest) === fetching) this.#fetches.delete(digest);
      }
    }
  }

  /** Merges `labels` into the blob's labels ("" removes a key); returns the result. */
  async setLabels(digest: string, labels: Labels): Promise<Labels> {
    const d = requireDigest(digest, "setting blob labels");
    const update = validateLabels(labels, `setting labels of ${d}`);
    return this.#gcLock.shared(async () => {
      const st = await this.#blobStat(d);
      if (st === undefined) throw notFound(d, "setting labels of");
      return inTransaction(this.#db, () => {
        const row = this.#row(d);
        const merged = mergeLabels(row?.labels ?? {}, update);
        this.#putRow.run(d, row?.createdAt ?? Math.floor(st.mtimeMs), JSON.stringify(merged));
        return merged;
      });
    });
  }

  /** Removes the blob whatever holds it; true when it was there. */
  async delete(digest: string): Promise<boolean> {
    const d = requireDigest(digest, "deleting a blob");
    return this.#gcLock.shared(async () => {
      this.#deleteRow.run(d);
      try {
        await unlink(this.blobPath(d));
        return true;
      } catch (e) {
        if (errno(e) === "ENOENT") return false;
        throw e;
      }
    });
  }

  /** Ingests on disk (open or abandoned), for status displays and tests. */
  async listIngests(): Promise<IngestStatus[]> {
    const out: IngestStatus[] = [];
    for (const name of (await readdir(this.#ingestDir)).sort()) {
      if (!HEX_NAME.test(name)) continue;
      const dir = join(this.#ingestDir, name);
      const record = await readIngestRecord(dir);
      if (record === undefined) continue;
      const data = await lstatOrUndefined(join(dir, INGEST_DATA));
      const status: IngestStatus = {
        ref: record.ref,
        offset: data?.isFile() ? data.size : 0,
        startedAt: record.startedAt,
        updatedAt: Math.floor(data?.mtimeMs ?? record.startedAt),
      };
      if (record.expectedDigest !== undefined) status.expectedDigest = record.expectedDigest;
      if (record.expectedSize !== undefined) status.expectedSize = record.expectedSize;
      out.push(status);
    }
    return out;
  }

  // ---- leases ----

  /** Creates a lease (random id unless given); it persists across restarts until deleted or expired. */
  createLease(opts: LeaseOptions = {}): string {
    return this.#leases.create(opts);
  }

  /**
   * Makes the lease hold `digest`, present or not yet. Take the lease before checking for or
   * writing a blob: from then on gc keeps it.
   */
  addLeaseResource(leaseId: string, digest: string): void {
    this.#leases.addResource(leaseId, digest);
  }

  /** Stops the lease from holding `digest`; true when it did. */
  removeLeaseResource(leaseId: string, digest: string): boolean {
    return this.#leases.removeResource(leaseId, digest);
  }

  /** Deletes a lease; what it held becomes collectable unless something else holds it. */
  deleteLease(leaseId: string): boolean {
    return this.#leases.delete(leaseId);
  }

  /** Every lease with the digests it holds. */
  listLeases(): Lease[] {
    return this.#leases.list();
  }

  // ---- garbage collection ----

  /**
   * Deletes expired leases, every blob neither in `roots` nor held by a live lease, and every
   * ingest no writer has open that was untouched for `ingestMaxAgeMs` (default 24h).
   */
  async gc(opts: GcOptions): Promise<GcResult> {
    const roots = new Set<string>();
    for (const root of opts.roots) roots.add(requireDigest(root, "collecting garbage: a root"));
    const maxAge = requireSize(
      opts.ingestMaxAgeMs ?? INGEST_DEFAULT_MAX_AGE_MS,
      "collecting garbage: ingestMaxAgeMs",
    );
    const result = await this.#gcLock.exclusive(() => this.#sweepBlobs(roots));
    const ingests = await this.#sweepIngests(this.#now() - maxAge);
    result.removedIngests = ingests.removed;
    result.freedBytes += ingests.freedBytes;
    return result;
  }

  /** Drops expired leases and deletes every blob not held; runs under the exclusive gc lock. */
  async #sweepBlobs(roots: Set<string>): Promise<GcResult> {
    const expiredLeases = this.#leases.dropExpired();
    const removed: Digest[] = [];
    let freedBytes = 0;
    const present = new Set<string>();
    for (const name of await readdir(this.#blobsDir)) {
      if (!HEX_NAME.test(name)) continue;
      const digest: Digest = `sha256:${name}`;
      const path = join(this.#blobsDir, name);
      const st = await lstatOrUndefined(path);
      if (st === undefined) continue;
      present.add(digest);
      if (st.isDirectory()) continue;
      // Checked and unlinked in one synchronous step: a lease added meanwhile either lands
      // first (and keeps the blob) or finds it already gone.
      if (roots.has(digest) || this.#leases.protects(digest)) continue;
      try {
        unlinkSync(path);
      } catch (e) {
        if (errno(e) !== "ENOENT") throw e;
      }
      present.delete(digest);
      removed.push(digest);
      freedBytes += st.size;
    }
    inTransaction(this.#db, () => {
      for (const row of this.#allRows.all()) {
        if (!present.has(String(row["digest"]))) this.#deleteRow.run(row["digest"] as string);
      }
    });
    return { removed, removedIngests: [], expiredLeases, freedBytes };
  }

  /** Deletes ingests untouched since `cutoff` that no writer has open. */
  async #sweepIngests(cutoff: number): Promise<{ removed: string[]; freedBytes: number }> {
    const removed: string[] = [];
    let freedBytes = 0;
    for (const name of await readdir(this.#ingestDir)) {
      if (!HEX_NAME.test(name) || this.#holds.has(name)) continue;
      const { promise, resolve } = Promise.withResolvers<void>();
      this.#holds.set(name, { by: "gc", released: promise });
      try {
        const dir = join(this.#ingestDir, name);
        const stats = await Promise.all(
          [dir, join(dir, INGEST_DATA), join(dir, INGEST_RECORD)].map(lstatOrUndefined),
        );
        if (Math.max(...stats.map((s) => s?.mtimeMs ?? 0)) > cutoff) continue;
        const record = await readIngestRecord(dir);
        await rm(dir, { recursive: true, force: true });
        removed.push(record?.ref ?? name);
        freedBytes += stats[1]?.isFile() ? stats[1].size : 0;
      } finally {
        this.#holds.delete(name);
        resolve();
      }
    }
    return { removed, freedBytes };
  }

  // ---- internals ----

  /** Locks ingest `name` for a writer; waits out gc, refuses a second writer. */
  async #holdIngest(name: string, ref: string): Promise<() => void> {
    for (;;) {
      const held = this.#holds.get(name);
      if (held === undefined) break;
      if (held.by === "writer") {
        throw new ContentError(
          "locked",
          `opening ingest ${JSON.stringify(ref)}: ingest locked, another writer has it open; wait for it or use another ref`,
        );
      }
      await held.released;
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    const hold: IngestHold = { by: "writer", released: promise };
    this.#holds.set(name, hold);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (this.#holds.get(name) === hold) this.#holds.delete(name);
      resolve();
    };
  }

  /** Puts verified data into the store as `digest` (keeping a blob already there), atomically. */
  async #publish(dataPath: string, c: Committed, labels: Labels, lease: string | undefined): Promise<void> {
    await this.#gcLock.shared(async () => {
      const target = this.blobPath(c.digest);
      const st = await lstatOrUndefined(target);
      const present = st?.isFile() === true && st.size === c.size;
      // The row lands first: a crash before the rename leaves a row without a file, which is
      // ignored and later dropped; the other order could lose the labels.
      inTransaction(this.#db, () => {
        if (lease !== undefined) this.#leases.addResource(lease, c.digest);
        const row = present ? this.#row(c.digest) : undefined;
        const createdAt = row?.createdAt ?? (present ? Math.floor(st.mtimeMs) : this.#now());
        this.#putRow.run(c.digest, createdAt, JSON.stringify(mergeLabels(row?.labels ?? {}, labels)));
      });
      if (present) return;
      await chmod(dataPath, 0o444);
      await rename(dataPath, target);
      await syncDir(this.#blobsDir);
    });
  }

  /** When the store has `digest`, adds it to `lease`, merges `labels` and returns it. */
  async #adoptExisting(
    digest: Digest,
    size: number | undefined,
    labels: Labels,
    lease: string | undefined,
    doing: string,
  ): Promise<Committed | undefined> {
    return this.#gcLock.shared(async () => {
      const st = await this.#blobStat(digest);
      if (st === undefined) return undefined;
      if (size !== undefined && st.size !== size) {
        throw new ContentError(
          "mismatch",
          `${doing}: size mismatch: the store has ${digest} with ${st.size} bytes, but ${size} were expected; the descriptor is wrong`,
        );
      }
      inTransaction(this.#db, () => {
        if (lease !== undefined) this.#leases.addResource(lease, digest);
        if (Object.keys(labels).length > 0) {
          const row = this.#row(digest);
          const merged = mergeLabels(row?.labels ?? {}, labels);
          this.#putRow.run(digest, row?.createdAt ?? Math.floor(st.mtimeMs), JSON.stringify(merged));
        }
      });
      return { digest, size: st.size };
    });
  }

  /** Downloads one blob through the ingest named after its digest, resuming what is there. */
  async #fetch(
    digest: Digest,
    size: number,
    open: IngestOpener,
    labels: Labels,
    lease: string | undefined,
  ): Promise<Committed> {
    const w = await this.writer(`ingest-${digest}`, { expectedDigest: digest, expectedSize: size, lease });
    try {
      if (w.offset < size) {
        const source = await open(w.offset);
        let body: AsyncIterable<Uint8Array>;
        if (Symbol.asyncIterator in source) {
          if (w.offset > 0) await w.reset();
          body = source;
        } else {
          if (source.startsAt === 0) await w.reset();
          else if (source.startsAt !== w.offset) {
            throw new ContentError(
              "invalid-argument",
              `ingesting ${digest}: the opener started at byte ${source.startsAt}, but the ingest has ${w.offset}`,
            );
          }
          body = source.body;
        }
        // HTTP bodies arrive in pieces of 16–64 KiB; one write per piece made the thread pool's
        // per-call cost the bottleneck of a pull.
        let pending: Uint8Array[] = [];
        let pendingBytes = 0;
        const flush = async () => {
          if (pendingBytes === 0) return;
          const batch = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
          pending = [];
          pendingBytes = 0;
          await w.write(batch);
        };
        try {
          for await (const chunk of body) {
            pending.push(chunk);
            pendingBytes += chunk.byteLength;
            if (pendingBytes >= WRITE_BATCH_BYTES) await flush();
          }
        } catch (e) {
          // What arrived before the body broke off is kept for the resume, as it was unbatched.
          await flush().catch(() => {});
          throw e;
        }
        await flush();
      }
      return await w.commit({ labels });
    } finally {
      // A failed download keeps its bytes for the next attempt; after commit this does nothing.
      await w.close();
    }
  }

  async #openBlob(d: Digest, doing: string): Promise<FileHandle> {
    let fh: FileHandle;
    try {
      fh = await open(this.blobPath(d), constants.O_RDONLY | NOFOLLOW);
    } catch (e) {
      if (errno(e) === "ENOENT" || errno(e) === "ELOOP") throw notFound(d, doing);
      throw e;
    }
    if (!(await fh.stat()).isFile()) {
      await fh.close();
      throw notFound(d, doing);
    }
    return fh;
  }

  /** The blob file's stats when it is a regular file, else undefined. */
  async #blobStat(d: Digest): Promise<Stats | undefined> {
    const st = await lstatOrUndefined(this.blobPath(d));
    return st?.isFile() ? st : undefined;
  }

  #row(d: Digest): { createdAt: number; labels: Labels } | undefined {
    const row = this.#getRow.get(d);
    if (row === undefined) return undefined;
    return { createdAt: Number(row["created_at"]), labels: parseLabels(row["labels"]) };
  }

  async #dropRowsWithoutBlobs(): Promise<void> {
    const missing: string[] = [];
    for (const row of this.#allRows.all()) {
      const digest = String(row["digest"]);
      if (
        !HEX_NAME.test(digest.slice("sha256:".length)) ||
        (await this.#blobStat(digest as Digest)) === undefined
      ) {
        missing.push(digest);
      }
    }
    inTransaction(this.#db, () => {
      for (const digest of missing) this.#deleteRow.run(digest);
    });
  }
}

function requireRef(ref: unknown): string {
  if (
    typeof ref !== "string" ||
    ref.length === 0 ||
    ref.length > MAX_REF_LENGTH ||
    /[\x00-\x1f\x7f]/.test(ref)
  ) {
    throw new ContentError(
      "invalid-argument",
      `invalid ingest ref ${JSON.stringify(ref)?.slice(0, 100)}: want 1-${MAX_REF_LENGTH} printable characters`,
    );
  }
  return ref;
}

function sha256Hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

function notFound(d: Digest, doing: string): ContentError {
  return new ContentError(
    "not-found",
    `${doing} ${d}: the content store does not have this blob; ingest it first`,
  );
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (e) {
    if (errno(e) === "ENOENT" || errno(e) === "ENOTDIR") return undefined;
    throw e;
  }
}

/** Makes a rename in `dir` durable. */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

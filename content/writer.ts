// One ingest: the bytes of a blob on their way into the store. The data lives in its own
// directory until commit verifies size and digest and the store renames it into place, so a
// reader never sees a partial blob. An ingest survives its writer (and a crash): opening the
// same ref again rehashes the bytes on disk and continues from there.
import { createHash, type Hash } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, mkdir, open, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Digest } from "../util/digest.ts";
import { type Labels, validateLabels } from "./db.ts";
import { ContentError, requireDigest, requireSize } from "./errors.ts";

/** What the writer checks at commit; either may be left out. */
export type IngestExpectation = { expectedDigest?: Digest; expectedSize?: number };

/** What commit may add: a last check, and labels for the blob. */
export type CommitOptions = IngestExpectation & { labels?: Labels };

/** A blob in the store: its digest and size. */
export type Committed = { digest: Digest; size: number };

/** The writing end of an ingest. Calls are serialized; await each one. */
export interface ContentWriter extends AsyncDisposable {
  /** The ingest's name: writers of the same ref share (and resume) its bytes. */
  readonly ref: string;
  /** Bytes already in the ingest; a resumed ingest starts here, not at 0. */
  readonly offset: number;
  /** Appends bytes. Writing past the expected size discards the ingest and throws. */
  write(chunk: Uint8Array): Promise<void>;
  /** Throws away what was written, back to offset 0 (for a source that cannot resume). */
  reset(): Promise<void>;
  /** Verifies, makes durable, and moves the bytes into the store; an existing blob is not an error. */
  commit(opts?: CommitOptions): Promise<Committed>;
  /** Deletes the ingest. */
  abort(): Promise<void>;
  /** Stops writing but keeps the ingest so a later writer of the same ref resumes it. */
  close(): Promise<void>;
}

/** What the writer needs from its store. */
export type WriterHooks = {
  /** Moves verified data at `dataPath` into the store as `digest` (or keeps the blob already there). */
  publish(dataPath: string, committed: Committed, labels: Labels): Promise<void>;
  /** Unlocks the ref; called exactly once when the writer is done. */
  release(): void;
};

/** The small record beside the data, so a resumed or listed ingest knows what it was for. */
export type IngestRecord = {
  ref: string;
  expectedDigest?: Digest;
  expectedSize?: number;
  startedAt: number;
};

export const INGEST_DATA = "data";
export const INGEST_RECORD = "ref.json";
const REHASH_CHUNK = 1 << 20;
const NOFOLLOW = constants.O_NOFOLLOW;

/** Reads an ingest's record; undefined when it is missing or not one we wrote. */
export async function readIngestRecord(dir: string): Promise<IngestRecord | undefined> {
  let parsed: unknown;
  try {
    const fh = await open(join(dir, INGEST_RECORD), constants.O_RDONLY | NOFOLLOW);
    try {
      if ((await fh.stat()).size > 64 * 1024) return undefined;
      parsed = JSON.parse(await fh.readFile("utf8"));
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== "object") return undefined;
  const r = parsed as Record<string, unknown>;
  if (typeof r["ref"] !== "string" || typeof r["startedAt"] !== "number") return undefined;
  const record: IngestRecord = { ref: r["ref"], startedAt: r["startedAt"] };
  try {
    if (r["expectedDigest"] !== undefined) record.expectedDigest = requireDigest(r["expectedDigest"], "");
    if (r["expectedSize"] !== undefined) record.expectedSize = requireSize(r["expectedSize"], "");
  } catch {
    return undefined;
  }
  return record;
}

function conflicts(a: IngestExpectation, b: IngestExpectation): boolean {
  return (
    (a.expectedDigest !== undefined &&
      b.expectedDigest !== undefined &&
      a.expectedDigest !== b.expectedDigest) ||
    (a.expectedSize !== undefined && b.expectedSize !== undefined && a.expectedSize !== b.expectedSize)
  );
}

/**
 * Opens the ingest in `dir` for `ref`: resumes it when its bytes can still become the expected
 * blob, else starts it over. The caller holds the ref's lock; `hooks.release` gives it back.
 */
export async function openIngest(
  dir: string,
  ref: string,
  expected: IngestExpectation,
  now: number,
  hooks: WriterHooks,
): Promise<ContentWriter> {
  const dataPath = join(dir, INGEST_DATA);
  const old = await readIngestRecord(dir);
  const resumable = old !== undefined && old.ref === ref && !conflicts(old, expected);
  // A resumed ingest keeps what it was expected to become unless the new writer says more.
  const record: IngestRecord = { ref, startedAt: resumable ? old.startedAt : now };
  const expectedDigest = expected.expectedDigest ?? (resumable ? old.expectedDigest : undefined);
  const expectedSize = expected.expectedSize ?? (resumable ? old.expectedSize : undefined);
  if (expectedDigest !== undefined) record.expectedDigest = expectedDigest;
  if (expectedSize !== undefined) record.expectedSize = expectedSize;
  if (!resumable) await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, INGEST_RECORD), JSON.stringify(record), { mode: 0o600 });

  const fh = await open(dataPath, constants.O_RDWR | constants.O_CREAT | NOFOLLOW, 0o600);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error(`ingest data ${dataPath} is not a regular file`);
    const hash = createHash("sha256");
    let offset = 0;
    if (record.expectedSize !== undefined && st.size > record.expectedSize) {
      await fh.truncate(0);
    } else if (st.size > 0) {
      offset = await rehash(fh, hash);
    }
    const touched = new Date(now);
    await fh.utimes(touched, touched);
    return new IngestWriter(ref, dir, fh, hash, offset, record, hooks);
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Feeds the bytes already in the file to `hash`; returns how many there were. */
async function rehash(fh: FileHandle, hash: Hash): Promise<number> {
  const buf = Buffer.allocUnsafe(REHASH_CHUNK);
  let offset = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
    if (bytesRead === 0) return offset;
    hash.update(buf.subarray(0, bytesRead));
    offset += bytesRead;
  }
}

class IngestWriter implements ContentWriter {
  readonly ref: string;
  #dir: string;
  #fh: FileHandle;
  #hash: Hash;
  #offset: number;
  #expected: IngestExpectation;
  #hooks: WriterHooks;
  #done = false;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    ref: string,
    dir: string,
    fh: FileHandle,
    hash: Hash,
    offset: number,
    expected: IngestExpectation,
    hooks: WriterHooks,
  ) {
    this.ref = ref;
    this.#dir = dir;
    this.#fh = fh;
    this.#hash = hash;
    this.#offset = offset;
    this.#expected = { expectedDigest: expected.expectedDigest, expectedSize: expected.expectedSize };
    this.#hooks = hooks;
  }

  get offset(): number {
    return this.#offset;
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.#serial("writing", async () => {
      if (!(chunk instanceof Uint8Array)) {
        throw new ContentError(
          "invalid-argument",
          `writing ingest ${this.ref}: chunks must be bytes, got ${typeof chunk}`,
        );
      }
      const limit = this.#expected.expectedSize;
      if (limit !== undefined && this.#offset + chunk.byteLength > limit) {
        await this.#finish(true);
        throw new ContentError(
          "mismatch",
          `writing ingest ${this.ref}: more than the expected ${limit} bytes arrived (at least ${this.#offset + chunk.byteLength}); the ingest was discarded`,
        );
      }
      try {
        let written = 0;
        while (written < chunk.byteLength) {
          const r = await this.#fh.write(chunk, written, chunk.byteLength - written, this.#offset + written);
          written += r.bytesWritten;
        }
      } catch (e) {
        // The file may now hold bytes the hash has not seen; a resume rehashes what is on disk.
        await this.#finish(false);
        throw new Error(`writing ingest ${this.ref} at offset ${this.#offset}: ${(e as Error).message}`, {
          cause: e,
        });
      }
      this.#hash.update(chunk);
      this.#offset += chunk.byteLength;
    });
  }

  reset(): Promise<void> {
    return this.#serial("resetting", async () => {
      await this.#fh.truncate(0);
      this.#hash = createHash("sha256");
      this.#offset = 0;
    });
  }

  commit(opts: CommitOptions = {}): Promise<Committed> {
    return this.#serial("committing", async () => {
      const doing = `committing ingest ${this.ref}`;
      const checks: IngestExpectation[] = [this.#expected];
      checks.push({
        expectedDigest:
          opts.expectedDigest === undefined ? undefined : requireDigest(opts.expectedDigest, doing),
        expectedSize: opts.expectedSize === undefined ? undefined : requireSize(opts.expectedSize, doing),
      });
      const labels = validateLabels(opts.labels ?? {}, doing);
      try {
        await this.#fh.sync();
        const onDisk = (await this.#fh.stat()).size;
        const digest: Digest = `sha256:${this.#hash.copy().digest("hex")}`;
        const size = this.#offset;
        const problem =
          onDisk !== size
            ? `the data file holds ${onDisk} bytes but ${size} were written through this writer`
            : describeMismatch(checks, digest, size);
        if (problem !== undefined) {
          await this.#finish(true);
          throw new ContentError("mismatch", `${doing}: ${problem}; the ingest was discarded`);
        }
        await this.#fh.close();
        await this.#hooks.publish(join(this.#dir, INGEST_DATA), { digest, size }, labels);
        // The blob is in; a leftover ingest dir is only garbage that gc collects.
        await rm(this.#dir, { recursive: true, force: true }).catch(() => {});
        return { digest, size };
      } finally {
        await this.#finish(false);
      }
    });
  }

  abort(): Promise<void> {
    return this.#serial(undefined, () => this.#finish(true));
  }

  close(): Promise<void> {
    return this.#serial(undefined, () => this.#finish(false));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Runs `fn` after every earlier call; `doing` set means it needs an open writer. */
  #serial<T>(doing: string | undefined, fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#done) {
        if (doing === undefined) return undefined as T;
        throw new ContentError("closed", `${doing} ingest ${this.ref}: the writer is closed; open a new one`);
      }
      return fn();
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Closes the file and unlocks the ref, once; `discard` also deletes the ingest. */
  async #finish(discard: boolean): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    try {
      await this.#fh.close().catch(() => {});
      if (discard) await rm(this.#dir, { recursive: true, force: true });
    } finally {
      this.#hooks.release();
    }
  }
}

/** Describes how `digest`/`size` differ from the expectations, or undefined when they match. */
export function describeMismatch(
  checks: IngestExpectation[],
  digest: Digest,
  size: number,
): string | undefined {
  for (const c of checks) {
    if (c.expectedSize !== undefined && c.expectedSize !== size) {
      return `size mismatch: expected ${c.expectedSize} bytes, got ${size} (digest ${digest})`;
    }
  }
  for (const c of checks) {
    if (c.expectedDigest !== undefined && c.expectedDigest !== digest) {
      return `digest mismatch: expected ${c.expectedDigest}, got ${digest} (${size} bytes)`;
    }
  }
  return undefined;
}

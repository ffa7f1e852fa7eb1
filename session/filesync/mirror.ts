// The daemon's copy of a client directory, brought up to date entry by entry as a file sync
// announces them. It trusts an entry of the last sync only while the disk still shows exactly
// what that sync left there (same inode, same ctime: anything that touched it, a crashed sync
// included, changes the ctime), and writes only what changed. Every path written is the target
// plus validated components whose directories it has checked or made itself: nothing is
// followed, nothing leaves the target. Nobody else may write to the target meanwhile.
import { createHash, type Hash } from "node:crypto";
import type { BigIntStats } from "node:fs";
import { constants, readFileSync } from "node:fs";
import {
  chmod,
  type FileHandle,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  open,
  rm,
  symlink,
  unlink,
} from "node:fs/promises";
import { TaskPool } from "../../fsutil/pool.ts";
import { makeSpecialFile } from "../../fsutil/special.ts";
import { walk } from "../../fsutil/walk.ts";
import { type Digest, digestOf } from "../../util/digest.ts";

/** One validated entry of the client's directory, as the sender described it. */
export interface IncomingEntry {
  /** Relative, "/"-separated, clean, validated. */
  path: string;
  /** A "hardlink" is a regular file sharing the file at `link`, an earlier path of the same sync. */
  kind: "dir" | "file" | "symlink" | "fifo" | "hardlink";
  /** chmod(2) bits, set-id and sticky included. */
  perm: number;
  uid: number;
  gid: number;
  /** Bytes announced for a regular file; 0 otherwise. */
  size: number;
  mtimeNs: bigint;
  /** A symlink's target, or the path a hard link shares its file with; "" otherwise. */
  link: string;
}

/**
 * What one sync left in its target, so the next one can tell what it need not transfer again.
 * Plain JSON, kept by the caller (e.g. in the cache record's metadata).
 */
export interface SyncManifest {
  version: 1;
  /** [path, kind, perm, uid, gid, size, mtimeNs, link, ino, ctimeNs, digest] */
  entries: ManifestRow[];
}

type ManifestRow = [string, string, number, number, number, number, string, string, string, string, string];

interface PreviousEntry {
  kind: string;
  perm: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: string;
  link: string;
  ino: string;
  ctimeNs: string;
  digest: string;
}

/** Where an entry stands in this sync. */
interface Record {
  e: IncomingEntry;
  digest?: Digest;
  /** The disk's identity of what is there now (set once nothing more will change it). */
  ino?: bigint;
  ctimeNs?: bigint;
  /** Bytes actually received (a file that shrank while it was sent is shorter). */
  received?: number;
  /** A directory whose owner and mode must be (re)applied. */
  needsMeta?: boolean;
}

/** File data buffered per file before a write; small files are written in one go. */
const FLUSH_BYTES = 1 << 20;
const EMPTY_DIGEST = digestOf(new Uint8Array(0));

/** Makes a target directory equal to the entries a file sync announces. */
export class DirMirror {
  readonly target: string;
  readonly #scan: Map<string, BigIntStats>;
  readonly #previous: Map<string, PreviousEntry>;
  readonly #records: Record[] = [];
  readonly #byPath = new Map<string, Record>();
  readonly #hardlinks: Record[] = [];
  /** Directories whose contents changed (their mtime must be set again); "" is the target. */
  readonly #touched = new Set<string>();
  readonly #files = new Set<IncomingFile>();
  #unwritten = 0;
  #roomWaiters: Array<() => void> = [];

  private constructor(target: string, scan: Map<string, BigIntStats>, previous: Map<string, PreviousEntry>) {
    this.target = target;
    this.#scan = scan;
    this.#previous = previous;
  }

  /** Reads what the target holds now; `previous` is the manifest of the last sync into it. */
  static async open(
    target: string,
    previous: SyncManifest | undefined,
    signal?: AbortSignal,
  ): Promise<DirMirror> {
    const scan = new Map<string, BigIntStats>();
    for await (const e of walk(target, { signal })) scan.set(e.path, e.stat);
    return new DirMirror(target, scan, readManifest(previous));
  }

  /** Bytes received but not yet written to disk. */
  get unwritten(): number {
    return this.#unwritten;
  }

  /** Resolves when buffered data has dropped below `limit`, or when `signal` aborts. */
  async waitForRoom(limit: number, signal: AbortSignal): Promise<void> {
    while (this.#unwritten > limit && !signal.aborted) {
      await new Promise<void>((resolve) => {
        this.#roomWaiters.push(resolve);
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    }
  }

  #abs(path: string): string {
    return `${this.target}/${path}`;
  }

  #touchParent(path: string): void {
    const i = path.lastIndexOf("/");
    this.#touched.add(i < 0 ? "" : path.slice(0, i));
  }

  /** Removes whatever is at `path` (a directory with its contents). */
  async #remove(path: string, st: BigIntStats): Promise<void> {
    if (st.isDirectory()) await rm(this.#abs(path), { recursive: true, force: true });
    else await unlink(this.#abs(path));
    this.#touchParent(path);
  }

  /**
   * Takes the next entry (in order, parents first). Returns "data" when its content must be
   * requested: call {@link receive} and feed what arrives. Everything else is done here or in
   * {@link finish}.
   */
  async add(e: IncomingEntry): Promise<"data" | undefined> {
    const rec: Record = { e };
    this.#records.push(rec);
    this.#byPath.set(e.path, rec);
    const disk = this.#scan.get(e.path);
    const prev = this.#previous.get(e.path);
    const trusted =
      prev !== undefined &&
      disk !== undefined &&
      prev.ino === String(disk.ino) &&
      prev.ctimeNs === String(disk.ctimeNs) &&
      diskKind(disk) === (e.kind === "hardlink" ? "file" : e.kind);
    const sameContent =
      trusted &&
      prev.kind === e.kind &&
      prev.size === e.size &&
      prev.mtimeNs === String(e.mtimeNs) &&
      prev.link === e.link;
    const sameMeta = sameContent && prev.perm === e.perm && prev.uid === e.uid && prev.gid === e.gid;
    const abs = this.#abs(e.path);
    if (sameMeta) {
      rec.ino = disk.ino;
      rec.ctimeNs = disk.ctimeNs;
      if (e.kind === "file") {
        rec.digest = prev.digest as Digest;
        rec.received = e.size;
      }
    }
    switch (e.kind) {
      case "dir":
        if (disk?.isDirectory()) {
          if (!sameMeta) rec.needsMeta = true;
          return undefined;
        }
        if (disk) await this.#remove(e.path, disk);
        await mkdir(abs, 0o700);
        this.#touchParent(e.path);
        rec.needsMeta = true;
        return undefined;
      case "hardlink":
        // Made once every file it may point to is complete.
        this.#hardlinks.push(rec);
        return undefined;
      case "symlink":
      case "fifo":
        if (sameMeta) return undefined;
        if (disk) await this.#remove(e.path, disk);
        if (e.kind === "symlink") await symlink(e.link, abs);
        else await makeSpecialFile(abs, "fifo");
        this.#touchParent(e.path);
        if (e.uid !== 0 || e.gid !== 0) await lchown(abs, e.uid, e.gid);
        if (e.kind === "fifo") await chmod(abs, e.perm);
        await lutimes(abs, nsToSeconds(e.mtimeNs), nsToSeconds(e.mtimeNs));
        await this.#refresh(rec);
        return undefined;
      case "file": {
        if (sameMeta) return undefined;
        if (sameContent) {
          // Only the owner or mode changed: no need for the bytes.
          await lchown(abs, e.uid, e.gid);
          await chmod(abs, e.perm);
          rec.digest = prev.digest as Digest;
          rec.received = e.size;
          await this.#refresh(rec);
          return undefined;
        }
        if (disk) await this.#remove(e.path, disk);
        this.#touchParent(e.path);
        if (e.size > 0) return "data";
        const f = this.receive(e);
        await f.end();
        return undefined;
      }
    }
  }

  /** The writer of a regular file's content; the file is created at its first write. */
  receive(e: IncomingEntry): IncomingFile {
    const rec = this.#byPath.get(e.path);
    if (rec?.e !== e) throw new Error(`file sync: ${e.path} was not added before its data`);
    const f = new IncomingFile(this, rec, this.#abs(e.path));
    this.#files.add(f);
    return f;
  }

  /** @internal */
  noteBuffered(n: number): void {
    this.#unwritten += n;
  }

  /** @internal */
  noteWritten(n: number): void {
    this.#unwritten -= n;
    for (const w of this.#roomWaiters.splice(0)) w();
  }

  /** Waits for every file writer to stop and closes what they left open (after a failure). */
  async abandon(): Promise<void> {
    await Promise.allSettled([...this.#files].map((f) => f.abandon()));
  }

  async #refresh(rec: Record): Promise<void> {
    const st = await lstat(this.#abs(rec.e.path), { bigint: true });
    rec.ino = st.ino;
    rec.ctimeNs = st.ctimeNs;
  }

  /**
   * Called once every file has arrived: makes the hard links, removes what the client no longer
   * has, sets directory owners, modes and times, and returns the content checksum of the result
   * and the manifest for the next sync.
   */
  async finish(signal?: AbortSignal): Promise<{ checksum: Digest; manifest: SyncManifest; entries: number }> {
    const refresh = new Set<Record>();
    for (const rec of this.#hardlinks) {
      signal?.throwIfAborted();
      const target = this.#byPath.get(rec.e.link)!;
      const abs = this.#abs(rec.e.path);
      const st = await lstat(abs, { bigint: true }).catch(() => undefined);
      if (!(st?.isFile() && st.ino === target.ino)) {
        if (st) await this.#remove(rec.e.path, st);
        await link(this.#abs(target.e.path), abs);
        this.#touchParent(rec.e.path);
        // A new link changes the shared inode's ctime.
        refresh.add(target);
      }
      refresh.add(rec);
      rec.digest = target.digest;
      rec.received = 0;
    }
    for (const path of this.#scan.keys()) {
      if (this.#byPath.has(path)) continue;
      // Only below directories this sync checked: anything else went with an ancestor already,
      // and that ancestor's path may now be a symlink, which must not be followed.
      const i = path.lastIndexOf("/");
      if (i >= 0 && this.#byPath.get(path.slice(0, i))?.e.kind !== "dir") continue;
      signal?.throwIfAborted();
      await rm(this.#abs(path), { recursive: true, force: true });
      this.#touchParent(path);
    }
    // Unlinking or linking a name of a multiply-linked file changes its ctime too.
    for (const rec of this.#records) {
      const st = this.#scan.get(rec.e.path);
      if (st?.isFile() && st.nlink > 1n) refresh.add(rec);
    }
    const pool = new TaskPool(16);
    for (const rec of this.#records) {
      if (rec.e.kind !== "dir" || !(rec.needsMeta || this.#touched.has(rec.e.path))) continue;
      await pool.add(async () => {
        const abs = this.#abs(rec.e.path);
        if (rec.needsMeta) {
          await lchown(abs, rec.e.uid, rec.e.gid);
          await chmod(abs, rec.e.perm);
        }
        const t = nsToSeconds(rec.e.mtimeNs);
        await lutimes(abs, t, t);
        await this.#refresh(rec);
      });
    }
    for (const rec of refresh) await pool.add(() => this.#refresh(rec));
    await pool.drain();
    const root = await lstat(this.target, { bigint: true });
    return {
      checksum: this.#checksum(root),
      manifest: this.#manifest(),
      entries: this.#records.length,
    };
  }

  /**
   * The content checksum of the result, over the same lines the worker's contentChecksum of "/"
   * reads from disk (cache/contenthash/checksum.ts), so the two agree, from what this sync knows.
   */
  #checksum(root: BigIntStats): Digest {
    const h = createHash("sha256");
    const rootLine = `d ${(root.mode & 0o7777n).toString(8)} ${root.uid}:${root.gid}  `;
    h.update(`buildd.contenthash.v1\n/\ndir\n. ${rootLine}`);
    for (const rec of this.#records) {
      const e = rec.e;
      const owner = e.kind === "hardlink" ? this.#byPath.get(e.link)!.e : e;
      const type = e.kind === "dir" ? "d" : e.kind === "symlink" ? "l" : e.kind === "fifo" ? "p" : "f";
      // Linux shows every symlink as 0777.
      const mode = e.kind === "symlink" ? 0o777 : owner.perm;
      const link = e.kind === "symlink" ? e.link : "";
      const content = e.kind === "file" || e.kind === "hardlink" ? (rec.digest ?? "") : "";
      h.update(`\n${e.path} ${type} ${mode.toString(8)} ${owner.uid}:${owner.gid}  ${link} ${content}`);
    }
    return `sha256:${h.digest("hex")}`;
  }

  #manifest(): SyncManifest {
    const entries: ManifestRow[] = this.#records.map((rec) => {
      const e = rec.e;
      const size = e.kind === "file" ? (rec.received ?? -1) : e.size;
      return [
        e.path,
        e.kind,
        e.perm,
        e.uid,
        e.gid,
        size,
        String(e.mtimeNs),
        e.link,
        rec.ino === undefined ? "" : String(rec.ino),
        rec.ctimeNs === undefined ? "" : String(rec.ctimeNs),
        rec.digest ?? "",
      ];
    });
    return { version: 1, entries };
  }

  /** @internal Completes a file record once its content is on disk. */
  fileDone(f: IncomingFile, rec: Record, digest: Digest, received: number, st: BigIntStats): void {
    this.#files.delete(f);
    rec.digest = digest;
    rec.received = received;
    rec.ino = st.ino;
    rec.ctimeNs = st.ctimeNs;
  }
}

/** The content of one regular file as it arrives: hashed at once, written in order, in the background. */
export class IncomingFile {
  readonly #mirror: DirMirror;
  readonly #rec: Record;
  readonly #abs: string;
  readonly #hash: Hash = createHash("sha256");
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #received = 0;
  #fh: FileHandle | undefined;
  #chain: Promise<void> = Promise.resolve();
  #ended = false;

  constructor(mirror: DirMirror, rec: Record, abs: string) {
    this.#mirror = mirror;
    this.#rec = rec;
    this.#abs = abs;
  }

  get path(): string {
    return this.#rec.e.path;
  }

  /** Takes the next chunk; throws when the sender goes past the size it announced. */
  write(data: Uint8Array): void {
    if (this.#ended) throw new Error(`file sync: data for ${this.path} after its end`);
    if (this.#received + data.length > this.#rec.e.size) {
      throw new Error(
        `the client sent more than the ${this.#rec.e.size} bytes it announced for ${JSON.stringify(this.path)}`,
      );
    }
    this.#hash.update(data);
    this.#received += data.length;
    this.#chunks.push(data);
    this.#buffered += data.length;
    this.#mirror.noteBuffered(data.length);
    if (this.#buffered >= FLUSH_BYTES) this.#flush(false);
  }

  /** The file is complete: writes the rest, then its owner, mode and times. Resolves when on disk. */
  end(): Promise<void> {
    this.#ended = true;
    this.#flush(true);
    return this.#chain;
  }

  /** Stops after what is in flight and closes the file (its partial content stays: the next sync replaces it). */
  async abandon(): Promise<void> {
    this.#ended = true;
    await this.#chain.catch(() => {});
    await this.#fh?.close().catch(() => {});
    this.#fh = undefined;
  }

  #flush(last: boolean): void {
    const chunks = this.#chunks;
    const n = this.#buffered;
    this.#chunks = [];
    this.#buffered = 0;
    this.#chain = this.#chain.then(async () => {
      try {
        // EXCL and NOFOLLOW: whatever was at this path has been removed; never write through something new.
        this.#fh ??= await open(
          this.#abs,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          this.#rec.e.perm & 0o777,
        );
        if (n > 0) await writeAll(this.#fh, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, n));
      } finally {
        this.#mirror.noteWritten(n);
      }
      if (!last) return;
      const fh = this.#fh;
      const e = this.#rec.e;
      const chown = e.uid !== 0 || e.gid !== 0;
      if (chown) await fh.chown(e.uid, e.gid);
      // After chown, which clears set-id bits; not needed when open() already gave the mode.
      if (chown || (e.perm & ~0o777) !== 0 || (e.perm & processUmask()) !== 0) await fh.chmod(e.perm);
      const t = nsToSeconds(e.mtimeNs);
      await fh.utimes(t, t);
      const st = await fh.stat({ bigint: true });
      this.#fh = undefined;
      await fh.close();
      const digest: Digest = this.#received === 0 ? EMPTY_DIGEST : `sha256:${this.#hash.digest("hex")}`;
      this.#mirror.fileDone(this, this.#rec, digest, this.#received, st);
    });
  }
}

async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off);
    off += bytesWritten;
  }
}

let umask: number | undefined;

/** The process umask, read once (process.umask() without an argument is deprecated: it writes it). */
function processUmask(): number {
  if (umask === undefined) {
    const m = /^Umask:\s*([0-7]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
    umask = m ? Number.parseInt(m[1]!, 8) : 0o777;
  }
  return umask;
}

function diskKind(st: BigIntStats): IncomingEntry["kind"] | "other" {
  if (st.isDirectory()) return "dir";
  if (st.isFile()) return "file";
  if (st.isSymbolicLink()) return "symlink";
  if (st.isFIFO()) return "fifo";
  return "other";
}

function nsToSeconds(ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9;
}

/** The previous manifest by path; anything malformed is ignored (everything is then transferred again). */
export function readManifest(m: SyncManifest | undefined): Map<string, PreviousEntry> {
  const out = new Map<string, PreviousEntry>();
  if (m?.version !== 1 || !Array.isArray(m.entries)) return out;
  for (const row of m.entries) {
    if (!Array.isArray(row) || row.length !== 11) continue;
    const [path, kind, perm, uid, gid, size, mtimeNs, link, ino, ctimeNs, digest] = row;
    if (typeof path !== "string" || ino === "") continue;
    out.set(path, { kind, perm, uid, gid, size, mtimeNs, link, ino, ctimeNs, digest });
  }
  return out;
}

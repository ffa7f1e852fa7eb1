// Writing image layers and file trees as tar streams, deterministically: entries in name order,
// owners as numeric ids, times in whole seconds (optionally clamped for reproducible builds),
// hard links inside the stream as link entries, xattrs as PAX records.
//
// Three sources:
// - an overlayfs upper (diff) dir: whiteouts (0:0 character devices) become `.wh.NAME`, opaque
//   dirs (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` marker; nothing is compared;
// - two trees (the native snapshotter): what changed from `lower` to `upper`, deletions as
//   `.wh.NAME`, with the parent dirs of every change;
// - one tree as it is (the tar exporter).
import type { BigIntStats } from "node:fs";
import { constants } from "node:fs";
import { lstat, open, readlink } from "node:fs/promises";
import { join, posix } from "node:path";
import { splitDevice } from "../fsutil/special.ts";
import { walk } from "../fsutil/walk.ts";
import { walkChanges } from "../snapshot/changes.ts";
import { encodeTarHeader, TAR_END, type TarWriteEntry, tarPadding } from "./tar-header.ts";
import { readTreeXattrs, type TreeXattrs } from "./xattrs.ts";

/** How entries are written. */
export type TarWriteOptions = {
  /** Seconds since the epoch: later mtimes are written as this (rewrite-timestamp). */
  clampMtime?: number;
  signal?: AbortSignal;
};

/** The overlay upper dir cannot be read as a layer on its own (renamed dirs, metadata-only copies). */
export class OverlayLayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OverlayLayoutError";
  }
}

const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";
const OVERLAY_XATTR = "trusted.overlay.";
/** Files up to this size are read whole, ahead of their turn; bigger ones are streamed. */
const SMALL_FILE = 1 << 20;
const READ_AHEAD_ENTRIES = 128;
const READ_AHEAD_BYTES = 32 << 20;
/** Output is gathered into chunks of about this size. */
const OUT_CHUNK = 1 << 20;

/** One planned tar entry: its header bytes, and the file whose content follows it. */
type Planned = { header: Buffer; file?: { path: string; size: number; name: string } };

/** A layer from an overlayfs upper dir, whiteouts and opaque markers converted. */
export async function* overlayLayerTar(diffDir: string, opts: TarWriteOptions = {}): AsyncGenerator<Buffer> {
  const xattrs = await readTreeXattrs(diffDir, opts.signal);
  for (const [rel, attrs] of xattrs) {
    for (const name of attrs.keys()) {
      if (name === `${OVERLAY_XATTR}redirect` || name === `${OVERLAY_XATTR}metacopy`) {
        throw new OverlayLayoutError(
          `${join(diffDir, rel)} has ${name}: the layer depends on the layers below it and must be compared instead`,
        );
      }
    }
  }
  const plan = new Planner(xattrs, opts);
  yield* writeEntries(
    (async function* () {
      for await (const e of walk(diffDir, { signal: opts.signal })) {
        const abs = join(diffDir, e.path);
        if (e.stat.isCharacterDevice() && e.stat.rdev === 0n) {
          yield plan.whiteout(e.path, e.stat);
          continue;
        }
        yield plan.entry(e.path, abs, e.stat, e.linkTarget);
        if (e.stat.isDirectory() && xattrs.get(e.path)?.get(`${OVERLAY_XATTR}opaque`)?.toString() === "y") {
          yield plan.marker(`${e.path}/${OPAQUE_MARKER}`, e.stat);
        }
      }
    })(),
    opts,
  );
}

/** A layer holding what changed from tree `lower` (absent: empty) to tree `upper`. */
export async function* diffLayerTar(
  lower: string | undefined,
  upper: string,
  opts: TarWriteOptions = {},
): AsyncGenerator<Buffer> {
  const xattrs = await readTreeXattrs(upper, opts.signal);
  const plan = new Planner(xattrs, opts);
  // walkChanges pushes; the writer pulls. A small queue joins them, with backpressure.
  const queue: Planned[] = [];
  let wake: (() => void) | undefined;
  let resume: (() => void) | undefined;
  let finished = false;
  let stopped = false;
  let failure: unknown;
  const emitted = new Set<string>();
  const push = async (p: Planned) => {
    if (stopped) throw new Error("the archive's reader stopped");
    queue.push(p);
    wake?.();
    while (queue.length >= READ_AHEAD_ENTRIES && !stopped) await new Promise<void>((r) => (resume = r));
  };
  const parents = async (rel: string) => {
    const parts = rel.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (emitted.has(dir)) continue;
      emitted.add(dir);
      await push(plan.entry(dir, join(upper, dir), await lstat(join(upper, dir), { bigint: true })));
    }
  };
  const producing = walkChanges(lower, upper, async (c) => {
    opts.signal?.throwIfAborted();
    await parents(c.path);
    if (c.kind === "delete") {
      const parent = posix.dirname(c.path);
      const st = await lstat(parent === "." ? upper : join(upper, parent), { bigint: true });
      await push(plan.whiteout(c.path, st));
      return;
    }
    const abs = join(upper, c.path);
    const st = await lstat(abs, { bigint: true });
    emitted.add(c.path);
    await push(plan.entry(c.path, abs, st, st.isSymbolicLink() ? await readlink(abs) : undefined));
    if (c.kind === "add" && st.isDirectory()) {
      for await (const e of walk(abs, { signal: opts.signal })) {
        const rel = `${c.path}/${e.path}`;
        emitted.add(rel);
        await push(plan.entry(rel, join(abs, e.path), e.stat, e.linkTarget));
      }
    }
  }).then(
    () => {
      finished = true;
      wake?.();
    },
    (e: unknown) => {
      failure = e;
      finished = true;
      wake?.();
    },
  );
  const source = async function* (): AsyncGenerator<Planned> {
    for (;;) {
      if (queue.length > 0) {
        const next = queue.shift()!;
        resume?.();
        yield next;
        continue;
      }
      if (failure !== undefined) throw failure;
      if (finished) return;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
  };
  try {
    yield* writeEntries(source(), opts);
  } finally {
    // A consumer that stops early must not leave the comparison waiting on a full queue.
    stopped = true;
    queue.length = 0;
    resume?.();
    await producing;
  }
}

/**
 * Every file under `dir` as it is, in a tar ending with the end-of-archive blocks. With `prefix`
 * ("linux_amd64"), entries are placed below a directory of that name.
 */
export async function* treeTar(
  dir: string,
  opts: TarWriteOptions & { prefix?: string; end?: boolean } = {},
): AsyncGenerator<Buffer> {
  const xattrs = await readTreeXattrs(dir, opts.signal);
  const plan = new Planner(xattrs, opts);
  const prefix = opts.prefix ? opts.prefix.replace(/\/+$/, "") : "";
  yield* writeEntries(
    (async function* () {
      if (prefix) yield plan.entry(prefix, dir, await lstat(dir, { bigint: true }), undefined, "");
      for await (const e of walk(dir, { signal: opts.signal })) {
        const name = prefix ? `${prefix}/${e.path}` : e.path;
        yield plan.entry(name, join(dir, e.path), e.stat, e.linkTarget, e.path);
      }
    })(),
    { ...opts, end: opts.end ?? true },
  );
}

/** Turns files into headers: ids, modes, clamped times, hard links, xattrs. */
class Planner {
  private readonly xattrs: TreeXattrs;
  private readonly clamp: number | undefined;
  private readonly links = new Map<string, string>();

  constructor(xattrs: TreeXattrs, opts: TarWriteOptions) {
    this.xattrs = xattrs;
    this.clamp = opts.clampMtime;
  }

  private mtime(st: BigIntStats): number {
    const t = Number(st.mtimeNs / 1_000_000_000n);
    return this.clamp !== undefined && t > this.clamp ? this.clamp : t;
  }

  /** A file, dir, link or device; `xattrKey` is its path relative to the dumped tree (default: name). */
  entry(name: string, abs: string, st: BigIntStats, linkTarget?: string, xattrKey = name): Planned {
    const base = {
      name,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: 0,
      mtime: this.mtime(st),
      xattrs: this.keptXattrs(xattrKey),
    };
    let e: TarWriteEntry;
    if (st.isDirectory()) e = { ...base, type: "dir" };
    else {
      const id = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? this.links.get(id) : undefined;
      if (first !== undefined) return { header: encodeTarHeader({ ...base, type: "link", linkname: first }) };
      if (st.nlink > 1n) this.links.set(id, name);
      if (st.isFile()) {
        const size = Number(st.size);
        return { header: encodeTarHeader({ ...base, type: "file", size }), file: { path: abs, size, name } };
      }
      if (st.isSymbolicLink()) e = { ...base, type: "symlink", linkname: linkTarget ?? "" };
      else if (st.isFIFO()) e = { ...base, type: "fifo" };
      else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const { major, minor } = splitDevice(st.rdev);
        e = { ...base, type: st.isCharacterDevice() ? "char" : "block", devmajor: major, devminor: minor };
      } else {
        // Sockets cannot be archived (tar has no type for them); containerd skips them too.
        return { header: Buffer.alloc(0) };
      }
    }
    return { header: encodeTarHeader(e) };
  }

  /** `.wh.NAME` for a deleted NAME; the time is the whiteout's (or its dir's) own. */
  whiteout(rel: string, st: BigIntStats): Planned {
    const dir = posix.dirname(rel);
    const name = `${dir === "." ? "" : `${dir}/`}${WHITEOUT_PREFIX}${posix.basename(rel)}`;
    return this.marker(name, st);
  }

  /** An empty marker file (whiteout or opaque marker), as containerd writes them: mode 0, root-owned. */
  marker(name: string, st: BigIntStats): Planned {
    return {
      header: encodeTarHeader({
        name,
        type: "file",
        mode: 0,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: this.mtime(st),
      }),
    };
  }

  private keptXattrs(rel: string): Map<string, Buffer> | undefined {
    const all = this.xattrs.get(rel);
    if (!all) return undefined;
    const kept = new Map([...all].filter(([k]) => !k.startsWith(OVERLAY_XATTR)));
    return kept.size > 0 ? kept : undefined;
  }
}

/**
 * Writes planned entries: headers, then content, reading small files ahead (bounded in count and
 * bytes) so that the disk is busy while the consumer compresses. Output comes in ~1 MiB chunks.
 */
async function* writeEntries(
  planned: AsyncIterable<Planned>,
  opts: TarWriteOptions & { end?: boolean },
): AsyncGenerator<Buffer> {
  const it = planned[Symbol.asyncIterator]();
  const ahead: { p: Planned; data?: Promise<Buffer> }[] = [];
  let aheadBytes = 0;
  let exhausted = false;
  const fill = async () => {
    while (!exhausted && ahead.length < READ_AHEAD_ENTRIES && aheadBytes < READ_AHEAD_BYTES) {
      const n = await it.next();
      if (n.done) {
        exhausted = true;
        return;
      }
      const item: { p: Planned; data?: Promise<Buffer> } = { p: n.value };
      const f = n.value.file;
      if (f && f.size <= SMALL_FILE) {
        item.data = readWhole(f.path, f.size, f.name);
        item.data.catch(() => {});
        aheadBytes += f.size;
      }
      ahead.push(item);
    }
  };
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const add = (b: Buffer) => {
    if (b.length === 0) return;
    pending.push(b);
    pendingBytes += b.length;
  };
  const take = (): Buffer => {
    const out = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return out;
  };
  try {
    for (;;) {
      opts.signal?.throwIfAborted();
      await fill();
      const item = ahead.shift();
      if (!item) break;
      add(item.p.header);
      const f = item.p.file;
      if (f && item.data) {
        const data = await item.data;
        aheadBytes -= f.size;
        add(data);
        add(tarPadding(f.size));
      } else if (f) {
        if (pendingBytes > 0) yield take();
        yield* streamFile(f.path, f.size, f.name, opts.signal);
        add(tarPadding(f.size));
      }
      if (pendingBytes >= OUT_CHUNK) yield take();
    }
    if (opts.end !== false) add(TAR_END);
    if (pendingBytes > 0) yield take();
  } finally {
    await it.return?.();
  }
}

async function openFile(path: string, name: string) {
  try {
    return await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    throw new Error(`reading ${JSON.stringify(name)} for the archive: ${(e as Error).message}`);
  }
}

/** Exactly `size` bytes of a file; a file that shrank since it was listed is an error. */
async function readWhole(path: string, size: number, name: string): Promise<Buffer> {
  const fh = await openFile(path, name);
  try {
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, off, size - off, off);
      if (bytesRead === 0) throw changed(name, size, off);
      off += bytesRead;
    }
    return buf;
  } finally {
    await fh.close();
  }
}

async function* streamFile(
  path: string,
  size: number,
  name: string,
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer> {
  const fh = await openFile(path, name);
  try {
    let off = 0;
    while (off < size) {
      signal?.throwIfAborted();
      const buf = Buffer.allocUnsafe(Math.min(OUT_CHUNK, size - off));
      const { bytesRead } = await fh.read(buf, 0, buf.length, off);
      if (bytesRead === 0) throw changed(name, size, off);
      off += bytesRead;
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

function changed(name: string, size: number, got: number): Error {
  return new Error(
    `reading ${JSON.stringify(name)} for the archive: it has ${got} bytes, not the ${size} it had when listed (the tree changed while being archived)`,
  );
}

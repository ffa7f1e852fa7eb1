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
import { lstat, readlink } from "node:fs/promises";
import { join, posix } from "node:path";
import { splitDevice } from "../fsutil/special.ts";
import { walk } from "../fsutil/walk.ts";
import { walkChanges } from "../snapshot/changes.ts";
import { type BatchPiece, sharedFileReader } from "./file-reader.ts";
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
/** Entries the tree comparison may list ahead of the writer. */
const READ_AHEAD_ENTRIES = 128;
/** A batch holds up to this many bytes, files or pieces; big files are read in slices of SEGMENT. */
const BATCH_BYTES = 4 << 20;
const BATCH_FILES = 256;
const BATCH_PIECES = 2048;
const SEGMENT = 4 << 20;
/** Batches being put together ahead of the consumer. */
const BATCHES_AHEAD = 8;

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
 * Writes planned entries: headers, then content. The bytes are put together on the reader
 * thread in batches of a few MiB (headers, padding, many small files or slices of a big one),
 * several batches ahead, so that the disk is busy while the consumer compresses.
 */
async function* writeEntries(
  planned: AsyncIterable<Planned>,
  opts: TarWriteOptions & { end?: boolean },
): AsyncGenerator<Buffer> {
  const reader = sharedFileReader();
  const inFlight: Promise<Buffer>[] = [];
  let batch: BatchPiece[] = [];
  let batchBytes = 0;
  let batchFiles = 0;
  const submit = () => {
    if (batch.length === 0) return;
    const p = reader.read(batch);
    p.catch(() => {});
    inFlight.push(p);
    batch = [];
    batchBytes = 0;
    batchFiles = 0;
  };
  const add = (piece: BatchPiece) => {
    if (piece.length === 0) return;
    batch.push(piece);
    batchBytes += piece.length;
  };
  try {
    for await (const p of planned) {
      opts.signal?.throwIfAborted();
      add(p.header);
      const f = p.file;
      if (f) {
        for (let off = 0; off < f.size; off += SEGMENT) {
          const length = Math.min(SEGMENT, f.size - off);
          if (batchBytes + length > BATCH_BYTES || batchFiles >= BATCH_FILES) submit();
          add({ path: f.path, offset: off, length, name: f.name });
          batchFiles++;
        }
        add(tarPadding(f.size));
      }
      if (batchBytes >= BATCH_BYTES || batch.length >= BATCH_PIECES) submit();
      while (inFlight.length >= BATCHES_AHEAD) yield await inFlight.shift()!;
    }
    if (opts.end !== false) add(TAR_END);
    submit();
    while (inFlight.length > 0) yield await inFlight.shift()!;
  } finally {
    await Promise.allSettled(inFlight);
  }
}

// Copying between two roots with the semantics of BuildKit's FileActionCopy (Dockerfile COPY/ADD,
// tonistiigi/fsutil's copy): `cp -a`-like fidelity, Docker's destination rules, include/exclude
// patterns, owner/mode/time overrides, and no write ever leaving the destination root.
import type { BigIntStats } from "node:fs";
import { constants } from "node:fs";
import {
  chmod,
  copyFile,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  readlink,
  rm,
  symlink,
  unlink,
} from "node:fs/promises";
import { posix } from "node:path";
import { detectArchive, extractArchive } from "./archive.ts";
import { type ModeChange, parseModeString } from "./chmod.ts";
import { cleanPath } from "./patterns.ts";
import { TaskPool } from "./pool.ts";
import { fsError, mkdirAllInRoot, relativeToRoot, resolveInRoot } from "./resolve.ts";
import { makeSpecialFile, splitDevice } from "./special.ts";
import { type WalkEntry, walk } from "./walk.ts";
import { resolveWildcards } from "./wildcard.ts";

/** A numeric owner, already resolved from names by the caller. */
export interface Owner {
  uid: number;
  gid: number;
}

/** Options of {@link copy}; they mirror pb.FileActionCopy. */
export interface CopyOptions {
  /** Copy what a symlink source points to (resolved inside the source root) instead of the link. */
  followSymlink?: boolean;
  /** A directory source copies its contents into dest rather than itself (Dockerfile COPY does). */
  dirCopyContents?: boolean;
  /** Create dest's missing parent directories; otherwise dest's parent must exist. */
  createDestPath?: boolean;
  /** `src` may hold filepath.Match wildcards. */
  allowWildcard?: boolean;
  /** A wildcard matching nothing copies nothing instead of failing. */
  allowEmptyWildcard?: boolean;
  /** Permission bits for everything copied (set-id and sticky bits kept); -1 or unset keeps them. */
  mode?: number;
  /** A chmod mode string ("u+x,g-w", "755") applied to everything copied; wins over `mode`. */
  modeStr?: string;
  /** Owner of everything copied and of created parent directories; unset keeps the source's. */
  owner?: Owner;
  /** atime and mtime of everything copied and created; -1 or unset keeps the source's. */
  timestamp?: Date | -1;
  /** Only paths (relative to the copied directory) matching these are copied, plus their parents. */
  includePatterns?: string[];
  /** Paths matching these are not copied (`!` exceptions re-include). */
  excludePatterns?: string[];
  /** Replace an existing destination path of another type (a file over a directory...) instead of failing. */
  alwaysReplaceExistingDestPaths?: boolean;
  /** ADD: a source that is a local tar archive is extracted into dest instead of copied. */
  attemptUnpackDockerCompatibility?: boolean;
  /** How many file operations run at once (default 16). */
  concurrency?: number;
  signal?: AbortSignal;
}

/** State shared by every source of one copy. */
interface Copier {
  opts: CopyOptions;
  modeChange: ModeChange | undefined;
  time: Date | undefined;
  pool: TaskPool;
  /** The first destination of every multiply-linked source inode, so later ones become hard links. */
  inodes: Map<string, Promise<string>>;
  /** Destination directories this source's copy created, still holding only what it put there. */
  createdDirs: Set<string>;
  /** Parent directories created for dest, whose times copying into them disturbs. */
  createdParents: string[];
}

/**
 * Copies `src` from the tree at `srcRoot` to `dest` in the tree at `dstRoot`, as BuildKit's
 * FileActionCopy does. Both paths are resolved inside their roots as in a chroot. The Docker rules:
 * a dest ending in "/" is a directory (created when missing); a file copied onto an existing
 * directory goes inside it; a directory copied onto an existing path goes inside it unless
 * `dirCopyContents`, which merges its contents into dest. Modes, owners, times, symlinks, hard links
 * within the copied set, device files and fifos are kept; xattrs are not (Node has no xattr calls).
 */
export async function copy(
  srcRoot: string,
  src: string,
  dstRoot: string,
  dest: string,
  opts: CopyOptions = {},
): Promise<void> {
  try {
    await copyUnwrapped(srcRoot, src, dstRoot, dest, opts);
  } catch (err) {
    throw contextError(err, `copying ${JSON.stringify(src)} to ${JSON.stringify(dest)}`, [srcRoot, dstRoot]);
  }
}

/** Wraps an error with what was being done, hiding host paths of the roots (they mean nothing to a user). */
function contextError(err: unknown, what: string, roots: string[]): Error {
  const e = err as NodeJS.ErrnoException;
  let message = e?.message ?? String(err);
  for (const r of roots) {
    const prefix = r.replace(/\/+$/, "");
    if (prefix !== "") message = message.split(prefix).join("");
  }
  const out: NodeJS.ErrnoException = new Error(`${what}: ${message}`, { cause: err });
  if (e?.code) out.code = e.code;
  return out;
}

async function copyUnwrapped(
  srcRoot: string,
  src: string,
  dstRoot: string,
  dest: string,
  opts: CopyOptions,
): Promise<void> {
  const modeChange = opts.modeStr
    ? parseModeString(opts.modeStr)
    : opts.mode !== undefined && opts.mode !== -1
      ? fixedMode(opts.mode)
      : undefined;
  const c: Copier = {
    opts,
    modeChange,
    time: opts.timestamp instanceof Date ? opts.timestamp : undefined,
    pool: new TaskPool(opts.concurrency ?? 16),
    inodes: new Map(),
    createdDirs: new Set(),
    createdParents: [],
  };
  if (!opts.createDestPath) {
    const p = await resolveInRoot(dstRoot, dest);
    if (relativeToRoot(dstRoot, p) !== "") {
      await lstat(posix.dirname(p)).catch((err: NodeJS.ErrnoException) => {
        throw fsError(
          err.code ?? "ENOENT",
          `the parent directory of ${JSON.stringify(dest)} does not exist (createDestPath creates it)`,
        );
      });
    }
  }
  let sources = [src];
  if (opts.allowWildcard) {
    sources = await resolveWildcards(srcRoot, src);
    if (sources.length === 0) {
      if (opts.allowEmptyWildcard) return;
      throw fsError("ENOENT", `${src} not found: the wildcard matches nothing`);
    }
  }
  try {
    for (const s of sources) {
      opts.signal?.throwIfAborted();
      if (opts.attemptUnpackDockerCompatibility && (await unpackIfArchive(c, srcRoot, s, dstRoot, dest)))
        continue;
      await copySource(c, srcRoot, s, dstRoot, dest);
      // Two wildcard matches may share a destination directory: the second must look before writing.
      c.createdDirs.clear();
    }
    await c.pool.drain();
    // BuildKit leaves these at the time of the copy; the requested time is the reproducible choice.
    if (c.time) for (const d of c.createdParents) await lutimes(d, c.time, c.time);
  } catch (err) {
    // Let in-flight writes finish before reporting, so nothing is still writing after we return.
    await c.pool.drain().catch(() => {});
    throw err;
  }
}

function fixedMode(mode: number): ModeChange {
  return (m) => (m & ~0o777) | (mode & 0o777);
}

async function unpackIfArchive(
  c: Copier,
  srcRoot: string,
  s: string,
  dstRoot: string,
  dest: string,
): Promise<boolean> {
  const archive = await resolveInRoot(srcRoot, s);
  const st = await lstat(archive).catch(() => undefined);
  if (!st?.isFile() || (await detectArchive(archive)) === undefined) return false;
  const { path } = await mkdirAllInRoot(dstRoot, dest, { mode: 0o755, owner: c.opts.owner, time: c.time });
  await extractArchive(archive, path, { owner: c.opts.owner, signal: c.opts.signal });
  return true;
}

/** Go's filepath.Split: everything up to and including the last "/", and the rest. */
function splitLast(p: string): { dir: string; base: string } {
  const i = p.lastIndexOf("/");
  return { dir: p.slice(0, i + 1), base: p.slice(i + 1) };
}

async function copySource(
  c: Copier,
  srcRoot: string,
  s: string,
  dstRoot: string,
  dest: string,
): Promise<void> {
  const dirOpts = { mode: 0o755, owner: c.opts.owner, time: c.time };
  // Docker's rule: a dest ending in "/" (or "/.") names a directory, created when missing.
  const { dir, base } = splitLast(dest);
  const ensure = base !== "" && base !== "." ? dir : dest;
  const makeDirs = async (rel: string): Promise<void> => {
    const { created } = await mkdirAllInRoot(dstRoot, rel, dirOpts);
    c.createdParents.push(...created);
    for (const d of created) c.createdDirs.add(d);
  };
  if (ensure !== "") await makeDirs(ensure);

  let target = await resolveInRoot(dstRoot, cleanPath(dest));
  const source = await resolveInRoot(srcRoot, s, { followFinal: c.opts.followSymlink ?? false });
  const srcStat = await lstat(source, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT" || err.code === "ENOTDIR") throw fsError("ENOENT", `source ${s} not found`);
    throw err;
  });
  const destStat = await lstat(target).catch(() => undefined);
  const srcIsDir = srcStat.isDirectory();
  if ((!c.opts.dirCopyContents && srcIsDir && destStat) || (!srcIsDir && destStat?.isDirectory())) {
    target = `${target}/${posix.basename(cleanPath("/" + s))}`.replace(/\/+$/, "");
  }
  const targetRel = relativeToRoot(dstRoot, target);
  // The directory that must exist: target itself for contents going to a new dir, else its parent.
  const parentRel =
    (c.opts.dirCopyContents && srcIsDir && !destStat) || targetRel === ""
      ? targetRel
      : posix.dirname(targetRel);
  await makeDirs(parentRel);

  if (!srcIsDir) {
    const linkTarget = srcStat.isSymbolicLink() ? await readlink(source) : undefined;
    await c.pool.add(() =>
      copyNonDir(c, source, { path: posix.basename(source), stat: srcStat, linkTarget }, target),
    );
    return;
  }
  const created = await ensureDir(c, target);
  const dirs: Array<{ target: string; stat: BigIntStats }> = [];
  for await (const e of walk(source, {
    include: c.opts.includePatterns,
    exclude: c.opts.excludePatterns,
    signal: c.opts.signal,
  })) {
    c.pool.throwIfFailed();
    const t = `${target}/${e.path}`;
    if (e.stat.isDirectory()) {
      await ensureDir(c, t);
      dirs.push({ target: t, stat: e.stat });
    } else {
      await c.pool.add(() => copyNonDir(c, `${source}/${e.path}`, e, t));
    }
  }
  await c.pool.drain();
  // Directory metadata last: creating entries inside a directory changes its mtime.
  if (created) dirs.push({ target, stat: srcStat });
  for (const d of dirs) await c.pool.add(() => applyMetadata(c, d.target, d.stat, "dir"));
  await c.pool.drain();
}

/**
 * Makes `target` a directory to copy into. An existing directory is merged into; anything else in
 * the way (a file, a symlink, even one to a directory) fails, or is replaced when asked to: a
 * symlink in the destination is never followed. Returns whether the directory was created.
 */
async function ensureDir(c: Copier, target: string): Promise<boolean> {
  if (c.createdDirs.has(target)) return false;
  let existing = c.createdDirs.has(posix.dirname(target))
    ? undefined
    : await lstat(target).catch(() => undefined);
  if (existing && !existing.isDirectory()) {
    if (!c.opts.alwaysReplaceExistingDestPaths) {
      throw fsError(
        "ENOTDIR",
        `cannot copy a directory to ${target}: it exists and is not a directory`,
        target,
      );
    }
    await rm(target, { recursive: true, force: true });
    existing = undefined;
  }
  if (existing) return false;
  await mkdir(target, 0o700);
  c.createdDirs.add(target);
  return true;
}

/** Makes room for a non-directory at `target`: removes a file or symlink there, refuses a directory. */
async function clearTarget(c: Copier, target: string): Promise<void> {
  if (c.createdDirs.has(posix.dirname(target)) && !c.createdDirs.has(target)) return;
  const existing = await lstat(target).catch(() => undefined);
  if (!existing) return;
  if (existing.isDirectory()) {
    if (!c.opts.alwaysReplaceExistingDestPaths) {
      throw fsError("EISDIR", `cannot replace directory ${target} with a file`, target);
    }
    await rm(target, { recursive: true, force: true });
    return;
  }
  await unlink(target);
}

async function copyNonDir(c: Copier, src: string, e: WalkEntry, target: string): Promise<void> {
  const st = e.stat;
  if (st.isSocket()) return; // Sockets mean nothing outside their process (tar and Docker skip them too).
  if (st.isFile() && st.nlink > 1n) {
    const key = `${st.dev}:${st.ino}`;
    const first = c.inodes.get(key);
    if (first !== undefined) {
      const firstTarget = await first;
      await clearTarget(c, target);
      await link(firstTarget, target);
      return;
    }
    // Registered before the first await, so every later link of this inode finds it.
    const done = copyOneFile(c, src, st, target).then(() => target);
    // This task reports its own failure; the links waiting on it fail with it.
    done.catch(() => {});
    c.inodes.set(key, done);
    await done;
    return;
  }
  if (st.isFile()) return copyOneFile(c, src, st, target);
  await clearTarget(c, target);
  if (st.isSymbolicLink()) {
    await symlink(e.linkTarget ?? (await readlink(src)), target);
    await applyMetadata(c, target, st, "symlink");
  } else if (st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO()) {
    const { major, minor } = splitDevice(st.rdev);
    await makeSpecialFile(target, st.isFIFO() ? "fifo" : st.isBlockDevice() ? "block" : "char", major, minor);
    await applyMetadata(c, target, st, "special");
  } else {
    throw fsError("EINVAL", `cannot copy ${src}: unsupported file type`, src);
  }
}

async function copyOneFile(c: Copier, src: string, st: BigIntStats, target: string): Promise<void> {
  await clearTarget(c, target);
  // EXCL: never write through something that appeared at the target; FICLONE: reflink when possible.
  await copyFile(src, target, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
  await applyMetadata(c, target, st, "file");
}

const RUNNING_AS_ROOT = process.geteuid?.() === 0 && process.getegid?.() === 0;

function nsToSeconds(ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9;
}

/** Owner, mode and times of a copied entry: the source's, or the overrides. Order matters: chown clears set-id bits. */
async function applyMetadata(
  c: Copier,
  target: string,
  st: BigIntStats,
  kind: "file" | "dir" | "symlink" | "special",
): Promise<void> {
  const uid = c.opts.owner?.uid ?? Number(st.uid);
  const gid = c.opts.owner?.gid ?? Number(st.gid);
  // What we create is root's, and a directory this copy made has no setgid bit yet (its mode comes
  // last): skipping the call that would change nothing saves a syscall per file.
  const alreadyRoot =
    uid === 0 && gid === 0 && kind !== "dir" && RUNNING_AS_ROOT && c.createdDirs.has(posix.dirname(target));
  if (!alreadyRoot) await lchown(target, uid, gid);
  if (kind !== "symlink") {
    const srcMode = Number(st.mode) & 0o7777;
    const mode = c.modeChange ? c.modeChange(srcMode, kind === "dir") : srcMode;
    // copyFile already gave a file the source's mode, unless chown just cleared its set-id bits.
    if (kind !== "file" || mode !== srcMode || (mode & 0o6000) !== 0) await chmod(target, mode);
  }
  if (c.time) await lutimes(target, c.time, c.time);
  else await lutimes(target, nsToSeconds(st.atimeNs), nsToSeconds(st.mtimeNs));
}

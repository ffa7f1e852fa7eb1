// Path resolution that never leaves a root: every path from a build is hostile, and the daemon runs
// as root, so a symlink or ".." in a build must resolve the way it would inside a chroot of `root`.
import { constants } from "node:fs";
import {
  chmod,
  type FileHandle,
  lchown,
  lstat,
  lutimes,
  mkdir,
  open,
  readlink,
  realpath,
} from "node:fs/promises";
import { resolve as resolveHostPath } from "node:path";

/** Symlinks followed before a resolution gives up with ELOOP (Linux's limit is 40; securejoin uses 255). */
export const MAX_SYMLINKS = 255;

/** Options of {@link resolveInRoot}. */
export interface ResolveOptions {
  /** Follow a symlink in the last component (default true); false resolves only its parents. */
  followFinal?: boolean;
}

/** An fs-style error with a code, so callers can test `err.code === "ELOOP"` as for Node's own errors. */
export function fsError(code: string, message: string, path?: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: ${message}`);
  err.code = code;
  if (path !== undefined) err.path = path;
  return err;
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/** Splits a path into its components, dropping empty ones and ".". */
function components(p: string): string[] {
  return p.split("/").filter((c) => c !== "" && c !== ".");
}

/**
 * Resolves `unsafePath` (absolute or relative, both taken from `root`) to a host path inside `root`,
 * as a chroot would: ".." stops at the root, absolute symlinks restart at the root, relative ones are
 * followed from their directory. Missing components are allowed and kept as they are (the result is
 * the path that would be created), like Go's securejoin. Throws ELOOP after {@link MAX_SYMLINKS}.
 *
 * The result contains no symlink in any existing component (except the last when `followFinal` is
 * false), at the time of the call: a concurrent writer in the root can still swap a directory for a
 * symlink afterwards; see {@link openInRoot} for the check that catches that on open.
 */
export async function resolveInRoot(
  root: string,
  unsafePath: string,
  opts: ResolveOptions = {},
): Promise<string> {
  const followFinal = opts.followFinal ?? true;
  const base = resolveHostPath(root);
  const resolved: string[] = [];
  // Components still to walk, last one first, so a symlink's target is pushed in front cheaply.
  const pending = components(unsafePath).reverse();
  let linksFollowed = 0;
  while (pending.length > 0) {
    const part = pending.pop()!;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    if (!followFinal && pending.length === 0) {
      resolved.push(part);
      break;
    }
    const candidate = joinRoot(base, [...resolved, part]);
    let isLink = false;
    try {
      isLink = (await lstat(candidate)).isSymbolicLink();
    } catch (err) {
      if (!isMissing(err)) throw err;
    }
    if (!isLink) {
      resolved.push(part);
      continue;
    }
    linksFollowed++;
    if (linksFollowed > MAX_SYMLINKS) {
      throw fsError(
        "ELOOP",
        `too many levels of symbolic links resolving ${JSON.stringify(unsafePath)} in ${base}`,
        unsafePath,
      );
    }
    const target = await readlink(candidate);
    if (target.startsWith("/")) resolved.length = 0;
    pending.push(...components(target).reverse());
  }
  return joinRoot(base, resolved);
}

function joinRoot(root: string, parts: string[]): string {
  if (parts.length === 0) return root;
  return (root === "/" ? "" : root) + "/" + parts.join("/");
}

/** True when host path `p` is `root` or lies below it (both absolute and normalised). */
export function isInside(root: string, p: string): boolean {
  const r = resolveHostPath(root);
  const q = resolveHostPath(p);
  return q === r || q.startsWith(r === "/" ? "/" : r + "/");
}

/** The root-relative "/"-separated form of a host path inside `root` ("" for the root itself). */
export function relativeToRoot(root: string, p: string): string {
  const r = resolveHostPath(root);
  const q = resolveHostPath(p);
  if (!isInside(r, q)) throw new Error(`path ${q} is outside of root ${r}`);
  return q === r ? "" : q.slice(r === "/" ? 1 : r.length + 1);
}

/** Options of {@link openInRoot}. */
export interface OpenInRootOptions {
  /** Permission bits of a file created by O_CREAT (default 0644, subject to the umask). */
  mode?: number;
  /** Follow a symlink in the last component inside the root (default false: such a link fails with ELOOP). */
  followFinal?: boolean;
}

/**
 * Opens `unsafePath` inside `root`, never following a symlink in the last component on the host
 * (O_NOFOLLOW), then checks through /proc/self/fd that the file really opened lies inside the root;
 * that catches a directory swapped for a symlink between resolution and open. Limit: with O_CREAT, a
 * file created through such a race exists outside the root before the check fails, so roots must not
 * be written by untrusted processes while the daemon works in them (snapshots being applied never are).
 */
export async function openInRoot(
  root: string,
  unsafePath: string,
  flags: number,
  opts: OpenInRootOptions = {},
): Promise<FileHandle> {
  const p = await resolveInRoot(root, unsafePath, { followFinal: opts.followFinal ?? false });
  // Node opens every file with O_CLOEXEC already.
  const fh = await open(p, flags | constants.O_NOFOLLOW, opts.mode ?? 0o644);
  try {
    const opened = await readlink(`/proc/self/fd/${fh.fd}`);
    const realRoot = await realpath(root);
    if (!isInside(realRoot, opened)) {
      throw fsError("EXDEV", `opened ${opened} is outside of root ${realRoot} (concurrent rename?)`, p);
    }
  } catch (err) {
    await fh.close();
    throw err;
  }
  return fh;
}

/** Ownership and time given to the directories {@link mkdirAllInRoot} creates. */
export interface MkdirAllOptions {
  /** Permission bits of created directories (exact: the process umask does not apply). */
  mode: number;
  owner?: { uid: number; gid: number };
  /** atime and mtime of created directories; the current time when unset. */
  time?: Date;
}

/**
 * Creates `unsafePath` and its missing parents inside `root` (resolved with {@link resolveInRoot});
 * existing directories are left as they are. Returns the host path of the directory and the host
 * paths of the directories created, parents first. Fails with ENOTDIR when a component is a file.
 */
export async function mkdirAllInRoot(
  root: string,
  unsafePath: string,
  opts: MkdirAllOptions,
): Promise<{ path: string; created: string[] }> {
  const target = await resolveInRoot(root, unsafePath);
  const base = resolveHostPath(root);
  const parts = components(relativeToRoot(base, target));
  const created: string[] = [];
  let current = base;
  for (const part of parts) {
    current = joinRoot(current, [part]);
    let st = await lstat(current).catch((err: unknown) => {
      if (isMissing(err)) return undefined;
      throw err;
    });
    if (st === undefined) {
      try {
        await mkdir(current, 0o700);
        created.push(current);
        continue;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        st = await lstat(current);
      }
    }
    if (!st.isDirectory()) {
      throw fsError(
        "ENOTDIR",
        `cannot create directory ${JSON.stringify(unsafePath)} in ${base}: ${current} is not a directory`,
        current,
      );
    }
  }
  // Metadata after all are made: creating a child changes its parent's mtime.
  for (const dir of created) await applyDirMetadata(dir, opts);
  return { path: target, created };
}

async function applyDirMetadata(dir: string, opts: MkdirAllOptions): Promise<void> {
  if (opts.owner) await lchown(dir, opts.owner.uid, opts.owner.gid);
  await chmod(dir, opts.mode & 0o7777);
  if (opts.time) await lutimes(dir, opts.time, opts.time);
}

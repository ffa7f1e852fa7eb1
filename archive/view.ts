// How an unpacker sees the tree it writes into, and the resolution of parent directories
// inside it. "plain": one directory holding the merged content of the layers below. "overlay":
// an empty upper directory whose lower layers are read-only directories stacked below it, as
// overlayfs will stack them (whiteouts are 0:0 character devices, opaque directories carry
// trusted.overlay.opaque=y).
//
// Resolution never lets the kernel follow a symlink: each component is looked at with lstat,
// and a symlink met in a parent position is followed by hand, only when it is relative and stays
// inside the root. An absolute symlink means one thing inside the container and another on the
// host, and one that climbs above the root means nothing at all, so writing through either is
// refused.
import type { Stats } from "node:fs";
import { chmod, chown, copyFile, lstat, mkdir, readlink, rm, utimes } from "node:fs/promises";
import { join } from "node:path";
import { UnsafeNameError } from "./names.ts";
import type { SyscallHelper } from "./syscalls.ts";

/** What a path is; "missing" covers whiteouts and paths an opaque directory hides. */
export type NodeKind = "dir" | "symlink" | "other" | "missing";

/** The result of looking a path up in a view. */
export type Lookup = {
  kind: NodeKind;
  /** Where it was found: the directory we write into, or a lower layer (overlay only). */
  where: "target" | "lower" | "none";
  stats?: Stats;
  /** Absolute path of what was found. */
  path?: string;
  /** An overlay whiteout in the target directory (kind is "missing"). */
  whiteout?: boolean;
};

/** The tree an unpacker writes into. */
export interface LayerView {
  readonly root: string;
  readonly format: "overlay" | "plain";
  /** Looks at `rel` (whose parent is a directory) without following anything. */
  lookup(rel: string[]): Promise<Lookup>;
  /** Makes `rel` a directory in the target: a copy of the lower one's metadata, or new (0755 root). */
  materializeDir(rel: string[], found: Lookup): Promise<void>;
  /** Overlay: copies a lower layer's regular file (or device) into the target, for a hard link to it. */
  copyUp(rel: string[], found: Lookup): Promise<void>;
}

const MAX_SYMLINKS = 40;
export const OPAQUE_XATTR = "trusted.overlay.opaque";

/**
 * Resolves `components` to a directory that really exists in the target, following relative
 * symlinks inside the root by hand. Missing directories are created when `create` (else the
 * result is undefined); directories only in a lower layer are always copied up.
 */
export async function resolveDir(
  view: LayerView,
  components: string[],
  create: boolean,
): Promise<string[] | undefined> {
  const resolved: string[] = [];
  const pending = [...components];
  let hops = 0;
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (c === "" || c === ".") continue;
    if (c === "..") {
      if (resolved.length === 0)
        throw new UnsafeNameError("a symlink on the way climbs above the layer root");
      resolved.pop();
      continue;
    }
    const rel = [...resolved, c];
    const found = await view.lookup(rel);
    if (found.kind === "dir") {
      if (found.where === "lower") await view.materializeDir(rel, found);
    } else if (found.kind === "missing") {
      if (!create) return undefined;
      await view.materializeDir(rel, found);
    } else if (found.kind === "symlink") {
      if (++hops > MAX_SYMLINKS) throw new UnsafeNameError(`more than ${MAX_SYMLINKS} symlinks on the way`);
      const target = await readlink(found.path!);
      if (target.startsWith("/")) {
        throw new UnsafeNameError(
          `the path goes through the absolute symlink ${JSON.stringify(rel.join("/"))} -> ${JSON.stringify(target)}; writing through it is refused`,
        );
      }
      pending.unshift(...target.split("/"));
      continue;
    } else {
      throw new UnsafeNameError(`${JSON.stringify(rel.join("/"))} is not a directory`);
    }
    resolved.push(c);
  }
  return resolved;
}

/** A view of one directory holding everything below the layer. */
export function plainView(root: string): LayerView {
  return {
    root,
    format: "plain",
    async lookup(rel) {
      const path = join(root, ...rel);
      const st = await lstatOrUndefined(path);
      if (st === undefined) return { kind: "missing", where: "none" };
      return { kind: kindOf(st), where: "target", stats: st, path };
    },
    async materializeDir(rel) {
      await mkdir(join(root, ...rel), { mode: 0o755 });
    },
    async copyUp(rel) {
      throw new Error(`copy-up of ${rel.join("/")} in a plain view`);
    },
  };
}

/** A view of an overlay upper dir over `lowers` (top-most first), read the way overlayfs reads them. */
export function overlayView(
  upper: string,
  lowers: string[],
  helper: SyscallHelper,
  deferDirTimes: (rel: string[], atime: Date, mtime: Date) => void,
): LayerView {
  const isWhiteout = (st: Stats) => st.isCharacterDevice() && st.rdev === 0;
  const isOpaque = async (path: string) => (await helper.getXattr(path, OPAQUE_XATTR))?.toString() === "y";

  /** The first lower layer's entry at `rel`, honouring whiteouts, opaque dirs and non-dirs that end the stack. */
  async function lookupLower(rel: string[]): Promise<Lookup> {
    for (const lower of lowers) {
      let dir = lower;
      let stop = false;
      let present = true;
      for (let i = 0; i < rel.length - 1; i++) {
        const st = await lstatOrUndefined(join(dir, rel[i]!));
        if (st === undefined) {
          present = false;
          break;
        }
        if (!st.isDirectory()) return { kind: "missing", where: "none" };
        dir = join(dir, rel[i]!);
        if (await isOpaque(dir)) stop = true;
      }
      if (present) {
        const path = join(dir, rel.at(-1)!);
        const st = await lstatOrUndefined(path);
        if (st !== undefined) {
          if (isWhiteout(st)) return { kind: "missing", where: "none" };
          return { kind: kindOf(st), where: "lower", stats: st, path };
        }
      }
      if (stop) break;
    }
    return { kind: "missing", where: "none" };
  }

  return {
    root: upper,
    format: "overlay",
    async lookup(rel) {
      const path = join(upper, ...rel);
      const st = await lstatOrUndefined(path);
      if (st !== undefined) {
        if (isWhiteout(st)) return { kind: "missing", where: "target", whiteout: true, path };
        return { kind: kindOf(st), where: "target", stats: st, path };
      }
      if (lowers.length === 0) return { kind: "missing", where: "none" };
      // The parent in upper may be opaque (this layer said so): then nothing below shows through.
      const parent = join(upper, ...rel.slice(0, -1));
      if (await isOpaque(parent)) return { kind: "missing", where: "none" };
      return lookupLower(rel);
    },
    async materializeDir(rel, found) {
      const path = join(upper, ...rel);
      if (found.whiteout) {
        // A directory recreated where this layer deleted one: nothing from below may show through.
        await rm(path, { force: true });
        await mkdir(path, { mode: 0o755 });
        await helper.setXattr(path, OPAQUE_XATTR, Buffer.from("y"));
        return;
      }
      await mkdir(path, { mode: 0o755 });
      if (found.where === "lower" && found.stats) {
        await copyMetadata(found, path, helper);
        // Entries created inside would change the times: they are set with the layer's own dirs.
        deferDirTimes(rel, found.stats.atime, found.stats.mtime);
      }
    },
    async copyUp(rel, found) {
      const path = join(upper, ...rel);
      const st = found.stats!;
      if (st.isFile()) await copyFile(found.path!, path);
      else if (st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO()) {
        const kind = st.isCharacterDevice() ? "char" : st.isBlockDevice() ? "block" : "fifo";
        const major = Math.floor(st.rdev / 256) & 0xfff;
        const minor = (st.rdev & 0xff) | (Math.floor(st.rdev / 4096) & 0xfff00);
        await helper.mknod(path, kind, 0o600, major, minor);
      } else {
        throw new UnsafeNameError(`${JSON.stringify(rel.join("/"))} in a lower layer cannot be hard linked`);
      }
      await copyMetadata(found, path, helper);
      await utimes(path, st.atime, st.mtime);
    },
  };
}

/** Owner, xattrs (but overlay's own) and mode of a lower-layer file onto its copy. */
async function copyMetadata(found: Lookup, path: string, helper: SyscallHelper): Promise<void> {
  const st = found.stats!;
  await chown(path, st.uid, st.gid);
  for (const name of await helper.listXattrs(found.path!)) {
    if (name.startsWith("trusted.overlay.")) continue;
    const value = await helper.getXattr(found.path!, name);
    if (value !== undefined) await helper.setXattr(path, name, value);
  }
  await chmod(path, st.mode & 0o7777);
}

function kindOf(st: Stats): NodeKind {
  if (st.isDirectory()) return "dir";
  if (st.isSymbolicLink()) return "symlink";
  return "other";
}

/** lstat, or undefined when nothing is there. */
export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw e;
  }
}

// Comparing two trees and acting on the differences: writing them as an overlay layer (whiteouts
// for deletions) or applying them onto a third tree (native merge). Symlinks are never followed.
import type { BigIntStats } from "node:fs";
import { lstat, mkdir, open, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import {
  applyMetadata,
  copyEntry,
  copyTree,
  ensureRealParents,
  type HardLinks,
  lstatOrUndefined,
  makeWhiteout,
  parentsAreReal,
  removePath,
} from "./copy.ts";

/**
 * One difference, by path relative to the tree roots. add: new or of another type (a whole subtree
 * for a directory); modify: same type, other content or metadata; meta: a directory's own metadata.
 */
export type Change = { kind: "add" | "modify" | "meta" | "delete"; path: string };

function typeBits(st: BigIntStats): bigint {
  return st.mode & 0o170000n;
}

async function sameContent(a: string, b: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([open(a, "r"), open(b, "r")]);
  try {
    const ba = Buffer.alloc(1 << 16);
    const bb = Buffer.alloc(1 << 16);
    for (;;) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, ba.length), fb.read(bb, 0, bb.length)]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (ra.bytesRead === 0) return true;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

/**
 * Whether two entries of the same type look the same. Like containerd's differ, regular files with
 * equal size and nanosecond mtime are the same unless the mtime has no sub-second part (a copy by a
 * tool that truncates times could hide a change), in which case the bytes are compared.
 */
async function sameEntry(lp: string, up: string, l: BigIntStats, u: BigIntStats): Promise<boolean> {
  if (l.mode !== u.mode || l.uid !== u.uid || l.gid !== u.gid) return false;
  if (u.isSymbolicLink()) return (await readlink(lp)) === (await readlink(up));
  if (u.isCharacterDevice() || u.isBlockDevice()) return l.rdev === u.rdev;
  if (l.mtimeNs !== u.mtimeNs) return false;
  if (!u.isFile()) return true;
  if (l.size !== u.size) return false;
  if (l.dev === u.dev && l.ino === u.ino) return true;
  if (u.mtimeNs % 1_000_000_000n !== 0n) return true;
  return sameContent(lp, up);
}

/** Calls `onChange` for every difference from tree `lower` (absent: empty) to tree `upper`. */
export async function walkChanges(
  lower: string | undefined,
  upper: string,
  onChange: (c: Change) => Promise<void>,
): Promise<void> {
  const walk = async (rel: string, lowerHasDir: boolean): Promise<void> => {
    const unames = await readdir(join(upper, rel));
    const lnames = lowerHasDir && lower !== undefined ? await readdir(join(lower, rel)) : [];
    const uset = new Set(unames);
    const lset = new Set(lnames);
    const names = [...new Set([...unames, ...lnames])].sort();
    for (const name of names) {
      const path = rel === "" ? name : `${rel}/${name}`;
      const u = uset.has(name) ? await lstat(join(upper, path), { bigint: true }) : undefined;
      const l = lset.has(name) ? await lstat(join(lower!, path), { bigint: true }) : undefined;
      if (u === undefined) {
        await onChange({ kind: "delete", path });
      } else if (l === undefined || typeBits(l) !== typeBits(u)) {
        await onChange({ kind: "add", path });
      } else if (u.isDirectory()) {
        if (!(await sameEntry(join(lower!, path), join(upper, path), l, u))) {
          await onChange({ kind: "meta", path });
        }
        await walk(path, true);
      } else if (!(await sameEntry(join(lower!, path), join(upper, path), l, u))) {
        await onChange({ kind: "modify", path });
      }
    }
  };
  await walk("", lower !== undefined);
}

/** Something that consumes changes taken from the tree `upper`, then settles directory metadata. */
type ChangeSink = { apply: (c: Change) => Promise<void>; finish: () => Promise<void> };

/** Sets times (and owner/mode) of touched dirs deepest first, after their children were written. */
async function fixDirs(root: string, upper: string, dirs: Set<string>): Promise<void> {
  const sorted = [...dirs].sort((a, b) => b.split("/").length - a.split("/").length);
  for (const d of sorted) {
    const st = await lstatOrUndefined(join(upper, d));
    const tst = await lstatOrUndefined(join(root, d));
    if (st?.isDirectory() && tst?.isDirectory()) await applyMetadata(join(root, d), st);
  }
}

/** Writes changes into the empty dir `out` as an overlay layer: deletions become whiteouts. */
function layerWriter(out: string, upper: string): ChangeSink {
  const links: HardLinks = new Map();
  const dirs = new Set<string>();
  return {
    async apply(c) {
      for (const d of await ensureRealParents(out, c.path, upper)) dirs.add(d);
      const dst = join(out, c.path);
      if (c.kind === "delete") return makeWhiteout(dst);
      if (c.kind === "meta") {
        if (!(await lstatOrUndefined(dst))) await mkdir(dst);
        dirs.add(c.path);
        return;
      }
      const st = await lstat(join(upper, c.path));
      if (st.isDirectory()) await copyTree(join(upper, c.path), dst);
      else await copyEntry(join(upper, c.path), dst, st, links);
    },
    finish: () => fixDirs(out, upper, dirs),
  };
}

/** Applies changes onto the tree `target` the way an upper overlay layer would show over it. */
function treeApplier(target: string, upper: string): ChangeSink {
  const links: HardLinks = new Map();
  const dirs = new Set<string>();
  const apply = async (c: Change): Promise<void> => {
    const dst = join(target, c.path);
    if (c.kind === "delete") {
      if (await parentsAreReal(target, c.path)) await removePath(dst);
      return;
    }
    for (const d of await ensureRealParents(target, c.path, upper)) dirs.add(d);
    const existing = await lstatOrUndefined(dst);
    const st = await lstat(join(upper, c.path));
    if (st.isDirectory()) {
      if (existing?.isDirectory()) {
        dirs.add(c.path);
        // A directory that is new in the upper tree merges with one already in the target.
        if (c.kind === "add") {
          for (const name of (await readdir(join(upper, c.path))).sort()) {
            await apply({ kind: "add", path: `${c.path}/${name}` });
          }
        }
        return;
      }
      if (existing) await removePath(dst);
      if (c.kind === "meta") {
        await mkdir(dst);
        dirs.add(c.path);
      } else await copyTree(join(upper, c.path), dst);
      return;
    }
    if (existing) await removePath(dst);
    await copyEntry(join(upper, c.path), dst, st, links);
  };
  return { apply, finish: () => fixDirs(target, upper, dirs) };
}

/** Writes what changed from `lower` (absent: empty) to `upper` into empty dir `out`, as an overlay layer. */
export async function writeLayer(out: string, lower: string | undefined, upper: string): Promise<void> {
  const sink = layerWriter(out, upper);
  await walkChanges(lower, upper, sink.apply);
  await sink.finish();
}

/** Applies what changed from `lower` (absent: empty) to `upper` onto the tree `target`. */
export async function applyChanges(target: string, lower: string | undefined, upper: string): Promise<void> {
  const sink = treeApplier(target, upper);
  await walkChanges(lower, upper, sink.apply);
  await sink.finish();
}

// Real disk usage of a directory tree, the way du(1) counts it, plus where overlay whiteouts are.
import type { Stats } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

/** Usage of a tree and the directories (relative, "" for the root) that hold overlay whiteouts. */
export type TreeUsage = { size: number; inodes: number; whiteoutDirs: string[] };

/** An overlay whiteout: a character device with device number 0:0. */
export function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

const BATCH = 64;

/**
 * Walks `dir` without following symlinks: allocated blocks of every inode counted once (hard links,
 * sparse files), the directory itself included. A missing `dir` counts as empty.
 */
export async function treeUsage(dir: string): Promise<TreeUsage> {
  const seen = new Set<string>();
  const usage: TreeUsage = { size: 0, inodes: 0, whiteoutDirs: [] };
  const count = (st: Stats) => {
    if (st.nlink > 1 && !st.isDirectory()) {
      const id = `${st.dev}:${st.ino}`;
      if (seen.has(id)) return;
      seen.add(id);
    }
    usage.size += st.blocks * 512;
    usage.inodes += 1;
  };
  let rootSt: Stats;
  try {
    rootSt = await lstat(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return usage;
    throw e;
  }
  count(rootSt);
  if (!rootSt.isDirectory()) return usage;
  const walk = async (rel: string): Promise<void> => {
    const names = await readdir(join(dir, rel));
    const subdirs: string[] = [];
    let hasWhiteout = false;
    for (let i = 0; i < names.length; i += BATCH) {
      const batch = names.slice(i, i + BATCH);
      const stats = await Promise.all(batch.map((n) => lstat(join(dir, rel, n))));
      stats.forEach((st, j) => {
        count(st);
        if (st.isDirectory()) subdirs.push(rel === "" ? batch[j]! : `${rel}/${batch[j]}`);
        else if (isWhiteout(st)) hasWhiteout = true;
      });
    }
    if (hasWhiteout) usage.whiteoutDirs.push(rel);
    for (const s of subdirs) await walk(s);
  };
  await walk("");
  return usage;
}

// Copying filesystem entries with everything a layer records: owners, modes, times, links, devices.
import { execFile } from "node:child_process";
import { constants, type Stats } from "node:fs";
import {
  chmod,
  copyFile,
  lchown,
  link,
  lstat,
  lutimes,
  mkdir,
  readdir,
  readlink,
  rename,
  rm,
  rmdir,
  symlink,
} from "node:fs/promises";
import { dirname, join } from "node:path";
import { readMountInfo } from "./mount.ts";

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")}: ${String(stderr).trim() || err.message}`));
      else resolve();
    });
  });
}

/**
 * Copies the contents of directory `src` into existing directory `dst` with `cp -a` (owners, modes,
 * times, xattrs, hard links, device files; reflinks where the filesystem can).
 */
export async function copyDirContents(src: string, dst: string): Promise<void> {
  await run("cp", ["-a", "--reflink=auto", "--no-target-directory", `${src}/.`, dst]);
}

/** Copies the tree at `src` to the new path `dst` with `cp -a`. */
export async function copyTree(src: string, dst: string): Promise<void> {
  await run("cp", ["-a", "--reflink=auto", "--no-target-directory", src, dst]);
}

/** lstat that answers undefined for a missing path. */
export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw e;
  }
}

/** Sets owner, mode and times of `path` from `st` (mode after owner: chown clears setuid). */
export async function applyMetadata(path: string, st: Stats): Promise<void> {
  await lchown(path, st.uid, st.gid);
  if (!st.isSymbolicLink()) await chmod(path, st.mode & 0o7777);
  await lutimes(path, st.atimeMs / 1000, st.mtimeMs / 1000);
}

function devNumbers(rdev: number): [number, number] {
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
  return [major, minor];
}

/** Creates a device node or fifo like `st` at `path` (mknod(8); Node has no mknod). */
export async function makeNode(path: string, st: Stats): Promise<void> {
  if (st.isFIFO()) return run("mknod", [path, "p"]);
  const [major, minor] = devNumbers(st.rdev);
  await run("mknod", [path, st.isCharacterDevice() ? "c" : "b", String(major), String(minor)]);
}

/** Creates an overlay whiteout (0:0 character device) at `path`. */
export async function makeWhiteout(path: string): Promise<void> {
  await run("mknod", [path, "c", "0", "0"]);
}

/** Remembers copied multiply-linked files so later links to them become links again. */
export type HardLinks = Map<string, string>;

/**
 * Copies one non-directory entry `src` (stat `st`) to the free path `dst`, keeping hard links that
 * were copied through the same `links` map. Sockets are skipped: they cannot be copied.
 */
export async function copyEntry(src: string, dst: string, st: Stats, links: HardLinks): Promise<void> {
  if (st.isDirectory()) throw new Error(`copyEntry ${src}: is a directory`);
  if (st.isSocket()) return;
  const id = `${st.dev}:${st.ino}`;
  if (st.nlink > 1) {
    const first = links.get(id);
    if (first !== undefined) {
      await link(first, dst);
      return;
    }
  }
  if (st.isSymbolicLink()) await symlink(await readlink(src), dst);
  else if (st.isFile()) await copyFile(src, dst, constants.COPYFILE_FICLONE);
  else await makeNode(dst, st);
  await applyMetadata(dst, st);
  if (st.nlink > 1) links.set(id, dst);
}

/** Removes a path of any type; never follows symlinks. */
export async function removePath(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}

/** Removes a tree of empty directories (mount points); fails rather than delete any file. */
export async function removeEmptyDirs(path: string): Promise<void> {
  const mounted = (await readMountInfo()).filter(
    (m) => m.mountPoint === path || m.mountPoint.startsWith(`${path}/`),
  );
  if (mounted.length > 0) throw new Error(`removing ${path}: ${mounted[0]!.mountPoint} is still mounted`);
  const remove = async (p: string): Promise<void> => {
    const st = await lstatOrUndefined(p);
    if (!st) return;
    if (!st.isDirectory()) throw new Error(`removing mount point dir ${p}: not a directory`);
    for (const name of await readdir(p)) await remove(join(p, name));
    await rmdir(p);
  };
  await remove(path);
}

/**
 * Removes a directory tree quickly and safely: it is first renamed into `trashDir` (same filesystem)
 * so a crash mid-removal leaves nothing half-deleted at the original path.
 */
export async function removeViaTrash(path: string, trashDir: string): Promise<void> {
  const trashed = join(trashDir, `${Date.now()}-${Math.random().toString(36).slice(2)}`);
  try {
    await rename(path, trashed);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  await removePath(trashed);
}

/**
 * Makes every parent directory of `rel` under `root` a real directory: missing ones are created,
 * and a symlink or file in the way is replaced, so nothing written later can escape `root`.
 * `template` (when given) supplies owner/mode for created dirs from a tree with the same layout.
 * Returns the directories it created, shallowest first.
 */
export async function ensureRealParents(root: string, rel: string, template?: string): Promise<string[]> {
  const created: string[] = [];
  const parts = dirname(rel) === "." ? [] : dirname(rel).split("/");
  let cur = "";
  for (const p of parts) {
    cur = cur === "" ? p : `${cur}/${p}`;
    const path = join(root, cur);
    const st = await lstatOrUndefined(path);
    if (st?.isDirectory()) continue;
    if (st !== undefined) await removePath(path);
    await mkdir(path);
    const tst = template === undefined ? undefined : await lstatOrUndefined(join(template, cur));
    if (tst?.isDirectory()) await applyMetadata(path, tst);
    created.push(cur);
  }
  return created;
}

/** True when every parent directory of `rel` under `root` is a real directory (no symlink in the way). */
export async function parentsAreReal(root: string, rel: string): Promise<boolean> {
  const parts = dirname(rel) === "." ? [] : dirname(rel).split("/");
  let cur = root;
  for (const p of parts) {
    cur = join(cur, p);
    const st = await lstatOrUndefined(cur);
    if (!st?.isDirectory()) return false;
  }
  return true;
}

// Mounting snapshot mounts on the host (a rootfs the executor must inspect, an overlay a selector
// reaches into) and finding what is still mounted, through mount(8)/umount(8): Node has no mount(2).
import { lstat, readdir, readFile, rmdir, unlink } from "node:fs/promises";
import { posix } from "node:path";
import { mustRunTool, runTool } from "./command.ts";
import type { Mount } from "./types.ts";

/** One line of /proc/self/mountinfo, the parts the executor needs. */
export interface MountInfo {
  id: number;
  parentId: number;
  /** Where it is mounted, with mountinfo's octal escapes decoded. */
  mountPoint: string;
  /** The path inside the mounted filesystem that is mounted (bind mounts of a subdir). */
  root: string;
  fsType: string;
  source: string;
  superOptions: string;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Parses mountinfo text (see proc(5)). */
export function parseMountinfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const f = line.split(" ");
    const sep = f.indexOf("-", 6);
    if (sep < 0 || f.length < sep + 4) continue;
    out.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      root: unescapeMountinfo(f[3]!),
      mountPoint: unescapeMountinfo(f[4]!),
      fsType: f[sep + 1]!,
      source: unescapeMountinfo(f[sep + 2]!),
      superOptions: f[sep + 3]!,
    });
  }
  return out;
}

/** The mounts of this process' mount namespace. */
export async function readMountinfo(): Promise<MountInfo[]> {
  return parseMountinfo(await readFile("/proc/self/mountinfo", "utf8"));
}

/** Mount points strictly below `dir` (a real path), deepest (most recently stacked) first. */
export function mountPointsUnder(mounts: MountInfo[], dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : dir + "/";
  return mounts
    .filter((m) => m.mountPoint.startsWith(prefix))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length || b.id - a.id)
    .map((m) => m.mountPoint);
}

/** The mount(8) arguments for one snapshot mount at `target`. */
export function mountArgs(m: Mount, target: string): string[] {
  if (m.type === "bind") {
    const opts = m.options.some((o) => o === "bind" || o === "rbind") ? m.options : ["rbind", ...m.options];
    return ["-t", "none", "-o", opts.join(","), m.source, target];
  }
  const args = ["-t", m.type];
  if (m.options.length > 0) args.push("-o", m.options.join(","));
  return [...args, m.source, target];
}

/**
 * Mounts a snapshot's mount list at `target`, in order (containerd's mount.All): usually one
 * overlay or one bind. On failure, what was already mounted is unmounted again.
 */
export async function mountAll(mounts: Mount[], target: string, what: string): Promise<void> {
  for (let i = 0; i < mounts.length; i++) {
    try {
      await mustRunTool("mount", mountArgs(mounts[i]!, target), `mounting ${what} at ${target}`);
    } catch (e) {
      if (i > 0) await unmountAll([target]).catch(() => {});
      throw e;
    }
  }
}

/**
 * Unmounts each target and everything below it (umount -R), in the order given, in one umount(8)
 * run; falls back to a lazy unmount for what stays busy.
 */
export async function unmountAll(targets: string[]): Promise<void> {
  if (targets.length === 0) return;
  const r = await runTool("umount", ["-R", ...targets]);
  if (r.code === 0) return;
  const still = new Set((await readMountinfo()).map((m) => m.mountPoint));
  const busy = targets.filter((t) => still.has(t));
  if (busy.length === 0) return;
  await mustRunTool("umount", ["-R", "-l", ...busy], `unmounting ${busy.join(", ")} (${r.stderr})`);
}

/**
 * Removes `path` recursively, but refuses to descend into anything on another filesystem than
 * `path`'s parent: a mount that is still there must never have its contents (a snapshot, a host
 * dir) deleted. Used for the executor's own bundle dirs, which live on its tmpfs.
 */
export async function removeUnmountedTree(path: string): Promise<void> {
  let parentDev: number;
  try {
    parentDev = (await lstat(posix.dirname(path))).dev;
  } catch {
    return;
  }
  await removeOnDevice(path, parentDev);
}

async function removeOnDevice(path: string, dev: number): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  if (st.dev !== dev) throw new Error(`removing ${path}: it is still a mount point; unmount it first`);
  if (!st.isDirectory()) {
    await unlink(path);
    return;
  }
  for (const name of await readdir(path)) await removeOnDevice(posix.join(path, name), dev);
  await rmdir(path);
}

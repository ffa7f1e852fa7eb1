// Mount-point stubs: runc creates a missing mount point (an empty dir or file) in the rootfs, which
// would otherwise end up in the output layer. As BuildKit does, remember which were missing before
// the run and remove them afterwards when they are still empty.
import { lstat, readdir, rmdir, stat, unlink, utimes } from "node:fs/promises";
import { posix } from "node:path";
import { containerPath, resolveInRoot } from "./rootpath.ts";

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    throw e;
  }
}

/**
 * The container paths of mount points missing from the rootfs at `rootfs`: each destination, and
 * with `recursive` also each missing parent up to the first that exists. Deepest first.
 */
export async function findMountStubs(rootfs: string, dests: string[], recursive: boolean): Promise<string[]> {
  const stubs = new Set<string>();
  for (const dest of dests) {
    let hostPath = await resolveInRoot(rootfs, dest);
    while (hostPath !== posix.resolve(rootfs) && !(await exists(hostPath))) {
      stubs.add(containerPath(rootfs, hostPath));
      if (!recursive) break;
      hostPath = posix.dirname(hostPath);
    }
  }
  return [...stubs].sort((a, b) => b.length - a.length);
}

/**
 * Removes the stubs that are still empty (the process may have filled one in: then it stays),
 * resolving each again inside the root since the process may have replaced parents by symlinks.
 * The parent's times are kept so that a removed stub leaves no trace.
 */
export async function removeMountStubs(rootfs: string, stubs: string[]): Promise<void> {
  for (const stub of stubs) {
    const hostPath = await resolveInRoot(rootfs, stub);
    if (hostPath === posix.resolve(rootfs)) continue;
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      st = await lstat(hostPath);
    } catch {
      continue;
    }
    if (st.isDirectory()) {
      if ((await readdir(hostPath)).length > 0) continue;
    } else if (!st.isFile() || st.size !== 0) continue;
    const parent = posix.dirname(hostPath);
    const parentStat = await stat(parent);
    if (st.isDirectory()) await rmdir(hostPath);
    else await unlink(hostPath);
    await utimes(parent, parentStat.atime, parentStat.mtime);
  }
}

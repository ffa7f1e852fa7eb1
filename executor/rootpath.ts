// Paths inside a container's root filesystem, resolved from the host without ever leaving it:
// symlinks are followed as the container would see them, with the rootfs as "/".
import { chmod, lchown, lstat, mkdir, readlink } from "node:fs/promises";
import { posix } from "node:path";

const MAX_SYMLINKS = 255;

/** Splits a container path into components, dropping empty ones and ".". */
function components(p: string): string[] {
  return p.split("/").filter((c) => c !== "" && c !== ".");
}

/** True when an fs error means "this path does not exist (as a directory)". */
function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/**
 * The host path of `unsafePath` inside `root`, following symlinks as if `root` were "/" (an
 * absolute link restarts at `root`, ".." stops at `root`). Missing components are kept as they
 * are. Like Go's securejoin / continuity's fs.RootPath.
 */
export async function resolveInRoot(root: string, unsafePath: string): Promise<string> {
  const rootClean = posix.resolve(root);
  let pending = components(unsafePath);
  const resolved: string[] = [];
  let links = 0;
  let missing = false;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    if (missing) {
      resolved.push(part);
      continue;
    }
    const candidate = posix.join(rootClean, ...resolved, part);
    let isLink = false;
    try {
      isLink = (await lstat(candidate)).isSymbolicLink();
    } catch (e) {
      if (!isMissing(e)) throw e;
      missing = true;
    }
    if (!isLink) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_SYMLINKS) {
      throw new Error(`resolving ${unsafePath} inside ${root}: too many levels of symbolic links`);
    }
    const target = await readlink(candidate);
    if (target.startsWith("/")) resolved.length = 0;
    pending = [...components(target), ...pending];
  }
  return posix.join(rootClean, ...resolved);
}

/** The container path of a host path that lies inside `root` ("/" for `root` itself). */
export function containerPath(root: string, hostPath: string): string {
  const rel = posix.relative(posix.resolve(root), hostPath);
  if (rel.startsWith("..") || posix.isAbsolute(rel)) {
    throw new Error(`internal error: ${hostPath} is not inside ${root}`);
  }
  return "/" + rel;
}

/**
 * Creates the directory `unsafePath` inside `root` and any missing parents, owned by uid:gid with
 * mode 0755, resolving symlinks inside the root. Fails when a component is not a directory.
 * Returns the host path.
 */
export async function mkdirAllInRoot(
  root: string,
  unsafePath: string,
  uid: number,
  gid: number,
): Promise<string> {
  const rootClean = posix.resolve(root);
  const target = await resolveInRoot(rootClean, unsafePath);
  let current = rootClean;
  for (const part of components(containerPath(rootClean, target))) {
    current = posix.join(current, part);
    let st: Awaited<ReturnType<typeof lstat>> | undefined;
    try {
      st = await lstat(current);
    } catch (e) {
      if (!isMissing(e)) throw e;
    }
    if (st === undefined) {
      await mkdir(current);
      await lchown(current, uid, gid);
      await chmod(current, 0o755); // not left to the daemon's umask
    } else if (!st.isDirectory()) {
      // A symlink here means the tree changed under us since resolution: refuse rather than follow.
      throw new Error(
        `creating directory ${unsafePath} in the root filesystem: ${containerPath(rootClean, current)} is not a directory`,
      );
    }
  }
  return target;
}

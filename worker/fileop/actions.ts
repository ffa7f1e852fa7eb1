// The LLB file actions (mkdir, mkfile, rm, copy, symlink) applied to mounted directories, with
// BuildKit's semantics (solver/llbsolver/file/backend.go). Every path is resolved inside its root.
import { constants } from "node:fs";
import { chmod, lchown, lstat, lutimes, mkdir, rm, symlink } from "node:fs/promises";
import { posix } from "node:path";
import { copy, type Owner } from "../../fsutil/copy.ts";
import { fsError, mkdirAllInRoot, openInRoot, resolveInRoot } from "../../fsutil/resolve.ts";
import { resolveWildcards } from "../../fsutil/wildcard.ts";
import type {
  FileActionCopy,
  FileActionMkDir,
  FileActionMkFile,
  FileActionRm,
  FileActionSymlink,
} from "../../proto/gen/pb/ops_pb.ts";

/** An action's timestamp (nanoseconds since the epoch, -1 for none) as a Date; millisecond precision. */
export function timeFromNs(ns: bigint): Date | undefined {
  if (ns === -1n) return undefined;
  return new Date(Number(ns / 1_000_000n));
}

/** The path of an action, cleaned and absolute: BuildKit cleans lexically before resolving. */
function actionPath(p: string): string {
  return posix.join("/", p);
}

/** Wraps a failure with the action and path, and no host paths. */
function actionError(err: unknown, what: string, root: string): Error {
  const e = err as NodeJS.ErrnoException;
  const prefix = root.replace(/\/+$/, "");
  const message = (e?.message ?? String(err)).split(prefix).join("");
  const out: NodeJS.ErrnoException = new Error(`${what}: ${message}`, { cause: err });
  if (e?.code) out.code = e.code;
  return out;
}

async function setOwnerAndTime(p: string, owner: Owner | undefined, time: Date | undefined): Promise<void> {
  if (owner) await lchown(p, owner.uid, owner.gid);
  if (time) await lutimes(p, time, time);
}

/**
 * mkdir: creates `action.path` with `action.mode` (exact, no umask), and with makeParents its missing
 * parents too (same mode, owner and time; an existing directory is left as it is, like mkdir -p).
 * Without makeParents, an existing directory is fine and the parent must exist.
 */
export async function applyMkdir(targetRoot: string, action: FileActionMkDir, owner?: Owner): Promise<void> {
  const path = actionPath(action.path);
  const mode = action.mode & 0o777;
  const time = timeFromNs(action.timestamp);
  try {
    if (action.makeParents) {
      await mkdirAllInRoot(targetRoot, path, { mode, owner, time });
      return;
    }
    const p = await resolveInRoot(targetRoot, path);
    try {
      await mkdir(p, 0o700);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST") {
        if ((await lstat(p)).isDirectory()) return;
        throw fsError("EEXIST", "it exists and is not a directory");
      }
      if (code === "ENOENT")
        throw fsError("ENOENT", "the parent directory does not exist (makeParents creates it)");
      throw err;
    }
    await chmod(p, mode);
    await setOwnerAndTime(p, owner, time);
  } catch (err) {
    throw actionError(err, `mkdir ${path}`, targetRoot);
  }
}

/**
 * mkfile: writes `action.data` to `action.path` (a symlink there is followed inside the root, as
 * BuildKit does), replacing the content of an existing file, with `action.mode` set exactly.
 */
export async function applyMkfile(
  targetRoot: string,
  action: FileActionMkFile,
  owner?: Owner,
): Promise<void> {
  const path = actionPath(action.path);
  try {
    if (path === "/") throw fsError("EISDIR", "the root is a directory");
    const fh = await openInRoot(
      targetRoot,
      path,
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC,
      {
        mode: 0o600,
        followFinal: true,
      },
    );
    try {
      await fh.writeFile(action.data);
      await fh.chmod(action.mode & 0o777);
      if (owner) await fh.chown(owner.uid, owner.gid);
      const time = timeFromNs(action.timestamp);
      if (time) await fh.utimes(time, time);
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw actionError(err, `mkfile ${path}`, targetRoot);
  }
}

/**
 * rm: removes `action.path` recursively. The last component is removed itself, never followed (a
 * symlink is unlinked); its parents resolve inside the root, so nothing outside can be reached.
 * Removing the root is refused. With allowWildcard, every match is removed.
 */
export async function applyRm(targetRoot: string, action: FileActionRm): Promise<void> {
  const path = action.path;
  try {
    let paths = [path];
    if (action.allowWildcard) {
      paths = await resolveWildcards(targetRoot, path);
      if (paths.length === 0 && !action.allowNotFound) throw fsError("ENOENT", "no such file or directory");
    }
    for (const p of paths) await removeOne(targetRoot, p, action.allowNotFound);
  } catch (err) {
    throw actionError(err, `rm ${path}`, targetRoot);
  }
}

async function removeOne(root: string, p: string, allowNotFound: boolean): Promise<void> {
  const clean = actionPath(p);
  if (clean === "/") throw fsError("EPERM", "refusing to remove the root directory");
  const parent = await resolveInRoot(root, posix.dirname(clean));
  const target = `${parent === "/" ? "" : parent}/${posix.basename(clean)}`;
  const exists = await lstat(target).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return false;
      throw err;
    },
  );
  if (!exists) {
    if (allowNotFound) return;
    throw fsError("ENOENT", `${clean}: no such file or directory`);
  }
  await rm(target, { recursive: true, force: true });
}

/** symlink: creates `action.newpath` pointing at `action.oldpath` (stored as given; never followed here). */
export async function applySymlink(
  targetRoot: string,
  action: FileActionSymlink,
  owner?: Owner,
): Promise<void> {
  const path = actionPath(action.newpath);
  try {
    if (path === "/") throw fsError("EEXIST", "the root exists");
    if (action.oldpath === "") throw fsError("EINVAL", "the link target is empty");
    const parent = await resolveInRoot(targetRoot, posix.dirname(path));
    const p = `${parent === "/" ? "" : parent}/${posix.basename(path)}`;
    await symlink(action.oldpath, p);
    await setOwnerAndTime(p, owner, timeFromNs(action.timestamp));
  } catch (err) {
    throw actionError(err, `symlink ${path} -> ${action.oldpath}`, targetRoot);
  }
}

/**
 * copy: `action.src` from `srcRoot` to `action.dest` in `targetRoot` with every FileActionCopy
 * option (see fsutil's copy). `owner` is the resolved action.owner. As in BuildKit, mode -1 keeps
 * modes and any other value (0 included) is applied; modeStr wins over mode.
 */
export async function applyCopy(
  srcRoot: string,
  targetRoot: string,
  action: FileActionCopy,
  owner?: Owner,
): Promise<void> {
  await copy(srcRoot, action.src, targetRoot, action.dest, {
    followSymlink: action.followSymlink,
    dirCopyContents: action.dirCopyContents,
    createDestPath: action.createDestPath,
    allowWildcard: action.allowWildcard,
    allowEmptyWildcard: action.allowEmptyWildcard,
    mode: action.mode,
    modeStr: action.modeStr,
    owner,
    timestamp: timeFromNs(action.timestamp) ?? -1,
    includePatterns: action.includePatterns,
    excludePatterns: action.excludePatterns,
    alwaysReplaceExistingDestPaths: action.alwaysReplaceExistingDestPaths,
    attemptUnpackDockerCompatibility: action.attemptUnpackDockerCompatibility,
  });
}

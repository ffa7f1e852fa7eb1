// Owners of file actions (COPY --chown, mkdir/mkfile owners): names resolved in the /etc/passwd and
// /etc/group of a root filesystem, which is build input and so read as hostile data.
import { constants } from "node:fs";
import { lstat } from "node:fs/promises";
import type { Owner } from "../../fsutil/copy.ts";
import { openInRoot, resolveInRoot } from "../../fsutil/resolve.ts";
import type { ChownOpt } from "../../proto/gen/pb/ops_pb.ts";

/** Larger user databases are refused rather than read into memory. */
const MAX_DB_BYTES = 16 * 1024 * 1024;

/** Where names are looked up: one root for both, or one per database. */
export type OwnerLookupRoots = string | { user?: string; group?: string };

/** One line of /etc/passwd or /etc/group. */
export interface DbEntry {
  name: string;
  id: number;
  /** The primary group of a passwd entry. */
  gid?: number;
}

/**
 * Reads a user database file inside `root` as data: symlinks resolved inside the root, only a
 * regular file of sane size, opened without following anything on the host. Undefined when missing.
 */
async function readDb(root: string, path: string): Promise<string | undefined> {
  const resolved = await resolveInRoot(root, path);
  const st = await lstat(resolved).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
    throw err;
  });
  if (st === undefined) return undefined;
  if (!st.isFile())
    throw new Error(`${path} in the build root is not a regular file; cannot look up owners in it`);
  // O_NONBLOCK: should the file be swapped for a fifo after the check, open must not hang.
  const fh = await openInRoot(root, path, constants.O_RDONLY | constants.O_NONBLOCK, { followFinal: true });
  try {
    const fst = await fh.stat();
    if (!fst.isFile() || fst.ino !== st.ino)
      throw new Error(`${path} in the build root changed while being read`);
    if (fst.size > MAX_DB_BYTES)
      throw new Error(`${path} in the build root is larger than ${MAX_DB_BYTES} bytes`);
    return (await fh.readFile()).toString("utf8");
  } finally {
    await fh.close();
  }
}

/** Parses passwd ("name:x:uid:gid:...") or group ("name:x:gid:members") lines; bad lines are skipped. */
export function parseUserDb(text: string, kind: "passwd" | "group"): DbEntry[] {
  const out: DbEntry[] = [];
  for (const line of text.split("\n")) {
    const fields = line.trim().split(":");
    const [name, , idField, gidField] = fields;
    if (!name || name.startsWith("#") || idField === undefined || !/^\d+$/.test(idField)) continue;
    const entry: DbEntry = { name, id: Number(idField) };
    if (kind === "passwd") {
      if (gidField === undefined || !/^\d+$/.test(gidField)) continue;
      entry.gid = Number(gidField);
    }
    out.push(entry);
  }
  return out;
}

async function lookup(root: string | undefined, kind: "passwd" | "group", name: string): Promise<DbEntry> {
  const what = kind === "passwd" ? "user" : "group";
  const file = `/etc/${kind}`;
  if (root === undefined)
    throw new Error(
      `cannot resolve ${what} ${JSON.stringify(name)}: no root filesystem to read ${file} from`,
    );
  const text = await readDb(root, file);
  const found = text === undefined ? undefined : parseUserDb(text, kind).find((e) => e.name === name);
  if (found) return found;
  // A number given as a name still means that number, as runc treats it.
  if (/^\d+$/.test(name)) return { name, id: Number(name), gid: Number(name) };
  throw new Error(
    text === undefined
      ? `unable to find ${what} ${JSON.stringify(name)}: ${file} does not exist in the build root`
      : `unable to find ${what} ${JSON.stringify(name)}: no matching entry in ${file}`,
  );
}

/**
 * Resolves a ChownOpt to numeric ids, as BuildKit does: a user name gives its uid and primary gid,
 * a numeric user gives uid = gid = that number, a group (name or number) then overrides the gid, and
 * a ChownOpt without user starts from root (0:0). Undefined when there is no ChownOpt (keep owners).
 * A name that is not found is an error naming the name and the file.
 */
export async function resolveOwner(
  chown: ChownOpt | undefined,
  lookupRoot: OwnerLookupRoots,
): Promise<Owner | undefined> {
  if (chown === undefined) return undefined;
  const roots = typeof lookupRoot === "string" ? { user: lookupRoot, group: lookupRoot } : lookupRoot;
  const owner: Owner = { uid: 0, gid: 0 };
  const user = chown.user?.user;
  if (user?.case === "byName") {
    const entry = await lookup(roots.user, "passwd", user.value.name);
    owner.uid = entry.id;
    owner.gid = entry.gid ?? entry.id;
  } else if (user?.case === "byID") {
    owner.uid = user.value;
    owner.gid = user.value;
  }
  const group = chown.group?.user;
  if (group?.case === "byName") owner.gid = (await lookup(roots.group, "group", group.value.name)).id;
  else if (group?.case === "byID") owner.gid = group.value;
  return owner;
}

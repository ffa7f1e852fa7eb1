// The process user: "name", "uid", "uid:gid" or "name:group", resolved against the container's
// own /etc/passwd and /etc/group with the same rules as runc (libcontainer/user.GetExecUser).
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { resolveInRoot } from "./rootpath.ts";

/** The numeric identity the container process runs as. */
export interface ProcessUser {
  uid: number;
  gid: number;
  additionalGids: number[];
}

const MAX_ID = 0xfffffffe; // (uid_t)-1 means "no change" to the kernel
const MAX_ACCOUNT_FILE = 16 << 20;

function parseId(s: string): number | undefined {
  if (!/^[0-9]+$/.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX_ID ? n : undefined;
}

/**
 * Reads an account file (/etc/passwd, /etc/group) of the rootfs: resolved inside the root, never
 * through a final symlink, regular files only, bounded size. Undefined when it does not exist.
 */
async function readAccountFile(rootfs: string, path: string): Promise<string | undefined> {
  const hostPath = await resolveInRoot(rootfs, path);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw new Error(`reading ${path} of the root filesystem: ${(e as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error(`reading ${path} of the root filesystem: not a regular file`);
    if (st.size > MAX_ACCOUNT_FILE) {
      throw new Error(`reading ${path} of the root filesystem: ${st.size} bytes is too large`);
    }
    return await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
}

/** Lines of an account file split into fields, skipping blanks and comments. */
function records(content: string | undefined): string[][] {
  if (content === undefined) return [];
  return content
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => l.split(":"));
}

/**
 * Resolves a user spec against the root filesystem mounted at `rootfs`. Numeric "uid:gid" needs no
 * account files; a name that is not found is an error; a numeric uid without a passwd entry runs
 * with gid 0. Supplementary groups come from /etc/group only when no group is given.
 */
export async function resolveUser(rootfs: string, spec: string): Promise<ProcessUser> {
  if (spec === "") return { uid: 0, gid: 0, additionalGids: [] };
  const colon = spec.indexOf(":");
  const userPart = colon < 0 ? spec : spec.slice(0, colon);
  const groupPart = colon < 0 ? undefined : spec.slice(colon + 1);
  if (userPart === "" || groupPart === "") {
    throw new Error(`invalid user ${JSON.stringify(spec)}: want name, uid, uid:gid or name:group`);
  }
  const numericUid = parseId(userPart);
  const numericGid = groupPart === undefined ? undefined : parseId(groupPart);
  if (numericUid !== undefined && numericGid !== undefined) {
    return { uid: numericUid, gid: numericGid, additionalGids: [] };
  }

  const passwd = records(await readAccountFile(rootfs, "/etc/passwd"));
  const entry = passwd.find((f) =>
    numericUid !== undefined ? parseId(f[2] ?? "") === numericUid : f[0] === userPart,
  );
  if (entry === undefined && numericUid === undefined) {
    throw new Error(
      `unable to find user ${userPart}: no matching entries in /etc/passwd of the root filesystem; use a numeric uid or add the user`,
    );
  }
  const uid = numericUid ?? parseId(entry?.[2] ?? "");
  if (uid === undefined) throw new Error(`user ${userPart}: invalid uid in /etc/passwd`);
  const name = entry?.[0];

  if (groupPart !== undefined) {
    if (numericGid !== undefined) return { uid, gid: numericGid, additionalGids: [] };
    const groups = records(await readAccountFile(rootfs, "/etc/group"));
    const group = groups.find((f) => f[0] === groupPart);
    const gid = parseId(group?.[2] ?? "");
    if (gid === undefined) {
      throw new Error(
        `unable to find group ${groupPart}: no matching entries in /etc/group of the root filesystem; use a numeric gid or add the group`,
      );
    }
    return { uid, gid, additionalGids: [] };
  }

  const gid = entry === undefined ? 0 : parseId(entry[3] ?? "");
  if (gid === undefined) throw new Error(`user ${userPart}: invalid gid in /etc/passwd`);
  const additionalGids: number[] = [];
  if (name !== undefined) {
    for (const g of records(await readAccountFile(rootfs, "/etc/group"))) {
      const members = (g[3] ?? "").split(",");
      const id = parseId(g[2] ?? "");
      if (id !== undefined && members.includes(name) && !additionalGids.includes(id)) {
        additionalGids.push(id);
      }
    }
  }
  return { uid, gid, additionalGids };
}

// ReadDir and StatFile on a result for gateway frontends: the ref is mounted read-only and every
// path is resolved inside it (symlinks cannot lead out), answers in fsutil's Stat shape with
// Go's os.FileMode bits, as BuildKit's gateway gives them.
import type { Stats } from "node:fs";
import { lstat, readlink } from "node:fs/promises";
import { join, posix } from "node:path";
import { create } from "@bufbuild/protobuf";
import type { ImmutableRef } from "../../cache/types.ts";
import { globMatch } from "../../fsutil/glob.ts";
import { resolveInRoot } from "../../fsutil/resolve.ts";
import { readDirSorted } from "../../fsutil/walk.ts";
import { type Stat, StatSchema } from "../../proto/gen/fsutil/types/stat_pb.ts";
import { withMounted } from "../../snapshot/index.ts";
import type { WorkerRef } from "../../worker/types.ts";

/** A listing larger than this is refused rather than sent as one message. */
const MAX_DIR_ENTRIES = 100_000;

// Go's os.FileMode type bits.
const GO_MODE_DIR = 2 ** 31;
const GO_MODE_SYMLINK = 2 ** 27;
const GO_MODE_DEVICE = 2 ** 26;
const GO_MODE_NAMED_PIPE = 2 ** 25;
const GO_MODE_SOCKET = 2 ** 24;
const GO_MODE_SETUID = 2 ** 23;
const GO_MODE_SETGID = 2 ** 22;
const GO_MODE_CHAR_DEVICE = 2 ** 21;
const GO_MODE_STICKY = 2 ** 20;

/** POSIX st_mode as Go's os.FileMode (what fsutil puts in Stat.mode). */
export function goFileMode(st: Stats): number {
  let m = st.mode & 0o777;
  if (st.isDirectory()) m += GO_MODE_DIR;
  else if (st.isSymbolicLink()) m += GO_MODE_SYMLINK;
  else if (st.isFIFO()) m += GO_MODE_NAMED_PIPE;
  else if (st.isSocket()) m += GO_MODE_SOCKET;
  else if (st.isCharacterDevice()) m += GO_MODE_DEVICE + GO_MODE_CHAR_DEVICE;
  else if (st.isBlockDevice()) m += GO_MODE_DEVICE;
  if (st.mode & 0o4000) m += GO_MODE_SETUID;
  if (st.mode & 0o2000) m += GO_MODE_SETGID;
  if (st.mode & 0o1000) m += GO_MODE_STICKY;
  return m;
}

/** True when a Go os.FileMode is a directory. */
export function isGoDir(mode: number): boolean {
  return mode >= GO_MODE_DIR;
}

async function statOf(hostPath: string, name: string): Promise<Stat> {
  const st = await lstat(hostPath, { bigint: false });
  const rdev = st.rdev;
  return create(StatSchema, {
    path: name,
    mode: goFileMode(st),
    uid: st.uid,
    gid: st.gid,
    size: BigInt(st.isFile() ? st.size : 0),
    modTime: BigInt(Math.round(st.mtimeMs)) * 1_000_000n,
    linkname: st.isSymbolicLink() ? await readlink(hostPath) : "",
    devmajor: BigInt(st.isCharacterDevice() || st.isBlockDevice() ? Math.floor(rdev / 256) & 0xfff : 0),
    devminor: BigInt(
      st.isCharacterDevice() || st.isBlockDevice() ? (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00) : 0,
    ),
  });
}

/** Lists `dir` of `ref` (names matching `include`, a filepath.Match pattern, when given). */
export async function readRefDir(
  ref: WorkerRef,
  dir: string,
  include: string,
  mountBase?: string,
): Promise<Stat[]> {
  return withMounted(
    await (ref as ImmutableRef).mount({ readonly: true }),
    async (root) => {
      const p = await resolveInRoot(root, dir);
      const st = await lstat(p);
      if (!st.isDirectory()) throw Object.assign(new Error(`${dir} is not a directory`), { code: "ENOTDIR" });
      const names = await readDirSorted(p);
      const picked = include === "" ? names : names.filter((n) => globMatch(include, n));
      if (picked.length > MAX_DIR_ENTRIES) {
        throw new Error(
          `${dir} has ${picked.length} entries, more than ${MAX_DIR_ENTRIES}: narrow it with a pattern`,
        );
      }
      const out: Stat[] = [];
      for (const name of picked) out.push(await statOf(join(p, name), name));
      return out;
    },
    { readonly: true, inPlace: true, base: mountBase },
  );
}

/** Stats `path` of `ref` (a symlink in the last component is reported, not followed). */
export async function statRefFile(ref: WorkerRef, path: string, mountBase?: string): Promise<Stat> {
  return withMounted(
    await (ref as ImmutableRef).mount({ readonly: true }),
    async (root) => {
      const p = await resolveInRoot(root, path, { followFinal: false });
      return statOf(p, posix.basename(posix.join("/", path)) || "/");
    },
    { readonly: true, inPlace: true, base: mountBase },
  );
}

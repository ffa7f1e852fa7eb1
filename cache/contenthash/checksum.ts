// Content checksums: the digest of exactly the files a step reads from a filesystem (a copy's
// sources, a mount's selector), over what ends up in a layer: names, types, modes, owners, link
// targets, device numbers, xattrs and file bytes. Times are left out on purpose, so touching a
// file without changing it does not bust the cache.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readlink } from "node:fs/promises";
import type { BigIntStats } from "node:fs";
import { relativeToRoot, resolveInRoot } from "../../fsutil/resolve.ts";
import { walk } from "../../fsutil/walk.ts";
import { resolveWildcards } from "../../fsutil/wildcard.ts";
import { type Digest, digestOf } from "../../util/digest.ts";
import type { ContentSelector } from "../../worker/types.ts";

/**
 * Remembers file content hashes by inode identity (device, inode, size, mtime, ctime), so a file
 * that did not change is not read again: a re-synced context or a second selector over the same
 * snapshot costs a stat per file, not a read.
 */
export class FileHashCache {
  private readonly map = new Map<string, Digest>();
  private readonly max: number;

  constructor(max = 200_000) {
    this.max = max;
  }

  key(st: BigIntStats): string {
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  }

  get(st: BigIntStats): Digest | undefined {
    return this.map.get(this.key(st));
  }

  set(st: BigIntStats, d: Digest): void {
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value!);
    this.map.set(this.key(st), d);
  }
}

const shared = new FileHashCache();

/**
 * Records the content hash of a file whose bytes someone already hashed (a synced context's
 * files, copied into a snapshot): the steps that read the snapshot then stat it, not read it.
 */
export function rememberFileHash(st: BigIntStats, d: Digest): void {
  shared.set(st, d);
}

/** The content hash known for a file, if any (for tests). */
export function knownFileHash(st: BigIntStats): Digest | undefined {
  return shared.get(st);
}

/** The sha256 of a file's bytes. */
export async function hashFile(
  path: string,
  st: BigIntStats,
  cache: FileHashCache = shared,
): Promise<Digest> {
  const known = cache.get(st);
  if (known) return known;
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  const d: Digest = `sha256:${h.digest("hex")}`;
  cache.set(st, d);
  return d;
}

/** What a layer records about one entry, besides its content. */
function header(st: BigIntStats, linkTarget: string | undefined): string {
  const type = st.isDirectory()
    ? "d"
    : st.isSymbolicLink()
      ? "l"
      : st.isFile()
        ? "f"
        : st.isFIFO()
          ? "p"
          : st.isCharacterDevice()
            ? "c"
            : st.isBlockDevice()
              ? "b"
              : "s";
  const rdev = type === "c" || type === "b" ? `${st.rdev}` : "";
  return `${type} ${(st.mode & 0o7777n).toString(8)} ${st.uid}:${st.gid} ${rdev} ${linkTarget ?? ""}`;
}

async function entryDigest(
  abs: string,
  st: BigIntStats,
  linkTarget: string | undefined,
  cache: FileHashCache,
): Promise<string> {
  const content = st.isFile() ? await hashFile(abs, st, cache) : "";
  return `${header(st, linkTarget)} ${content}`;
}

/**
 * The checksum of what `sel` selects inside `root` (a mounted filesystem). A missing path has a
 * checksum of its own (the step will fail on it later, the key stays defined). Wildcards select
 * every match; include/exclude filter a directory's contents.
 */
export async function contentChecksum(
  root: string,
  sel: ContentSelector,
  cache: FileHashCache = shared,
): Promise<Digest> {
  const parts: string[] = [];
  const paths = sel.wildcard ? await resolveWildcards(root, sel.path) : [sel.path];
  if (sel.wildcard && paths.length === 0) return digestOf(`buildd.contenthash.v1\nno match ${sel.path}`);
  for (const p of paths) parts.push(`${p}\n${await checksumPath(root, p, sel, cache)}`);
  return digestOf(`buildd.contenthash.v1\n${parts.join("\n")}`);
}

async function checksumPath(
  root: string,
  path: string,
  sel: ContentSelector,
  cache: FileHashCache,
): Promise<string> {
  const abs = await resolveInRoot(root, path, { followFinal: sel.followLinks ?? false });
  let st: BigIntStats;
  try {
    st = await lstat(abs, { bigint: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ENOTDIR")
      return "missing";
    throw e;
  }
  const rel = relativeToRoot(root, abs);
  if (!st.isDirectory()) {
    const link = st.isSymbolicLink() ? await readlink(abs) : undefined;
    return `${rel}\n${await entryDigest(abs, st, link, cache)}`;
  }
  const lines = [`. ${header(st, undefined)}`];
  const filtered = (sel.include?.length ?? 0) > 0 || (sel.exclude?.length ?? 0) > 0;
  for await (const e of walk(abs, { include: sel.include, exclude: sel.exclude })) {
    lines.push(`${e.path} ${await entryDigest(`${abs}/${e.path}`, e.stat, e.linkTarget, cache)}`);
  }
  return `${filtered ? "filtered" : "dir"}\n${lines.join("\n")}`;
}

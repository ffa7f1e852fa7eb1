// A deterministic walk of a directory tree with BuildKit local-source filtering (tonistiigi/fsutil's
// FilterFS): include patterns, exclude patterns with `!` exceptions, and followPaths.
import { type BigIntStats, lstatSync } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import { posix } from "node:path";
import { globMatch, hasWildcards } from "./glob.ts";
import { type ParentMatch, PatternMatcher } from "./patterns.ts";
import { fsError } from "./resolve.ts";

/** One file, directory, symlink or special file found by {@link walk}. */
export interface WalkEntry {
  /** Relative to the walked root, "/"-separated, never "" (the root itself is not yielded). */
  path: string;
  /** lstat of the entry, as bigints: exact inode numbers (hard links) and nanosecond times. */
  stat: BigIntStats;
  /** The target of a symlink. */
  linkTarget?: string;
}

/** Filters of {@link walk}; all paths and patterns are relative to the walked root. */
export interface WalkOptions {
  /** Only paths matching one of these (or below a match) are yielded, plus their parent directories. */
  include?: string[];
  /** Paths matching these are left out, unless an exception (`!pattern`) re-includes them. */
  exclude?: string[];
  /** Only these paths, their parents, and the targets of symlinks on the way are walked. */
  followPaths?: string[];
  signal?: AbortSignal;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Names in the byte order of their UTF-8 encoding, the order Go (and so BuildKit) walks in. */
export function compareNames(a: string, b: string): number {
  if (a === b) return 0;
  // UTF-16 order differs from UTF-8 byte order only around surrogates; compare bytes only then.
  if (/[\ud800-\uffff]/.test(a) || /[\ud800-\uffff]/.test(b))
    return Buffer.compare(Buffer.from(a), Buffer.from(b));
  return a < b ? -1 : 1;
}

/** Reads a directory's names, sorted; fails on names that are not UTF-8 rather than mangling them. */
export async function readDirSorted(dir: string): Promise<string[]> {
  const raw = await readdir(dir, { encoding: "buffer" });
  const names = raw.map((b) => {
    try {
      return utf8.decode(b);
    } catch {
      throw fsError(
        "EILSEQ",
        `file name ${JSON.stringify(b.toString("latin1"))} in ${dir} is not valid UTF-8`,
      );
    }
  });
  return names.sort(compareNames);
}

interface PendingDir {
  entry: WalkEntry;
  emitted: boolean;
}

/** How many entries of one directory are lstat'ed at a time. */
const STAT_BATCH = 64;

/**
 * Walks `root` depth-first in name order and yields every entry that passes the filters. Symlinks
 * are reported, never followed. A directory that is filtered out is still entered when something
 * below it could be included again; it is then yielded just before the first included entry inside.
 */
export async function* walk(root: string, opts: WalkOptions = {}): AsyncGenerator<WalkEntry> {
  const rootStat = await lstat(root);
  if (!rootStat.isDirectory()) {
    throw fsError("ENOTDIR", `cannot walk ${root}: not a directory (resolve symlinks before walking)`, root);
  }
  let include = opts.include?.length ? [...opts.include] : undefined;
  if (opts.followPaths?.length) {
    const followed = await followLinks(root, opts.followPaths);
    if (followed !== undefined) include = [...(include ?? []), ...followed];
  }
  const inc = include?.length ? new PatternMatcher(include) : undefined;
  const exc = opts.exclude?.length ? new PatternMatcher(opts.exclude) : undefined;
  yield* walkDir(root, "", inc, exc, undefined, undefined, [], opts.signal);
}

async function* walkDir(
  absDir: string,
  relDir: string,
  inc: PatternMatcher | undefined,
  exc: PatternMatcher | undefined,
  parentInc: ParentMatch | undefined,
  parentExc: ParentMatch | undefined,
  pending: PendingDir[],
  signal: AbortSignal | undefined,
): AsyncGenerator<WalkEntry> {
  const names = await readDirSorted(absDir);
  for (let start = 0; start < names.length; start += STAT_BATCH) {
    const batch = names.slice(start, start + STAT_BATCH);
    // Synchronous on purpose: an lstat through the thread pool costs several times the call
    // itself, and a rebuild's sync is thousands of them. A batch blocks the loop for well under
    // a millisecond on a warm inode cache.
    const stats = batch.map((n) => lstatSync(`${absDir}/${n}`, { bigint: true }));
    for (let k = 0; k < batch.length; k++) {
      signal?.throwIfAborted();
      const name = batch[k]!;
      const st = stats[k]!;
      const rel = relDir === "" ? name : `${relDir}/${name}`;
      const isDir = st.isDirectory();
      let skip = false;
      let incState: ParentMatch | undefined;
      let excState: ParentMatch | undefined;
      if (inc) {
        const r = inc.matchesWithParent(rel, parentInc);
        incState = r.state;
        if (!r.matched) {
          if (!isDir || !inc.couldMatchBelow(rel, false)) continue;
          skip = true;
        }
      }
      if (exc) {
        const r = exc.matchesWithParent(rel, parentExc);
        excState = r.state;
        if (r.matched) {
          if (!isDir || !exc.hasExclusions || !exc.couldMatchBelow(rel, true)) continue;
          skip = true;
        }
      }
      const entry: WalkEntry = { path: rel, stat: st };
      if (st.isSymbolicLink()) entry.linkTarget = await readlink(`${absDir}/${name}`);
      if (!skip) {
        for (const p of pending) {
          if (!p.emitted) {
            p.emitted = true;
            yield p.entry;
          }
        }
        yield entry;
      }
      if (isDir) {
        pending.push({ entry, emitted: !skip });
        try {
          yield* walkDir(`${absDir}/${name}`, rel, inc, exc, incState, excState, pending, signal);
        } finally {
          pending.pop();
        }
      }
    }
  }
}

/**
 * Resolves followPaths into include patterns, like fsutil's FollowLinks: each path, plus the target
 * of every symlink met on the way to it (re-rooted at `root`), recursively. A wildcard in the last
 * component is matched against the directory. Returns undefined when a path is the root itself
 * (nothing is filtered then).
 */
export async function followLinks(root: string, paths: string[]): Promise<string[] | undefined> {
  const resolved = new Set<string>();
  let budget = 255 * Math.max(1, paths.length);
  const readSymlinks = async (p: string, allowWildcard: boolean): Promise<string[] | undefined> => {
    const base = posix.basename(p);
    if (allowWildcard && hasWildcards(base)) {
      const dir = posix.dirname(p);
      let names: string[];
      try {
        names = await readDirSorted(dir === "." ? root : `${root}/${dir}`);
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
      const out: string[] = [];
      for (const n of names) {
        if (globMatch(base, n))
          out.push(...((await readSymlinks(dir === "." ? n : `${dir}/${n}`, false)) ?? []));
      }
      // Matching no symlink is the same as not being one: the pattern itself is then kept.
      return out.length > 0 ? out : undefined;
    }
    let st: Awaited<ReturnType<typeof lstat>>;
    try {
      st = await lstat(`${root}/${p}`);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    if (!st.isSymbolicLink()) return undefined;
    const link = await readlink(`${root}/${p}`);
    const target = link.startsWith("/") ? link : posix.join(posix.dirname(p), link);
    // Re-rooted and clamped: ".." cannot climb above the walked root.
    return [posix.normalize("/" + target).slice(1) || "."];
  };
  const append = async (p: string): Promise<void> => {
    if (--budget < 0)
      throw fsError("ELOOP", `too many symbolic links following ${JSON.stringify(p)} in ${root}`);
    const parts = posix
      .normalize("/" + p)
      .slice(1)
      .split("/")
      .filter((c) => c !== "");
    let current = "";
    for (let i = 0; i < parts.length; i++) {
      current = current === "" ? parts[i]! : `${current}/${parts[i]}`;
      const rest = parts.slice(i + 1).join("/");
      const targets = await readSymlinks(current, true);
      if ((rest === "" || targets !== undefined) && resolved.has(current)) return;
      if (targets !== undefined) {
        resolved.add(current);
        for (const t of targets) await append(rest === "" ? t : `${t}/${rest}`);
        return;
      }
      if (rest === "") {
        resolved.add(current);
        return;
      }
    }
    resolved.add(".");
  };
  for (const p of paths) await append(p);
  const sorted = [...resolved].sort(compareNames);
  if (sorted.includes(".")) return undefined;
  // Paths below another listed path add nothing.
  const out: string[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && s.startsWith(last + "/")) continue;
    out.push(s);
  }
  return out;
}

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

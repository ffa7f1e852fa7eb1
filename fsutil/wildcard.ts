// Wildcard sources ("COPY src/*.go /app/", "RUN rm" via FileActionRm with allowWildcard): the
// components from the first one with a wildcard on are matched with Go's filepath.Match.
import { lstat } from "node:fs/promises";
import { globMatch, hasWildcards } from "./glob.ts";
import { relativeToRoot, resolveInRoot } from "./resolve.ts";
import { readDirSorted } from "./walk.ts";

/**
 * Expands wildcards in `pattern` inside `root`. Returns root-relative, "/"-separated paths in name
 * order (an empty list when nothing matches), or `[pattern]` unchanged when it has no wildcard.
 * The directory part before the first wildcard is resolved in the root (symlinks followed, as in a
 * chroot); below it, only real directories are entered, as BuildKit's walk does. Matches are
 * returned as found (a matching symlink is not followed): callers decide whether to follow them.
 */
export async function resolveWildcards(root: string, pattern: string): Promise<string[]> {
  const parts = pattern.split("/").filter((c) => c !== "" && c !== ".");
  const first = parts.findIndex((c) => hasWildcards(c));
  if (first === -1) return [pattern];
  for (const p of parts.slice(first)) globMatch(p, "");
  const base = await resolveInRoot(root, parts.slice(0, first).join("/"));
  const baseRel = relativeToRoot(root, base);
  let candidates: Array<{ abs: string; rel: string }> = [{ abs: base, rel: baseRel }];
  for (let i = first; i < parts.length; i++) {
    const comp = parts[i]!;
    // Walked paths never contain "..", so a ".." after a wildcard matches nothing.
    if (comp === "..") return [];
    const next: Array<{ abs: string; rel: string }> = [];
    for (const c of candidates) {
      const st = await lstat(c.abs).catch(() => undefined);
      if (!st?.isDirectory()) continue;
      for (const name of await readDirSorted(c.abs)) {
        if (!globMatch(comp, name)) continue;
        next.push({ abs: `${c.abs}/${name}`, rel: c.rel === "" ? name : `${c.rel}/${name}` });
      }
    }
    candidates = next;
  }
  return candidates.map((c) => c.rel);
}

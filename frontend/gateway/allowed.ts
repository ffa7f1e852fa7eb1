// Which frontend images a daemon runs (`[frontend] allowed` in buildd.toml, BuildKit's
// allowedRepositories): a repository allows every tag and digest of it, an entry with a tag or
// digest allows exactly that, and "host/path/*" allows every repository below a prefix.
import { normalizeImageRef, parseImageRef } from "../../llb/imageref.ts";

/** True when `source` may run as a frontend; an empty list allows any image. */
export function frontendAllowed(source: string, allowed: readonly string[]): boolean {
  if (allowed.length === 0) return true;
  let ref: ReturnType<typeof parseImageRef>;
  try {
    ref = parseImageRef(source);
  } catch {
    return false;
  }
  const repo = `${ref.domain}/${ref.path}`;
  const full = normalizeImageRef(source);
  for (const entry of allowed) {
    if (entry.endsWith("/*")) {
      const prefix = entry.slice(0, -2);
      let base: string;
      try {
        const p = parseImageRef(prefix);
        base = `${p.domain}/${p.path}`;
      } catch {
        continue;
      }
      if (repo.startsWith(`${base}/`)) return true;
      continue;
    }
    let e: ReturnType<typeof parseImageRef>;
    try {
      e = parseImageRef(entry);
    } catch {
      continue;
    }
    const pinned = entry.includes("@") || entry.lastIndexOf(":") > entry.lastIndexOf("/");
    if (!pinned) {
      if (`${e.domain}/${e.path}` === repo) return true;
    } else if (normalizeImageRef(entry) === full) {
      return true;
    }
  }
  return false;
}

/** Checks the configured list up front: an entry that can never match is a mistake to report, not to ignore. */
export function checkAllowList(allowed: readonly string[]): void {
  for (const entry of allowed) {
    try {
      parseImageRef(entry.endsWith("/*") ? entry.slice(0, -2) : entry);
    } catch (e) {
      throw new Error(
        `frontend.allowed: ${JSON.stringify(entry)} is neither an image repository or reference nor a "prefix/*": ${(e as Error).message}`,
      );
    }
  }
}

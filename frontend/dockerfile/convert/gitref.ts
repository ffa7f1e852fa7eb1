// Is an ADD source a git repository? BuildKit's rules: an ssh/git URL, an scp-like
// "user@host:path", or an http(s) URL whose path ends in ".git"; a "#ref:subdir" fragment picks
// the commit and sub-directory. Anything else is a local path or a plain URL.

/** A git source of ADD. */
export interface GitRef {
  /** The repository address without the fragment. */
  remote: string;
  /** Branch, tag or commit ("" for the default branch). */
  commit: string;
  subdir: string;
  /** Plain http:// or git://, which nothing protects. */
  unencryptedTCP: boolean;
}

const PROTO_RE = /^([a-zA-Z0-9]+):\/\//;
const SCP_RE = /^([a-zA-Z0-9-_]+)@([a-zA-Z0-9-.]+):(.*?)(?:#(.*))?$/;
const GIT_PROTOCOLS = new Set(["http", "https", "ssh", "git"]);

function splitFragment(s: string): [string, string, string] {
  const hash = s.indexOf("#");
  if (hash < 0) return [s, "", ""];
  const fragment = s.slice(hash + 1);
  const colon = fragment.indexOf(":");
  return colon < 0
    ? [s.slice(0, hash), fragment, ""]
    : [s.slice(0, hash), fragment.slice(0, colon), fragment.slice(colon + 1)];
}

/** The git reference `src` names, or undefined when it is not one. */
export function parseGitRef(src: string): GitRef | undefined {
  if (src.startsWith("./") || src.startsWith("../")) return undefined;
  // "github.com/x/y" could be a local directory; BuildKit treats it as one in ADD.
  if (src.startsWith("github.com/")) return undefined;
  const proto = PROTO_RE.exec(src)?.[1]?.toLowerCase();
  if (proto !== undefined) {
    if (!GIT_PROTOCOLS.has(proto)) return undefined;
    const [remote, commit, subdir] = splitFragment(src);
    let path: string;
    try {
      path = new URL(remote).pathname;
    } catch {
      return undefined;
    }
    if ((proto === "http" || proto === "https") && !path.endsWith(".git")) return undefined;
    return { remote, commit, subdir, unencryptedTCP: proto === "http" || proto === "git" };
  }
  const scp = SCP_RE.exec(src);
  if (!scp) return undefined;
  const [remote, commit, subdir] = splitFragment(src);
  return { remote, commit, subdir, unencryptedTCP: false };
}

/** A plain http(s) download (not a git repository). */
export function isHTTPSource(src: string): boolean {
  if (!src.startsWith("http://") && !src.startsWith("https://")) return false;
  return parseGitRef(src) === undefined;
}

// What the git source needs to know about a ref at a remote: `git ls-remote`, read the way
// `git clone --branch` reads a name (branches before tags), with annotated tags peeled.
import { GitSourceError } from "./errors.ts";

/** A ref as the remote advertises it. */
export type RemoteRef = {
  /** "refs/heads/main", "refs/tags/v1", or "HEAD" when the remote's HEAD is detached. */
  name: string;
  /** The commit it points to (an annotated tag peeled). */
  commit: string;
  /** The object the ref names: the tag object for an annotated tag, else the commit. */
  object: string;
};

/** The `git ls-remote` arguments (after the URL) that find `ref`; "" asks for HEAD and its branch. */
export function lsRemotePatterns(ref: string): { symref: boolean; patterns: string[] } {
  if (ref === "" || ref === "HEAD") return { symref: true, patterns: ["HEAD"] };
  if (ref.startsWith("refs/")) return { symref: false, patterns: [ref, `${ref}^{}`] };
  // Explicit names: a bare pattern would also match refs/remotes/x/NAME and omit the peeled line.
  return { symref: false, patterns: [`refs/heads/${ref}`, `refs/tags/${ref}`, `refs/tags/${ref}^{}`] };
}

/** Picks `ref` out of `git ls-remote` output; undefined when the remote does not have it. */
export function pickRemoteRef(ref: string, output: string): RemoteRef | undefined {
  const values = new Map<string, string>();
  let headTarget: string | undefined;
  for (const line of output.split("\n")) {
    const symref = /^ref: (\S+)\tHEAD$/.exec(line);
    if (symref) {
      headTarget = symref[1];
      continue;
    }
    const m = /^([0-9a-f]{40})\t(\S+)$/.exec(line);
    if (m) values.set(m[2]!, m[1]!);
  }
  const at = (name: string): RemoteRef | undefined => {
    const object = values.get(name);
    if (object === undefined) return undefined;
    return { name, object, commit: values.get(`${name}^{}`) ?? object };
  };
  if (ref === "" || ref === "HEAD") {
    const head = at("HEAD");
    if (head === undefined) return undefined;
    return headTarget ? { ...head, name: headTarget } : head;
  }
  if (ref.startsWith("refs/")) return at(ref);
  return at(`refs/heads/${ref}`) ?? at(`refs/tags/${ref}`);
}

/** The error for a ref the remote does not have. */
export function refNotFound(ref: string, remote: string): GitSourceError {
  const what = ref === "" ? "default branch (HEAD)" : `ref ${JSON.stringify(ref)}`;
  return new GitSourceError(
    "not-found",
    `git ${what} not found in ${remote}: check the branch or tag name (git ls-remote ${remote})`,
  );
}

/** Strips user:password from an http(s) remote; they travel as a header instead of in argv. */
export function splitCredentials(remote: string): { url: string; credentials?: string } {
  if (!/^https?:\/\//.test(remote)) return { url: remote };
  const url = new URL(remote);
  if (url.username === "" && url.password === "") return { url: remote };
  const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  url.username = "";
  url.password = "";
  return { url: url.href, credentials };
}

// What a git source op asks for: the remote, the ref, the sub-directory and how to authenticate,
// read from the op's identifier (`git://HOST/PATH#REF:SUBDIR`) and attrs exactly as BuildKit
// writes them, and checked before any of it reaches a git command line or a path.
import { type Digest, digestOf } from "../../util/digest.ts";
import { GitSourceError } from "./errors.ts";

/** A parsed git source op. */
export type GitSourceId = {
  /** The URL git fetches: `git.fullurl` when set, else the identifier's host/path over git://. */
  remote: string;
  /** Branch, tag, full ref name or 40-hex commit; "" means the remote's default branch. */
  ref: string;
  /** A clean relative path ("" for the whole repository); never contains "..". */
  subdir: string;
  keepGitDir: boolean;
  /** Session secret ids for credentials ("" when the op names none). */
  authTokenSecret: string;
  authHeaderSecret: string;
  /** known_hosts lines for ssh remotes ("" when none were given). */
  knownSshHosts: string;
  /** The session's ssh agent id to use for ssh remotes ("" for none). */
  mountSshSock: string;
};

/** Credentials for http(s) remotes, resolved by the caller from session secrets. */
export type GitAuth = {
  /** A token sent as basic auth `x-access-token:TOKEN` (GitHub's convention). */
  token?: string;
  /** A whole Authorization header value, e.g. "Bearer abc"; wins over `token`. */
  header?: string;
};

const SCHEME_RE = /^(https?|git|ssh):\/\//;
// BuildKit's implicit ssh form needs the user: "host:path" could as well be "host:port/path".
const SCP_RE = /^([\w-]+)@([\w.-]+):(?!\/\/)(.+)$/;
const COMMIT_RE = /^[0-9a-f]{40}$/;

/**
 * Reads a git source op. A `git://` identifier without `git.fullurl` is fetched over https, as
 * BuildKit does (`llb.git()` always writes the full URL of a remote that has a scheme).
 */
export function parseGitIdentifier(identifier: string, attrs: Record<string, string> = {}): GitSourceId {
  if (typeof identifier !== "string" || !identifier.startsWith("git://")) {
    throw new GitSourceError(
      "invalid-argument",
      `invalid git source ${JSON.stringify(identifier)}: want git://HOST/PATH[#REF[:SUBDIR]]`,
    );
  }
  const rest = identifier.slice("git://".length);
  const hash = rest.indexOf("#");
  const location = hash < 0 ? rest : rest.slice(0, hash);
  const fragment = hash < 0 ? "" : rest.slice(hash + 1);
  const colon = fragment.indexOf(":");
  const ref = colon < 0 ? fragment : fragment.slice(0, colon);
  const subdir = colon < 0 ? "" : fragment.slice(colon + 1);
  const doing = `reading git source ${JSON.stringify(identifier)}`;
  if (location === "") throw new GitSourceError("invalid-argument", `${doing}: the remote is empty`);

  let remote = attrs["git.fullurl"];
  if (remote !== undefined && remote !== "") {
    // BuildKit: a full URL without a scheme (and not scp-like) is an https URL. One with
    // another scheme (file://, ext::) is refused by checkRemote rather than rewritten.
    const foreign = /^[a-z][a-z0-9+.-]*(:\/\/|::)/i.test(remote);
    if (!foreign && !isScpLike(remote)) remote = `https://${remote}`;
  } else {
    remote = isScpLike(location) ? location : `https://${location}`;
  }
  return {
    remote: checkRemote(remote, doing),
    ref: checkRef(ref, doing),
    subdir: cleanSubdir(subdir, doing),
    keepGitDir: attrs["git.keepgitdir"] === "true",
    authTokenSecret: attrs["git.authtokensecret"] ?? "",
    authHeaderSecret: attrs["git.authheadersecret"] ?? "",
    knownSshHosts: attrs["git.knownsshhosts"] ?? "",
    mountSshSock: attrs["git.mountsshsock"] ?? "",
  };
}

/**
 * The session secrets to try for credentials, best first, as BuildKit does: a header or token
 * for this remote's host ("GIT_AUTH_HEADER.github.com"), then the plain ids.
 */
export function gitAuthSecretNames(id: GitSourceId): { name: string; kind: "header" | "token" }[] {
  const host = remoteHost(id.remote);
  const names: { name: string; kind: "header" | "token" }[] = [];
  if (host !== undefined) {
    if (id.authHeaderSecret) names.push({ name: `${id.authHeaderSecret}.${host}`, kind: "header" });
    if (id.authTokenSecret) names.push({ name: `${id.authTokenSecret}.${host}`, kind: "token" });
  }
  if (id.authHeaderSecret) names.push({ name: id.authHeaderSecret, kind: "header" });
  if (id.authTokenSecret) names.push({ name: id.authTokenSecret, kind: "token" });
  return names;
}

/** Looks the source's credentials up through `getSecret` (e.g. the session); the first one found wins. */
export async function resolveGitAuth(
  id: GitSourceId,
  getSecret: (name: string) => Promise<Uint8Array | undefined>,
): Promise<GitAuth | undefined> {
  for (const { name, kind } of gitAuthSecretNames(id)) {
    const value = await getSecret(name);
    if (value === undefined) continue;
    const text = Buffer.from(value).toString("utf8").trim();
    return kind === "header" ? { header: text } : { token: text };
  }
  return undefined;
}

/**
 * The identity of a checkout for the worker's cache: the commit, whether `.git` is kept and the
 * sub-directory (BuildKit's key is `COMMIT[.git][:SUBDIR]`; this is its digest).
 */
export function gitCacheKey(c: { commit: string; keepGitDir: boolean; subdir: string }): Digest {
  let key = c.commit;
  if (c.keepGitDir) key += ".git";
  if (c.subdir) key += `:${c.subdir}`;
  return digestOf(key);
}

/** True for a full 40-hex commit id. */
export function isCommitId(ref: string): boolean {
  return COMMIT_RE.test(ref);
}

/** True for scp-like ssh addresses ("git@github.com:org/repo.git"). */
export function isScpLike(remote: string): boolean {
  return !remote.includes("://") && SCP_RE.test(remote);
}

/** The host of a remote URL or scp-like address; undefined when it has none. */
export function remoteHost(remote: string): string | undefined {
  if (isScpLike(remote)) return SCP_RE.exec(remote)![2];
  try {
    return new URL(remote).host || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Accepts only remotes git fetches over the network: http(s), git, ssh URLs and scp-like ssh
 * addresses. `file://`, local paths and `ext::` would let a build read the daemon's host.
 */
export function checkRemote(remote: string, doing: string): string {
  const bad = (why: string) =>
    new GitSourceError("invalid-argument", `${doing}: invalid git remote ${JSON.stringify(remote)}: ${why}`);
  if (typeof remote !== "string" || remote === "") throw bad("it is empty");
  if (/[\x00-\x20\x7f]/.test(remote)) throw bad("it contains spaces or control characters");
  if (remote.startsWith("-")) throw bad("it starts with '-'");
  // A host like "-oProxyCommand=..." would reach ssh as an option.
  if (remoteHost(remote)?.startsWith("-")) throw bad("its host starts with '-'");
  if (isScpLike(remote)) return remote;
  if (!SCHEME_RE.test(remote)) throw bad("want an https://, http://, git:// or ssh:// URL or user@host:path");
  let url: URL;
  try {
    url = new URL(remote);
  } catch {
    throw bad("it is not a valid URL");
  }
  if (url.hostname === "") throw bad("it has no host");
  if (url.hash !== "") throw bad("it has a #fragment; put the ref in the identifier instead");
  return remote;
}

/** Accepts "", a commit id, or a name `git check-ref-format` would accept (plus HEAD). */
export function checkRef(ref: string, doing: string): string {
  if (ref === "" || isCommitId(ref)) return ref;
  const valid =
    !/[\x00-\x20\x7f~^:?*[\\]/.test(ref) &&
    !ref.startsWith("-") &&
    !ref.startsWith("/") &&
    !ref.endsWith("/") &&
    !ref.endsWith(".") &&
    !ref.includes("..") &&
    !ref.includes("//") &&
    !ref.includes("@{") &&
    ref !== "@" &&
    ref.split("/").every((c) => !c.startsWith(".") && !c.endsWith(".lock"));
  if (!valid) {
    throw new GitSourceError(
      "invalid-argument",
      `${doing}: invalid git ref ${JSON.stringify(ref)}: want a branch, tag, full ref name or 40-hex commit`,
    );
  }
  return ref;
}

/** Cleans a sub-directory: "", "." and "/" mean the whole repository; ".." is refused. */
export function cleanSubdir(subdir: string, doing: string): string {
  const parts = subdir.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..") || /[\x00]/.test(subdir)) {
    throw new GitSourceError(
      "invalid-argument",
      `${doing}: invalid sub-directory ${JSON.stringify(subdir)}: it must stay inside the repository (no "..")`,
    );
  }
  return parts.join("/");
}

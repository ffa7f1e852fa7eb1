// Docker image references: parsing and the normalized form ("busybox" is
// "docker.io/library/busybox:latest") that LLB identifiers and registry clients use.

export interface ImageRef {
  /** Registry host, with port if any: "docker.io", "127.0.0.1:5000". */
  domain: string;
  /** Repository path inside the registry: "library/busybox". */
  path: string;
  tag?: string;
  digest?: string;
}

export const DEFAULT_DOMAIN = "docker.io";
const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const DOMAIN_RE =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$/;

/** Parses and normalizes a reference; throws a one-line error naming the reference when malformed. */
export function parseImageRef(ref: string): ImageRef {
  const bad = (why: string) => new Error(`invalid image reference ${JSON.stringify(ref)}: ${why}`);
  if (ref === "" || ref.length > 4096) throw bad("empty or too long");
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST_RE.test(digest)) throw bad("malformed digest");
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw bad("malformed tag");
  }
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (
      first.includes(".") ||
      first.includes(":") ||
      first === "localhost" ||
      first !== first.toLowerCase()
    ) {
      domain = first;
      path = rest.slice(slash + 1);
      if (!DOMAIN_RE.test(domain)) throw bad("malformed registry host");
    }
  }
  if (domain === "index.docker.io") domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes("/")) path = `library/${path}`;
  if (path === "") throw bad("missing repository name");
  for (const c of path.split("/")) {
    if (!COMPONENT_RE.test(c))
      throw bad(
        `repository name component ${JSON.stringify(c)} must be lowercase letters, digits and separators`,
      );
  }
  if (tag === undefined && digest === undefined) tag = "latest";
  return { domain, path, tag, digest };
}

/** The canonical string of a reference: domain/path[:tag][@digest]. */
export function formatImageRef(r: ImageRef): string {
  return `${r.domain}/${r.path}${r.tag ? `:${r.tag}` : ""}${r.digest ? `@${r.digest}` : ""}`;
}

/** Shorthand: the canonical form of a user-written reference. */
export function normalizeImageRef(ref: string): string {
  return formatImageRef(parseImageRef(ref));
}

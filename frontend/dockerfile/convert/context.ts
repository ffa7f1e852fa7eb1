// The build context and named contexts: .dockerignore patterns for the context transfer, and
// `context:NAME=...` values (an image, a git repository, a URL, another local directory) that
// replace a stage or an image by name.
import {
  git,
  http,
  image,
  normalizeImageRef,
  parseImageRef,
  type PlatformSpec,
  type State,
} from "../../../llb/index.ts";
import type { DockerImage } from "./image.ts";
import { parseGitRef } from "./gitref.ts";
import { formatPlatformSpec } from "./platform.ts";

/** What the caller's local-context function is asked for. */
export interface LocalContextOptions {
  /** "context" for the main build context, or the name of a `local:NAME` named context. */
  name: string;
  /** .dockerignore patterns (with "!" exceptions), relative to the context root. */
  exclude: string[];
  /** The only paths the build reads ("src", "go.mod"); empty means everything. */
  followPaths: string[];
}

/** A named context: a BuildKit-style value ("docker-image://alpine:3", "local:src", a git or
 * http URL), or a state (and optional image config) the caller built. */
export type NamedContextValue = string | { state: State; image?: DockerImage };

/** .dockerignore text to patterns, cleaned like BuildKit's ignorefile reader. */
export function parseDockerignore(text: string | Uint8Array): string[] {
  const src = typeof text === "string" ? text : new TextDecoder().decode(text);
  const out: string[] = [];
  for (const [i, rawLine] of src.split("\n").entries()) {
    let line = i === 0 ? rawLine.replace(/^\uFEFF/, "") : rawLine;
    if (line.startsWith("#")) continue;
    line = line.trim();
    if (line === "") continue;
    const invert = line.startsWith("!");
    if (invert) line = line.slice(1).trim();
    if (line !== "") {
      line = cleanPath(line);
      if (line.length > 1 && line.startsWith("/")) line = line.slice(1);
    }
    out.push(invert ? `!${line}` : line);
  }
  return out;
}

/** Go's path.Clean. */
export function cleanPath(p: string): string {
  if (p === "") return ".";
  const rooted = p.startsWith("/");
  const parts: string[] = [];
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (parts.length > 0 && parts[parts.length - 1] !== "..") parts.pop();
      else if (!rooted) parts.push("..");
      continue;
    }
    parts.push(seg);
  }
  const joined = parts.join("/");
  if (rooted) return `/${joined}`;
  return joined === "" ? "." : joined;
}

/** The short name Docker shows for an image ("alpine", "alpine:3", "ghcr.io/x/y"). */
export function familiarName(ref: string): string {
  const r = parseImageRef(ref);
  let name = r.domain === "docker.io" ? r.path.replace(/^library\//, "") : `${r.domain}/${r.path}`;
  if (r.tag && (r.tag !== "latest" || r.digest)) name += `:${r.tag}`;
  if (r.digest) name += `@${r.digest}`;
  return name;
}

/** The named-context keys that may replace `name` ("alpine::linux/amd64", then "alpine"). */
export function namedContextKeys(name: string, platform: PlatformSpec): string[] {
  let short = name;
  try {
    short = familiarName(name);
  } catch {
    // not an image reference: use it as written
  }
  return [`${short}::${formatPlatformSpec(platform)}`, short];
}

/** A resolved named context. */
export interface ResolvedContext {
  state: State;
  image?: DockerImage;
  /** For docker-image:// values: the reference whose config must be resolved. */
  imageRef?: string;
}

/**
 * Turns a named-context value into a state. `local` builds `local:NAME` values; image configs of
 * docker-image:// values are resolved by the caller (imageRef is returned for that).
 */
export function resolveNamedContext(
  key: string,
  value: NamedContextValue,
  platform: PlatformSpec,
  local: (opts: LocalContextOptions) => State,
): ResolvedContext {
  if (typeof value !== "string") return { state: value.state, image: value.image };
  const name = `[context ${key}]`;
  if (value.startsWith("docker-image://")) {
    const ref = normalizeImageRef(value.slice("docker-image://".length));
    return { state: image(ref, { platform, customName: `${name} ${ref}` }), imageRef: ref };
  }
  if (value.startsWith("local:")) {
    return { state: local({ name: value.slice("local:".length), exclude: [], followPaths: [] }) };
  }
  const gitRef = parseGitRef(value.replace(/^git\+/, ""));
  if (gitRef) {
    return {
      state: git(gitRef.remote, gitRef.commit, {
        subdir: gitRef.subdir || undefined,
        customName: `${name} ${value}`,
      }),
    };
  }
  if (value.startsWith("http://") || value.startsWith("https://")) {
    return { state: http(value, { customName: `${name} ${value}` }) };
  }
  throw new Error(
    `unsupported context source ${JSON.stringify(value)} for ${key}: want docker-image://, local:, a git or an http(s) URL`,
  );
}

// Source ops: where every build starts. Identifiers and attributes follow BuildKit's so that
// the same source written by either client has the same digest.
import type { Op } from "../proto/gen/pb/ops_pb.ts";
import { normalizeImageRef } from "./imageref.ts";
import { State } from "./state.ts";
import { type MarshalContext, type OpOptions, sortedRecord, Vertex } from "./vertex.ts";

class SourceVertex extends Vertex {
  readonly inputs = [];
  private readonly identifier: string;
  private readonly attrs: Record<string, string>;
  private readonly caps: string[];
  private readonly withPlatform: boolean;

  constructor(
    identifier: string,
    attrs: Record<string, string>,
    caps: string[],
    withPlatform: boolean,
    options?: OpOptions,
  ) {
    super(options);
    this.identifier = identifier;
    this.attrs = attrs;
    this.caps = caps;
    this.withPlatform = withPlatform;
  }

  protected build(_ctx: MarshalContext): { op: Pick<Op, "op">; caps: string[]; withPlatform: boolean } {
    return {
      op: {
        op: {
          case: "source",
          value: { $typeName: "pb.SourceOp", identifier: this.identifier, attrs: sortedRecord(this.attrs) },
        },
      },
      caps: this.caps,
      withPlatform: this.withPlatform,
    };
  }
}

function sourceState(v: SourceVertex, platform?: OpOptions["platform"]): State {
  const s = new State({ vertex: v, index: 0 });
  return platform ? s.platform(platform) : s;
}

export interface ImageOptions extends OpOptions {
  /** "default" resolves the tag at the registry, "pull" always pulls, "local" prefers a local copy. */
  resolveMode?: "default" | "pull" | "local";
}

/** A registry image, by any reference Docker accepts ("busybox", "127.0.0.1:5000/app:1"). */
export function image(ref: string, opts: ImageOptions = {}): State {
  const attrs: Record<string, string> = {};
  if (opts.resolveMode && opts.resolveMode !== "default") attrs["image.resolvemode"] = opts.resolveMode;
  const v = new SourceVertex(`docker-image://${normalizeImageRef(ref)}`, attrs, ["source.image"], true, opts);
  return sourceState(v, opts.platform);
}

export interface LocalOptions extends OpOptions {
  /** Only paths matching these patterns are transferred. */
  include?: string[];
  /** Paths matching these (.dockerignore syntax) are not transferred. */
  exclude?: string[];
  /** Only these paths (and what they need) are walked. */
  followPaths?: string[];
  /** Lets builds of different sessions reuse one synced copy. */
  sharedKeyHint?: string;
  sessionId?: string;
  /** Distinguishes otherwise identical local sources (BuildKit sets a per-client id). */
  uniqueId?: string;
}

/** A directory of the client, transferred through the session (`buildctl --local name=path`). */
export function local(name: string, opts: LocalOptions = {}): State {
  if (name === "" || /[/\s]/.test(name)) throw new Error(`invalid local source name ${JSON.stringify(name)}`);
  const attrs: Record<string, string> = {};
  const caps = ["source.local"];
  const add = (key: string, value: string | undefined, cap: string) => {
    if (value === undefined) return;
    attrs[key] = value;
    caps.push(cap);
  };
  add("local.unique", opts.uniqueId, "source.local.unique");
  add("local.session", opts.sessionId, "source.local.sessionid");
  add("local.includepattern", opts.include && goJson(opts.include), "source.local.includepatterns");
  add("local.excludepatterns", opts.exclude && goJson(opts.exclude), "source.local.excludepatterns");
  add("local.followpaths", opts.followPaths && goJson(opts.followPaths), "source.local.followpaths");
  add("local.sharedkeyhint", opts.sharedKeyHint, "source.local.sharedkeyhint");
  return sourceState(new SourceVertex(`local://${name}`, attrs, caps, false, opts));
}

export interface GitOptions extends OpOptions {
  keepGitDir?: boolean;
  /** A sub-directory of the repository to use as the result. */
  subdir?: string;
  /** Secret ids for credentials (BuildKit's defaults). */
  authTokenSecret?: string;
  authHeaderSecret?: string;
  knownSshHosts?: string;
  /** The ssh agent id to use for ssh remotes. */
  mountSshSock?: string;
}

/** A git repository at a branch, tag or commit. `remote` is a URL or an scp-like ssh address. */
export function git(remote: string, ref = "", opts: GitOptions = {}): State {
  const { id, isSsh, fullUrl } = gitIdentity(remote);
  let identifier = `git://${id}`;
  if (ref !== "" || opts.subdir) identifier += `#${ref}`;
  if (opts.subdir) identifier += `:${opts.subdir}`;
  const attrs: Record<string, string> = {
    "git.authtokensecret": opts.authTokenSecret ?? "GIT_AUTH_TOKEN",
    "git.authheadersecret": opts.authHeaderSecret ?? "GIT_AUTH_HEADER",
  };
  const caps = ["source.git"];
  if (opts.keepGitDir) {
    attrs["git.keepgitdir"] = "true";
    caps.push("source.git.keepgitdir");
  }
  if (fullUrl !== undefined) {
    attrs["git.fullurl"] = fullUrl;
    caps.push("source.git.fullurl");
  }
  if (opts.knownSshHosts !== undefined) {
    attrs["git.knownsshhosts"] = opts.knownSshHosts;
    caps.push("source.git.knownsshhosts");
  }
  if (isSsh) {
    attrs["git.mountsshsock"] = opts.mountSshSock ?? "default";
    caps.push("source.git.mountsshsock");
  }
  return sourceState(new SourceVertex(identifier, attrs, caps, false, opts));
}

/** Splits a git remote into BuildKit's scheme-less identity plus the full URL when it had a scheme. */
function gitIdentity(remote: string): { id: string; isSsh: boolean; fullUrl?: string } {
  const scp = /^([\w.-]+@)?([\w.-]+):(?!\/\/)(.+)$/.exec(remote);
  if (scp && !remote.includes("://")) {
    return { id: `${scp[2]}/${scp[3]!.replace(/^\//, "")}`, isSsh: true, fullUrl: remote };
  }
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.+)$/.exec(remote);
  if (!m) return { id: remote, isSsh: false };
  const [, scheme, rest] = m;
  const withoutUser = rest!.replace(/^[^@/]*@/, "");
  if (scheme === "git") return { id: withoutUser, isSsh: false, fullUrl: remote };
  return { id: withoutUser, isSsh: scheme === "ssh", fullUrl: remote };
}

export interface HttpOptions extends OpOptions {
  /** Expected "sha256:..." of the download; a mismatch fails the build. */
  checksum?: string;
  filename?: string;
  /** File mode of the downloaded file. */
  chmod?: number;
  uid?: number;
  gid?: number;
}

/** A file downloaded over HTTP(S). */
export function http(url: string, opts: HttpOptions = {}): State {
  if (!/^https?:\/\//.test(url))
    throw new Error(`invalid http source ${JSON.stringify(url)}: want an http:// or https:// URL`);
  const attrs: Record<string, string> = {};
  const caps = ["source.http"];
  if (opts.checksum) {
    attrs["http.checksum"] = opts.checksum;
    caps.push("source.http.checksum");
  }
  if (opts.filename) attrs["http.filename"] = opts.filename;
  if (opts.chmod !== undefined) {
    attrs["http.perm"] = `0${opts.chmod.toString(8)}`;
    caps.push("source.http.perm");
  }
  if (opts.uid !== undefined || opts.gid !== undefined) {
    if (opts.uid !== undefined) attrs["http.uid"] = String(opts.uid);
    if (opts.gid !== undefined) attrs["http.gid"] = String(opts.gid);
    // BuildKit's capability name carries this spelling; it is part of the wire format.
    caps.push("soruce.http.uidgid");
  }
  return sourceState(new SourceVertex(url, attrs, caps, false, opts));
}

export interface OCILayoutOptions extends OpOptions {
  sessionId?: string;
  storeId?: string;
}

/** An image from an OCI layout ("name@sha256:..."), on the client or in the daemon's store. */
export function ociLayout(ref: string, opts: OCILayoutOptions = {}): State {
  const attrs: Record<string, string> = {};
  if (opts.sessionId) attrs["oci.session"] = opts.sessionId;
  if (opts.storeId) attrs["oci.store"] = opts.storeId;
  return sourceState(
    new SourceVertex(`oci-layout://${ref}`, attrs, ["source.ocilayout"], true, opts),
    opts.platform,
  );
}

/** Go's json.Marshal of a string list: like JSON.stringify but with <, > and & escaped. */
function goJson(list: string[]): string {
  return JSON.stringify(list).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
}

// The OCI distribution API client of the daemon: one per daemon, shared by every build, so
// connections, tokens and in-flight downloads are shared too. See README.md for the behaviour
// (auth, retries, mirrors, caching); the pieces are auth.ts, http.ts, request.ts, pull.ts and
// push.ts.
import type { RegistryConfig } from "../../control/config.ts";
import type { ContentStore } from "../../content/store.ts";
import type { Committed } from "../../content/writer.ts";
import { formatImageRef, parseImageRef } from "../../llb/imageref.ts";
import type { Digest } from "../../util/digest.ts";
import { logger } from "../../util/log.ts";
import { Authorizer, type CredentialsProvider } from "./auth.ts";
import { RegistryError } from "./errors.ts";
import { HttpTransport } from "./http.ts";
import type { Descriptor, ImageConfigFile } from "./manifest.ts";
import { hostPlatform, normalizePlatform, type Platform, parsePlatform } from "./platform.ts";
import {
  type FetchBlobOptions,
  fetchBlob,
  ProgressFanout,
  type RepoRef,
  type ResolvedImage,
  fetchRootManifest,
  resolveImage,
} from "./pull.ts";
import {
  type BlobOpener,
  DEFAULT_CHUNK_SIZE,
  type PushBlobOptions,
  type PushBlobResult,
  type PushManifestOptions,
  pushBlob,
  pushManifest,
} from "./push.ts";
import { DEFAULT_RETRY, type Endpoint, type Operation, Requester, type RetryPolicy } from "./request.ts";

/** How the daemon configures its client. */
export type RegistryClientOptions = {
  /** Per-host settings from buildd.toml's [registry."host"] tables: http, insecure, ca, mirrors. */
  hosts?: Record<string, RegistryConfig>;
  /** Default credentials lookup; operations may pass their own (their build's session). */
  credentials?: CredentialsProvider;
  /** Where manifests and image configs are cached; a digest-pinned resolve then needs no network. */
  store?: ContentStore;
  retry?: Partial<RetryPolicy>;
  /** A request whose connection is silent this long fails (and is retried). Default 120 s. */
  idleTimeoutMs?: number;
  /** Blobs above this size are pushed in PATCH chunks of this size. Default 64 MiB. */
  chunkSize?: number;
  userAgent?: string;
};

/** What every operation may carry: a signal, and the credentials of the build asking. */
export type OperationOptions = { signal?: AbortSignal; credentials?: CredentialsProvider };

/** Options of resolving a reference. */
export type ResolveOptions = OperationOptions & {
  /** The platform to pick from an index: "linux/arm64" or an object. Default: this machine's. */
  platform?: Platform | string;
  /** A content-store lease that keeps the cached manifests and config. */
  lease?: string;
};

/** What frontends need from an image: its config, and the digest to pin the reference to. */
export type ImageConfigResult = {
  ref: string;
  /** The digest the reference names (the index's for a multi-platform image): pin `ref@digest` to it. */
  digest: Digest;
  manifestDigest: Digest;
  config: ImageConfigFile;
  configDescriptor: Descriptor;
  platform: Platform;
};

const log = logger({ component: "registry" });

/** Pulls from and pushes to registries; close it when the daemon stops. */
export class RegistryClient {
  #transport: HttpTransport;
  #authorizer: Authorizer;
  #requester: Requester;
  #hosts: Record<string, RegistryConfig>;
  #credentials: CredentialsProvider | undefined;
  #store: ContentStore | undefined;
  #chunkSize: number;
  #progress = new ProgressFanout();

  constructor(opts: RegistryClientOptions = {}) {
    this.#hosts = opts.hosts ?? {};
    this.#transport = new HttpTransport(this.#hosts, {
      idleTimeoutMs: opts.idleTimeoutMs,
      userAgent: opts.userAgent,
    });
    this.#authorizer = new Authorizer(this.#transport);
    this.#requester = new Requester(this.#transport, { ...DEFAULT_RETRY, ...opts.retry });
    this.#credentials = opts.credentials;
    this.#store = opts.store;
    this.#chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  }

  /**
   * Resolves a reference (tag or digest) to the manifest for a platform and its config, with
   * every byte verified against its digest. Manifests and configs are cached in the store.
   */
  async resolve(ref: string, opts: ResolveOptions = {}): Promise<ResolvedImage> {
    const parsed = parseRef(ref);
    const name = formatImageRef(parsed);
    const platform = wantedPlatform(opts.platform);
    const op = this.#op(`resolving ${name}`, parsed, opts);
    return resolveImage(this.#pullContext(), parsed, name, platform, op, opts.lease);
  }

  /**
   * The manifest or index a reference names, as raw verified bytes (cached in the store): for
   * artifacts that are not images, such as an exported build cache.
   */
  async fetchManifest(
    ref: string,
    opts: OperationOptions & { lease?: string } = {},
  ): Promise<{ bytes: Buffer; digest: Digest; mediaType: string }> {
    const parsed = parseRef(ref);
    const op = this.#op(`fetching the manifest of ${formatImageRef(parsed)}`, parsed, opts);
    return fetchRootManifest(this.#pullContext(), parsed, op, opts.lease);
  }

  /** The image config frontends read (Env, WorkingDir, User, Entrypoint, Cmd, OnBuild, Labels…). */
  async resolveImageConfig(ref: string, opts: ResolveOptions = {}): Promise<ImageConfigResult> {
    const r = await this.resolve(ref, opts);
    return {
      ref: r.ref,
      digest: r.rootDigest,
      manifestDigest: r.digest,
      config: r.config,
      configDescriptor: r.configDescriptor,
      platform: r.platform,
    };
  }

  /** Downloads a blob of `ref`'s repository into the store (once, however many ask at the same time). */
  async fetchBlob(
    ref: string,
    desc: Descriptor,
    opts: FetchBlobOptions & OperationOptions,
  ): Promise<Committed> {
    const parsed = parseRef(ref);
    const op = this.#op(`pulling ${describeBlob(desc)} of ${formatImageRef(parsed)}`, parsed, opts);
    return fetchBlob(this.#pullContext(opts.store), parsed, desc, opts, op, this.#progress);
  }

  /** Pushes a blob to `ref`'s repository unless it is there, mounting it from `mountFrom` when possible. */
  async pushBlob(
    ref: string,
    desc: Descriptor,
    open: BlobOpener,
    opts: PushBlobOptions & OperationOptions = {},
  ): Promise<PushBlobResult> {
    const parsed = parseRef(ref);
    const op = this.#op(`pushing ${describeBlob(desc)} to ${parsed.domain}/${parsed.path}`, parsed, opts);
    return pushBlob(this.#requester, parsed, desc, open, opts, this.#chunkSize, op);
  }

  /** Pushes manifest (or index) bytes under `opts.tag`, the reference's tag, or its own digest; returns the digest. */
  async pushManifest(
    ref: string,
    mediaType: string,
    bytes: Buffer,
    opts: PushManifestOptions & OperationOptions = {},
  ): Promise<Digest> {
    const parsed = parseRef(ref);
    const op = this.#op(`pushing the manifest of ${formatImageRef(parsed)}`, parsed, opts);
    return pushManifest(this.#requester, parsed, mediaType, bytes, opts, op);
  }

  /** Closes idle connections. */
  close(): void {
    this.#transport.close();
  }

  #op(doing: string, ref: RepoRef, opts: OperationOptions): Operation {
    return {
      doing,
      image: `${ref.domain}/${ref.path}`,
      auth: this.#authorizer.session(opts.credentials ?? this.#credentials),
      signal: opts.signal,
    };
  }

  #pullContext(store = this.#store) {
    return {
      requester: this.#requester,
      store,
      endpoints: (domain: string, repo: string) => this.#endpoints(domain, repo),
    };
  }

  /** Mirrors of `domain` first (each a host, configured like any other), then `domain` itself. */
  #endpoints(domain: string, repo: string): Endpoint[] {
    const out: Endpoint[] = [];
    for (const mirror of this.#hosts[domain]?.mirrors ?? []) {
      let host: string;
      try {
        const url = new URL(mirror.includes("://") ? mirror : `https://${mirror}`);
        host = url.host;
        if (url.pathname !== "/" && url.pathname !== "")
          log.warn("registry mirror path ignored", { mirror, host });
      } catch {
        log.warn("invalid registry mirror ignored", { domain, mirror });
        continue;
      }
      if (host !== domain) out.push({ host, repo, mirror: true });
    }
    out.push({ host: domain, repo, mirror: false });
    return out;
  }
}

function parseRef(ref: string): RepoRef & { domain: string; path: string } {
  try {
    return parseImageRef(ref);
  } catch (e) {
    throw new RegistryError("invalid", (e as Error).message, { cause: e });
  }
}

function wantedPlatform(p: Platform | string | undefined): Platform {
  if (p === undefined) return hostPlatform();
  if (typeof p !== "string") return normalizePlatform(p);
  try {
    return parsePlatform(p);
  } catch (e) {
    throw new RegistryError("invalid", (e as Error).message, { cause: e });
  }
}

function describeBlob(desc: Descriptor): string {
  const what = /config/.test(desc.mediaType)
    ? "config"
    : /manifest|index/.test(desc.mediaType)
      ? "manifest"
      : "layer";
  return `${what} ${desc.digest}`;
}

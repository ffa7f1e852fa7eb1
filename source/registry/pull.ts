// Pulling: a reference to a verified manifest for one platform and its config, and layer
// blobs into the content store. Every byte is checked against the digest that named it: a tag's
// manifest against the registry's Docker-Content-Digest, an index entry against its descriptor,
// blobs by the store at commit.
import type { ContentStore } from "../../content/store.ts";
import { type Digest, digestOf, isDigest } from "../../util/digest.ts";
import { logger } from "../../util/log.ts";
import { RegistryError } from "./errors.ts";
import { type HttpResponse, isTransientNetworkError, readBody } from "./http.ts";
import {
  type Descriptor,
  type ImageConfigFile,
  type ImageManifest,
  isIndexMediaType,
  MANIFEST_ACCEPT,
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  type ParsedManifest,
  parseImageConfig,
  parseManifest,
} from "./manifest.ts";
import { bestPlatformMatch, formatPlatform, type Platform } from "./platform.ts";
import { type Endpoint, networkError, type Operation, type Requester, statusError } from "./request.ts";

/** What pulling needs from the client. */
export type PullContext = {
  requester: Requester;
  /** Where manifests and configs are cached (and read from before the network), if anywhere. */
  store?: ContentStore;
  /** Mirrors first, then the registry itself. */
  endpoints(domain: string, repo: string): Endpoint[];
};

/** A reference resolved to one platform's manifest, config and layers. */
export type ResolvedImage = {
  /** The normalized reference ("docker.io/library/busybox:latest"). */
  ref: string;
  /** The digest the reference names: the index's for a multi-platform image, else the manifest's. */
  rootDigest: Digest;
  /** The digest of the chosen platform's manifest. */
  digest: Digest;
  /** Set when the reference names an index (or manifest list). */
  indexDigest?: Digest;
  mediaType: string;
  manifest: ImageManifest;
  /** The manifest's descriptor (with the platform, when it came from an index). */
  manifestDescriptor: Descriptor;
  config: ImageConfigFile;
  configDescriptor: Descriptor;
  layers: Descriptor[];
  platform: Platform;
};

/** Options of fetching a blob into the store. */
export type FetchBlobOptions = {
  store: ContentStore;
  lease?: string;
  onProgress?: (current: number, total: number) => void;
  signal?: AbortSignal;
};

/** The repository in a parsed reference, with its host. */
export type RepoRef = { domain: string; path: string; tag?: string; digest?: string };

const MAX_INDEX_DEPTH = 4;
const ATTESTATION = "attestation-manifest";
/** The containerd label that records where a blob came from, which cross-repository mounts use. */
export const SOURCE_LABEL_PREFIX = "containerd.io/distribution.source.";
const log = logger({ component: "registry" });

/** Resolves `ref` to the manifest and config for `platform`, from the store when it has them. */
export async function resolveImage(
  ctx: PullContext,
  ref: RepoRef,
  name: string,
  platform: Platform,
  op: Operation,
  lease: string | undefined,
): Promise<ResolvedImage> {
  const endpoints = ctx.endpoints(ref.domain, ref.path);
  const labels = sourceLabels(ref);
  const root = await resolveRoot(ctx, endpoints, ref, op, lease, labels);
  let parsed = parseManifest(root.bytes, root.contentType, op.doing);
  let digest = root.digest;
  let indexDigest: Digest | undefined;
  let manifestDescriptor: Descriptor = { mediaType: parsed.mediaType, digest, size: root.bytes.length };
  for (let depth = 0; parsed.kind === "index"; depth++) {
    if (depth >= MAX_INDEX_DEPTH)
      throw new RegistryError("unsupported", `${op.doing}: indexes nested deeper than ${MAX_INDEX_DEPTH}`);
    indexDigest ??= digest;
    const chosen = choosePlatform(parsed, platform, digest, op);
    const child = await manifestByDigest(ctx, endpoints, chosen.digest, op, lease, labels);
    if (child.bytes.length !== chosen.size) {
      throw new RegistryError(
        "digest-mismatch",
        `${op.doing}: the manifest ${chosen.digest} has ${child.bytes.length} bytes but the index says ${chosen.size}`,
      );
    }
    parsed = parseManifest(child.bytes, chosen.mediaType || child.contentType, op.doing);
    digest = chosen.digest;
    manifestDescriptor = chosen;
  }
  const manifest = parsed.manifest;
  const configBytes = await smallBlob(
    ctx,
    endpoints,
    manifest.config,
    MAX_CONFIG_BYTES,
    "image config",
    op,
    lease,
    labels,
  );
  const config = parseImageConfig(configBytes, `${op.doing}: config ${manifest.config.digest}`);
  const diffIDs = config.rootfs?.diff_ids;
  if (Array.isArray(diffIDs) && diffIDs.length !== manifest.layers.length) {
    throw new RegistryError(
      "invalid",
      `${op.doing}: the image config lists ${diffIDs.length} layer diff IDs but the manifest ${digest} has ${manifest.layers.length} layers`,
    );
  }
  const chosenPlatform: Platform = manifestDescriptor.platform ?? {
    os: config.os,
    architecture: config.architecture,
    ...(config.variant ? { variant: config.variant } : {}),
  };
  const resolved: ResolvedImage = {
    ref: name,
    rootDigest: indexDigest ?? digest,
    digest,
    mediaType: parsed.mediaType,
    manifest,
    manifestDescriptor,
    config,
    configDescriptor: manifest.config,
    layers: manifest.layers,
    platform: chosenPlatform,
  };
  if (indexDigest !== undefined) resolved.indexDigest = indexDigest;
  return resolved;
}

/**
 * The root manifest or index of `ref` as stored, verified against its digest but not
 * interpreted: for artifacts that are not images (build cache manifests and indexes).
 */
export async function fetchRootManifest(
  ctx: PullContext,
  ref: RepoRef,
  op: Operation,
  lease: string | undefined,
): Promise<{ bytes: Buffer; digest: Digest; mediaType: string }> {
  const m = await resolveRoot(ctx, ctx.endpoints(ref.domain, ref.path), ref, op, lease, sourceLabels(ref));
  let declared: unknown;
  try {
    declared = (JSON.parse(m.bytes.toString("utf8")) as { mediaType?: unknown }).mediaType;
  } catch {
    throw new RegistryError("invalid", `${op.doing}: the manifest ${m.digest} is not JSON`);
  }
  const mediaType = typeof declared === "string" ? declared : (m.contentType?.split(";")[0]?.trim() ?? "");
  return { bytes: m.bytes, digest: m.digest, mediaType };
}

/**
 * Downloads a blob into the store unless it is there: concurrent fetches of one digest share
 * one download (the store coalesces them), a partial download left by a failure resumes with
 * a Range request, and the store verifies size and digest before the blob exists.
 */
export async function fetchBlob(
  ctx: PullContext,
  ref: RepoRef,
  desc: Descriptor,
  opts: FetchBlobOptions,
  op: Operation,
  progress: ProgressFanout,
): Promise<{ digest: Digest; size: number }> {
  const endpoints = ctx.endpoints(ref.domain, ref.path);
  const stopListening = progress.listen(desc.digest, opts.onProgress);
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        const ingesting = opts.store.ingest(
          desc,
          (offset) => openBlob(ctx, endpoints, desc, offset, op, progress),
          {
            lease: opts.lease,
            labels: sourceLabels(ref),
          },
        );
        // A caller waiting on another build's download of this blob must still be cancellable.
        const committed = await abortable(ingesting, op.signal);
        opts.onProgress?.(desc.size, desc.size);
        return committed;
      } catch (e) {
        const err = e as Error & { code?: string };
        if (err.name === "AbortError" || op.signal?.aborted) throw e;
        // A connection cut mid-body keeps the bytes so far; the next attempt asks for the rest.
        if (isTransientNetworkError(e)) {
          if (attempt < ctx.requester.retry.attempts) {
            log.debug("blob download interrupted, resuming", { digest: desc.digest, attempt, error: err });
            await ctx.requester.backoff(attempt, undefined, op.signal);
            continue;
          }
          throw new RegistryError(
            "unreachable",
            `${op.doing}: the download broke off ${attempt} times (${err.message}); the bytes so far are kept and the next pull resumes them`,
            { cause: e },
          );
        }
        if (err.name === "ContentError" && err.code === "mismatch") {
          throw new RegistryError(
            "digest-mismatch",
            `${op.doing}: the registry sent bytes that do not match the descriptor: ${err.message}; nothing was stored`,
            { cause: e },
          );
        }
        if (e instanceof RegistryError) throw e;
        throw networkError(e, ref.domain, op);
      }
    }
  } finally {
    stopListening();
  }
}

/** Rejects with the abort reason as soon as `signal` aborts, leaving `p` to finish on its own. */
function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  p.catch(() => {});
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Progress callbacks per digest, so callers waiting on another caller's download see its bytes too. */
export class ProgressFanout {
  #listeners = new Map<Digest, Set<(current: number, total: number) => void>>();

  listen(digest: Digest, fn: ((current: number, total: number) => void) | undefined): () => void {
    if (fn === undefined) return () => {};
    let set = this.#listeners.get(digest);
    if (set === undefined) {
      set = new Set();
      this.#listeners.set(digest, set);
    }
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.#listeners.get(digest) === set) this.#listeners.delete(digest);
    };
  }

  report(digest: Digest, current: number, total: number): void {
    for (const fn of this.#listeners.get(digest) ?? []) fn(current, total);
  }
}

/** The labels recording where a blob was pulled from. */
export function sourceLabels(ref: RepoRef): Record<string, string> {
  return { [`${SOURCE_LABEL_PREFIX}${ref.domain}`]: ref.path };
}

/** Opens a blob's bytes from `offset` on the first endpoint that has it. */
async function openBlob(
  ctx: PullContext,
  endpoints: Endpoint[],
  desc: Descriptor,
  offset: number,
  op: Operation,
  progress: ProgressFanout,
): Promise<AsyncIterable<Uint8Array> | { body: AsyncIterable<Uint8Array>; startsAt: number }> {
  return withEndpoints(endpoints, op, async (ep) => {
    let res = await getBlob(ctx, ep, desc.digest, op, offset);
    if (res.status === 416 && offset > 0) {
      res.body.destroy();
      res = await getBlob(ctx, ep, desc.digest, op, 0);
    }
    let startsAt = 0;
    if (res.status === 206) {
      const start = /^bytes (\d+)-/.exec(String(res.headers["content-range"] ?? ""))?.[1];
      if (Number(start) !== offset) {
        res.body.destroy();
        throw new RegistryError(
          "server",
          `${op.doing}: asked for ${desc.digest} from byte ${offset}, got ${String(res.headers["content-range"])}`,
        );
      }
      startsAt = offset;
    } else if (res.status !== 200) {
      throw await statusError(res, op, `blob ${desc.digest}`);
    }
    const body = counted(res, desc, startsAt, progress);
    return startsAt > 0 ? { body, startsAt } : body;
  });
}

async function* counted(
  res: HttpResponse,
  desc: Descriptor,
  start: number,
  progress: ProgressFanout,
): AsyncGenerator<Uint8Array> {
  let current = start;
  progress.report(desc.digest, current, desc.size);
  try {
    for await (const chunk of res.body) {
      current += (chunk as Buffer).length;
      progress.report(desc.digest, Math.min(current, desc.size), desc.size);
      yield chunk as Buffer;
    }
  } finally {
    if (!res.body.complete) res.body.destroy();
  }
}

function getBlob(
  ctx: PullContext,
  ep: Endpoint,
  digest: Digest,
  op: Operation,
  offset: number,
): Promise<HttpResponse> {
  return ctx.requester.send(
    ep,
    {
      method: "GET",
      path: `/v2/${ep.repo}/blobs/${digest}`,
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
      scopes: [`repository:${ep.repo}:pull`],
    },
    op,
  );
}

/** The root manifest of a reference: by digest (from the store when there), or by tag (HEAD first, for the digest). */
async function resolveRoot(
  ctx: PullContext,
  endpoints: Endpoint[],
  ref: RepoRef,
  op: Operation,
  lease: string | undefined,
  labels: Record<string, string>,
): Promise<ManifestBytes> {
  if (ref.digest !== undefined) {
    if (!isDigest(ref.digest)) {
      throw new RegistryError(
        "unsupported",
        `${op.doing}: only sha256 digests are supported, not ${ref.digest}`,
      );
    }
    return manifestByDigest(ctx, endpoints, ref.digest, op, lease, labels);
  }
  const tag = ref.tag ?? "latest";
  return withEndpoints(endpoints, op, async (ep) => {
    const head = await ctx.requester.send(
      ep,
      {
        method: "HEAD",
        path: `/v2/${ep.repo}/manifests/${tag}`,
        headers: { accept: MANIFEST_ACCEPT },
        scopes: pullScope(ep),
      },
      op,
    );
    if (head.status !== 200)
      throw await statusError(head, op, `manifest for tag ${JSON.stringify(tag)} in ${op.image}`);
    head.body.resume();
    const claimed = String(head.headers["docker-content-digest"] ?? "");
    if (isDigest(claimed)) {
      const cached = await fromStore(ctx, claimed, lease);
      if (cached !== undefined) return cached;
      const m = await getManifest(ctx, ep, claimed, op, claimed);
      await cache(ctx, m, lease, labels);
      return m;
    }
    // No digest header (some registries): the tag's bytes define the digest.
    const m = await getManifest(ctx, ep, tag, op, undefined);
    await cache(ctx, m, lease, labels);
    return m;
  });
}

type ManifestBytes = { bytes: Buffer; digest: Digest; contentType: string | undefined };

async function manifestByDigest(
  ctx: PullContext,
  endpoints: Endpoint[],
  digest: Digest,
  op: Operation,
  lease: string | undefined,
  labels: Record<string, string>,
): Promise<ManifestBytes> {
  const cached = await fromStore(ctx, digest, lease);
  if (cached !== undefined) return cached;
  const m = await withEndpoints(endpoints, op, (ep) => getManifest(ctx, ep, digest, op, digest));
  await cache(ctx, m, lease, labels);
  return m;
}

/** GETs a manifest and checks its bytes against `expected` (or the registry's Docker-Content-Digest). */
async function getManifest(
  ctx: PullContext,
  ep: Endpoint,
  reference: string,
  op: Operation,
  expected: Digest | undefined,
): Promise<ManifestBytes> {
  const res = await ctx.requester.send(
    ep,
    {
      method: "GET",
      path: `/v2/${ep.repo}/manifests/${reference}`,
      headers: { accept: MANIFEST_ACCEPT },
      scopes: pullScope(ep),
    },
    op,
  );
  if (res.status !== 200) throw await statusError(res, op, `manifest ${reference} in ${op.image}`);
  const bytes = await readBody(res, MAX_MANIFEST_BYTES, `${op.doing}: manifest ${reference}`).catch(
    (e: unknown) => {
      throw e instanceof Error && /limit/.test(e.message)
        ? new RegistryError("invalid", e.message)
        : networkError(e, ep.host, op);
    },
  );
  const digest = digestOf(bytes);
  const claimed = String(res.headers["docker-content-digest"] ?? "");
  const want = expected ?? (isDigest(claimed) ? claimed : undefined);
  if (want !== undefined && digest !== want) {
    throw new RegistryError(
      "digest-mismatch",
      `${op.doing}: the manifest ${reference} from ${ep.host} does not match its digest: expected ${want}, got ${digest}; the registry or something between is corrupting or forging content`,
    );
  }
  return { bytes, digest, contentType: res.headers["content-type"] };
}

/** A small blob (an image config) into memory, verified, cached in the store. */
async function smallBlob(
  ctx: PullContext,
  endpoints: Endpoint[],
  desc: Descriptor,
  limit: number,
  what: string,
  op: Operation,
  lease: string | undefined,
  labels: Record<string, string>,
): Promise<Buffer> {
  if (desc.size > limit)
    throw new RegistryError(
      "invalid",
      `${op.doing}: the ${what} ${desc.digest} has ${desc.size} bytes, more than the limit of ${limit}`,
    );
  const cached = await fromStore(ctx, desc.digest, lease);
  if (cached !== undefined) return cached.bytes;
  const bytes = await withEndpoints(endpoints, op, async (ep) => {
    const res = await getBlob(ctx, ep, desc.digest, op, 0);
    if (res.status !== 200) throw await statusError(res, op, `${what} ${desc.digest}`);
    const body = await readBody(res, limit, `${op.doing}: ${what}`).catch((e: unknown) => {
      throw networkError(e, ep.host, op);
    });
    const digest = digestOf(body);
    if (body.length !== desc.size || digest !== desc.digest) {
      throw new RegistryError(
        "digest-mismatch",
        `${op.doing}: the ${what} from ${ep.host} does not match its descriptor: expected ${desc.digest} (${desc.size} bytes), got ${digest} (${body.length} bytes)`,
      );
    }
    return body;
  });
  if (ctx.store !== undefined)
    await ctx.store.writeBlob(bytes, { expectedDigest: desc.digest, lease, labels });
  return bytes;
}

async function fromStore(
  ctx: PullContext,
  digest: Digest,
  lease?: string,
): Promise<ManifestBytes | undefined> {
  if (ctx.store === undefined) return undefined;
  if (lease !== undefined) ctx.store.addLeaseResource(lease, digest);
  if (!(await ctx.store.has(digest))) return undefined;
  try {
    return {
      bytes: await ctx.store.readAll(digest, { maxBytes: MAX_CONFIG_BYTES }),
      digest,
      contentType: undefined,
    };
  } catch {
    // Removed by gc meanwhile: fetch it again.
    return undefined;
  }
}

async function cache(
  ctx: PullContext,
  m: ManifestBytes,
  lease: string | undefined,
  labels: Record<string, string>,
): Promise<void> {
  if (ctx.store !== undefined)
    await ctx.store.writeBlob(m.bytes, { expectedDigest: m.digest, lease, labels });
}

/** Tries `fn` on each endpoint (mirrors first); a mirror's failure falls through to the next. */
async function withEndpoints<T>(
  endpoints: Endpoint[],
  op: Operation,
  fn: (ep: Endpoint) => Promise<T>,
): Promise<T> {
  let lastError: unknown;
  for (const ep of endpoints) {
    try {
      return await fn(ep);
    } catch (e) {
      if ((e as Error).name === "AbortError" || !ep.mirror) throw e;
      // A mirror without the image is normal; one that fails is worth a warning.
      const level = (e as { code?: string }).code === "not-found" ? "debug" : "warn";
      log[level]("registry mirror failed, trying the next", { mirror: ep.host, doing: op.doing, error: e });
      lastError = e;
    }
  }
  throw lastError;
}

function choosePlatform(
  parsed: Extract<ParsedManifest, { kind: "index" }>,
  want: Platform,
  indexDigest: Digest,
  op: Operation,
): Descriptor {
  const candidates = parsed.index.manifests.filter(
    (d) =>
      d.annotations?.["vnd.docker.reference.type"] !== ATTESTATION &&
      (d.mediaType === "" || isIndexMediaType(d.mediaType) || /manifest/.test(d.mediaType)),
  );
  const best = bestPlatformMatch(
    want,
    candidates.map((d) => d.platform),
  );
  if (best === undefined) {
    const have = [...new Set(candidates.flatMap((d) => (d.platform ? [formatPlatform(d.platform)] : [])))];
    throw new RegistryError(
      "no-match",
      `${op.doing}: no image for ${formatPlatform(want)} in the index ${indexDigest}; it has ${have.length > 0 ? have.join(", ") : "no platform-specific images"}`,
    );
  }
  return candidates[best]!;
}

function pullScope(ep: Endpoint): string[] {
  return [`repository:${ep.repo}:pull`];
}

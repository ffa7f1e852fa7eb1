// Importing caches: each `--import-cache` is read as far as its manifest and cache config
// (never a layer) into an index of records by cache key. The solver asks when it has no record
// of its own for a key; only on a hit are that record's layers fetched (those the daemon lacks:
// layers are found again by chain id) and unpacked. A cache that cannot deliver (a blob
// missing, corrupt, or the registry down) is a warning, and the step runs as if it missed.
import type { ContentStore } from "../content/store.ts";
import type { RemoteCache } from "../solver/solver.ts";
import {
  type CredentialsProvider,
  type Descriptor,
  type ImageConfigFile,
  MediaTypes,
  type RegistryClient,
} from "../source/registry/index.ts";
import type { Digest } from "../util/digest.ts";
import type { ImageSource, UnpackOptions } from "../worker/sources/image.ts";
import type { WorkerRef } from "../worker/types.ts";
import type { OCIWorker } from "../worker/worker.ts";
import { ingestLayoutBlob, layoutRoot, readLayoutBlob } from "./layout.ts";
import {
  CACHE_CONFIG_MEDIA_TYPE,
  type CacheConfig,
  type CacheLayer,
  type ChainLayerDesc,
  describeFromAnnotations,
  INLINE_CACHE_FIELD,
  MAX_CONFIG_BYTES,
  parseCacheConfig,
  recordsByKey,
  UNCOMPRESSED_ANNOTATION,
} from "./spec.ts";

/** One loaded cache: its records by key, and how to get a layer blob into the content store. */
export type ImportedCache = {
  /** Where it is, for messages ("registry 127.0.0.1:5000/app:cache"). */
  what: string;
  records: Map<string, ChainLayerDesc[][]>;
  fetch(
    desc: Descriptor,
    onProgress: (current: number, total: number) => void,
    signal: AbortSignal,
  ): Promise<void>;
  /** Makes a chain of this cache's layers a ref of the daemon. */
  unpack: Unpacker;
};

/** How a chain of imported layers becomes a ref (the image source's unpacking, bound to a worker). */
export type Unpacker = (
  chain: ChainLayerDesc[],
  how: { what: string; fetch: UnpackOptions["fetch"]; signal: AbortSignal; log: UnpackOptions["log"] },
) => Promise<WorkerRef>;

/** The unpacker of a daemon: layers are found again by chain id, or fetched and unpacked. */
export function unpackerFor(deps: ImportDeps): Unpacker {
  return (chain, how) =>
    deps.images.unpackChain(
      deps.worker,
      chain.map((l) => ({
        desc: { mediaType: l.mediaType, digest: l.digest, size: l.size },
        diffID: l.diffID,
      })),
      how,
    );
}

/** Reads one cache as far as its config. */
export type CacheLoader = (signal: AbortSignal) => Promise<ImportedCache>;

/** What importing needs from the daemon. */
export type ImportDeps = { worker: OCIWorker; images: ImageSource };

/** A layer's descriptor from the manifest's list (by blob digest), else from the config's annotations. */
function describer(listed: Descriptor[], diffIDs?: Map<Digest, Digest>) {
  const byDigest = new Map(listed.map((d) => [d.digest, d]));
  return (l: CacheLayer): ChainLayerDesc | undefined => {
    const d = byDigest.get(l.blob);
    if (!d) return describeFromAnnotations(l);
    const diffID =
      (d.annotations?.[UNCOMPRESSED_ANNOTATION] as Digest | undefined) ??
      diffIDs?.get(d.digest) ??
      l.annotations?.diffID;
    if (!diffID) return undefined;
    return { digest: d.digest, size: d.size, mediaType: d.mediaType, diffID };
  };
}

/** The config and layer list of a cache manifest or index; undefined when `root` is not one. */
function cacheParts(json: unknown): { config: Descriptor; layers: Descriptor[] } | undefined {
  const j = json as { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
  if (Array.isArray(j.manifests)) {
    const config = j.manifests.find((m) => m?.mediaType === CACHE_CONFIG_MEDIA_TYPE);
    if (!config) return undefined;
    return { config, layers: j.manifests.filter((m) => m !== config) };
  }
  if (j.config?.mediaType === CACHE_CONFIG_MEDIA_TYPE && Array.isArray(j.layers)) {
    return { config: j.config, layers: j.layers };
  }
  return undefined;
}

function checkDescriptor(d: Descriptor, what: string): Descriptor {
  if (
    d === null ||
    typeof d !== "object" ||
    typeof d.digest !== "string" ||
    !/^sha256:[a-f0-9]{64}$/.test(d.digest) ||
    !Number.isSafeInteger(d.size) ||
    d.size < 0
  )
    throw new Error(`${what}: a descriptor without a sha256 digest and a size`);
  return d;
}

/** A cache in a registry: a cache index or manifest, or an image carrying an inline cache. */
export function registryLoader(
  registry: RegistryClient,
  ref: string,
  deps: { content: ContentStore; unpack: Unpacker },
  opts: { credentials?: CredentialsProvider } = {},
): CacheLoader {
  const { content, unpack } = deps;
  const what = `registry ${ref}`;
  const credentials = opts.credentials;
  return async (signal) => {
    const root = await registry.fetchManifest(ref, { signal, credentials });
    let json: unknown;
    try {
      json = JSON.parse(root.bytes.toString("utf8"));
    } catch {
      throw new Error(`${what}: the manifest is not JSON`);
    }
    const fetch: ImportedCache["fetch"] = async (desc, onProgress, sig) => {
      await registry.fetchBlob(ref, desc, { store: content, signal: sig, onProgress, credentials });
    };
    const parts = cacheParts(json);
    if (parts) {
      const configDesc = checkDescriptor(parts.config, what);
      if (configDesc.size > MAX_CONFIG_BYTES)
        throw new Error(`${what}: the cache config is over ${MAX_CONFIG_BYTES} bytes`);
      await registry.fetchBlob(ref, configDesc, { store: content, signal, credentials });
      const config = parseCacheConfig(
        await content.readAll(configDesc.digest, { maxBytes: MAX_CONFIG_BYTES }),
        what,
      );
      const layers = parts.layers.map((l) => checkDescriptor(l, what));
      return { what, records: recordsByKey(config, describer(layers)), fetch, unpack };
    }
    // An image: its config may carry an inline cache over its own layers.
    const img = await registry.resolve(ref, { signal, credentials });
    return { what, records: inlineRecords(img.config, img.layers, what), fetch, unpack };
  };
}

/** The records of an image's inline cache (none when it has no cache field). */
export function inlineRecords(
  config: ImageConfigFile,
  layers: Descriptor[],
  what: string,
): Map<string, ChainLayerDesc[][]> {
  const field = config[INLINE_CACHE_FIELD];
  if (typeof field !== "string")
    throw new Error(`${what}: the image has no inline cache (${INLINE_CACHE_FIELD})`);
  const cache: CacheConfig = parseCacheConfig(Buffer.from(field, "base64"), `${what}: inline cache`);
  const diffIDs = new Map<Digest, Digest>();
  for (const [i, l] of layers.entries()) {
    const d = config.rootfs?.diff_ids?.[i];
    if (d) diffIDs.set(l.digest, d);
  }
  return recordsByKey(cache, describer(layers, diffIDs));
}

/** A cache in a local OCI layout directory (on the daemon's host). */
export function localLoader(
  dir: string,
  sel: { tag?: string; digest?: string },
  deps: { content: ContentStore; unpack: Unpacker },
): CacheLoader {
  const { content, unpack } = deps;
  const what = `local cache ${dir}`;
  return async () => {
    const rootDesc = await layoutRoot(dir, sel);
    const bytes = await readLayoutBlob(dir, rootDesc, 4 * 1024 * 1024);
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString("utf8"));
    } catch {
      throw new Error(`${what}: the manifest ${rootDesc.digest} is not JSON`);
    }
    const fetch: ImportedCache["fetch"] = (desc, onProgress, signal) =>
      ingestLayoutBlob(dir, content, desc, onProgress, signal);
    const parts = cacheParts(json);
    if (!parts) {
      const j = json as { mediaType?: string; config?: Descriptor; layers?: Descriptor[] };
      if (
        j.config &&
        Array.isArray(j.layers) &&
        (j.mediaType ?? MediaTypes.ociManifest) !== MediaTypes.ociIndex
      ) {
        // An image in the layout: read its inline cache.
        const cfg = JSON.parse(
          (await readLayoutBlob(dir, checkDescriptor(j.config, what), MAX_CONFIG_BYTES)).toString("utf8"),
        ) as ImageConfigFile;
        const layers = j.layers.map((l) => checkDescriptor(l, what));
        return { what, records: inlineRecords(cfg, layers, what), fetch, unpack };
      }
      throw new Error(`${what}: ${rootDesc.digest} is neither a cache manifest nor an image`);
    }
    const config = parseCacheConfig(
      await readLayoutBlob(dir, checkDescriptor(parts.config, what), MAX_CONFIG_BYTES),
      what,
    );
    const layers = parts.layers.map((l) => checkDescriptor(l, what));
    return { what, records: recordsByKey(config, describer(layers)), fetch, unpack };
  };
}

/**
 * The imports of one build, for the solver: loaded once, on the first key the daemon does not
 * know (a fully cached build reads nothing), asked in the order given.
 */
export class ImportedCaches implements RemoteCache {
  private readonly loaders: CacheLoader[];
  private readonly warn: (message: string) => void;
  private readonly signal: AbortSignal;
  private loaded?: Promise<ImportedCache[]>;

  constructor(loaders: CacheLoader[], opts: { warn(message: string): void; signal: AbortSignal }) {
    this.loaders = loaders;
    this.warn = opts.warn;
    this.signal = opts.signal;
  }

  /** Every cache that could be read; one that could not is a warning. */
  caches(): Promise<ImportedCache[]> {
    this.loaded ??= Promise.all(
      this.loaders.map(async (load) => {
        try {
          return await load(this.signal);
        } catch (e) {
          if (this.signal.aborted) throw e;
          this.warn(`importing cache: ${(e as Error).message}`);
          return undefined;
        }
      }),
    ).then((all) => all.filter((c): c is ImportedCache => c !== undefined));
    return this.loaded;
  }

  async load(
    key: string,
    outputs: number,
    ctx: Parameters<RemoteCache["load"]>[2],
  ): Promise<WorkerRef[] | undefined> {
    for (const cache of await this.caches()) {
      const chains = cache.records.get(key);
      if (!chains || chains.length !== outputs) continue;
      ctx.hit();
      const refs: WorkerRef[] = [];
      try {
        for (const chain of chains) {
          refs.push(
            await cache.unpack(chain, {
              what: cache.what,
              fetch: (desc, onProgress) => cache.fetch(desc, onProgress, ctx.signal),
              signal: ctx.signal,
              log: ctx.log,
            }),
          );
        }
        return refs;
      } catch (e) {
        for (const r of refs) await r.release().catch(() => {});
        if (ctx.signal.aborted) throw e;
        ctx.log.warn(`cache from ${cache.what} could not be used: ${(e as Error).message}; running the step`);
      }
    }
    return undefined;
  }
}

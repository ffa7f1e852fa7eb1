// The layer blobs of a result: one per snapshot layer, bottom first. A blob is made once and
// remembered on the layer's cache record; a layer pulled from a registry keeps the blob it came
// in, so exporting an image built on a base never recompresses the base. New layers are written
// from the overlay upper dir when there is one, else by comparing the layer's trees.
import { createHash, randomUUID } from "node:crypto";
import { compressStream, type Compression } from "../archive/compress.ts";
import { decompressLayer } from "../archive/decompress.ts";
import { diffLayerTar, OverlayLayoutError, overlayLayerTar } from "../archive/write.ts";
import type { CacheManager } from "../cache/manager.ts";
import type { ImmutableRef } from "../cache/types.ts";
import type { ContentStore } from "../content/store.ts";
import type { LayerInfo } from "../snapshot/types.ts";
import type { Digest } from "../util/digest.ts";
import type { VertexLog } from "../worker/vertex-log.ts";
import { whileMounted } from "./mounted.ts";

/** A layer's blob in the content store. */
export type LayerBlob = {
  digest: Digest;
  /** sha256 of the uncompressed tar, for the config's rootfs.diff_ids. */
  diffID: Digest;
  size: number;
  compression: Compression;
  /** The media type the blob came with, when it was pulled (kept for foreign or odd types). */
  pulledMediaType?: string;
};

/** How new layer blobs are made. */
export type LayerOptions = {
  compression: Compression;
  level?: number;
  /** Recompress reused blobs whose compression differs. */
  force: boolean;
  /** rewrite-timestamp: clamp file mtimes in new layers to this (seconds). */
  clampMtime?: number;
  /** Content lease that holds the blobs until the image is recorded. */
  lease?: string;
};

/** What the layer code needs from the daemon. */
export type LayerDeps = {
  cache: CacheManager;
  content: ContentStore;
  mountBase?: string;
  /** Every worker's cache, when there are several: a layer is read from the one holding it. */
  caches?: CacheManager[];
};

/** The cache holding layer `key`: the worker that made it. */
export function cacheOf(deps: LayerDeps, key: string): CacheManager {
  return deps.caches?.find((c) => c.exists(key)) ?? deps.cache;
}

/** Metadata the image source puts on pulled layers (worker/sources/image.ts LayerMeta). */
type PulledLayer = { diffID: Digest; blob: Digest; mediaType: string; size: number };

const EXPORTED_META = "export.blobs";
/** Label containerd gives a compressed blob: the digest of its uncompressed content. */
export const UNCOMPRESSED_LABEL = "containerd.io/uncompressed";

/** The compression a media type says a blob has. */
export function compressionOf(mediaType: string): Compression {
  if (/gzip/.test(mediaType)) return "gzip";
  if (/zstd/.test(mediaType)) return "zstd";
  return "uncompressed";
}

/** Blobs for every layer of `ref`, bottom first, made or found as `opts` says. */
export async function layerBlobs(
  ref: ImmutableRef,
  deps: LayerDeps,
  opts: LayerOptions,
  ctx: { log: VertexLog; signal: AbortSignal },
): Promise<LayerBlob[]> {
  const out: LayerBlob[] = [];
  const layers = ref.layers();
  for (const [i, layer] of layers.entries()) {
    ctx.signal.throwIfAborted();
    out.push(await layerBlob(layer, deps, opts, ctx, `layer ${i + 1}/${layers.length}`));
  }
  return out;
}

async function layerBlob(
  layer: LayerInfo,
  deps: LayerDeps,
  opts: LayerOptions,
  ctx: { log: VertexLog; signal: AbortSignal },
  what: string,
): Promise<LayerBlob> {
  const cache = cacheOf(deps, layer.key);
  const record = cache.exists(layer.key) ? cache.get(layer.key, { noUpdateLastUsed: true }) : undefined;
  try {
    const pulled = record?.getMeta<PulledLayer>("layer");
    if (pulled && (await deps.content.has(pulled.blob))) {
      const compression = compressionOf(pulled.mediaType);
      if (!opts.force || compression === opts.compression) {
        hold(deps, opts, pulled.blob);
        return {
          digest: pulled.blob,
          diffID: pulled.diffID,
          size: pulled.size,
          compression,
          pulledMediaType: pulled.mediaType,
        };
      }
      // force-compression: the same tar in another compression, so the diff id stays.
      const blob = await writeBlob(
        (await decompressLayer(await deps.content.readStream(pulled.blob))).stream,
        deps,
        opts,
        ctx,
        what,
      );
      if (blob.diffID !== pulled.diffID) {
        throw new Error(
          `recompressing ${pulled.blob}: its content has diff id ${blob.diffID}, not the ${pulled.diffID} it was pulled with`,
        );
      }
      return blob;
    }
    const key = cacheKey(opts);
    const known = record?.getMeta<Record<string, LayerBlob>>(EXPORTED_META)?.[key];
    if (known && (await deps.content.has(known.digest))) {
      hold(deps, opts, known.digest);
      return known;
    }
    const blob = await writeBlob(await layerTar(layer, deps, opts, ctx.signal), deps, opts, ctx, what);
    if (record) {
      const all = record.getMeta<Record<string, LayerBlob>>(EXPORTED_META) ?? {};
      record.setMeta(EXPORTED_META, { ...all, [key]: blob });
    }
    return blob;
  } finally {
    await record?.release();
  }
}

/** Blobs made with other settings are other blobs: the key says which settings. */
function cacheKey(o: LayerOptions): string {
  return `${o.compression}/${o.level ?? "default"}/${o.clampMtime ?? "-"}`;
}

function hold(deps: LayerDeps, opts: LayerOptions, digest: Digest): void {
  if (opts.lease) deps.content.addLeaseResource(opts.lease, digest);
}

/** The uncompressed tar of one layer: its overlay upper dir, or the difference of its trees. */
async function layerTar(
  layer: LayerInfo,
  deps: LayerDeps,
  opts: LayerOptions,
  signal: AbortSignal,
): Promise<AsyncIterable<Buffer>> {
  const tarOpts = { clampMtime: opts.clampMtime, signal };
  if (layer.diffDir) {
    const diffDir = layer.diffDir;
    // The first chunk tells whether the upper dir can stand alone; if not, compare the trees.
    const it = overlayLayerTar(diffDir, tarOpts);
    try {
      const first = await it.next();
      return (async function* () {
        if (!first.done) yield first.value;
        yield* it;
      })();
    } catch (e) {
      if (!(e instanceof OverlayLayoutError)) throw e;
    }
  }
  return comparedTar(layer, deps, tarOpts);
}

/** The difference of a layer's lower and upper trees, mounted read-only while it is read. */
async function* comparedTar(
  layer: LayerInfo,
  deps: LayerDeps,
  tarOpts: { clampMtime?: number; signal: AbortSignal },
): AsyncGenerator<Buffer> {
  const sn = cacheOf(deps, layer.upper).snapshotter;
  const upper = await sn.mounts(layer.upper);
  if (layer.lower === undefined) {
    yield* whileMounted(upper, deps.mountBase, (u) => diffLayerTar(undefined, u, tarOpts));
    return;
  }
  const lower = await sn.mounts(layer.lower);
  yield* whileMounted(upper, deps.mountBase, (u) =>
    whileMounted(lower, deps.mountBase, (l) => diffLayerTar(l, u, tarOpts)),
  );
}

/** Compresses a tar into the content store; returns the blob and the tar's digest. */
async function writeBlob(
  tar: AsyncIterable<Uint8Array>,
  deps: LayerDeps,
  opts: LayerOptions,
  ctx: { log: VertexLog; signal: AbortSignal },
  what: string,
): Promise<LayerBlob> {
  const hash = createHash("sha256");
  let tarBytes = 0;
  const started = Date.now();
  // The progress display shows the id: it says what is happening.
  const id = `compressing ${what}`;
  const counted = (async function* () {
    for await (const c of tar) {
      hash.update(c);
      tarBytes += c.byteLength;
      ctx.log.status({ id, name: id, current: tarBytes, total: 0, started });
      yield c;
    }
  })();
  const w = await deps.content.writer(`export-${randomUUID()}`, { lease: opts.lease });
  try {
    for await (const c of compressStream(counted, {
      compression: opts.compression,
      level: opts.level,
      signal: ctx.signal,
    })) {
      await w.write(c);
    }
    const diffID = `sha256:${hash.digest("hex")}` as Digest;
    const committed = await w.commit({
      labels: opts.compression === "uncompressed" ? {} : { [UNCOMPRESSED_LABEL]: diffID },
    });
    ctx.log.status({
      id,
      name: id,
      current: tarBytes,
      total: tarBytes,
      started,
      completed: Date.now(),
    });
    return { digest: committed.digest, diffID, size: committed.size, compression: opts.compression };
  } catch (e) {
    await w.abort().catch(() => {});
    throw e;
  }
}

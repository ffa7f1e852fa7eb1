// Making an exported cache from a finished build: which steps go in (mode=min: those whose
// results are layers of the build result; mode=max: every step with a result), their layer
// blobs (made once and reused, as the image exporter does, so image and cache share blobs),
// and the cache config that maps each step's cache key to its chains of layers.
import type { ImmutableRef } from "../cache/types.ts";
import { type LayerBlob, type LayerDeps, layerBlobs } from "../exporter/layers.ts";
import type { ExportableVertex } from "../solver/solver.ts";
import type { Descriptor } from "../source/registry/index.ts";
import type { Digest } from "../util/digest.ts";
import type { VertexLog } from "../worker/vertex-log.ts";
import type { CacheExportOptions } from "./options.ts";
import {
  type CacheConfig,
  type CacheInput,
  type CacheLayer,
  type CacheRecord,
  UNCOMPRESSED_ANNOTATION,
} from "./spec.ts";

/** What a cache is made from: the steps of a build, and its result (one ref per platform). */
export type CacheSource = { vertices: ExportableVertex[]; results: ImmutableRef[] };

/** A cache made in the content store: its config and one descriptor per config layer. */
export type BuiltCache = { config: CacheConfig; layers: Descriptor[] };

const LAYER_TYPES = {
  oci: {
    gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
    zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
    uncompressed: "application/vnd.oci.image.layer.v1.tar",
  },
  docker: {
    gzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
    zstd: "application/vnd.docker.image.rootfs.diff.tar.zstd",
    uncompressed: "application/vnd.docker.image.rootfs.diff.tar",
  },
} as const;

/** The steps whose every output is the build result or lies under it (a prefix of its layers). */
export function underResults(vertices: ExportableVertex[], results: ImmutableRef[]): ExportableVertex[] {
  const finals = results.map((r) => r.layers().map((l) => l.key));
  const isPrefix = (keys: string[]) =>
    finals.some((f) => keys.length <= f.length && keys.every((k, i) => f[i] === k));
  return vertices.filter((v) =>
    v.refs.every((r) => isPrefix((r as ImmutableRef).layers().map((l) => l.key))),
  );
}

/** Builds the cache of `source` into the content store (blobs held by `deps.lease`). */
export async function buildCache(
  source: CacheSource,
  opts: CacheExportOptions,
  deps: LayerDeps & { lease?: string },
  ctx: { log: VertexLog; signal: AbortSignal },
): Promise<BuiltCache> {
  const chosen = opts.mode === "max" ? source.vertices : underResults(source.vertices, source.results);
  const layers: CacheLayer[] = [];
  const descs: Descriptor[] = [];
  const layerIndex = new Map<string, number>();
  const addChain = (blobs: LayerBlob[]): number => {
    let parent = -1;
    for (const b of blobs) {
      const id = `${parent} ${b.digest}`;
      let at = layerIndex.get(id);
      if (at === undefined) {
        const desc = layerDescriptor(b, opts.ociMediaTypes);
        at = layers.length;
        layers.push({
          blob: b.digest,
          parent,
          annotations: { mediaType: desc.mediaType, diffID: b.diffID, size: b.size },
        });
        descs.push(desc);
        layerIndex.set(id, at);
      }
      parent = at;
    }
    return parent;
  };
  const layerOpts = {
    compression: opts.compression,
    level: opts.compressionLevel,
    force: opts.forceCompression,
    lease: deps.lease,
  };
  const records: CacheRecord[] = [];
  const recordIndex = new Map<string, number>();
  for (const v of chosen) {
    if (recordIndex.has(v.key)) continue;
    ctx.signal.throwIfAborted();
    const results = [];
    for (const [output, ref] of v.refs.entries()) {
      const blobs = await layerBlobs(ref as ImmutableRef, deps, layerOpts, ctx);
      results.push({ layer: addChain(blobs), ...(v.refs.length > 1 ? { output } : {}) });
    }
    const record: CacheRecord = { digest: v.key, layers: results };
    if (v.refs.length !== 1) record.outputs = v.refs.length;
    const inputs = linksOf(v, recordIndex);
    if (inputs) record.inputs = inputs;
    recordIndex.set(v.key, records.length);
    records.push(record);
  }
  return { config: { layers, records }, layers: descs };
}

/**
 * The inline cache of one image: the records whose results are layers of `ref`, pointing at
 * the image's own layers (`imageLayers`, bottom first, as in its manifest).
 */
export function inlineCacheConfig(
  vertices: ExportableVertex[],
  ref: ImmutableRef,
  imageLayers: { desc: Descriptor; diffID: Digest }[],
): CacheConfig {
  const layers: CacheLayer[] = imageLayers.map((l, i) => ({
    blob: l.desc.digest,
    parent: i - 1,
    annotations: { mediaType: l.desc.mediaType, diffID: l.diffID, size: l.desc.size },
  }));
  const records: CacheRecord[] = [];
  const recordIndex = new Map<string, number>();
  for (const v of underResults(vertices, [ref])) {
    if (recordIndex.has(v.key)) continue;
    const results = v.refs.map((r, output) => ({
      layer: (r as ImmutableRef).layers().length - 1,
      ...(v.refs.length > 1 ? { output } : {}),
    }));
    if (results.some((r) => r.layer >= layers.length)) continue;
    const record: CacheRecord = { digest: v.key, layers: results };
    if (v.refs.length !== 1) record.outputs = v.refs.length;
    const inputs = linksOf(v, recordIndex);
    if (inputs) record.inputs = inputs;
    recordIndex.set(v.key, records.length);
    records.push(record);
  }
  return { layers, records };
}

/** Links to the records of the step's inputs that are in the cache too (for readers; keys are what match). */
function linksOf(v: ExportableVertex, recordIndex: Map<string, number>): CacheInput[][] | undefined {
  if (v.inputs.length === 0) return undefined;
  return v.inputs.map((i) => {
    const link = i.key === undefined ? undefined : recordIndex.get(i.key);
    return link === undefined ? [] : [{ selector: i.index === 0 ? "" : `output:${i.index}`, link }];
  });
}

/** A layer's descriptor in OCI or Docker terms, with its diff id; a pulled blob keeps an unusual media type. */
export function layerDescriptor(l: LayerBlob, oci: boolean): Descriptor {
  const known = Object.values(LAYER_TYPES).some((t) => Object.values(t).includes(l.pulledMediaType as never));
  const mediaType =
    l.pulledMediaType && !known ? l.pulledMediaType : LAYER_TYPES[oci ? "oci" : "docker"][l.compression];
  return { mediaType, digest: l.digest, size: l.size, annotations: { [UNCOMPRESSED_ANNOTATION]: l.diffID } };
}

// Building an image from a build result: layer blobs per platform, the image config the
// frontend described (with rootfs, history and times filled in as BuildKit does), a manifest
// per platform and, for several platforms, an index. Everything lands in the content store.
import type { ImmutableRef } from "../cache/types.ts";
import type { FrontendResult } from "../frontend/types.ts";
import {
  type Descriptor,
  formatPlatform,
  hostPlatform,
  type ImageConfigFile,
  MediaTypes,
  normalizePlatform,
  type Platform,
  parsePlatform,
} from "../source/registry/index.ts";
import type { Digest } from "../util/digest.ts";
import type { VertexLog } from "../worker/vertex-log.ts";
import { cacheOf, type LayerBlob, type LayerDeps, layerBlobs } from "./layers.ts";
import { annotationsFor, type ImageOptions } from "./options.ts";
import type { InlineCacheHook } from "./types.ts";

/** One platform's image inside a built image. */
export type BuiltManifest = {
  /** Descriptor of the manifest, with its platform. */
  descriptor: Descriptor;
  config: Descriptor;
  layers: Descriptor[];
  platform: Platform;
};

/** An image in the content store. */
export type BuiltImage = {
  /** The manifest, or the index when there are several platforms. */
  root: Descriptor;
  manifests: BuiltManifest[];
  /** The index's descriptor and bytes' digest, when there is one. */
  index?: Descriptor;
  /** Every blob the image is made of, root last. */
  blobs: Descriptor[];
};

/** The default PATH of an image without a config (BuildKit's system.DefaultPathEnv). */
const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const HISTORY_COMMENT = "buildkit.exporter.image.v0";

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

/** The results of a build by platform, with the config the frontend made for each. */
export type PlatformResult = { platform: Platform; id: string; ref?: ImmutableRef; config?: Uint8Array };

/** Splits a frontend result into platforms (one for a single-ref result). */
export function platformsOf(result: FrontendResult): PlatformResult[] {
  if (result.refs && Object.keys(result.refs).length > 0) {
    return Object.entries(result.refs)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([id, ref]) => ({
        id,
        platform: normalizePlatform(parsePlatform(id)),
        ref: ref as ImmutableRef,
        config: result.metadata[`containerimage.config/${id}`] ?? result.metadata["containerimage.config"],
      }));
  }
  const config = result.metadata["containerimage.config"];
  let platform = hostPlatform();
  if (config) {
    const c = parseConfig(config);
    if (c.os && c.architecture)
      platform = normalizePlatform({ os: c.os, architecture: c.architecture, variant: c.variant });
  }
  return [{ id: formatPlatform(platform), platform, ref: result.ref as ImmutableRef | undefined, config }];
}

/** Builds the image (layers, configs, manifests, index) into the content store. */
export async function buildImage(
  result: FrontendResult,
  opts: ImageOptions,
  deps: LayerDeps & { lease?: string },
  ctx: { log: VertexLog; signal: AbortSignal; inlineCache?: InlineCacheHook },
): Promise<BuiltImage> {
  const platforms = platformsOf(result);
  const oci = opts.ociMediaTypes;
  const blobs: Descriptor[] = [];
  const manifests: BuiltManifest[] = [];
  const write = async (mediaType: string, value: unknown): Promise<Descriptor> => {
    const bytes = Buffer.from(JSON.stringify(value));
    const c = await deps.content.writeBlob(bytes, { lease: deps.lease });
    const d: Descriptor = { mediaType, digest: c.digest, size: c.size };
    blobs.push(d);
    return d;
  };
  for (const p of platforms) {
    const layers = p.ref
      ? await layerBlobs(
          p.ref,
          deps,
          {
            compression: opts.compression,
            level: opts.compressionLevel,
            force: opts.forceCompression,
            clampMtime: opts.rewriteTimestamp ? opts.epoch : undefined,
            lease: deps.lease,
          },
          ctx,
        )
      : [];
    const layerDescs = layers.map((l) => layerDescriptor(l, oci));
    blobs.push(...layerDescs);
    const history = p.ref ? layerHistory(p.ref, deps) : [];
    const config = imageConfig(p, layers, history, opts.epoch);
    if (ctx.inlineCache && p.ref) {
      const inline = await ctx.inlineCache(
        p.ref,
        layers.map((l, i) => ({ desc: layerDescs[i]!, diffID: l.diffID })),
      );
      Object.assign(config, inline);
    }
    const configDesc = await write(oci ? MediaTypes.ociConfig : MediaTypes.dockerConfig, config);
    const manifestType = oci ? MediaTypes.ociManifest : MediaTypes.dockerManifest;
    const annotations = annotationsFor(opts.annotations.manifest, p.id);
    const manifest = {
      schemaVersion: 2,
      mediaType: manifestType,
      config: configDesc,
      layers: layerDescs,
      ...(annotations ? { annotations } : {}),
    };
    const desc = await write(manifestType, manifest);
    const descAnnotations = annotationsFor(opts.annotations.manifestDescriptor, p.id);
    manifests.push({
      descriptor: {
        ...desc,
        platform: p.platform,
        ...(descAnnotations ? { annotations: descAnnotations } : {}),
      },
      config: configDesc,
      layers: layerDescs,
      platform: p.platform,
    });
  }
  if (manifests.length === 1) {
    const only = manifests[0]!;
    const { platform: _platform, ...root } = only.descriptor;
    return { root, manifests, blobs };
  }
  const indexType = oci ? MediaTypes.ociIndex : MediaTypes.dockerList;
  const annotations = annotationsFor(opts.annotations.index);
  const index = await write(indexType, {
    schemaVersion: 2,
    mediaType: indexType,
    manifests: manifests.map((m) => m.descriptor),
    ...(annotations ? { annotations } : {}),
  });
  return { root: index, manifests, index, blobs };
}

/** A layer's descriptor in OCI or Docker terms; a pulled blob keeps an unusual media type. */
function layerDescriptor(l: LayerBlob, oci: boolean): Descriptor {
  const known = Object.values(LAYER_TYPES).some((t) => Object.values(t).includes(l.pulledMediaType as never));
  const mediaType =
    l.pulledMediaType && !known ? l.pulledMediaType : LAYER_TYPES[oci ? "oci" : "docker"][l.compression];
  return { mediaType, digest: l.digest, size: l.size };
}

/** When and by what each layer was made, from its cache record, for history entries the frontend did not write. */
function layerHistory(ref: ImmutableRef, deps: LayerDeps): { createdAt?: number; description?: string }[] {
  return ref.layers().map((l) => {
    const cache = cacheOf(deps, l.key);
    if (!cache.exists(l.key)) return {};
    const info = cache.row(l.key, "describing a layer");
    return { createdAt: info.createdAt, description: info.description };
  });
}

type History = NonNullable<ImageConfigFile["history"]>[number];

/** The image config: the frontend's, or an empty one, with platform, rootfs, history and times. */
export function imageConfig(
  p: Pick<PlatformResult, "platform" | "config">,
  layers: Pick<LayerBlob, "diffID">[],
  refHistory: { createdAt?: number; description?: string }[],
  epoch: number | undefined,
  now = Date.now(),
): ImageConfigFile {
  const base: Partial<ImageConfigFile> = p.config
    ? parseConfig(p.config)
    : { config: { Env: [DEFAULT_PATH] } };
  const img: ImageConfigFile = {
    ...base,
    architecture: base.architecture || p.platform.architecture,
    os: base.os || p.platform.os,
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffID) },
  };
  if (!base.architecture && p.platform.variant) img.variant = p.platform.variant;
  let history: History[] = [...(base.history ?? [])];
  // BuildKit's normalizeLayersAndHistory: one non-empty history entry per layer.
  const nonEmpty = history.filter((h) => !h.empty_layer).length;
  if (nonEmpty > layers.length) {
    let seen = 0;
    history = history.map((h) => {
      if (h.empty_layer) return h;
      seen++;
      return seen > layers.length ? { ...h, empty_layer: true } : h;
    });
  } else if (nonEmpty < layers.length) {
    for (const md of refHistory.slice(nonEmpty, layers.length)) {
      history.push({
        ...(md.createdAt !== undefined ? { created: rfc3339(md.createdAt) } : {}),
        created_by: md.description ?? "",
        comment: HISTORY_COMMENT,
      });
    }
  }
  if (epoch !== undefined) {
    const at = rfc3339(epoch * 1000);
    img.created = at;
    history = history.map((h) =>
      h.created === undefined || Date.parse(h.created) > epoch * 1000 ? { ...h, created: at } : h,
    );
  } else if (!img.created) {
    img.created = rfc3339(now);
  }
  if (history.length > 0) img.history = history;
  else delete img.history;
  return img;
}

/** Times as Go writes them: RFC 3339, fractional seconds only when there are some. */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(".000Z", "Z");
}

function parseConfig(bytes: Uint8Array): ImageConfigFile {
  try {
    const c = JSON.parse(Buffer.from(bytes).toString("utf8")) as ImageConfigFile;
    if (typeof c !== "object" || c === null || Array.isArray(c)) throw new Error("not a JSON object");
    return c;
  } catch (e) {
    throw new Error(
      `reading the image config the frontend made (containerimage.config): ${(e as Error).message}`,
    );
  }
}

/** The digests of every blob, for leases and the image store. */
export function blobDigests(image: BuiltImage): Digest[] {
  return [...new Set(image.blobs.map((b) => b.digest))];
}

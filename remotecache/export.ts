// Writing an exported cache: the layer blobs and the cache config into the content store, then
// a manifest (image-manifest=true: an OCI image manifest whose config is the cache config) or,
// by default, an index listing the layers and the config as BuildKit writes it; pushed to a
// registry or written to a local OCI layout. Blobs are held by a lease while this runs.
import type { CacheManager } from "../cache/manager.ts";
import type { ContentStore } from "../content/store.ts";
import type { RegistryConfig } from "../control/config.ts";
import type { BuiltImage, BuiltManifest } from "../exporter/image-build.ts";
import { insecureRegistryClient, pushImage, sessionCredentials } from "../exporter/push.ts";
import { parseImageRef } from "../llb/imageref.ts";
import { type Descriptor, hostPlatform, MediaTypes, type RegistryClient } from "../source/registry/index.ts";
import type { SessionAccess } from "../worker/types.ts";
import type { VertexLog } from "../worker/vertex-log.ts";
import { buildCache, type CacheSource } from "./build.ts";
import { writeLayout } from "./layout.ts";
import { bool, type CacheExportOptions } from "./options.ts";
import { CACHE_CONFIG_MEDIA_TYPE } from "./spec.ts";

/** What exporting needs from the daemon. */
export type ExportDeps = {
  cache: CacheManager;
  content: ContentStore;
  registry: RegistryClient;
  /** The daemon's [registry."host"] settings, for registry.insecure. */
  registryHosts: Record<string, RegistryConfig>;
  mountBase?: string;
};

/** Where one export goes. */
export type ExportTarget =
  | { type: "registry"; ref: string; insecure: boolean }
  | { type: "local"; dest: string; tag: string };

/** Context of one export: the client's session (registry credentials), progress, cancellation. */
export type CacheExportContext = { session?: SessionAccess; log: VertexLog; signal: AbortSignal };

/** Blobs of an export are held this long at most if the daemon dies before the lease is dropped. */
const EXPORT_LEASE_MS = 24 * 60 * 60 * 1000;

/** The target an export's attributes name. */
export function exportTarget(type: string, attrs: Record<string, string>): ExportTarget {
  if (type === "registry")
    return { type, ref: attrs.ref!, insecure: bool(attrs, "registry.insecure", false) };
  if (type === "local") return { type, dest: attrs.dest!, tag: attrs.tag ?? "latest" };
  throw new Error(`cache type=${type} is not written by itself`);
}

/** Builds the cache of `source` and writes it to `target`. */
export async function exportCache(
  source: CacheSource,
  opts: CacheExportOptions,
  target: ExportTarget,
  deps: ExportDeps,
  ctx: CacheExportContext,
): Promise<Descriptor> {
  const lease = deps.content.createLease({ expiresAt: Date.now() + EXPORT_LEASE_MS });
  try {
    const built = await buildCache(source, opts, { ...deps, lease }, ctx);
    const write = async (mediaType: string, value: unknown): Promise<Descriptor> => {
      const c = await deps.content.writeBlob(Buffer.from(JSON.stringify(value)), { lease });
      return { mediaType, digest: c.digest, size: c.size };
    };
    const config = await write(CACHE_CONFIG_MEDIA_TYPE, built.config);
    const leaves = [...built.layers, config];
    let image: BuiltImage;
    if (opts.imageManifest) {
      const mediaType = MediaTypes.ociManifest;
      const root = await write(mediaType, { schemaVersion: 2, mediaType, config, layers: built.layers });
      const manifest: BuiltManifest = {
        descriptor: root,
        config,
        layers: built.layers,
        platform: hostPlatform(),
      };
      image = { root, manifests: [manifest], blobs: [...leaves, root] };
    } else {
      const mediaType = opts.ociMediaTypes ? MediaTypes.ociIndex : MediaTypes.dockerList;
      const root = await write(mediaType, { schemaVersion: 2, mediaType, manifests: leaves });
      image = { root, manifests: [], index: root, blobs: [...leaves, root] };
    }
    if (target.type === "local") {
      await writeLayout(target.dest, deps.content, leaves, image.root, target.tag, ctx.signal);
    } else {
      await push(image, target, deps, ctx);
    }
    return image.root;
  } finally {
    deps.content.deleteLease(lease);
  }
}

async function push(
  image: BuiltImage,
  target: Extract<ExportTarget, { type: "registry" }>,
  deps: ExportDeps,
  ctx: CacheExportContext,
): Promise<void> {
  const host = parseImageRef(target.ref).domain;
  const registry = target.insecure
    ? await insecureRegistryClient(host, { hosts: deps.registryHosts, store: deps.content }, ctx.signal)
    : deps.registry;
  try {
    await pushImage(registry, deps.content, target.ref, image, {
      byDigest: false,
      credentials: sessionCredentials(ctx.session),
      log: ctx.log,
      signal: ctx.signal,
    });
  } catch (e) {
    throw new Error(`pushing the cache to ${target.ref}: ${(e as Error).message}`, { cause: e });
  } finally {
    if (registry !== deps.registry) registry.close();
  }
}

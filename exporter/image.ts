// The `image` exporter: the result as an image in the daemon's content store, recorded by name
// in the image store, and pushed when asked (`push=true`). The image is recorded before the
// push, so a registry that refuses the push leaves the local image intact.
import type { CacheManager } from "../cache/manager.ts";
import type { ContentStore } from "../content/store.ts";
import type { RegistryConfig } from "../control/config.ts";
import type { FrontendResult } from "../frontend/types.ts";
import { parseImageRef } from "../llb/imageref.ts";
import type { RegistryClient } from "../source/registry/index.ts";
import type { Exporter, ExportContext } from "./types.ts";
import { blobDigests, type BuiltImage, buildImage } from "./image-build.ts";
import type { ImageStore } from "./image-store.ts";
import { bool, type ImageExporterKind, type ImageOptions, parseImageOptions } from "./options.ts";
import { insecureRegistryClient, pushImage, sessionCredentials } from "./push.ts";

/** What the image-producing exporters need from the daemon. */
export type ImageExporterDeps = {
  cache: CacheManager;
  content: ContentStore;
  registry: RegistryClient;
  /** The daemon's [registry."host"] settings, for insecure pushes. */
  registryHosts: Record<string, RegistryConfig>;
  images: ImageStore;
  /** Where temporary mounts go (the daemon's mnt/ dir). */
  mountBase?: string;
  /** Every worker's cache, when there are several (see LayerDeps). */
  caches?: CacheManager[];
  /** Called after an image is stored under `name` (the containerd worker registers it there too). */
  onImageStored?: (name: string, image: BuiltImage, signal: AbortSignal) => Promise<void>;
};

/** Blobs of an export are held this long at most if the daemon dies before the lease is dropped. */
const EXPORT_LEASE_MS = 24 * 60 * 60 * 1000;

/** Builds the image of a result into the content store, holding its blobs while `use` runs. */
export async function withBuiltImage<T>(
  deps: ImageExporterDeps,
  kind: ImageExporterKind,
  result: FrontendResult,
  attrs: Record<string, string>,
  ctx: ExportContext,
  use: (image: BuiltImage, opts: ImageOptions) => Promise<T>,
): Promise<T> {
  const opts = parseImageOptions(kind, attrs, ctx.buildArgs);
  const lease = deps.content.createLease({ expiresAt: Date.now() + EXPORT_LEASE_MS });
  try {
    const image = await buildImage(result, opts, { ...deps, lease }, ctx);
    return await use(image, opts);
  } finally {
    deps.content.deleteLease(lease);
  }
}

/** BuildKit's exporter response keys for an image. */
export function imageResponse(image: BuiltImage, names: string[]): Record<string, string> {
  const resp: Record<string, string> = {
    "containerimage.digest": image.root.digest,
    "containerimage.descriptor": Buffer.from(JSON.stringify(image.root)).toString("base64"),
  };
  if (image.manifests.length === 1) resp["containerimage.config.digest"] = image.manifests[0]!.config.digest;
  if (names.length > 0) resp["image.name"] = names.join(",");
  return resp;
}

/** `type=image`: store by name, push on request. */
export class ImageExporter implements Exporter {
  private readonly deps: ImageExporterDeps;

  constructor(deps: ImageExporterDeps) {
    this.deps = deps;
  }

  checkAttrs(attrs: Record<string, string>): void {
    parseImageOptions("image", attrs);
  }

  export(
    result: FrontendResult,
    attrs: Record<string, string>,
    ctx: ExportContext,
  ): Promise<Record<string, string>> {
    return withBuiltImage(this.deps, "image", result, attrs, ctx, async (image, opts) => {
      const names = [...opts.names];
      if (bool(attrs, "name-canonical", false)) {
        for (const n of opts.names) {
          const r = parseImageRef(n);
          names.push(`${r.domain}/${r.path}@${image.root.digest}`);
        }
      }
      if (opts.store) {
        for (const n of names) {
          this.deps.images.put(n, image.root, blobDigests(image));
          await this.deps.onImageStored?.(n, image, ctx.signal);
        }
      }
      if (opts.push) await this.push(image, opts, ctx);
      return imageResponse(image, names);
    });
  }

  private async push(image: BuiltImage, opts: ImageOptions, ctx: ExportContext): Promise<void> {
    const credentials = sessionCredentials(ctx.session);
    for (const name of opts.names) {
      const host = parseImageRef(name).domain;
      const registry = opts.insecure
        ? await insecureRegistryClient(
            host,
            { hosts: this.deps.registryHosts, store: this.deps.content },
            ctx.signal,
          )
        : this.deps.registry;
      try {
        await pushImage(registry, this.deps.content, name, image, {
          byDigest: opts.pushByDigest,
          credentials,
          log: ctx.log,
          signal: ctx.signal,
        });
      } catch (e) {
        const kept = opts.store ? ` (the image is kept locally as ${name})` : "";
        throw new Error(`pushing ${name}: ${(e as Error).message}${kept}`, { cause: e });
      } finally {
        if (registry !== this.deps.registry) registry.close();
      }
    }
  }
}

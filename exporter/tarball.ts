// The `oci` and `docker` exporters: the image as one tarball streamed to the client (buildctl
// writes it to `dest` or stdout). `oci` is an OCI image layout (`skopeo copy oci-archive:`);
// `docker` is the same layout with Docker media types plus the manifest.json `docker load` and
// `skopeo copy docker-archive:` read.
import { encodeTarHeader, TAR_END, tarPadding } from "../archive/tar-header.ts";
import type { ContentStore } from "../content/store.ts";
import type { FrontendResult } from "../frontend/types.ts";
import { parseImageRef } from "../llb/imageref.ts";
import { sendToClient } from "../session/filesend/send.ts";
import { type Descriptor, MediaTypes } from "../source/registry/index.ts";
import { digestHex } from "../util/digest.ts";
import type { BuiltImage } from "./image-build.ts";
import { type ImageExporterDeps, imageResponse, withBuiltImage } from "./image.ts";
import { annotationsFor, type ImageOptions, parseImageOptions } from "./options.ts";
import type { ExportContext, Exporter } from "./types.ts";

/** `type=oci` or `type=docker`: an image layout tarball for the client. */
export class TarballExporter implements Exporter {
  private readonly deps: ImageExporterDeps;
  private readonly kind: "oci" | "docker";

  constructor(kind: "oci" | "docker", deps: ImageExporterDeps) {
    this.kind = kind;
    this.deps = deps;
  }

  checkAttrs(attrs: Record<string, string>): void {
    parseImageOptions(this.kind, attrs);
  }

  export(
    result: FrontendResult,
    attrs: Record<string, string>,
    ctx: ExportContext,
  ): Promise<Record<string, string>> {
    return withBuiltImage(this.deps, this.kind, result, attrs, ctx, async (image, opts) => {
      if (this.kind === "docker" && image.manifests.length > 1) {
        throw new Error(
          `the docker exporter writes one image, but the build made ${image.manifests.length} platforms; use type=oci for a multi-platform tarball`,
        );
      }
      const resp = imageResponse(image, opts.names);
      const started = Date.now();
      // The progress display shows the id: it says what is happening.
      const id = `sending ${this.kind} tarball`;
      const sent = await sendToClient(
        ctx.session?.caller,
        imageArchive(this.deps.content, image, opts, this.kind),
        {
          exporterId: ctx.exporterId ?? 0,
          metadata: resp,
          signal: ctx.signal,
          onProgress: (current) => ctx.log.status({ id, name: id, current, total: 0, started }),
        },
      );
      ctx.log.status({ id, name: id, current: sent, total: sent, started, completed: Date.now() });
      return resp;
    });
  }
}

/**
 * The image as an OCI layout in a tar: `oci-layout`, `index.json`, `blobs/sha256/*`, and for
 * docker `manifest.json`. Names, times and order are fixed, so equal images give equal tarballs.
 */
export async function* imageArchive(
  content: ContentStore,
  image: BuiltImage,
  opts: ImageOptions,
  kind: "oci" | "docker",
): AsyncGenerator<Buffer> {
  const mtime = opts.epoch ?? 0;
  const file = (name: string, data: Buffer) =>
    Buffer.concat([
      encodeTarHeader({ name, type: "file", mode: 0o644, uid: 0, gid: 0, size: data.length, mtime }),
      data,
      tarPadding(data.length),
    ]);
  const dir = (name: string) =>
    encodeTarHeader({ name, type: "dir", mode: 0o755, uid: 0, gid: 0, size: 0, mtime });
  yield Buffer.concat([dir("blobs"), dir("blobs/sha256")]);
  for (const b of uniqueBlobs(image)) {
    yield encodeTarHeader({
      name: `blobs/sha256/${digestHex(b.digest)}`,
      type: "file",
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: b.size,
      mtime,
    });
    let n = 0;
    for await (const chunk of await content.readStream(b.digest)) {
      n += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
    if (n !== b.size) throw new Error(`reading blob ${b.digest}: it has ${n} bytes, not ${b.size}`);
    yield tarPadding(b.size);
  }
  yield file("oci-layout", Buffer.from(JSON.stringify({ imageLayoutVersion: "1.0.0" })));
  yield file("index.json", Buffer.from(JSON.stringify(layoutIndex(image, opts))));
  if (kind === "docker")
    yield file("manifest.json", Buffer.from(JSON.stringify(dockerManifest(image, opts))));
  yield TAR_END;
}

/** index.json: the image once per name, named as containerd and skopeo look them up. */
function layoutIndex(image: BuiltImage, opts: ImageOptions) {
  const extra = annotationsFor(opts.annotations.indexDescriptor) ?? {};
  const entry = (annotations: Record<string, string>): Descriptor => {
    const all = { ...annotations, ...extra };
    return { ...image.root, ...(Object.keys(all).length > 0 ? { annotations: all } : {}) };
  };
  const manifests =
    opts.names.length === 0
      ? [entry({})]
      : opts.names.map((n) => {
          const r = parseImageRef(n);
          return entry({
            "io.containerd.image.name": `${r.domain}/${r.path}${r.tag ? `:${r.tag}` : ""}${r.digest ? `@${r.digest}` : ""}`,
            ...(r.tag ? { "org.opencontainers.image.ref.name": r.tag } : {}),
          });
        });
  return { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests };
}

/** manifest.json for `docker load`: config and layers as paths in the tarball, tags in docker's short form. */
function dockerManifest(image: BuiltImage, opts: ImageOptions) {
  const m = image.manifests[0]!;
  return [
    {
      Config: `blobs/sha256/${digestHex(m.config.digest)}`,
      RepoTags: opts.names.filter((n) => parseImageRef(n).tag !== undefined).map(familiarName),
      Layers: m.layers.map((l) => `blobs/sha256/${digestHex(l.digest)}`),
    },
  ];
}

/** docker's familiar form: "busybox:latest" for docker.io/library/busybox:latest. */
export function familiarName(name: string): string {
  const r = parseImageRef(name);
  let repo = `${r.domain}/${r.path}`;
  if (r.domain === "docker.io") repo = r.path.startsWith("library/") ? r.path.slice(8) : r.path;
  return `${repo}:${r.tag ?? "latest"}`;
}

/** Every blob once, in digest order. */
function uniqueBlobs(image: BuiltImage): Descriptor[] {
  const byDigest = new Map<string, Descriptor>();
  for (const b of image.blobs) byDigest.set(b.digest, b);
  return [...byDigest.values()].sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
}

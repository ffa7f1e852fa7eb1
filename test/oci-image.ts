// OCI and Docker image manifests, configs and indexes built in code, and OCI layouts on disk:
// every image a test pulls or imports is made here, byte for byte reproducible.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Digest, digestHex, digestOf } from "../util/digest.ts";
import type { Layer } from "./oci-layer.ts";

export const MEDIA_TYPES = {
  oci: {
    manifest: "application/vnd.oci.image.manifest.v1+json",
    index: "application/vnd.oci.image.index.v1+json",
    config: "application/vnd.oci.image.config.v1+json",
  },
  docker: {
    manifest: "application/vnd.docker.distribution.manifest.v2+json",
    index: "application/vnd.docker.distribution.manifest.list.v2+json",
    config: "application/vnd.docker.container.image.v1+json",
  },
} as const;

export type Platform = { os: string; architecture: string; variant?: string };

/** The Go-style config fields of an image (`config.config`); ports and volumes may be given as lists. */
export type ImageConfig = {
  Env?: string[];
  Cmd?: string[];
  Entrypoint?: string[];
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string>;
  ExposedPorts?: string[] | Record<string, object>;
  Volumes?: string[] | Record<string, object>;
  OnBuild?: string[];
  StopSignal?: string;
  Healthcheck?: { Test: string[]; Interval?: number; Timeout?: number; Retries?: number };
};

export type Descriptor = {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
};

/** A single-platform image: the manifest bytes and every blob it references. */
export type Image = {
  kind: "image";
  mediaType: string;
  manifest: Buffer;
  digest: Digest;
  /** The manifest's descriptor, with the platform, as an index lists it. */
  descriptor: Descriptor;
  config: Buffer;
  configDescriptor: Descriptor;
  layers: Layer[];
  layerDescriptors: Descriptor[];
  platform: Platform;
};

/** A multi-platform image index (or docker manifest list) over images. */
export type ImageIndex = {
  kind: "index";
  mediaType: string;
  manifest: Buffer;
  digest: Digest;
  descriptor: Descriptor;
  images: Image[];
};

/** The platform of this machine in OCI terms, for images whose binaries come from the host. */
export function hostPlatform(): Platform {
  const arch = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x" }[
    process.arch as string
  ];
  return { os: "linux", architecture: arch ?? process.arch };
}

/** Docker manifests name layers differently; zstd has no docker type, so it keeps the OCI one as BuildKit does. */
function layerMediaType(layer: Layer, kind: "oci" | "docker"): string {
  if (kind === "oci" || layer.compression === "zstd") return layer.mediaType;
  return layer.compression === "gzip"
    ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
    : "application/vnd.docker.image.rootfs.diff.tar";
}

/** Builds config and manifest for layers (bottom first); `created` defaults to the epoch for reproducibility. */
export function buildImage(opts: {
  layers: Layer[];
  config?: ImageConfig;
  platform?: Platform;
  mediaTypes?: "oci" | "docker";
  created?: string;
  annotations?: Record<string, string>;
}): Image {
  const kind = opts.mediaTypes ?? "oci";
  const platform = opts.platform ?? { os: "linux", architecture: "amd64" };
  const created = opts.created ?? "1970-01-01T00:00:00Z";
  const asSet = (v: string[] | Record<string, object> | undefined) =>
    Array.isArray(v) ? Object.fromEntries(v.map((k) => [k, {}])) : v;
  const runtime = {
    ...opts.config,
    ExposedPorts: asSet(opts.config?.ExposedPorts),
    Volumes: asSet(opts.config?.Volumes),
  };
  const configJson = {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: runtime,
    rootfs: { type: "layers", diff_ids: opts.layers.map((l) => l.diffID) },
    history: opts.layers.map((_, i) => ({ created, created_by: `buildd test layer ${i}` })),
  };
  const config = Buffer.from(JSON.stringify(configJson));
  const configDescriptor: Descriptor = {
    mediaType: MEDIA_TYPES[kind].config,
    digest: digestOf(config),
    size: config.length,
  };
  const layerDescriptors = opts.layers.map((l) => ({
    mediaType: layerMediaType(l, kind),
    digest: l.digest,
    size: l.size,
  }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES[kind].manifest,
      config: configDescriptor,
      layers: layerDescriptors,
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
    }),
  );
  const digest = digestOf(manifest);
  const mediaType = MEDIA_TYPES[kind].manifest;
  return {
    kind: "image",
    mediaType,
    manifest,
    digest,
    descriptor: { mediaType, digest, size: manifest.length, platform },
    config,
    configDescriptor,
    layers: opts.layers,
    layerDescriptors,
    platform,
  };
}

/** An index over images of different platforms (each image's platform goes into its descriptor). */
export function buildIndex(images: Image[], opts: { mediaTypes?: "oci" | "docker" } = {}): ImageIndex {
  const mediaType = MEDIA_TYPES[opts.mediaTypes ?? "oci"].index;
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType, manifests: images.map((i) => i.descriptor) }),
  );
  const digest = digestOf(manifest);
  return {
    kind: "index",
    mediaType,
    manifest,
    digest,
    descriptor: { mediaType, digest, size: manifest.length },
    images,
  };
}

/** Every blob of an image or index, manifests included, keyed by digest: what a registry or layout must hold. */
export function allBlobs(target: Image | ImageIndex): Map<Digest, Buffer> {
  const blobs = new Map<Digest, Buffer>([[target.digest, target.manifest]]);
  const images = target.kind === "index" ? target.images : [target];
  for (const image of images) {
    blobs.set(image.digest, image.manifest);
    blobs.set(image.configDescriptor.digest, image.config);
    for (const l of image.layers) blobs.set(l.digest, l.blob);
  }
  return blobs;
}

/**
 * Writes an OCI image layout (oci-layout, blobs/, index.json) and adds the image to index.json,
 * tagged with `org.opencontainers.image.ref.name`, replacing an earlier entry with the same tag.
 */
export async function writeOCILayout(
  dir: string,
  target: Image | ImageIndex,
  opts: { tag?: string } = {},
): Promise<void> {
  await mkdir(join(dir, "blobs/sha256"), { recursive: true });
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  for (const [digest, blob] of allBlobs(target)) {
    await writeFile(join(dir, "blobs/sha256", digestHex(digest)), blob);
  }
  const indexPath = join(dir, "index.json");
  const index = await readFile(indexPath, "utf8").then(
    (s) => JSON.parse(s) as { manifests: Descriptor[] },
    () => ({ schemaVersion: 2, mediaType: MEDIA_TYPES.oci.index, manifests: [] as Descriptor[] }),
  );
  const refName = "org.opencontainers.image.ref.name";
  const descriptor: Descriptor = { ...target.descriptor };
  if (opts.tag !== undefined) descriptor.annotations = { [refName]: opts.tag };
  index.manifests = index.manifests.filter(
    (d) => opts.tag === undefined || d.annotations?.[refName] !== opts.tag,
  );
  index.manifests.push(descriptor);
  await writeFile(indexPath, JSON.stringify(index));
}

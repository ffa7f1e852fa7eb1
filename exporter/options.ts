// Exporter attributes (`--output type=image,name=...,push=true`), parsed and checked up front:
// an attribute this daemon does not know, or a value it cannot use, fails the build before
// anything runs, with a message naming the attribute and what it accepts.
import { COMPRESSION_LEVELS, type Compression } from "../archive/compress.ts";
import { parseImageRef } from "../llb/imageref.ts";

/** Which image-producing exporter the options are for; they differ in defaults. */
export type ImageExporterKind = "image" | "oci" | "docker";

/** One annotation and where it goes; `platform` limits it to one manifest of an index. */
export type Annotation = { key: string; value: string; platform?: string };

/** Annotations by the object that carries them. */
export type Annotations = {
  manifest: Annotation[];
  manifestDescriptor: Annotation[];
  index: Annotation[];
  indexDescriptor: Annotation[];
};

/** Everything that shapes an exported image. */
export type ImageOptions = {
  names: string[];
  push: boolean;
  pushByDigest: boolean;
  /** Push over plain http or without verifying TLS. */
  insecure: boolean;
  /** Record the image in the daemon's image store. */
  store: boolean;
  ociMediaTypes: boolean;
  compression: Compression;
  compressionLevel?: number;
  forceCompression: boolean;
  rewriteTimestamp: boolean;
  /** SOURCE_DATE_EPOCH in seconds, from the attribute or the build's args (filled at export). */
  epoch?: number;
  annotations: Annotations;
};

const COMMON = [
  "name",
  "compression",
  "compression-level",
  "force-compression",
  "oci-mediatypes",
  "rewrite-timestamp",
  "source-date-epoch",
] as const;
const IMAGE_ONLY = ["push", "push-by-digest", "registry.insecure", "store", "name-canonical"] as const;
/** `dest` is the client's business (buildctl writes the stream there); BuildKit clients remove it. */
const TARBALL_ONLY = ["dest"] as const;

/** Parses and checks image, oci or docker exporter attributes. */
export function parseImageOptions(
  kind: ImageExporterKind,
  attrs: Record<string, string>,
  buildArgs: Record<string, string> = {},
): ImageOptions {
  const known = new Set<string>([...COMMON, ...(kind === "image" ? IMAGE_ONLY : TARBALL_ONLY)]);
  const annotations: Annotations = { manifest: [], manifestDescriptor: [], index: [], indexDescriptor: [] };
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("annotation")) {
      addAnnotation(annotations, k, v);
      continue;
    }
    if (!known.has(k)) {
      throw new Error(
        `unknown attribute ${JSON.stringify(k)}; the ${kind} exporter accepts ${[...known].sort().join(", ")} and annotation.*`,
      );
    }
  }
  const names = (attrs.name ?? "")
    .split(",")
    .map((n) => n.trim())
    .filter((n) => n !== "");
  for (const n of names) {
    try {
      parseImageRef(n);
    } catch (e) {
      throw new Error(`name=${n}: ${(e as Error).message}`);
    }
  }
  const compression = parseCompression(attrs.compression);
  const compressionLevel = parseLevel(attrs["compression-level"], compression);
  const push = bool(attrs, "push", false);
  const pushByDigest = bool(attrs, "push-by-digest", false);
  if (push && names.length === 0) {
    throw new Error("push=true needs a name=REGISTRY/REPOSITORY[:TAG] to push to");
  }
  const annotated = Object.values(annotations).some((a) => a.length > 0);
  const ociDefault = kind === "oci" || compression === "zstd" || annotated;
  const ociMediaTypes = bool(attrs, "oci-mediatypes", ociDefault);
  if (!ociMediaTypes && compression === "zstd") {
    throw new Error("compression=zstd needs OCI media types: drop oci-mediatypes=false");
  }
  if (!ociMediaTypes && annotated) {
    throw new Error("annotations need OCI media types: drop oci-mediatypes=false");
  }
  if (kind === "docker" && (annotations.index.length > 0 || annotations.indexDescriptor.length > 0)) {
    throw new Error("the docker exporter writes no index: index annotations are not supported");
  }
  return {
    names,
    push,
    pushByDigest,
    insecure: bool(attrs, "registry.insecure", false),
    store: bool(attrs, "store", true),
    ociMediaTypes,
    compression,
    compressionLevel,
    forceCompression: bool(attrs, "force-compression", false),
    rewriteTimestamp: bool(attrs, "rewrite-timestamp", false),
    epoch: parseEpoch(attrs, buildArgs),
    annotations,
  };
}

/** SOURCE_DATE_EPOCH: the `source-date-epoch` attribute, else the build arg the frontend got. */
export function parseEpoch(
  attrs: Record<string, string>,
  buildArgs: Record<string, string>,
): number | undefined {
  const [from, raw] =
    attrs["source-date-epoch"] !== undefined
      ? ["source-date-epoch", attrs["source-date-epoch"]]
      : buildArgs["build-arg:SOURCE_DATE_EPOCH"] !== undefined
        ? ["build-arg:SOURCE_DATE_EPOCH", buildArgs["build-arg:SOURCE_DATE_EPOCH"]]
        : ["SOURCE_DATE_EPOCH", buildArgs.SOURCE_DATE_EPOCH];
  if (raw === undefined || raw === "") return undefined;
  if (!/^\d{1,12}$/.test(raw)) {
    throw new Error(
      `${from}=${raw}: want whole seconds since 1970-01-01 UTC (e.g. $(git log -1 --format=%ct))`,
    );
  }
  return Number(raw);
}

/** A boolean attribute: "true"/"false" (and an empty value, as for a bare flag, means true). */
export function bool(attrs: Record<string, string>, key: string, fallback: boolean): boolean {
  const v = attrs[key];
  if (v === undefined) return fallback;
  if (v === "" || v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw new Error(`${key}=${v}: want true or false`);
}

function parseCompression(v: string | undefined): Compression {
  if (v === undefined || v === "gzip") return "gzip";
  if (v === "zstd" || v === "uncompressed") return v;
  if (v === "estargz") throw new Error("compression=estargz is not supported by buildd; use gzip or zstd");
  throw new Error(`compression=${v}: want gzip, zstd or uncompressed`);
}

function parseLevel(v: string | undefined, compression: Compression): number | undefined {
  if (v === undefined || compression === "uncompressed") return undefined;
  const [min, max] = COMPRESSION_LEVELS[compression];
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) {
    throw new Error(`compression-level=${v}: ${compression} takes ${min} to ${max}`);
  }
  return n;
}

const ANNOTATION_RE =
  /^annotation(?:-(manifest|manifest-descriptor|index|index-descriptor))?(?:\[([^\]]+)\])?\.(.+)$/;

function addAnnotation(a: Annotations, key: string, value: string): void {
  const m = ANNOTATION_RE.exec(key);
  if (!m) {
    throw new Error(
      `unknown attribute ${JSON.stringify(key)}: annotations are annotation[-manifest|-manifest-descriptor|-index|-index-descriptor][PLATFORM].KEY=VALUE`,
    );
  }
  const [, where = "manifest", platform, name] = m;
  if (platform !== undefined && (where === "index" || where === "index-descriptor")) {
    throw new Error(`${key}: an index annotation cannot name a platform`);
  }
  const entry: Annotation = { key: name!, value, ...(platform ? { platform } : {}) };
  if (where === "manifest") a.manifest.push(entry);
  else if (where === "manifest-descriptor") a.manifestDescriptor.push(entry);
  else if (where === "index") a.index.push(entry);
  else a.indexDescriptor.push(entry);
}

/** The annotations that apply to the manifest of `platform` ("linux/amd64"). */
export function annotationsFor(list: Annotation[], platform?: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const a of list) if (a.platform === undefined || a.platform === platform) out[a.key] = a.value;
  return Object.keys(out).length > 0 ? out : undefined;
}

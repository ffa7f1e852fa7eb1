// Attributes of `--export-cache` and `--import-cache`, checked before the build: an unknown
// attribute or a bad value fails the solve at once, naming the attribute and what it takes.
import { COMPRESSION_LEVELS, type Compression } from "../archive/compress.ts";
import { parseImageRef } from "../llb/imageref.ts";

/** How an exported cache is made. */
export type CacheExportOptions = {
  /** min: the records whose results are layers of the build result; max: every step. */
  mode: "min" | "max";
  compression: Compression;
  compressionLevel?: number;
  forceCompression: boolean;
  ociMediaTypes: boolean;
  /** Registry: an image manifest with the cache config as its config, instead of an index. */
  imageManifest: boolean;
  /** A failed export is a warning instead of a failed build. */
  ignoreError: boolean;
};

const EXPORT_COMMON = [
  "mode",
  "compression",
  "compression-level",
  "force-compression",
  "oci-mediatypes",
  "image-manifest",
  "ignore-error",
];

/** The attributes each cache type accepts, beyond the common ones. */
const EXPORT_ATTRS: Record<string, string[]> = {
  registry: ["ref", "registry.insecure"],
  local: ["dest", "tag"],
  inline: [],
};
/** Imports from an insecure registry use the daemon's [registry."host"] settings (http, insecure). */
const IMPORT_ATTRS: Record<string, string[]> = {
  registry: ["ref"],
  local: ["src", "tag", "digest"],
};

/** Parses and checks the attributes of one `--export-cache` of `type`. */
export function parseExportOptions(type: string, attrs: Record<string, string>): CacheExportOptions {
  const known = EXPORT_ATTRS[type];
  if (!known) throw new Error(`unknown cache type ${JSON.stringify(type)}; use registry, local or inline`);
  checkKnown(attrs, [...EXPORT_COMMON, ...known], `type=${type}`);
  if (type === "registry") requireRef(attrs.ref, "type=registry");
  if (type === "local") requireAbsolute(attrs.dest, "dest", "type=local");
  const mode = attrs.mode ?? "min";
  if (mode !== "min" && mode !== "max") throw new Error(`mode=${mode}: want min or max`);
  if (type === "inline" && mode === "max")
    throw new Error(
      "type=inline only exports mode=min (the image's own layers); use type=registry for mode=max",
    );
  const compression = parseCompression(attrs.compression);
  const ociMediaTypes = bool(attrs, "oci-mediatypes", true);
  if (!ociMediaTypes && compression === "zstd")
    throw new Error("compression=zstd needs OCI media types: drop oci-mediatypes=false");
  const imageManifest = bool(attrs, "image-manifest", false);
  if (imageManifest && !ociMediaTypes)
    throw new Error("image-manifest=true needs OCI media types: drop oci-mediatypes=false");
  return {
    mode,
    compression,
    compressionLevel: parseLevel(attrs["compression-level"], compression),
    forceCompression: bool(attrs, "force-compression", false),
    ociMediaTypes,
    imageManifest,
    ignoreError: bool(attrs, "ignore-error", false),
  };
}

/** Checks the attributes of one `--import-cache` of `type`. */
export function checkImportOptions(type: string, attrs: Record<string, string>): void {
  const known = IMPORT_ATTRS[type];
  if (!known) throw new Error(`unknown cache type ${JSON.stringify(type)}; use registry or local`);
  checkKnown(attrs, known, `type=${type}`);
  if (type === "registry") requireRef(attrs.ref, "type=registry");
  if (type === "local") requireAbsolute(attrs.src, "src", "type=local");
  if (attrs.digest !== undefined && !/^sha256:[a-f0-9]{64}$/.test(attrs.digest))
    throw new Error(`digest=${attrs.digest}: want sha256:<64 hex digits>`);
}

function checkKnown(attrs: Record<string, string>, known: string[], what: string): void {
  for (const k of Object.keys(attrs)) {
    if (!known.includes(k))
      throw new Error(
        `${what}: unknown attribute ${JSON.stringify(k)}; it accepts ${[...known].sort().join(", ")}`,
      );
  }
}

function requireRef(ref: string | undefined, what: string): void {
  if (!ref) throw new Error(`${what} needs ref=REGISTRY/REPOSITORY[:TAG]`);
  try {
    parseImageRef(ref);
  } catch (e) {
    throw new Error(`${what}: ref=${ref}: ${(e as Error).message}`);
  }
}

/** Local caches are read and written by the daemon: the path must be absolute on its host. */
function requireAbsolute(path: string | undefined, key: string, what: string): void {
  if (!path) throw new Error(`${what} needs ${key}=DIRECTORY`);
  if (!path.startsWith("/"))
    throw new Error(`${what}: ${key}=${path}: give an absolute path (the daemon reads and writes it)`);
  if (path.split("/").includes("..")) throw new Error(`${what}: ${key}=${path}: a path with ".." is refused`);
}

/** A boolean attribute: "true"/"false" (an empty value, as for a bare flag, means true). */
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
  throw new Error(`compression=${v}: want gzip, zstd or uncompressed`);
}

function parseLevel(v: string | undefined, compression: Compression): number | undefined {
  if (v === undefined || compression === "uncompressed") return undefined;
  const [min, max] = COMPRESSION_LEVELS[compression];
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max)
    throw new Error(`compression-level=${v}: ${compression} takes ${min} to ${max}`);
  return n;
}

// Manifests, indexes and image configs as they come off the wire: Docker v2 schema 2 and OCI,
// validated before anything is done with them (digests go near paths, sizes bound downloads).
import { isDigest } from "../../util/digest.ts";
import type { Digest } from "../../util/digest.ts";
import { RegistryError } from "./errors.ts";
import type { Platform } from "./platform.ts";

/** The media types the client reads and writes. */
export const MediaTypes = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  dockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

/** What a manifest GET accepts: every index and manifest type we read, schema 1 not among them. */
export const MANIFEST_ACCEPT = [
  MediaTypes.ociIndex,
  MediaTypes.dockerList,
  MediaTypes.ociManifest,
  MediaTypes.dockerManifest,
].join(", ");

/** Registries refuse manifests over 4 MiB; so do we. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Image configs are small JSON; this only stops a hostile registry from filling memory. */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** An OCI content descriptor. */
export type Descriptor = {
  mediaType: string;
  digest: Digest;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
};

/** An image manifest (Docker schema 2 or OCI). */
export type ImageManifest = {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
};

/** An image index (OCI) or manifest list (Docker). */
export type ImageIndex = {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
};

/** The runtime part of an image config, as frontends read it. */
export type ImageRuntimeConfig = {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  OnBuild?: string[] | null;
  Shell?: string[];
  Healthcheck?: {
    Test?: string[];
    Interval?: number;
    Timeout?: number;
    StartPeriod?: number;
    Retries?: number;
  };
  ArgsEscaped?: boolean;
};

/** An image config file (OCI image-spec config.md, which Docker's is a superset of). */
export type ImageConfigFile = {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  "os.version"?: string;
  config?: ImageRuntimeConfig;
  rootfs: { type: string; diff_ids: Digest[] };
  history?: {
    created?: string;
    created_by?: string;
    comment?: string;
    empty_layer?: boolean;
    author?: string;
  }[];
  [key: string]: unknown;
};

/** A parsed manifest or index, with its media type settled. */
export type ParsedManifest =
  | { kind: "index"; mediaType: string; index: ImageIndex }
  | { kind: "manifest"; mediaType: string; manifest: ImageManifest };

const INDEX_TYPES = new Set<string>([MediaTypes.ociIndex, MediaTypes.dockerList]);
const MANIFEST_TYPES = new Set<string>([MediaTypes.ociManifest, MediaTypes.dockerManifest]);

/** True for index and manifest-list media types. */
export function isIndexMediaType(mediaType: string): boolean {
  return INDEX_TYPES.has(mediaType);
}

/**
 * Parses manifest bytes; `contentType` is the registry's Content-Type. The JSON's own
 * mediaType wins over the header; schema 1 is refused with a message saying what to do.
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined, what: string): ParsedManifest {
  const header = contentType?.split(";")[0]?.trim();
  if (header === MediaTypes.dockerSchema1 || header === MediaTypes.dockerSchema1Signed) throw schema1(what);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new RegistryError("invalid", `${what}: the manifest is not JSON: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new RegistryError("invalid", `${what}: the manifest is not a JSON object`);
  }
  if (json["schemaVersion"] === 1) throw schema1(what);
  if (json["schemaVersion"] !== 2) {
    throw new RegistryError(
      "unsupported",
      `${what}: manifest schemaVersion ${String(json["schemaVersion"])} is not supported`,
    );
  }
  const declared = typeof json["mediaType"] === "string" ? json["mediaType"] : undefined;
  const mediaType = declared ?? header ?? "";
  if (Array.isArray(json["manifests"])) {
    if (declared !== undefined && !INDEX_TYPES.has(declared)) throw mixed(what, declared, "an index");
    const manifests = json["manifests"].map((d, i) => descriptor(d, `${what}: manifests[${i}]`));
    const index: ImageIndex = { schemaVersion: 2, manifests };
    if (declared) index.mediaType = declared;
    if (isStringMap(json["annotations"])) index.annotations = json["annotations"];
    return { kind: "index", mediaType: INDEX_TYPES.has(mediaType) ? mediaType : MediaTypes.ociIndex, index };
  }
  if (json["config"] !== undefined && Array.isArray(json["layers"])) {
    if (declared !== undefined && !MANIFEST_TYPES.has(declared))
      throw mixed(what, declared, "an image manifest");
    const manifest: ImageManifest = {
      schemaVersion: 2,
      config: descriptor(json["config"], `${what}: config`),
      layers: json["layers"].map((d, i) => descriptor(d, `${what}: layers[${i}]`)),
    };
    if (declared) manifest.mediaType = declared;
    if (isStringMap(json["annotations"])) manifest.annotations = json["annotations"];
    return {
      kind: "manifest",
      mediaType: MANIFEST_TYPES.has(mediaType) ? mediaType : MediaTypes.ociManifest,
      manifest,
    };
  }
  throw new RegistryError(
    "unsupported",
    `${what}: ${mediaType || "the manifest"} is neither an image manifest nor an index (artifacts are not images)`,
  );
}

/** Parses and checks an image config blob. */
export function parseImageConfig(bytes: Buffer, what: string): ImageConfigFile {
  let json: ImageConfigFile;
  try {
    json = JSON.parse(bytes.toString("utf8")) as ImageConfigFile;
  } catch (e) {
    throw new RegistryError("invalid", `${what}: the image config is not JSON: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new RegistryError("invalid", `${what}: the image config is not a JSON object`);
  }
  if (json.config !== undefined && (json.config === null || typeof json.config !== "object")) {
    throw new RegistryError("invalid", `${what}: the image config's "config" is not an object`);
  }
  const diffIDs = json.rootfs?.diff_ids;
  if (
    diffIDs !== undefined &&
    (!Array.isArray(diffIDs) || !diffIDs.every((d) => typeof d === "string" && isDigest(d)))
  ) {
    throw new RegistryError("invalid", `${what}: rootfs.diff_ids must be sha256 digests`);
  }
  return json;
}

/** Checks one descriptor: a sha256 digest (only sha256 is stored), a whole size, a media type. */
export function descriptor(raw: unknown, what: string): Descriptor {
  if (raw === null || typeof raw !== "object")
    throw new RegistryError("invalid", `${what}: not a descriptor object`);
  const d = raw as Record<string, unknown>;
  if (typeof d["digest"] !== "string")
    throw new RegistryError("invalid", `${what}: descriptor without a digest`);
  if (!isDigest(d["digest"])) {
    const algo = /^([a-z0-9+._-]+):/.exec(d["digest"])?.[1];
    throw new RegistryError(
      algo !== undefined && algo !== "sha256" ? "unsupported" : "invalid",
      `${what}: digest ${JSON.stringify(d["digest"].slice(0, 80))} is not a sha256 digest`,
    );
  }
  if (typeof d["size"] !== "number" || !Number.isSafeInteger(d["size"]) || d["size"] < 0) {
    throw new RegistryError(
      "invalid",
      `${what}: descriptor size ${String(d["size"])} is not a whole number of bytes`,
    );
  }
  const out: Descriptor = {
    mediaType: typeof d["mediaType"] === "string" ? d["mediaType"] : "",
    digest: d["digest"],
    size: d["size"],
  };
  const p = d["platform"] as Record<string, unknown> | undefined;
  if (p !== undefined && p !== null && typeof p === "object") {
    if (typeof p["os"] === "string" && typeof p["architecture"] === "string") {
      out.platform = { os: p["os"], architecture: p["architecture"] };
      if (typeof p["variant"] === "string" && p["variant"] !== "") out.platform.variant = p["variant"];
      if (typeof p["os.version"] === "string") out.platform["os.version"] = p["os.version"];
    }
  }
  if (isStringMap(d["annotations"])) out.annotations = d["annotations"];
  if (Array.isArray(d["urls"]) && d["urls"].every((u) => typeof u === "string"))
    out.urls = d["urls"] as string[];
  return out;
}

function isStringMap(v: unknown): v is Record<string, string> {
  return (
    v !== null &&
    typeof v === "object" &&
    !Array.isArray(v) &&
    Object.values(v).every((x) => typeof x === "string")
  );
}

function schema1(what: string): RegistryError {
  return new RegistryError(
    "unsupported",
    `${what}: this is a Docker schema 1 manifest, which is deprecated and not supported; push the image again with a current docker (schema 2) or use another tag`,
  );
}

function mixed(what: string, declared: string, shape: string): RegistryError {
  return new RegistryError(
    "invalid",
    `${what}: the manifest says its mediaType is ${declared} but it is shaped like ${shape}`,
  );
}

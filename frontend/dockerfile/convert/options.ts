// What a Dockerfile conversion takes and gives back.
import type { PlatformSpec, State } from "../../../llb/index.ts";
import type { Warning } from "../lint.ts";
import type { Range } from "../parser/errors.ts";
import type { LocalContextOptions, NamedContextValue } from "./context.ts";
import type { DockerImage, ImageHistory, ImageRunConfig } from "./image.ts";

/** A resolved base image: its config, and the digest that pins the reference. */
export interface ResolvedImage {
  /** "sha256:..." of the manifest the config belongs to; "" leaves the reference unpinned. */
  digest: string;
  /** The image config, as JSON bytes or parsed. */
  config: Uint8Array | string | object;
  /** The reference after resolution, when the resolver rewrote it (mirrors, policies). */
  ref?: string;
}

/** Resolves an image reference to its config for a platform (the daemon talks to the registry). */
export type ImageConfigResolver = (
  ref: string,
  opts: { platform: PlatformSpec; logName: string; resolveMode: ResolveMode },
) => Promise<ResolvedImage>;

export type ResolveMode = "default" | "pull" | "local";

export interface ConvertInput {
  /** The Dockerfile text. */
  dockerfile: Uint8Array | string;
  /** Its name, for errors and progress ("Dockerfile"). */
  filename?: string;
  /** The stage to build; the last one when unset. */
  target?: string;
  /** `build-arg:K=V` values. */
  buildArgs?: Record<string, string>;
  /** `label:K=V` values added to the result's config. */
  labels?: Record<string, string>;
  /** The platform to build for; the build platform when unset. */
  targetPlatform?: PlatformSpec;
  /** The platform(s) steps run on natively; the host when unset. */
  buildPlatforms?: PlatformSpec[];
  /** Several platforms are built at once: prefix progress names with the platform. */
  multiPlatform?: boolean;
  /** Ignore the cache for every stage (true) or for the named stages. */
  noCache?: boolean | string[];
  /** Extra /etc/hosts entries for RUN. */
  addHosts?: { host: string; ip: string }[];
  /** `context:NAME=value` overrides for stages and images. */
  namedContexts?: Record<string, NamedContextValue>;
  /** The .dockerignore (or Dockerfile.dockerignore) text, applied to the context transfer. */
  dockerignore?: string | Uint8Array;
  /** Builds the state of a local directory; the default is llb.local(name, ...). */
  localContext?: (opts: LocalContextOptions) => State;
  /** Looks up base image configs; without one, images are used unpinned with empty configs. */
  resolveImageConfig?: ImageConfigResolver;
  resolveMode?: ResolveMode;
  /** SOURCE_DATE_EPOCH in seconds: history timestamps (also read from the build arg). */
  sourceDateEpoch?: number;
  /** Hostname for RUN. */
  hostname?: string;
  /** Namespace for cache mount ids (BUILDKIT_CACHE_MOUNT_NS). */
  cacheIdNamespace?: string;
}

/** Where each named op came from: progress name → line ranges, plus the source text. */
export interface SourceMap {
  filename: string;
  language: "Dockerfile";
  data: string;
  /** Keyed by the op's progress name (its llb.customname). */
  locations: Map<string, Range[]>;
}

export interface ConvertResult {
  /** The target stage's filesystem; marshal it to get the Definition. */
  state: State;
  /** The image config of the result (platform, config, rootfs, history). */
  image: DockerImage;
  /** `image.config`. */
  imageConfig: ImageRunConfig;
  /** `image.history`: the base image's entries followed by this build's. */
  history: ImageHistory[];
  /** The target's base image config as resolved, before this build changed it. */
  baseImage?: DockerImage;
  targetPlatform: PlatformSpec;
  warnings: Warning[];
  sourceMap: SourceMap;
  /** Names of the stages converted (reachable from the target), in file order. */
  stages: string[];
}

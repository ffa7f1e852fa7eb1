// Dockerfile to LLB conversion: the target stage's state, the image config and history, warnings.
export { type LocalContextOptions, type NamedContextValue, parseDockerignore } from "./context.ts";
export { normalizeContextPaths, dockerfileToLLB } from "./convert.ts";
export {
  type DockerImage,
  type ImageHistory,
  type ImageRunConfig,
  imageToJSON,
  parseImageConfig,
} from "./image.ts";
export type {
  ConvertInput,
  ConvertResult,
  ImageConfigResolver,
  ResolvedImage,
  ResolveMode,
  SourceMap,
} from "./options.ts";
export { formatPlatformSpec, parsePlatformSpec } from "./platform.ts";
export { INTERNAL_NAMES } from "./progress.ts";
export { locationsByDigest } from "./sourcemap.ts";

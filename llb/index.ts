// The LLB library: build graphs in TypeScript and marshal them to BuildKit-compatible
// Definitions. Import from here (it wires `State.run` and `State.file`).
export { type LoadedDefinition, type LoadedOp, LLBError, loadDefinition } from "./definition.ts";
export { describeOp, dumpDot, dumpJson } from "./dump.ts";
export { ExecState, type MountSpec, type RunOptions, run, shlex } from "./exec.ts";
export {
  type CopyOptions,
  copy,
  FileAction,
  file,
  type MkdirOptions,
  type MkfileOptions,
  mkdir,
  mkfile,
  type Owner,
  type RmOptions,
  rm,
  type SymlinkOptions,
  symlink,
} from "./file.ts";
export { formatImageRef, type ImageRef, normalizeImageRef, parseImageRef } from "./imageref.ts";
export { build, diff, merge } from "./merge.ts";
export {
  type GitOptions,
  git,
  type HttpOptions,
  http,
  type ImageOptions,
  image,
  type LocalOptions,
  local,
  ociLayout,
} from "./source.ts";
export { type NetworkMode, type SecurityMode, State, scratch } from "./state.ts";
export {
  formatPlatform,
  hostPlatform,
  type Marshalled,
  type OpOptions,
  type Output,
  type PlatformSpec,
  parsePlatform,
} from "./vertex.ts";

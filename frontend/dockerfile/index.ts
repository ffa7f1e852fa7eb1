// The Dockerfile frontend's pure parts: parser, shell expansion, typed instructions, and the
// conversion to LLB with the image config. The frontend that reads the Dockerfile through the
// session and solves the result builds on these.
export {
  type ConvertInput,
  type ConvertResult,
  type DockerImage,
  dockerfileToLLB,
  type ImageConfigResolver,
  type ImageHistory,
  INTERNAL_NAMES,
  imageToJSON,
  type LocalContextOptions,
  locationsByDigest,
  type NamedContextValue,
  parseDockerignore,
  type ResolvedImage,
  type SourceMap,
} from "./convert/index.ts";
export { parseStages } from "./instructions/index.ts";
export type { Warning } from "./lint.ts";
export {
  DockerfileError,
  findDirective,
  formatSourceLines,
  type Instruction,
  type ParseResult,
  parseDockerfile,
  type Range,
} from "./parser/index.ts";
export { type EnvSource, ShellExpansionError, ShellLex } from "./shell/lex.ts";

// The Dockerfile parser: text to instructions with flags, raw arguments, heredocs and lines.
export { type Directive, DirectiveParser, type EscapeToken, findDirective } from "./directives.ts";
export {
  DockerfileError,
  type DockerfileErrorInit,
  formatSourceLines,
  lineRange,
  type Position,
  type Range,
  rangeLines,
  withLocation,
} from "./errors.ts";
export { chompHeredocContent, type Heredoc, heredocsFromLine, parseHeredoc } from "./heredoc.ts";
export type { KeyValue } from "./line-parsers.ts";
export {
  type Instruction,
  type ParseOptions,
  type ParseResult,
  parseDockerfile,
  parseInstructionText,
} from "./parser.ts";

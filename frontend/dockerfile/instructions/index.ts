// Typed Dockerfile commands and stages, with flags parsed and checked, and expansion rules.
export { type Flag, Flags } from "./bflag.ts";
export type {
  Command,
  CommandBase,
  CommandKind,
  CommandOf,
  Dockerfile,
  HealthConfig,
  InlineFile,
  KeyValue,
  Mount,
  MountType,
  ShareMode,
  ShellDependentCmdLine,
  SourcesAndDest,
  Stage,
} from "./commands.ts";
export { expandCommand, type WordExpander } from "./expand.ts";
export { closest, parseCSVRecord, parseGoBool, parseMount, parseRAMInBytes, suggestion } from "./mount.ts";
export { parseCommand, parseInstruction, parseStages } from "./parse.ts";

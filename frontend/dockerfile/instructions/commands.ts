// Typed Dockerfile commands: what each instruction means once its flags and arguments are
// read and checked, before variable expansion (see expand.ts) and conversion (convert/).
import type { Range } from "../parser/errors.ts";

/** What every command carries: where it came from and how it was written. */
export interface CommandBase {
  /** Lowercase instruction name. */
  name: string;
  /** The instruction name as written (casing checks). */
  rawName: string;
  /** The instruction text, trimmed: progress names and descriptions use it. */
  code: string;
  location: Range[];
  /** Set on commands that came from an ONBUILD trigger of a base image or stage. */
  onBuild?: boolean;
}

export interface KeyValue {
  key: string;
  value: string;
  /** Written in the legacy `KEY value` form. */
  noDelim?: boolean;
}

/** An inline file from a heredoc (COPY/ADD source, or RUN script). */
export interface InlineFile {
  /** The heredoc delimiter, used as the file name. */
  name: string;
  data: string;
  /** Expand variables in the body (delimiter not quoted). */
  expand: boolean;
  /** `<<-`: strip leading tabs. */
  chomp: boolean;
}

export interface SourcesAndDest {
  sourcePaths: string[];
  sourceContents: InlineFile[];
  destPath: string;
}

/** RUN, CMD, ENTRYPOINT: a command line, with the shell prepended unless in JSON form. */
export interface ShellDependentCmdLine {
  cmdLine: string[];
  prependShell: boolean;
  files: InlineFile[];
}

export type MountType = "bind" | "cache" | "tmpfs" | "secret" | "ssh";
export type ShareMode = "shared" | "private" | "locked";

/** One `RUN --mount=...`, with values expanded. */
export interface Mount {
  type: MountType;
  from: string;
  source: string;
  target: string;
  readOnly: boolean;
  /** tmpfs size in bytes (0: unlimited). */
  sizeLimit: number;
  /** `id=`: the cache id, or the secret/ssh id. */
  id: string;
  sharing: ShareMode | "";
  required: boolean;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Secret exposed as this environment variable instead of a file. */
  env?: string;
}

export interface HealthConfig {
  test: string[];
  /** Durations in nanoseconds; 0 means unset. */
  interval: bigint;
  timeout: bigint;
  startPeriod: bigint;
  startInterval: bigint;
  retries: number;
}

export type Command =
  | (CommandBase & { kind: "env"; env: KeyValue[] })
  | (CommandBase & { kind: "label"; labels: KeyValue[] })
  | (CommandBase & { kind: "maintainer"; maintainer: string })
  | (CommandBase & {
      kind: "add";
      sources: SourcesAndDest;
      chown: string;
      chmod: string;
      link: boolean;
      keepGitDir: boolean;
      checksum: string;
      exclude: string[];
    })
  | (CommandBase & {
      kind: "copy";
      sources: SourcesAndDest;
      from: string;
      chown: string;
      chmod: string;
      link: boolean;
      parents: boolean;
      exclude: string[];
    })
  | (CommandBase & { kind: "onbuild"; expression: string })
  | (CommandBase & { kind: "workdir"; path: string })
  | (CommandBase & {
      kind: "run";
      run: ShellDependentCmdLine;
      /** The raw `--mount` values; parsed (and expanded) when the stage is converted. */
      mountSpecs: string[];
      network: string;
      security: string;
      flagsUsed: string[];
    })
  | (CommandBase & { kind: "cmd"; run: ShellDependentCmdLine })
  | (CommandBase & { kind: "entrypoint"; run: ShellDependentCmdLine })
  | (CommandBase & { kind: "healthcheck"; health: HealthConfig })
  | (CommandBase & { kind: "expose"; ports: string[] })
  | (CommandBase & { kind: "user"; user: string })
  | (CommandBase & { kind: "volume"; volumes: string[] })
  | (CommandBase & { kind: "stopsignal"; signal: string })
  | (CommandBase & { kind: "arg"; args: { key: string; value?: string; comment: string }[] })
  | (CommandBase & { kind: "shell"; shell: string[] });

export type CommandKind = Command["kind"];
export type CommandOf<K extends CommandKind> = Extract<Command, { kind: K }>;

/** A build stage: FROM and the commands up to the next FROM. */
export interface Stage {
  /** Lowercase `AS` name, or "" for an unnamed stage. */
  name: string;
  /** The name as written after AS. */
  rawStageName: string;
  /** The FROM argument before expansion ("golang:${GO}", "builder", "scratch"). */
  baseName: string;
  /** `--platform` before expansion, or "". */
  platform: string;
  /** The FROM line, trimmed. */
  code: string;
  /** "FROM" as written. */
  rawName: string;
  location: Range[];
  /** The comment above FROM that describes the stage ("# name description"). */
  comment: string;
  commands: Command[];
}

/** The whole file: stages plus the ARGs declared before the first FROM. */
export interface Dockerfile {
  stages: Stage[];
  metaArgs: CommandOf<"arg">[];
}

// The per-stage state of a conversion: the LLB state being built, the image config being
// written, declared ARGs, step counters for progress names, and the stages it depends on.
import type { PlatformSpec, State } from "../../../llb/index.ts";
import type { Command, Stage } from "../instructions/commands.ts";
import type { Linter } from "../lint.ts";
import type { Range } from "../parser/errors.ts";
import type { ShellLex } from "../shell/lex.ts";
import { cloneImage, type DockerImage } from "./image.ts";
import type { SourceMap } from "./options.ts";
import type { PlatformOpt } from "./platform.ts";
import type { StepCounter } from "./progress.ts";

/** A command of a stage with the stages it reads from (COPY --from, RUN --mount from=). */
export interface PendingCommand {
  cmd: Command;
  sources: (DispatchState | undefined)[];
  isOnBuild: boolean;
}

/** A declared ARG as the stage sees it. */
export interface BuildArg {
  key: string;
  value?: string;
}

export interface DispatchState extends StepCounter {
  stage: Stage;
  state: State;
  image: DockerImage;
  /** The base image's config as resolved (immutable). */
  baseImage?: DockerImage;
  platform?: PlatformSpec;
  /** The earlier stage this one is FROM. */
  base?: DispatchState;
  deps: Map<DispatchState, Command>;
  commands: PendingCommand[];
  buildArgs: BuildArg[];
  /** Paths of the build context this stage reads. */
  ctxPaths: Set<string>;
  dispatched: boolean;
  resolved: boolean;
  onBuildInit: boolean;
  /** An image only named by COPY --from or RUN --mount from=, not a stage of the file. */
  unregistered: boolean;
  ignoreCache: boolean;
  workdirSet: boolean;
  /** Where CMD, ENTRYPOINT, HEALTHCHECK were last set in this stage (lint). */
  lastSet: Map<string, Range[]>;
}

/** Options shared by every command of a conversion. */
export interface DispatchOpt {
  globalArgs: Map<string, string>;
  buildArgValues: Readonly<Record<string, string>>;
  lex: ShellLex;
  buildContext: State;
  proxyEnv?: {
    httpProxy?: string;
    httpsProxy?: string;
    ftpProxy?: string;
    noProxy?: string;
    allProxy?: string;
  };
  cacheIdNamespace: string;
  platforms: PlatformOpt;
  prefixPlatform: boolean;
  extraHosts: { host: string; ip: string }[];
  lint: Linter;
  sourceMap: SourceMap;
  /** RFC 3339 time for history entries (SOURCE_DATE_EPOCH). */
  epoch?: string;
  file: string;
  source: string;
}

/** A state for a stage of the file (or an image named by COPY --from). */
export function newDispatchState(stage: Stage, init: Partial<DispatchState> = {}): DispatchState {
  return {
    stage,
    state: undefined as unknown as State,
    image: undefined as unknown as DockerImage,
    deps: new Map(),
    commands: [],
    buildArgs: [],
    ctxPaths: new Set(),
    dispatched: false,
    resolved: false,
    onBuildInit: false,
    unregistered: false,
    ignoreCache: false,
    workdirSet: false,
    lastSet: new Map(),
    stageName: stage.name,
    cmdIndex: 0,
    cmdTotal: 0,
    cmdIsOnBuild: false,
    ...init,
  };
}

/** Takes over what the base stage built: filesystem, platform, config, ARGs. */
export function inheritBase(ds: DispatchState): void {
  const base = ds.base;
  if (!base) return;
  ds.state = base.state;
  ds.platform = base.platform;
  ds.image = cloneImage(base.image);
  ds.baseImage = base.baseImage && cloneImage(base.baseImage);
  ds.workdirSet = base.workdirSet;
  ds.buildArgs = [...base.buildArgs, ...ds.buildArgs.filter((a) => !base.buildArgs.includes(a))];
}

/** The stage's env as seen by expansion: the LLB state's env (image env, ENV and ARG values). */
export function envOf(ds: DispatchState): (name: string) => string | undefined {
  const state = ds.state;
  return (name) => state.getEnv(name);
}

/** The stages reachable from `target` through FROM and --from edges, target included. */
export function reachableStages(target: DispatchState): Set<DispatchState> {
  const seen = new Set<DispatchState>();
  const stack = [target];
  while (stack.length > 0) {
    const s = stack.pop()!;
    if (seen.has(s)) continue;
    seen.add(s);
    if (s.base) stack.push(s.base);
    for (const d of s.deps.keys()) stack.push(d);
  }
  return seen;
}

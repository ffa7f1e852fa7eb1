// Dockerfile to LLB: parse, set up stages and their dependencies, resolve the base images the
// target needs, then convert each needed stage's instructions into ops and an image config.
// Stages the target does not reach are not converted; independent stages become independent
// branches of the graph, which the solver runs in parallel.
import { local, type PlatformSpec, type State, scratch } from "../../../llb/index.ts";
import type { Command, Dockerfile, Stage } from "../instructions/commands.ts";
import { closest } from "../instructions/mount.ts";
import { parseStages } from "../instructions/parse.ts";
import { DockerfileError, lineRange, withLocation } from "../parser/errors.ts";
import { type ParseResult, parseDockerfile } from "../parser/parser.ts";
import { ShellLex } from "../shell/lex.ts";
import {
  validateCommandCasing,
  validateStageNames,
  warnConstantPlatform,
  warnInvalidDefaultBases,
} from "./checks.ts";
import { type LocalContextOptions, parseDockerignore, resolveNamedContext } from "./context.ts";
import { dispatchCommand } from "./dispatch.ts";
import { dispatchUser, dispatchWorkdir } from "./dispatch-meta.ts";
import { proxyEnvFromBuildArgs } from "./dispatch-run.ts";
import {
  type DispatchOpt,
  type DispatchState,
  inheritBase,
  newDispatchState,
  type PendingCommand,
} from "./dispatch-state.ts";
import { DEFAULT_PATH, emptyImage, parseImageConfig, splitKeyValue } from "./image.ts";
import type { ConvertInput, ConvertResult, SourceMap } from "./options.ts";
import { defaultArgs, parsePlatformSpec, platformOpt } from "./platform.ts";
import { INTERNAL_NAMES } from "./progress.ts";
import {
  addDependencies,
  checkCycles,
  findNamedContext,
  resolveStages,
  StateSet,
  toPending,
} from "./stages.ts";

/** Converts a Dockerfile into the LLB state of its target stage and the image config. */
export async function dockerfileToLLB(input: ConvertInput): Promise<ConvertResult> {
  const file = input.filename ?? "Dockerfile";
  const size = typeof input.dockerfile === "string" ? input.dockerfile.length : input.dockerfile.byteLength;
  if (size === 0) throw new DockerfileError("the Dockerfile cannot be empty", { file });
  const parsed = parseDockerfile(input.dockerfile, { file });
  if (parsed.instructions.length === 0) {
    const lines = parsed.source.split("\n").length;
    throw new DockerfileError("file with no instructions", {
      file,
      ranges: lineRange(lines),
      source: parsed.source,
    });
  }
  const df = parseStages(parsed);
  if (df.stages.length === 0) {
    throw new DockerfileError("dockerfile contains no stages to build", { file, source: parsed.source });
  }
  const resolver = memoizeResolver(input.resolveImageConfig);
  const localContext = input.localContext ?? defaultLocalContext;
  const exclude = input.dockerignore === undefined ? [] : parseDockerignore(input.dockerignore);

  // The context is filtered to the paths the build reads, which are only known once every
  // stage has been converted: a first pass finds them, the second builds with the filter.
  const probe = await convertOnce(input, parsed, df, scratch(), { ...input, resolveImageConfig: resolver });
  const followPaths = normalizeContextPaths(probe.ctxPaths);
  const context = localContext({ name: "context", exclude, followPaths });
  const final = await convertOnce(input, parsed, df, context, { ...input, resolveImageConfig: resolver });
  final.result.warnings = [...parsed.linter.warnings, ...final.result.warnings];
  return final.result;
}

/** The default main context: the client's "context" directory through the session. */
function defaultLocalContext(opts: LocalContextOptions): State {
  return local(opts.name, {
    sharedKeyHint: opts.name,
    customName:
      opts.name === "context" ? INTERNAL_NAMES.loadContext : `[context ${opts.name}] load from client`,
    ...(opts.exclude.length > 0 ? { exclude: opts.exclude } : {}),
    ...(opts.followPaths.length > 0 ? { followPaths: opts.followPaths } : {}),
  });
}

/** Context paths as follow paths: relative, sorted; none at all when the root is read. */
export function normalizeContextPaths(paths: Set<string>): string[] {
  if (paths.size === 0 || paths.has("/")) return [];
  return [...paths].map((p) => p.replace(/^\/+/, "") || ".").sort();
}

function memoizeResolver(r: ConvertInput["resolveImageConfig"]): ConvertInput["resolveImageConfig"] {
  if (!r) return undefined;
  const cache = new Map<string, ReturnType<NonNullable<typeof r>>>();
  return (ref, opts) => {
    const key = `${ref}|${opts.platform.os}/${opts.platform.architecture}/${opts.platform.variant ?? ""}|${opts.resolveMode}`;
    let p = cache.get(key);
    if (!p) {
      p = r(ref, opts);
      cache.set(key, p);
    }
    return p;
  };
}

function platformOf(p: PlatformSpec | undefined): PlatformSpec | undefined {
  return p && parsePlatformSpec(`${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`);
}

async function convertOnce(
  input: ConvertInput,
  parsed: ParseResult,
  df: Dockerfile,
  buildContext: State,
  opts: ConvertInput,
): Promise<{ result: ConvertResult; ctxPaths: Set<string> }> {
  const file = parsed.file;
  const source = parsed.source;
  const lint = parsed.linter.fork();
  const located = (e: unknown, at: { location: Command["location"]; code?: string }) =>
    withLocation(e, { file, ranges: at.location, instruction: at.code || undefined, source });
  validateStageNames(df.stages, lint);
  validateCommandCasing(df.stages, lint);

  const po = platformOpt(
    platformOf(input.targetPlatform),
    input.buildPlatforms?.map((p) => platformOf(p)!),
  );
  const target = po.targetPlatform;
  const buildArgs = input.buildArgs ?? {};
  const targetName = input.target || df.stages[df.stages.length - 1]!.name;
  const lex = new ShellLex(parsed.escapeToken);

  // Global ARGs: the automatic platform ARGs, then those declared before the first FROM.
  const globalArgs = defaultArgs(po, buildArgs, targetName);
  const declared = new Set<string>();
  for (const cmd of df.metaArgs) {
    for (const kv of cmd.args) {
      let value = Object.hasOwn(buildArgs, kv.key) ? buildArgs[kv.key] : kv.value;
      if (!Object.hasOwn(buildArgs, kv.key) && kv.value !== undefined) {
        try {
          value = lex.processWord(kv.value, (k) => globalArgs.get(k));
        } catch (e) {
          throw located(e, cmd);
        }
      }
      if (value !== undefined) globalArgs.set(kv.key, value);
      declared.add(kv.key);
    }
  }
  warnInvalidDefaultBases(df, po, targetName, lex, lint);
  const globalEnv = (k: string) => globalArgs.get(k);
  const known = [...new Set([...declared, ...globalArgs.keys()])];
  const reportFromArgs = (unmatched: Set<string>, st: Stage) => {
    for (const arg of unmatched) {
      if (!known.includes(arg)) lint.warn("UndefinedArgInFrom", st.location, arg, closest(arg, known) ?? "");
    }
  };

  const namedContexts = input.namedContexts ?? {};
  const localContext = input.localContext ?? defaultLocalContext;
  const resolveNamed = async (
    key: string,
    value: Parameters<typeof resolveNamedContext>[1],
    platform: PlatformSpec,
  ) => {
    const r = resolveNamedContext(key, value, platform, localContext);
    if (r.imageRef && opts.resolveImageConfig) {
      const res = await opts.resolveImageConfig(r.imageRef, {
        platform,
        logName: `[context ${key}] load metadata for ${r.imageRef}`,
        resolveMode: input.resolveMode ?? "default",
      });
      r.image = parseImageConfig(res.config);
    }
    return r;
  };

  // One dispatch state per stage of the file.
  const set = new StateSet();
  const noCache = input.noCache;
  for (const [i, st0] of df.stages.entries()) {
    let baseName: string;
    try {
      const r = lex.process(st0.baseName, globalEnv);
      reportFromArgs(r.unmatched, st0);
      baseName = r.result;
    } catch (e) {
      throw located(e, st0);
    }
    if (baseName === "") throw located(new Error(`base name (${st0.baseName}) should not be blank`), st0);
    const stage: Stage = { ...st0, baseName };
    const ds = newDispatchState(stage, { stageName: stage.name });
    if (stage.platform !== "") {
      let value: string;
      try {
        const r = lex.process(stage.platform, globalEnv);
        reportFromArgs(r.unmatched, st0);
        value = r.result;
        if (
          r.matched.size === 1 &&
          r.unmatched.size === 0 &&
          r.matched.has("TARGETPLATFORM") &&
          value === globalArgs.get("TARGETPLATFORM")
        ) {
          lint.warn("RedundantTargetPlatform", stage.location, stage.platform);
        }
        if (r.matched.size === 0 && r.unmatched.size === 0) warnConstantPlatform(stage, value, lint);
      } catch (e) {
        throw located(
          new Error(`failed to process arguments for platform ${stage.platform}: ${(e as Error).message}`),
          st0,
        );
      }
      if (value === "")
        throw located(new Error(`empty platform value from expression ${stage.platform}`), st0);
      try {
        ds.platform = parsePlatformSpec(value);
      } catch (e) {
        throw located(new Error(`failed to parse platform ${stage.platform}: ${(e as Error).message}`), st0);
      }
    }
    if (stage.name !== "") {
      const named = findNamedContext(stage.name, ds.platform ?? target, namedContexts);
      if (named) {
        const r = await resolveNamed(named[0], named[1], ds.platform ?? target);
        ds.dispatched = true;
        ds.state = r.state;
        ds.image = r.image ?? emptyImage(target);
        if (r.image?.os && r.image.architecture) {
          ds.platform = {
            os: r.image.os,
            architecture: r.image.architecture,
            ...(r.image.variant ? { variant: r.image.variant } : {}),
          };
        }
        set.add(ds);
        continue;
      }
    }
    if (stage.name === "") ds.stageName = `stage-${i}`;
    set.add(ds);
    const counted = stage.commands.filter((c) => ["add", "copy", "run", "workdir"].includes(c.kind)).length;
    ds.cmdTotal = counted + (stage.baseName !== "scratch" && !ds.base ? 1 : 0);
    ds.ignoreCache =
      noCache === true || (Array.isArray(noCache) && stage.name !== "" && noCache.includes(stage.name));
  }

  let targetState: DispatchState | undefined;
  if (input.target) {
    targetState = set.find(input.target);
    if (!targetState)
      throw new DockerfileError(`target stage ${JSON.stringify(input.target)} could not be found`, { file });
  } else {
    targetState = set.states[set.states.length - 1]!;
  }

  // Commands and the stages they read from.
  for (const d of [...set.states]) {
    d.commands = [];
    for (const cmd of d.stage.commands) {
      let pc: PendingCommand;
      try {
        pc = toPending(cmd, set);
      } catch (e) {
        throw located(e, cmd);
      }
      addDependencies(d, pc, set);
      d.commands.push(pc);
    }
  }
  checkCycles(set.states, (e, cmds) =>
    withLocation(e, { file, source, ranges: cmds.flatMap((c) => c.location), instruction: cmds[0]?.code }),
  );
  if (set.states.length === 1) set.states[0]!.stageName = "";

  const prefixPlatform = input.multiPlatform ?? false;
  const sourceMap: SourceMap = { filename: file, language: "Dockerfile", data: source, locations: new Map() };
  const reachable = await resolveStages(set, targetState, {
    sourceMap,
    platforms: po,
    prefixPlatform,
    resolver: opts.resolveImageConfig,
    resolveMode: input.resolveMode ?? "default",
    namedContexts,
    resolveNamed,
    lint,
    file,
    source,
  });

  const epochSeconds = input.sourceDateEpoch ?? epochFromBuildArgs(buildArgs);
  const epoch =
    epochSeconds === undefined
      ? undefined
      : new Date(epochSeconds * 1000).toISOString().replace(/\.000Z$/, "Z");
  const ctxPaths = new Set<string>();
  for (const d of set.states) {
    if (!reachable.has(d) || d.dispatched) continue;
    inheritBase(d);
    d.dispatched = true;
    d.platform ??= target;
    d.state = d.state.platform(d.platform);
    if (!(d.image.config.Env ?? []).some((e) => splitKeyValue(e)[0] === "PATH")) {
      d.image.config.Env = [...(d.image.config.Env ?? []), `PATH=${DEFAULT_PATH}`];
    }
    for (const e of d.image.config.Env ?? []) {
      const [k, v] = splitKeyValue(e);
      d.state = d.state.addEnv(k, v);
    }
    if (input.hostname) d.state = d.state.hostname(input.hostname);
    const dopt: DispatchOpt = {
      globalArgs,
      buildArgValues: buildArgs,
      lex,
      buildContext,
      proxyEnv: proxyEnvFromBuildArgs(buildArgs),
      cacheIdNamespace: input.cacheIdNamespace ?? "",
      platforms: po,
      prefixPlatform,
      extraHosts: input.addHosts ?? [],
      lint,
      sourceMap,
      epoch,
      file,
      source,
    };
    try {
      if (d.image.config.WorkingDir) dispatchWorkdir(d, d.image.config.WorkingDir, dopt);
      if (d.image.config.User) dispatchUser(d, d.image.config.User, undefined);
    } catch (e) {
      throw located(e, d.stage);
    }
    for (const pc of d.commands) {
      try {
        dispatchCommand(d, pc, dopt);
      } catch (e) {
        throw located(e, pc.cmd);
      }
    }
    for (const p of d.ctxPaths) ctxPaths.add(p);
  }
  for (const [k, v] of Object.entries(input.labels ?? {})) {
    targetState.image.config.Labels ??= {};
    targetState.image.config.Labels[k] = v;
  }
  const failure = lint.failure();
  if (failure) throw new DockerfileError(failure.message, { file });

  const img = targetState.image;
  if (!po.implicitTarget) {
    img.os = target.os;
    img.architecture = target.architecture;
    if (target.variant) img.variant = target.variant;
    else delete img.variant;
  }
  if (epoch !== undefined) img.created = epoch;
  const result: ConvertResult = {
    state: targetState.state.platform(target),
    image: img,
    imageConfig: img.config,
    history: img.history ?? [],
    baseImage: targetState.baseImage,
    targetPlatform: target,
    warnings: lint.warnings,
    sourceMap,
    stages: set.states
      .filter((d) => reachable.has(d) && !d.unregistered)
      .map((d) => d.stage.name || d.stageName),
  };
  return { result, ctxPaths };
}

function epochFromBuildArgs(args: Readonly<Record<string, string>>): number | undefined {
  const v = args.SOURCE_DATE_EPOCH;
  if (v === undefined || v === "") return undefined;
  if (!/^\d+$/.test(v))
    throw new Error(`invalid SOURCE_DATE_EPOCH ${JSON.stringify(v)}: want seconds since 1970`);
  return Number(v);
}

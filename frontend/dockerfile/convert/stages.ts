// The stage graph of a conversion: dispatch states for the file's stages and for images named
// by COPY --from / RUN --mount from=, their dependencies, cycles, ONBUILD triggers, and the
// resolution of base images (config, digest, platform) for the stages the target needs.
import {
  formatImageRef,
  image,
  normalizeImageRef,
  parseImageRef,
  type PlatformSpec,
  scratch,
} from "../../../llb/index.ts";
import type { Command, Stage } from "../instructions/commands.ts";
import { parseMount } from "../instructions/mount.ts";
import { parseCommand } from "../instructions/parse.ts";
import type { Linter } from "../lint.ts";
import { DockerfileError, withLocation } from "../parser/errors.ts";
import { parseDockerfile } from "../parser/parser.ts";
import { type NamedContextValue, namedContextKeys, type ResolvedContext } from "./context.ts";
import {
  type DispatchState,
  inheritBase,
  newDispatchState,
  type PendingCommand,
  reachableStages,
} from "./dispatch-state.ts";
import { cloneImage, type DockerImage, emptyImage, parseImageConfig } from "./image.ts";
import type { ImageConfigResolver, ResolveMode, SourceMap } from "./options.ts";
import { formatPlatformSpec, normalizePlatform, type PlatformOpt } from "./platform.ts";
import { prefixCommand } from "./progress.ts";

/** The stages of a conversion and their lookup by (lowercase) name. */
export class StateSet {
  readonly states: DispatchState[] = [];
  private readonly byName = new Map<string, DispatchState>();

  /** Adds a state; its base is the earlier stage whose name it is FROM. */
  add(ds: DispatchState): void {
    this.states.push(ds);
    const base = this.byName.get(ds.stage.baseName);
    if (base) ds.base = base;
    if (ds.stage.name !== "") this.byName.set(ds.stage.name.toLowerCase(), ds);
  }

  find(name: string): DispatchState | undefined {
    return this.byName.get(name.toLowerCase());
  }

  findByIndex(index: number): DispatchState {
    const ds = this.states[index];
    if (index < 0 || !ds) throw new Error(`invalid stage index ${index}`);
    return ds;
  }
}

/** A stand-in stage for an image (or scratch) named where a stage could be. */
function implicitStage(baseName: string, cmd: Command): DispatchState {
  const stage: Stage = {
    name: "",
    rawStageName: "",
    baseName,
    platform: "",
    code: "",
    rawName: "FROM",
    location: cmd.location,
    comment: "",
    commands: [],
  };
  return newDispatchState(stage, { unregistered: true, stageName: "" });
}

/** The stage `from` names: a stage name, a stage index, or else an image. */
function sourceStage(from: string, cmd: Command, set: StateSet): DispatchState {
  if (/^-?\d+$/.test(from)) return set.findByIndex(Number(from));
  return set.find(from) ?? implicitStage(from, cmd);
}

/** A command with the stages it reads from. Registers implicit image stages. */
export function toPending(cmd: Command, set: StateSet, isOnBuild = false): PendingCommand {
  const sources: (DispatchState | undefined)[] = [];
  if (cmd.kind === "copy" && cmd.from !== "") sources.push(sourceStage(cmd.from, cmd, set));
  if (cmd.kind === "run") {
    for (const spec of cmd.mountSpecs) {
      // Mounts without from= still get a (scratch) source, as in BuildKit: a cache mount needs
      // one, and the type may be a variable not known yet.
      sources.push(sourceStage(parseMount(spec).from || "scratch", cmd, set));
    }
  }
  return { cmd: { ...cmd, onBuild: isOnBuild || undefined }, sources, isOnBuild };
}

/** Links the stage to its sources, registering implicit ones; true when any was added. */
export function addDependencies(d: DispatchState, pc: PendingCommand, set: StateSet): boolean {
  let added = false;
  for (const src of pc.sources) {
    if (!src) continue;
    d.deps.set(src, pc.cmd);
    if (src.unregistered && !set.states.includes(src)) set.add(src);
    added = true;
  }
  return added;
}

/** Fails on a stage that (through --from edges) depends on itself, pointing at the commands. */
export function checkCycles(
  states: readonly DispatchState[],
  located: (e: unknown, c: Command[]) => Error,
): void {
  const visited = new Set<DispatchState>();
  const onPath = new Set<DispatchState>();
  const visit = (s: DispatchState, trail: Command[]): Command[] | undefined => {
    if (visited.has(s)) return undefined;
    visited.add(s);
    onPath.add(s);
    for (const [dep, c] of s.deps) {
      const next = [...trail, c];
      if (onPath.has(dep)) return next;
      const found = visit(dep, next);
      if (found) return found;
    }
    onPath.delete(s);
    return undefined;
  };
  for (const s of states) {
    const cycle = visit(s, []);
    if (cycle) {
      throw located(new Error(`circular dependency detected on stage: ${s.stageName}`), cycle);
    }
  }
}

export interface ResolveContext {
  platforms: PlatformOpt;
  sourceMap: SourceMap;
  prefixPlatform: boolean;
  resolver?: ImageConfigResolver;
  resolveMode: ResolveMode;
  namedContexts: Record<string, NamedContextValue>;
  resolveNamed: (key: string, value: NamedContextValue, platform: PlatformSpec) => Promise<ResolvedContext>;
  lint: Linter;
  file: string;
  source: string;
}

/** The value of the first named context that replaces `name` for `platform`. */
export function findNamedContext(
  name: string,
  platform: PlatformSpec,
  contexts: Record<string, NamedContextValue>,
): [string, NamedContextValue] | undefined {
  for (const key of namedContextKeys(name, platform)) {
    if (Object.hasOwn(contexts, key)) return [key, contexts[key]!];
  }
  return undefined;
}

function autoDetectPlatform(img: DockerImage, target: PlatformSpec, supported: PlatformSpec[]): PlatformSpec {
  if (target.os === img.os && target.architecture === img.architecture) return target;
  return supported.find((p) => p.os === img.os && p.architecture === img.architecture) ?? target;
}

/** Resolves one stage's base image (or named context); sets its state, image and platform. */
async function resolveBase(d: DispatchState, reachable: boolean, ctx: ResolveContext): Promise<void> {
  const target = ctx.platforms.targetPlatform;
  if (d.stage.baseName === "scratch") {
    d.state = scratch();
    d.image = emptyImage(target);
    d.platform = target;
    return;
  }
  const origName = d.stage.baseName;
  let ref: string;
  try {
    ref = normalizeImageRef(origName);
  } catch (e) {
    throw new Error(`failed to parse stage name ${JSON.stringify(origName)}: ${(e as Error).message}`);
  }
  let platform = d.platform ?? target;
  const named = findNamedContext(ref, platform, ctx.namedContexts);
  if (named) {
    const r = await ctx.resolveNamed(named[0], named[1], platform);
    d.image = r.image ?? emptyImage(target);
    d.state = r.state.platform(platform);
    d.platform = platform;
    return;
  }
  let isScratch = false;
  d.image = {
    architecture: platform.architecture,
    os: platform.os,
    config: {},
    rootfs: { type: "layers", diff_ids: [] },
  };
  if (reachable && ctx.resolver) {
    const prefix = ctx.prefixPlatform ? `[${formatPlatformSpec(platform)} internal]` : "[internal]";
    let resolved: Awaited<ReturnType<ImageConfigResolver>>;
    try {
      resolved = await ctx.resolver(ref, {
        platform,
        logName: `${prefix} load metadata for ${ref}`,
        resolveMode: ctx.resolveMode,
      });
    } catch (e) {
      throw new Error(`${origName}: ${(e as Error).message}`, { cause: e });
    }
    if (resolved.ref && resolved.ref !== ref) ref = normalizeImageRef(resolved.ref);
    const img = parseImageConfig(resolved.config);
    d.baseImage = cloneImage(img);
    delete img.created;
    if (!d.platform && ctx.platforms.implicitTarget) {
      platform = autoDetectPlatform(img, platform, ctx.platforms.buildPlatforms);
    }
    if (resolved.digest) {
      const parsed = parseImageRef(ref);
      ref = formatImageRef({ ...parsed, digest: resolved.digest });
    }
    if (img.rootfs.diff_ids.length === 0) isScratch = (img.history ?? []).every((h) => h.empty_layer);
    d.image = img;
    if (
      img.os !== "" &&
      (img.os !== platform.os ||
        normalizePlatform({ os: img.os, architecture: img.architecture }).architecture !==
          platform.architecture)
    ) {
      const want = formatPlatformSpec(normalizePlatform(platform));
      const got = formatPlatformSpec(
        normalizePlatform({ os: img.os, architecture: img.architecture, variant: img.variant }),
      );
      ctx.lint.warn("InvalidBaseImagePlatform", d.stage.location, origName, want, got);
    }
  }
  d.stage = { ...d.stage, baseName: ref };
  d.platform = platform;
  if (isScratch) {
    d.state = scratch();
    return;
  }
  const name = prefixCommand(d, `FROM ${ref}`, { prefixPlatform: ctx.prefixPlatform, platform });
  d.state = image(ref, {
    platform,
    customName: name,
    description: { "com.docker.dockerfile.v1.command": d.stage.code },
    ...(ctx.resolveMode !== "default" ? { resolveMode: ctx.resolveMode } : {}),
  });
  ctx.sourceMap.locations.set(name, d.stage.location);
}

/**
 * Resolves base images of the stages the target reaches (others get unpinned states), runs
 * ONBUILD trigger setup, and repeats while triggers add new dependencies. Returns the
 * reachable set.
 */
export async function resolveStages(
  set: StateSet,
  target: DispatchState,
  ctx: ResolveContext,
): Promise<Set<DispatchState>> {
  const triggersDone = new Set<DispatchState>();
  for (;;) {
    const reachable = reachableStages(target);
    await Promise.all(
      set.states.map(async (d) => {
        if (d.base || d.dispatched || d.resolved) return;
        const isReachable = reachable.has(d);
        d.resolved = isReachable;
        try {
          await resolveBase(d, isReachable, ctx);
        } catch (e) {
          throw withLocation(e, {
            file: ctx.file,
            ranges: d.stage.location,
            instruction: d.stage.code || undefined,
            source: ctx.source,
          });
        } finally {
          if (d.unregistered) d.dispatched = true;
        }
      }),
    );
    let newDeps = false;
    for (const d of set.states) {
      if (!reachable.has(d) || triggersDone.has(d)) continue;
      triggersDone.add(d);
      inheritBase(d);
      const triggers = [...(d.image?.config.OnBuild ?? [])];
      if (d.base && !d.onBuildInit) {
        for (const pc of d.base.commands) if (pc.cmd.kind === "onbuild") triggers.push(pc.cmd.expression);
        d.onBuildInit = true;
      }
      if (triggers.length === 0) continue;
      if (initOnBuildTriggers(d, triggers, set, ctx)) newDeps = true;
      if (d.image) d.image.config.OnBuild = undefined;
    }
    if (!newDeps) return reachable;
  }
}

/** Parses ONBUILD triggers and puts them before the stage's own commands. */
function initOnBuildTriggers(
  d: DispatchState,
  triggers: string[],
  set: StateSet,
  ctx: ResolveContext,
): boolean {
  let newDeps = false;
  const pending: PendingCommand[] = [];
  for (const trigger of triggers) {
    const where = {
      file: ctx.file,
      ranges: d.stage.location,
      instruction: `ONBUILD ${trigger}`,
      source: ctx.source,
    };
    let cmd: Command;
    try {
      const nodes = parseDockerfile(trigger).instructions;
      if (nodes.length !== 1) throw new Error("onbuild trigger should be a single expression");
      const node = { ...nodes[0]!, location: d.stage.location, startLine: 0, endLine: 0 };
      cmd = parseCommand(node, { file: ctx.file, source: ctx.source });
    } catch (e) {
      throw e instanceof DockerfileError ? new DockerfileError(e.detail, where) : withLocation(e, where);
    }
    const pc = toPending({ ...cmd, location: d.stage.location }, set, true);
    if (addDependencies(d, pc, set)) newDeps = true;
    pending.push(pc);
  }
  d.commands = [...pending, ...d.commands];
  d.cmdTotal += pending.length;
  return newDeps;
}

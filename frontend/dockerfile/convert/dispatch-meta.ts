// Instructions that change the image config and the process context rather than the files:
// ENV, LABEL, ARG, WORKDIR (which also creates the directory), USER, CMD, ENTRYPOINT, SHELL,
// HEALTHCHECK, EXPOSE, VOLUME, STOPSIGNAL, MAINTAINER, ONBUILD. History strings are BuildKit's.
import { mkdir } from "../../../llb/index.ts";
import { goDuration, goList, goQuote, goQuoteList, goQuoteRune } from "../gofmt.ts";
import type { CommandOf } from "../instructions/commands.ts";
import { parseOwner } from "./chown.ts";
import { cleanPath } from "./context.ts";
import { type DispatchOpt, type DispatchState, envOf } from "./dispatch-state.ts";
import { expandWithLint } from "./expansion.ts";
import { addEnv, commitToHistory } from "./image.ts";
import { prefixCommand, uppercaseCmd } from "./progress.ts";
import { checkSignal, parsePortSpecs } from "./runtime-config.ts";

/** ARG names BuildKit uses for itself and never puts in the environment. */
const NON_ENV_ARGS = new Set(["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"]);
const SECRET_WORD =
  /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const PUBLIC_WORD = /(?:_|^)(?:public)(?:_|$)/i;

function history(
  d: DispatchState,
  opt: DispatchOpt,
  createdBy: string,
  withLayer = false,
  ranOp = false,
): void {
  commitToHistory(d.image, createdBy, { withLayer, ranOp, created: opt.epoch });
}

function warnSecretKey(
  opt: DispatchOpt,
  instruction: string,
  key: string,
  c: { location: DispatchState["stage"]["location"] },
) {
  if (SECRET_WORD.test(key) && !PUBLIC_WORD.test(key))
    opt.lint.warn("SecretsUsedInArgOrEnv", c.location, instruction, key);
}

/** The shell (SHELL or /bin/sh -c) followed by the command line joined with spaces. */
export function withShell(d: DispatchState, args: readonly string[]): string[] {
  const shell = d.image.config.Shell?.length
    ? d.image.config.Shell
    : d.image.os === "windows"
      ? ["cmd", "/S", "/C"]
      : ["/bin/sh", "-c"];
  return [...shell, args.join(" ")];
}

export function dispatchEnv(d: DispatchState, c: CommandOf<"env">, opt: DispatchOpt): void {
  let msg = "ENV";
  for (const e of c.env) {
    if (e.noDelim) opt.lint.warn("LegacyKeyValueFormat", c.location, c.rawName);
    warnSecretKey(opt, "ENV", e.key, c);
    msg += ` ${e.key}=${e.value}`;
    d.state = d.state.addEnv(e.key, e.value);
    d.image.config.Env = addEnv(d.image.config.Env, e.key, e.value);
  }
  history(d, opt, msg);
}

export function dispatchLabel(d: DispatchState, c: CommandOf<"label">, opt: DispatchOpt): void {
  let msg = "LABEL";
  d.image.config.Labels ??= {};
  for (const l of c.labels) {
    if (l.noDelim) opt.lint.warn("LegacyKeyValueFormat", c.location, c.rawName);
    d.image.config.Labels[l.key] = l.value;
    msg += ` ${l.key}=${l.value}`;
  }
  history(d, opt, msg);
}

export function dispatchMaintainer(d: DispatchState, c: CommandOf<"maintainer">, opt: DispatchOpt): void {
  d.image.author = c.maintainer;
  history(d, opt, `MAINTAINER ${c.maintainer}`);
}

export function dispatchOnbuild(d: DispatchState, c: CommandOf<"onbuild">): void {
  d.image.config.OnBuild = [...(d.image.config.OnBuild ?? []), c.expression];
}

/** Warns when CMD, ENTRYPOINT or HEALTHCHECK is set twice in a stage (the first is lost). */
function usedOnce(
  d: DispatchState,
  c: { name: string; rawName: string; location: DispatchState["stage"]["location"] },
  opt: DispatchOpt,
) {
  const prev = d.lastSet.get(c.name);
  if (prev) opt.lint.warn("MultipleInstructionsDisallowed", prev, c.rawName);
  d.lastSet.set(c.name, c.location);
}

export function dispatchCmd(d: DispatchState, c: CommandOf<"cmd">, opt: DispatchOpt): void {
  usedOnce(d, c, opt);
  let args = c.run.cmdLine;
  if (c.run.prependShell) {
    if (!d.image.config.Shell?.length) opt.lint.warn("JSONArgsRecommended", c.location, c.rawName);
    args = withShell(d, args);
  }
  d.image.config.Cmd = args;
  d.image.config.ArgsEscaped = true;
  history(d, opt, `CMD ${goQuoteList(args)}`);
}

export function dispatchEntrypoint(d: DispatchState, c: CommandOf<"entrypoint">, opt: DispatchOpt): void {
  usedOnce(d, c, opt);
  let args = c.run.cmdLine;
  if (c.run.prependShell) {
    if (!d.image.config.Shell?.length) opt.lint.warn("JSONArgsRecommended", c.location, c.rawName);
    args = withShell(d, args);
  }
  d.image.config.Entrypoint = args;
  // An ENTRYPOINT resets a CMD inherited from the base image, not one set in this stage.
  if (!d.lastSet.has("cmd")) d.image.config.Cmd = undefined;
  history(d, opt, `ENTRYPOINT ${goQuoteList(args)}`);
}

export function dispatchHealthcheck(d: DispatchState, c: CommandOf<"healthcheck">, opt: DispatchOpt): void {
  usedOnce(d, c, opt);
  const h = c.health;
  d.image.config.Healthcheck = { ...h, test: [...h.test] };
  // Go's %q of the config struct: each field quoted, the retry count as a rune literal.
  const fields = [
    goQuoteList(h.test),
    goQuote(goDuration(h.interval)),
    goQuote(goDuration(h.timeout)),
    goQuote(goDuration(h.startPeriod)),
    goQuote(goDuration(h.startInterval)),
    goQuoteRune(h.retries),
  ];
  history(d, opt, `HEALTHCHECK &{${fields.join(" ")}}`);
}

export function dispatchExpose(d: DispatchState, c: CommandOf<"expose">, opt: DispatchOpt): void {
  const env = envOf(d);
  const words = c.ports.flatMap((p) => opt.lex.processWords(p, env));
  const ports = parsePortSpecs(words).sort();
  d.image.config.ExposedPorts ??= {};
  for (const p of ports) d.image.config.ExposedPorts[p] = {};
  history(d, opt, `EXPOSE map[${ports.map((p) => `${p}:{}`).join(" ")}]`);
}

export function dispatchUser(d: DispatchState, user: string, opt: DispatchOpt | undefined): void {
  d.state = d.state.user(user);
  d.image.config.User = user;
  if (opt) history(d, opt, `USER ${user}`);
}

export function dispatchVolume(d: DispatchState, c: CommandOf<"volume">, opt: DispatchOpt): void {
  d.image.config.Volumes ??= {};
  for (const v of c.volumes) {
    if (v === "") throw new Error("VOLUME specified can not be an empty string");
    d.image.config.Volumes[v] = {};
  }
  history(d, opt, `VOLUME ${goList(c.volumes)}`);
}

export function dispatchStopSignal(d: DispatchState, c: CommandOf<"stopsignal">, opt: DispatchOpt): void {
  checkSignal(c.signal);
  d.image.config.StopSignal = c.signal;
  history(d, opt, `STOPSIGNAL ${c.signal}`);
}

export function dispatchShell(d: DispatchState, c: CommandOf<"shell">, opt: DispatchOpt): void {
  d.image.config.Shell = [...c.shell];
  history(d, opt, `SHELL ${goList(c.shell)}`);
}

/**
 * WORKDIR: relative paths resolve against the current one; the directory is created (owned by
 * the current USER) unless it is "/". `commit` is false when applying a base image's WorkingDir.
 */
export function dispatchWorkdir(
  d: DispatchState,
  path: string,
  opt: DispatchOpt,
  c?: CommandOf<"workdir">,
): void {
  if (c) {
    if (!d.workdirSet && !path.startsWith("/")) opt.lint.warn("WorkdirRelativePath", c.location, path);
    d.workdirSet = true;
  }
  if (path === "") throw new Error("cannot normalize nothing");
  const current = d.image.config.WorkingDir || "/";
  const wd = cleanPath(path.startsWith("/") ? path : `/${current}/${path}`);
  d.image.config.WorkingDir = wd;
  d.state = d.state.dir(wd);
  if (!c) return;
  let withLayer = false;
  if (wd !== "/") {
    const env = envOf(d);
    const name = prefixCommand(d, uppercaseCmd(processCmdEnv(opt, c.code, env)), {
      prefixPlatform: opt.prefixPlatform,
      platform: d.platform ?? opt.platforms.targetPlatform,
      env,
    });
    const owner = d.image.config.User ? parseOwner(d.image.config.User) : undefined;
    d.state = d.state.file(mkdir(wd, 0o755, { makeParents: true, owner }), {
      customName: name,
      platform: d.platform,
    });
    opt.sourceMap.locations.set(name, c.location);
    withLayer = true;
  }
  history(d, opt, `WORKDIR ${wd}`, withLayer);
}

/** The instruction text with variables expanded for a progress name; as written on failure. */
export function processCmdEnv(
  opt: DispatchOpt,
  text: string,
  env: (k: string) => string | undefined,
): string {
  try {
    return opt.lex.processWord(text, env);
  } catch {
    return text;
  }
}

/**
 * ARG: the value comes from a build arg, else the default (expanded), else the global ARG of
 * the same name; it joins the environment of later steps but not the image config.
 */
export function dispatchArg(d: DispatchState, c: CommandOf<"arg">, opt: DispatchOpt): void {
  const strs: string[] = [];
  for (const arg of c.args) {
    warnSecretKey(opt, "ARG", arg.key, c);
    const hasValue = Object.hasOwn(opt.buildArgValues, arg.key);
    let value = arg.value;
    if (value === undefined && !hasValue && opt.globalArgs.has(arg.key)) value = opt.globalArgs.get(arg.key);
    if (hasValue) value = opt.buildArgValues[arg.key];
    else if (arg.value !== undefined) value = expandWithLint(d, c, opt, arg.value);
    if (value !== undefined && !NON_ENV_ARGS.has(arg.key)) d.state = d.state.addEnv(arg.key, value);
    d.buildArgs.push({ key: arg.key, value });
    strs.push(value === undefined ? arg.key : `${arg.key}=${value}`);
  }
  history(d, opt, `ARG ${strs.join(" ")}`);
}

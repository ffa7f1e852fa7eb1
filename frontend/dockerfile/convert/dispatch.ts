// One command of a stage: expansion of its words, then the conversion that fits its kind.
import type { State } from "../../../llb/index.ts";
import { expandCommand } from "../instructions/expand.ts";
import { ShellLex } from "../shell/lex.ts";
import { cleanPath } from "./context.ts";
import { dispatchCopy } from "./dispatch-copy.ts";
import {
  dispatchArg,
  dispatchCmd,
  dispatchEntrypoint,
  dispatchEnv,
  dispatchExpose,
  dispatchHealthcheck,
  dispatchLabel,
  dispatchMaintainer,
  dispatchOnbuild,
  dispatchShell,
  dispatchStopSignal,
  dispatchUser,
  dispatchVolume,
  dispatchWorkdir,
} from "./dispatch-meta.ts";
import { dispatchRun } from "./dispatch-run.ts";
import { type DispatchOpt, type DispatchState, envOf, type PendingCommand } from "./dispatch-state.ts";
import { expandWithLint } from "./expansion.ts";

const rawLexer = new ShellLex("\\", { skipProcessQuotes: true });

/** Converts one command of a stage. */
export function dispatchCommand(d: DispatchState, pc: PendingCommand, opt: DispatchOpt): void {
  d.cmdIsOnBuild = pc.isOnBuild;
  const c =
    pc.cmd.kind === "arg"
      ? pc.cmd
      : expandCommand(
          pc.cmd,
          (w) => expandWithLint(d, pc.cmd, opt, w),
          (w) => rawLexer.processWord(w, envOf(d)),
        );
  switch (c.kind) {
    case "maintainer":
      dispatchMaintainer(d, c, opt);
      return;
    case "env":
      dispatchEnv(d, c, opt);
      return;
    case "run":
      dispatchRun(d, c, pc.sources, opt);
      return;
    case "workdir":
      dispatchWorkdir(d, c.path, opt, c);
      return;
    case "add":
      dispatchCopy(d, c, opt.buildContext, opt);
      for (const src of c.sources.sourcePaths) {
        if (!src.startsWith("http://") && !src.startsWith("https://")) d.ctxPaths.add(cleanPath(`/${src}`));
      }
      return;
    case "copy": {
      let from: State = opt.buildContext;
      const src = pc.sources[0];
      if (src) {
        if (!src.dispatched) {
          throw new Error(
            `cannot copy from stage ${JSON.stringify(c.from)}, it needs to be defined before current stage ${JSON.stringify(d.stageName)}`,
          );
        }
        from = src.state;
      }
      dispatchCopy(d, c, from, opt);
      if (!src) for (const p of c.sources.sourcePaths) d.ctxPaths.add(cleanPath(`/${p}`));
      return;
    }
    case "label":
      dispatchLabel(d, c, opt);
      return;
    case "onbuild":
      dispatchOnbuild(d, c);
      return;
    case "cmd":
      dispatchCmd(d, c, opt);
      return;
    case "entrypoint":
      dispatchEntrypoint(d, c, opt);
      return;
    case "healthcheck":
      dispatchHealthcheck(d, c, opt);
      return;
    case "expose":
      dispatchExpose(d, c, opt);
      return;
    case "user":
      dispatchUser(d, c.user, opt);
      return;
    case "volume":
      dispatchVolume(d, c, opt);
      return;
    case "stopsignal":
      dispatchStopSignal(d, c, opt);
      return;
    case "shell":
      dispatchShell(d, c, opt);
      return;
    case "arg":
      dispatchArg(d, c, opt);
      return;
  }
}

// Variable expansion inside a stage, reporting variables that are neither set nor declared
// (the UndefinedVar warning), as BuildKit does for the words it expands.
import type { Command } from "../instructions/commands.ts";
import { closest } from "../instructions/mount.ts";
import { type DispatchOpt, type DispatchState, envOf } from "./dispatch-state.ts";

const NON_ENV_ARGS = new Set(["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"]);

/** Warns once per variable used by `c` that the stage neither set nor declared. */
export function reportUnmatched(
  d: DispatchState,
  c: Pick<Command, "location">,
  opt: DispatchOpt,
  names: Iterable<string>,
) {
  for (const name of names) {
    if (NON_ENV_ARGS.has(name) || d.buildArgs.some((a) => a.key === name)) continue;
    const keys = d.state.context.env.map(([k]) => k);
    opt.lint.warn("UndefinedVar", c.location, name, closest(name, keys) ?? "");
  }
}

/** Expands one word against the stage's env, warning about undefined variables. */
export function expandWithLint(
  d: DispatchState,
  c: Pick<Command, "location">,
  opt: DispatchOpt,
  word: string,
): string {
  const r = opt.lex.process(word, envOf(d));
  reportUnmatched(d, c, opt, r.unmatched);
  return r.result;
}

// Checks over the whole file that only warn: stage names, instruction casing, FROM defaults,
// constant platforms.
import { type PlatformSpec, parseImageRef } from "../../../llb/index.ts";
import type { Dockerfile, Stage } from "../instructions/commands.ts";
import type { Linter } from "../lint.ts";
import type { ShellLex } from "../shell/lex.ts";
import { defaultArgs, type PlatformOpt, parsePlatformSpec } from "./platform.ts";

const RESERVED_STAGE_NAMES = new Set(["context", "scratch"]);

/** Warns about FROM lines whose image is empty or invalid when no build args are given. */
export function warnInvalidDefaultBases(
  df: Dockerfile,
  po: PlatformOpt,
  target: string,
  lex: ShellLex,
  lint: Linter,
): void {
  const args = defaultArgs(po, {}, target);
  try {
    for (const cmd of df.metaArgs) {
      for (const kv of cmd.args) {
        if (kv.value !== undefined)
          args.set(
            kv.key,
            lex.processWord(kv.value, (k) => args.get(k)),
          );
      }
    }
    for (const st of df.stages) {
      const name = lex.processWord(st.baseName, (k) => args.get(k));
      try {
        if (name === "") throw new Error("empty");
        parseImageRef(name);
      } catch {
        lint.warn("InvalidDefaultArgInFrom", st.location, st.baseName);
      }
    }
  } catch {
    // The conversion itself reports expansion errors.
  }
}

/** A FROM --platform constant is suspicious unless the stage name says which platform it is for. */
export function warnConstantPlatform(stage: Stage, value: string, lint: Linter): void {
  let p: PlatformSpec;
  try {
    p = parsePlatformSpec(value);
  } catch {
    return; // reported as an error when the platform is parsed
  }
  if (!stage.name.includes(p.os) && !stage.name.includes(p.architecture)) {
    lint.warn("FromPlatformFlagConstDisallowed", stage.location, value);
  }
}

export function validateStageNames(stages: Stage[], lint: Linter): void {
  const seen = new Set<string>();
  for (const s of stages) {
    if (s.name === "") continue;
    if (RESERVED_STAGE_NAMES.has(s.name)) lint.warn("ReservedStageName", s.location, s.name);
    if (seen.has(s.name)) lint.warn("DuplicateStageName", s.location, s.name);
    seen.add(s.name);
  }
}

export function validateCommandCasing(stages: Stage[], lint: Linter): void {
  const names = stages.flatMap((s) => [
    { name: s.rawName, location: s.location },
    ...s.commands.map((c) => ({ name: c.rawName, location: c.location })),
  ]);
  let lower = 0;
  let upper = 0;
  for (const { name } of names) {
    if (name === name.toLowerCase()) lower++;
    else if (name === name.toUpperCase()) upper++;
  }
  const majorityLower = lower > upper;
  for (const { name, location } of names) {
    if (majorityLower && name !== name.toLowerCase()) {
      lint.warn("ConsistentInstructionCasing", location, name, "lowercase");
    } else if (!majorityLower && name !== name.toUpperCase()) {
      lint.warn("ConsistentInstructionCasing", location, name, "uppercase");
    }
  }
}

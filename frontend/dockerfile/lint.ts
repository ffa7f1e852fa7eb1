// Warnings about forms that work but are deprecated or likely mistakes. Rule names and URLs are
// BuildKit's, so users can look them up and `# check=skip=RuleName` means the same thing here.
import type { Range } from "./parser/errors.ts";

/** One warning, reported through progress rather than failing the build. */
export interface Warning {
  rule: string;
  description: string;
  url: string;
  message: string;
  location: Range[];
}

interface Rule<A extends unknown[]> {
  name: string;
  description: string;
  format: (...args: A) => string;
}

const rule = <A extends unknown[]>(name: string, description: string, format: (...args: A) => string) =>
  ({ name, description, format }) satisfies Rule<A>;

/** The rules this frontend checks. */
export const RULES = {
  StageNameCasing: rule("StageNameCasing", "Stage names should be lowercase", (name: string) => {
    return `Stage name '${name}' should be lowercase`;
  }),
  FromAsCasing: rule(
    "FromAsCasing",
    "The 'as' keyword should match the case of the 'from' keyword",
    (from: string, as: string) => `'${as}' and '${from}' keywords' casing do not match`,
  ),
  NoEmptyContinuation: rule(
    "NoEmptyContinuation",
    "Empty continuation lines will become errors in a future release",
    () => "Empty continuation line",
  ),
  ConsistentInstructionCasing: rule(
    "ConsistentInstructionCasing",
    "All commands within the Dockerfile should use the same casing (either upper or lower)",
    (cmd: string, casing: string) =>
      `Command '${cmd}' should match the case of the command majority (${casing})`,
  ),
  DuplicateStageName: rule("DuplicateStageName", "Stage names should be unique", (name: string) => {
    return `Duplicate stage name ${JSON.stringify(name)}, stage names should be unique`;
  }),
  ReservedStageName: rule(
    "ReservedStageName",
    "Reserved words should not be used as stage names",
    (n: string) => {
      return `Stage name should not use the same name as reserved stage ${JSON.stringify(n)}`;
    },
  ),
  JSONArgsRecommended: rule(
    "JSONArgsRecommended",
    "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
    (instruction: string) =>
      `JSON arguments recommended for ${instruction} to prevent unintended behavior related to OS signals`,
  ),
  InvalidJSONArgs: rule(
    "InvalidJSONArgs",
    "Arguments that look like a JSON array but are not valid JSON are run in shell form",
    (instruction: string, why: string) =>
      `${instruction} arguments look like a JSON array but are not valid JSON (${why}); they are used in shell form`,
  ),
  MaintainerDeprecated: rule(
    "MaintainerDeprecated",
    "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
    () => "Maintainer instruction is deprecated in favor of using label",
  ),
  UndefinedArgInFrom: rule(
    "UndefinedArgInFrom",
    "FROM command must use declared ARGs",
    (arg: string, s: string) => {
      return `FROM argument '${arg}' is not declared${s ? ` (did you mean ${s}?)` : ""}`;
    },
  ),
  WorkdirRelativePath: rule(
    "WorkdirRelativePath",
    "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
    (dir: string) =>
      `Relative workdir ${JSON.stringify(dir)} can have unexpected results if the base image changes`,
  ),
  UndefinedVar: rule(
    "UndefinedVar",
    "Variables should be defined before their use",
    (v: string, s: string) => {
      return `Usage of undefined variable '$${v}'${s ? ` (did you mean $${s}?)` : ""}`;
    },
  ),
  MultipleInstructionsDisallowed: rule(
    "MultipleInstructionsDisallowed",
    "Multiple instructions of the same type should not be used in the same stage",
    (name: string) =>
      `Multiple ${name} instructions should not be used in the same stage because only the last one will be used`,
  ),
  LegacyKeyValueFormat: rule(
    "LegacyKeyValueFormat",
    "Legacy key/value format with whitespace separator should not be used",
    (cmd: string) => `"${cmd} key=value" should be used instead of legacy "${cmd} key value" format`,
  ),
  RedundantTargetPlatform: rule(
    "RedundantTargetPlatform",
    "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
    (p: string) => `Setting platform to predefined ${p} in FROM is redundant as this is the default behavior`,
  ),
  SecretsUsedInArgOrEnv: rule(
    "SecretsUsedInArgOrEnv",
    "Sensitive data should not be used in the ARG or ENV commands",
    (instruction: string, key: string) =>
      `Do not use ARG or ENV instructions for sensitive data (${instruction} ${JSON.stringify(key)})`,
  ),
  InvalidDefaultArgInFrom: rule(
    "InvalidDefaultArgInFrom",
    "Default value for global ARG results in an empty or invalid base image name",
    (base: string) => `Default value for ARG ${base} results in empty or invalid base image name`,
  ),
  InvalidBaseImagePlatform: rule(
    "InvalidBaseImagePlatform",
    "Base image platform does not match expected target platform",
    (image: string, expected: string, actual: string) =>
      `Base image ${image} was pulled with platform ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)} for current build`,
  ),
  FromPlatformFlagConstDisallowed: rule(
    "FromPlatformFlagConstDisallowed",
    "FROM --platform flag should not use a constant value",
    (p: string) => `FROM --platform flag should not use constant value ${JSON.stringify(p)}`,
  ),
} as const;

export type RuleName = keyof typeof RULES;

/** BuildKit's documentation page for a rule. */
export function ruleURL(name: string): string {
  const slug = name
    .replace(/([A-Z]+)([A-Z][a-z])/g, "$1-$2")
    .replace(/([a-z0-9])([A-Z])/g, "$1-$2")
    .toLowerCase();
  return `https://docs.docker.com/go/dockerfile/rule/${slug}/`;
}

/** The `# check=` directive: rules to skip (or "all"), and whether warnings fail the build. */
export interface CheckConfig {
  skip: Set<string>;
  skipAll: boolean;
  error: boolean;
}

/** Parses "skip=A,B;error=true". Throws on unknown keys or bad values. */
export function parseCheckDirective(value: string | undefined): CheckConfig {
  const config: CheckConfig = { skip: new Set(), skipAll: false, error: false };
  if (!value) return config;
  for (const part of value.split(";")) {
    const [rawKey, rawVal = ""] = part.split("=", 2).map((s) => s.trim()) as [string, string?];
    const key = rawKey.toLowerCase();
    if (key === "") continue;
    if (key === "skip") {
      for (const r of rawVal.split(",").map((s) => s.trim())) {
        if (r.toLowerCase() === "all") config.skipAll = true;
        else if (r !== "") config.skip.add(r);
      }
    } else if (key === "error") {
      if (!/^(true|false|1|0)$/i.test(rawVal))
        throw new Error(`invalid check error value ${JSON.stringify(rawVal)}`);
      config.error = /^(true|1)$/i.test(rawVal);
    } else if (key === "experimental") {
      // Experimental rules are not implemented here; enabling them changes nothing.
    } else {
      throw new Error(`invalid check option ${JSON.stringify(rawKey)}: want skip=, error= or experimental=`);
    }
  }
  return config;
}

/** Collects warnings, honouring a check configuration. */
export class Linter {
  readonly warnings: Warning[] = [];
  private readonly config: CheckConfig;

  constructor(config: CheckConfig = parseCheckDirective(undefined)) {
    this.config = config;
  }

  /** A new linter with the same configuration and no warnings. */
  fork(): Linter {
    return new Linter(this.config);
  }

  /** Records a warning for `rule` unless the rule is skipped. */
  warn<N extends RuleName>(
    name: N,
    location: Range[],
    ...args: Parameters<(typeof RULES)[N]["format"]>
  ): void {
    if (this.config.skipAll || this.config.skip.has(name)) return;
    const r = RULES[name];
    const message = (r.format as (...a: unknown[]) => string)(...args);
    this.warnings.push({ rule: r.name, description: r.description, url: ruleURL(r.name), message, location });
  }

  /** With `# check=error=true`, an error listing the warnings; otherwise undefined. */
  failure(): Error | undefined {
    if (!this.config.error || this.warnings.length === 0) return undefined;
    const n = this.warnings.length;
    return new Error(
      `lint violation found for rules: ${[...new Set(this.warnings.map((w) => w.rule))].join(", ")} (${n} warning${n === 1 ? "" : "s"}; check=error=true is set)`,
    );
  }
}

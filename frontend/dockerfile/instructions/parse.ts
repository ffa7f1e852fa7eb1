// From parsed instructions to typed commands and stages: flags declared and parsed per
// instruction, argument counts checked, heredocs attached, ARGs before the first FROM kept as
// meta args. Every error names the file, the lines and the instruction.
import { parseGoDuration } from "../gofmt.ts";
import type { Linter } from "../lint.ts";
import { DockerfileError, withLocation } from "../parser/errors.ts";
import { chompHeredocContent, parseHeredoc } from "../parser/heredoc.ts";
import type { Instruction, ParseResult } from "../parser/parser.ts";
import { Flags } from "./bflag.ts";
import type {
  Command,
  CommandBase,
  CommandOf,
  Dockerfile,
  HealthConfig,
  InlineFile,
  KeyValue,
  ShellDependentCmdLine,
  SourcesAndDest,
  Stage,
} from "./commands.ts";
import { closest, parseMount } from "./mount.ts";

const INSTRUCTIONS = [
  "add",
  "arg",
  "cmd",
  "copy",
  "entrypoint",
  "env",
  "expose",
  "from",
  "healthcheck",
  "label",
  "maintainer",
  "onbuild",
  "run",
  "shell",
  "stopsignal",
  "user",
  "volume",
  "workdir",
];

const STAGE_NAME_RE = /^[a-z][a-z0-9-_.]*$/;
// Docker's minimum for health check durations.
const MIN_DURATION = 1_000_000n;

function base(node: Instruction): CommandBase {
  return { name: node.name, rawName: node.rawName, code: node.original.trim(), location: node.location };
}

const atLeastOne = (cmd: string) => new Error(`${cmd} requires at least one argument`);
const exactlyOne = (cmd: string) => new Error(`${cmd} requires exactly one argument`);
const noDestination = (cmd: string) =>
  new Error(
    `${cmd} requires at least two arguments, but only one was provided. Destination could not be determined`,
  );

function keyValues(node: Instruction, cmd: string): KeyValue[] {
  const pairs = node.pairs ?? [];
  if (pairs.length === 0) throw atLeastOne(cmd);
  return pairs.map((p) => {
    if (p.key === "") throw new Error(`${cmd} names can not be blank`);
    return p.delim ? { key: p.key, value: p.value } : { key: p.key, value: p.value, noDelim: true };
  });
}

function inlineFiles(node: Instruction): InlineFile[] {
  return node.heredocs.map((h) => ({ name: h.name, data: h.content, expand: h.expand, chomp: h.chomp }));
}

function shellDependent(node: Instruction): ShellDependentCmdLine {
  return { cmdLine: [...node.args], prependShell: !node.json, files: inlineFiles(node) };
}

function sourcesAndDest(node: Instruction, cmd: string): SourcesAndDest {
  const args = node.args;
  const destPath = args[args.length - 1]!;
  if (parseHeredocSafe(destPath)) throw new Error(`${cmd} cannot accept a heredoc as a destination`);
  const docs = new Map(node.heredocs.map((h) => [h.name, h]));
  const sourcePaths: string[] = [];
  const sourceContents: InlineFile[] = [];
  for (const src of args.slice(0, -1)) {
    const doc = node.json ? undefined : parseHeredocSafe(src);
    if (!doc) {
      sourcePaths.push(src);
      continue;
    }
    const body = docs.get(doc.name)?.content ?? "";
    sourceContents.push({
      name: doc.name,
      data: doc.chomp ? chompHeredocContent(body) : body,
      expand: doc.expand,
      chomp: doc.chomp,
    });
  }
  return { sourcePaths, sourceContents, destPath };
}

function parseHeredocSafe(word: string): ReturnType<typeof parseHeredoc> {
  try {
    return parseHeredoc(word);
  } catch {
    return undefined;
  }
}

function parseInterval(value: string, name: string): bigint {
  if (value === "") return 0n;
  const d = parseGoDuration(value);
  if (d === 0n) return 0n;
  if (d < MIN_DURATION) throw new Error(`Interval ${JSON.stringify(name)} cannot be less than 1ms`);
  return d;
}

function parseHealthcheck(node: Instruction, flags: Flags): HealthConfig {
  if (node.args.length === 0) throw atLeastOne("HEALTHCHECK");
  const typ = node.args[0]!.toUpperCase();
  const args = node.args.slice(1);
  const none: HealthConfig = {
    test: [],
    interval: 0n,
    timeout: 0n,
    startPeriod: 0n,
    startInterval: 0n,
    retries: 0,
  };
  if (typ === "NONE") {
    if (args.length !== 0) throw new Error("HEALTHCHECK NONE takes no arguments");
    return { ...none, test: ["NONE"] };
  }
  const interval = flags.string("interval");
  const timeout = flags.string("timeout");
  const startPeriod = flags.string("start-period");
  const startInterval = flags.string("start-interval");
  const retries = flags.string("retries");
  flags.parse();
  if (typ !== "CMD") throw new Error(`Unknown type ${JSON.stringify(typ)} in HEALTHCHECK (try CMD)`);
  if (args.length === 0) throw new Error("Missing command after HEALTHCHECK CMD");
  const health: HealthConfig = {
    test: [node.json ? "CMD" : "CMD-SHELL", ...args],
    interval: parseInterval(interval.value, "interval"),
    timeout: parseInterval(timeout.value, "timeout"),
    startPeriod: parseInterval(startPeriod.value, "start-period"),
    startInterval: parseInterval(startInterval.value, "start-interval"),
    retries: 0,
  };
  if (retries.value !== "") {
    if (!/^[+-]?\d+$/.test(retries.value)) {
      throw new Error(`strconv.ParseInt: parsing ${JSON.stringify(retries.value)}: invalid syntax`);
    }
    const n = Number(retries.value);
    if (n < 0) throw new Error(`--retries cannot be negative (${n})`);
    if (n > 0x7fffffff)
      throw new Error(`strconv.ParseInt: parsing ${JSON.stringify(retries.value)}: value out of range`);
    health.retries = n;
  }
  return health;
}

/** Parses one instruction other than FROM into a command. Throws plain errors. */
function parseCommandBody(node: Instruction, lint: Linter | undefined): Command {
  const flags = new Flags(node.flags);
  const b = base(node);
  const args = node.args;
  switch (node.name) {
    case "env":
      flags.parse();
      return { ...b, kind: "env", env: keyValues(node, "ENV") };
    case "label":
      flags.parse();
      return { ...b, kind: "label", labels: keyValues(node, "LABEL") };
    case "maintainer":
      if (args.length !== 1) throw exactlyOne("MAINTAINER");
      flags.parse();
      lint?.warn("MaintainerDeprecated", node.location);
      return { ...b, kind: "maintainer", maintainer: args[0]! };
    case "add": {
      if (args.length < 2) throw noDestination("ADD");
      const chown = flags.string("chown");
      const chmod = flags.string("chmod");
      const link = flags.bool("link");
      const keepGitDir = flags.bool("keep-git-dir");
      const checksum = flags.string("checksum");
      const exclude = flags.strings("exclude");
      flags.parse();
      return {
        ...b,
        kind: "add",
        sources: sourcesAndDest(node, "ADD"),
        chown: chown.value,
        chmod: chmod.value,
        link: link.value === "true",
        keepGitDir: keepGitDir.value === "true",
        checksum: checksum.value,
        exclude: exclude.values,
      };
    }
    case "copy": {
      if (args.length < 2) throw noDestination("COPY");
      const exclude = flags.strings("exclude");
      const parents = flags.bool("parents");
      const chown = flags.string("chown");
      const from = flags.string("from");
      const chmod = flags.string("chmod");
      const link = flags.bool("link");
      flags.parse();
      return {
        ...b,
        kind: "copy",
        sources: sourcesAndDest(node, "COPY"),
        from: from.value,
        chown: chown.value,
        chmod: chmod.value,
        link: link.value === "true",
        parents: parents.value === "true",
        exclude: exclude.values,
      };
    }
    case "onbuild": {
      if (args.length === 0 || !node.sub) throw atLeastOne("ONBUILD");
      flags.parse();
      const trigger = node.sub.name.toUpperCase();
      if (trigger === "ONBUILD") throw new Error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      if (trigger === "MAINTAINER" || trigger === "FROM") {
        throw new Error(`${trigger} isn't allowed as an ONBUILD trigger`);
      }
      let expression = node.original.replace(/^\s*ONBUILD\s*/i, "");
      for (const h of node.sub.heredocs) expression += `\n${h.content}${h.name}`;
      return { ...b, kind: "onbuild", expression };
    }
    case "workdir":
      if (args.length !== 1) throw exactlyOne("WORKDIR");
      flags.parse();
      return { ...b, kind: "workdir", path: args[0]! };
    case "run": {
      const mount = flags.strings("mount");
      const network = flags.string("network");
      const security = flags.string("security");
      flags.parse();
      // Check what can be checked before expansion: keys, and no variables in `from`.
      for (const spec of mount.values) parseMount(spec);
      for (const [flag, allowed] of [
        [network, ["default", "none", "host"]],
        [security, ["sandbox", "insecure"]],
      ] as const) {
        if (flag.used && !flag.value.includes("$") && !allowed.includes(flag.value as never)) {
          throw new Error(`unsupported ${flag.name} mode ${JSON.stringify(flag.value)}`);
        }
      }
      return {
        ...b,
        kind: "run",
        run: shellDependent(node),
        mountSpecs: mount.values,
        network: network.value,
        security: security.value,
        flagsUsed: flags.used(),
      };
    }
    case "cmd":
      flags.parse();
      return { ...b, kind: "cmd", run: shellDependent(node) };
    case "entrypoint":
      flags.parse();
      return { ...b, kind: "entrypoint", run: shellDependent(node) };
    case "healthcheck":
      return { ...b, kind: "healthcheck", health: parseHealthcheck(node, flags) };
    case "expose":
      if (args.length === 0) throw atLeastOne("EXPOSE");
      flags.parse();
      return { ...b, kind: "expose", ports: [...args].sort() };
    case "user":
      if (args.length !== 1) throw exactlyOne("USER");
      flags.parse();
      return { ...b, kind: "user", user: args[0]! };
    case "volume": {
      if (args.length === 0) throw atLeastOne("VOLUME");
      flags.parse();
      const volumes = args.map((v) => v.trim());
      if (volumes.some((v) => v === "")) throw new Error("VOLUME specified can not be an empty string");
      return { ...b, kind: "volume", volumes };
    }
    case "stopsignal":
      if (args.length !== 1) throw exactlyOne("STOPSIGNAL");
      return { ...b, kind: "stopsignal", signal: args[0]! };
    case "arg": {
      if (args.length === 0) throw atLeastOne("ARG");
      const parsed = args.map((arg) => {
        const eq = arg.indexOf("=");
        const key = eq < 0 ? arg : arg.slice(0, eq);
        if (eq >= 0 && key === "") throw new Error("ARG names can not be blank");
        const comment = commentFor(node.comments, key);
        return eq < 0 ? { key, comment } : { key, value: arg.slice(eq + 1), comment };
      });
      return { ...b, kind: "arg", args: parsed };
    }
    case "shell":
      flags.parse();
      if (args.length === 0) throw atLeastOne("SHELL");
      if (!node.json) throw new Error("SHELL requires the arguments to be in JSON form");
      return { ...b, kind: "shell", shell: [...args] };
    default: {
      const near = closest(node.name, INSTRUCTIONS);
      const hint = near ? ` (did you mean ${near.toUpperCase()}?)` : "";
      throw new Error(`unknown instruction: ${node.rawName.toUpperCase()}${hint}`);
    }
  }
}

/** The description comment "# NAME text" for a stage or ARG named NAME. */
function commentFor(comments: readonly string[], name: string): string {
  if (name === "") return "";
  const prefix = `${name} `;
  return comments.find((c) => c.startsWith(prefix))?.slice(prefix.length) ?? "";
}

function parseFrom(node: Instruction, lint: Linter | undefined): Stage {
  const args = node.args;
  let name = "";
  let rawStageName = "";
  if (args.length === 3 && args[1]!.toLowerCase() === "as") {
    rawStageName = args[2]!;
    name = rawStageName.toLowerCase();
    if (!STAGE_NAME_RE.test(name)) {
      throw new Error(
        `invalid name for build stage: ${JSON.stringify(rawStageName)}, name can't start with a number or contain symbols`,
      );
    }
    if (name !== rawStageName) lint?.warn("StageNameCasing", node.location, rawStageName);
    const as = args[1]!;
    const fromLower = node.rawName === node.rawName.toLowerCase();
    const fromUpper = node.rawName === node.rawName.toUpperCase();
    if ((fromLower && as !== as.toLowerCase()) || (!fromLower && fromUpper && as !== as.toUpperCase())) {
      lint?.warn("FromAsCasing", node.location, node.rawName, as);
    }
  } else if (args.length !== 1) {
    throw new Error("FROM requires either one or three arguments");
  }
  const flags = new Flags(node.flags);
  const platform = flags.string("platform");
  flags.parse();
  return {
    name,
    rawStageName,
    baseName: args[0]!,
    platform: platform.value,
    code: node.original.trim(),
    rawName: node.rawName,
    location: node.location,
    comment: commentFor(node.comments, name),
    commands: [],
  };
}

/** Parses one instruction into a command or a stage; errors carry its location. */
export function parseInstruction(
  node: Instruction,
  ctx: { file?: string; source?: string; lint?: Linter } = {},
): Command | Stage {
  try {
    return node.name === "from" ? parseFrom(node, ctx.lint) : parseCommandBody(node, ctx.lint);
  } catch (e) {
    throw withLocation(e, {
      file: ctx.file,
      source: ctx.source,
      ranges: node.location,
      instruction: node.original.trim(),
    });
  }
}

/** Parses a command that is not FROM (ONBUILD triggers). */
export function parseCommand(
  node: Instruction,
  ctx: { file?: string; source?: string; lint?: Linter } = {},
): Command {
  const c = parseInstruction(node, ctx);
  if (!("kind" in c)) {
    throw new DockerfileError("FROM isn't allowed as an ONBUILD trigger", {
      file: ctx.file,
      ranges: node.location,
      instruction: node.original.trim(),
      source: ctx.source,
    });
  }
  return c;
}

/** Splits a parsed file into stages; ARGs before the first FROM become meta args. */
export function parseStages(parsed: ParseResult): Dockerfile {
  const ctx = { file: parsed.file, source: parsed.source, lint: parsed.linter };
  const stages: Stage[] = [];
  const metaArgs: CommandOf<"arg">[] = [];
  for (const node of parsed.instructions) {
    const c = parseInstruction(node, ctx);
    if (!("kind" in c)) {
      stages.push(c);
      continue;
    }
    if (stages.length === 0) {
      if (c.kind === "arg") {
        metaArgs.push(c);
        continue;
      }
      throw new DockerfileError("no build stage in current context", {
        file: parsed.file,
        ranges: node.location,
        instruction: node.original.trim(),
        source: parsed.source,
      });
    }
    stages[stages.length - 1]!.commands.push(c);
  }
  return { stages, metaArgs };
}

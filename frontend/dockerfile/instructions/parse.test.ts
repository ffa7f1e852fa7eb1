// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" here is Dockerfile syntax, not a template.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DockerfileError } from "../parser/errors.ts";
import { parseDockerfile } from "../parser/parser.ts";
import { ShellLex } from "../shell/lex.ts";
import type { CommandOf } from "./commands.ts";
import { expandCommand } from "./expand.ts";
import { parseMount } from "./mount.ts";
import { parseStages } from "./parse.ts";

const stagesOf = (text: string) => parseStages(parseDockerfile(text));
const firstCommand = (text: string) => stagesOf(`FROM a\n${text}`).stages[0]!.commands[0]!;

function parseError(text: string): DockerfileError {
  try {
    stagesOf(text);
  } catch (e) {
    assert.ok(e instanceof DockerfileError, `not a DockerfileError: ${e}`);
    return e;
  }
  assert.fail(`no error for ${JSON.stringify(text)}`);
}

test("stages, names, platforms and meta args", () => {
  const df = stagesOf(
    "ARG GO=1.22\nARG OTHER\nFROM --platform=$BUILDPLATFORM golang:${GO} AS Build\nRUN make\nFROM scratch\nCOPY --from=build /out /\n",
  );
  assert.deepEqual(
    df.metaArgs.map((a) => a.args),
    [[{ key: "GO", value: "1.22", comment: "" }], [{ key: "OTHER", comment: "" }]],
  );
  assert.equal(df.stages.length, 2);
  const [build, final] = df.stages;
  assert.equal(build!.name, "build");
  assert.equal(build!.rawStageName, "Build");
  assert.equal(build!.baseName, "golang:${GO}");
  assert.equal(build!.platform, "$BUILDPLATFORM");
  assert.equal(build!.code, "FROM --platform=$BUILDPLATFORM golang:${GO} AS Build");
  assert.deepEqual(build!.location[0]!.start.line, 3);
  assert.equal(final!.name, "");
  assert.deepEqual(
    final!.commands.map((c) => c.kind),
    ["copy"],
  );
});

test("COPY and ADD flags, sources, heredoc files", () => {
  const copy = firstCommand(
    "COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=.git a b/ /dst/",
  ) as CommandOf<"copy">;
  assert.equal(copy.from, "build");
  assert.equal(copy.chown, "app:app");
  assert.equal(copy.chmod, "0755");
  assert.equal(copy.link, true);
  assert.equal(copy.parents, true);
  assert.deepEqual(copy.exclude, ["*.md", ".git"]);
  assert.deepEqual(copy.sources, { sourcePaths: ["a", "b/"], sourceContents: [], destPath: "/dst/" });

  const add = firstCommand(
    "ADD --keep-git-dir --checksum=sha256:abc --link=false https://x/y.tgz /d",
  ) as CommandOf<"add">;
  assert.equal(add.keepGitDir, true);
  assert.equal(add.link, false);
  assert.equal(add.checksum, "sha256:abc");

  const doc = firstCommand(
    'COPY <<-one.txt <<"two" /etc/\n\tfirst\n\tone.txt\n$second\ntwo\n',
  ) as CommandOf<"copy">;
  assert.deepEqual(doc.sources.sourcePaths, []);
  assert.deepEqual(doc.sources.sourceContents, [
    { name: "one.txt", data: "first\n", expand: true, chomp: true },
    { name: "two", data: "$second\n", expand: false, chomp: false },
  ]);
});

test("RUN: shell and exec forms, heredoc scripts, mounts, network, security", () => {
  const shell = firstCommand("RUN --network=none --security=insecure echo $HOME") as CommandOf<"run">;
  assert.deepEqual(shell.run, { cmdLine: ["echo $HOME"], prependShell: true, files: [] });
  assert.equal(shell.network, "none");
  assert.equal(shell.security, "insecure");
  assert.deepEqual(shell.flagsUsed.sort(), ["network", "security"]);
  const exec = firstCommand('RUN ["echo", "$HOME"]') as CommandOf<"run">;
  assert.deepEqual(exec.run, { cmdLine: ["echo", "$HOME"], prependShell: false, files: [] });
  const mounts = firstCommand(
    "RUN --mount=type=cache,target=/c --mount=type=secret,id=tok make",
  ) as CommandOf<"run">;
  assert.deepEqual(mounts.mountSpecs, ["type=cache,target=/c", "type=secret,id=tok"]);
  const script = firstCommand("RUN <<EOF\nset -e\necho hi\nEOF") as CommandOf<"run">;
  assert.deepEqual(script.run.files, [
    { name: "EOF", data: "set -e\necho hi\n", expand: true, chomp: false },
  ]);
});

test("metadata instructions", () => {
  const env = firstCommand('ENV A=1 B="two words"') as CommandOf<"env">;
  assert.deepEqual(env.env, [
    { key: "A", value: "1" },
    { key: "B", value: '"two words"' },
  ]);
  assert.deepEqual((firstCommand("ENV A 1 2") as CommandOf<"env">).env, [
    { key: "A", value: "1 2", noDelim: true },
  ]);
  const hc = firstCommand(
    "HEALTHCHECK --interval=30s --timeout=3s --start-period=1m --retries=3 CMD curl -f http://localhost/",
  ) as CommandOf<"healthcheck">;
  assert.deepEqual(hc.health, {
    test: ["CMD-SHELL", "curl -f http://localhost/"],
    interval: 30_000_000_000n,
    timeout: 3_000_000_000n,
    startPeriod: 60_000_000_000n,
    startInterval: 0n,
    retries: 3,
  });
  assert.deepEqual((firstCommand('HEALTHCHECK CMD ["/bin/check"]') as CommandOf<"healthcheck">).health.test, [
    "CMD",
    "/bin/check",
  ]);
  assert.deepEqual((firstCommand("HEALTHCHECK NONE") as CommandOf<"healthcheck">).health.test, ["NONE"]);
  assert.deepEqual((firstCommand("EXPOSE 8080 443/tcp 80") as CommandOf<"expose">).ports, [
    "443/tcp",
    "80",
    "8080",
  ]);
  assert.deepEqual((firstCommand('VOLUME ["/a", "/b"]') as CommandOf<"volume">).volumes, ["/a", "/b"]);
  assert.deepEqual((firstCommand('SHELL ["bash", "-c"]') as CommandOf<"shell">).shell, ["bash", "-c"]);
  assert.equal((firstCommand("ONBUILD RUN echo hi") as CommandOf<"onbuild">).expression, "RUN echo hi");
  assert.equal(
    (firstCommand("onbuild run <<EOF\nx\nEOF") as CommandOf<"onbuild">).expression,
    "run <<EOF\nx\nEOF",
    "a heredoc trigger keeps its body",
  );
  const arg = firstCommand("ARG A B=2 C=") as CommandOf<"arg">;
  assert.deepEqual(arg.args, [
    { key: "A", comment: "" },
    { key: "B", value: "2", comment: "" },
    { key: "C", value: "", comment: "" },
  ]);
});

test("errors name the flag or rule, the file, the line and the instruction", () => {
  const cases: [string, RegExp][] = [
    ["FROM a\nCOPY --form=x a b", /^Dockerfile:2: Unknown flag: form$/],
    ["FROM a\nCOPY --from a b", /Missing a value on flag: from/],
    ["FROM a\nCOPY --link=maybe a b", /Expecting boolean value for flag link, not: maybe/],
    ["FROM a\nCOPY --from=a --from=b a b", /Duplicate flag specified: from/],
    [
      "FROM a\nRUN --mount=type=cache,targte=/x make",
      /unexpected key 'targte' in 'targte=\/x' \(did you mean target\?\)/,
    ],
    ["FROM a\nRUN --mount=type=bind,from=$X,target=/x make", /'from' doesn't support variable expansion/],
    ["FROM a\nRUN --network=bridge make", /unsupported network mode "bridge"/],
    ["FROM a\nCOPY onlyone", /COPY requires at least two arguments/],
    ["FROM a\nCOPY a <<EOF\nx\nEOF", /COPY cannot accept a heredoc as a destination/],
    ["FROM a AS 1st", /invalid name for build stage: "1st"/],
    ["FROM a b", /FROM requires either one or three arguments/],
    ["FROM a\nWORKDIR", /WORKDIR requires exactly one argument/],
    ["FROM a\nSHELL bash -c", /SHELL requires the arguments to be in JSON form/],
    ["FROM a\nONBUILD ONBUILD RUN x", /Chaining ONBUILD/],
    ["FROM a\nONBUILD FROM b", /FROM isn't allowed as an ONBUILD trigger/],
    ["FROM a\nHEALTHCHECK --interval=1us CMD x", /Interval "interval" cannot be less than 1ms/],
    ["FROM a\nHEALTHCHECK --retries=-1 CMD x", /--retries cannot be negative \(-1\)/],
    ["FROM a\nHEALTHCHECK --timeout=3 CMD x", /missing unit|invalid duration|unknown unit/],
    ["FROM a\nHEALTHCHECK BAD x", /Unknown type "BAD" in HEALTHCHECK/],
    ["FROM a\nRUNN make", /unknown instruction: RUNN \(did you mean RUN\?\)/],
    ["RUN make", /no build stage in current context/],
    ["FROM a\nARG =x", /ARG names can not be blank/],
    ['FROM a\nVOLUME [""]', /VOLUME specified can not be an empty string/],
  ];
  for (const [text, re] of cases) {
    const e = parseError(text);
    assert.match(e.message, re, text);
    const line = e.ranges[0]!.start.line;
    assert.equal(e.instruction, text.split("\n")[line - 1], text);
  }
  const e = parseError("FROM a\n\nCOPY \\\n  --bogus a b\n");
  assert.deepEqual([e.ranges[0]!.start.line, e.ranges[0]!.end.line], [3, 4]);
  assert.equal(e.instruction, "COPY   --bogus a b");
});

test("deprecated and suspicious forms become warnings, not errors", () => {
  const parsed = parseDockerfile("from a As Build\nMAINTAINER me\n");
  parseStages(parsed);
  assert.deepEqual(
    parsed.linter.warnings.map((w) => w.rule),
    ["StageNameCasing", "FromAsCasing", "MaintainerDeprecated"],
  );
  assert.equal(parsed.linter.warnings[2]!.location[0]!.start.line, 2);
  assert.equal(
    parsed.linter.warnings[2]!.url,
    "https://docs.docker.com/go/dockerfile/rule/maintainer-deprecated/",
  );
});

test("mount options: every key, defaults, and checks after expansion", () => {
  const id = (w: string) => w;
  assert.deepEqual(
    parseMount(
      "type=cache,target=/root/.cache,id=go,sharing=locked,from=base,source=/c,mode=0700,uid=1000,gid=1000",
      id,
    ),
    {
      type: "cache",
      from: "base",
      source: "/c",
      target: "/root/.cache",
      readOnly: false,
      sizeLimit: 0,
      id: "go",
      sharing: "locked",
      required: false,
      mode: 0o700,
      uid: 1000,
      gid: 1000,
    },
  );
  assert.equal(parseMount("target=/x", id).readOnly, true, "bind mounts are read-only by default");
  assert.equal(parseMount("target=/x,rw", id).readOnly, false);
  assert.equal(parseMount("target=/x,readwrite=true", id).readOnly, false);
  assert.equal(parseMount("type=tmpfs,target=/t,size=64m", id).sizeLimit, 64 * 1024 * 1024);
  assert.deepEqual(
    [parseMount("type=secret,id=npm,required", id).required, parseMount("type=secret,id=npm", id).readOnly],
    [true, true],
  );
  assert.equal(parseMount("type=secret,id=tok,env=TOKEN", id).env, "TOKEN");
  assert.equal(parseMount('type=bind,"source=a,b",target=/x', id).source, "a,b", "CSV quoting");
  const bad: [string, RegExp][] = [
    ["type=nfs,target=/x", /unsupported mount type "nfs"/],
    ["type=bind,target=/x,mode=0700", /mode not allowed for "bind" type mounts/],
    ["type=cache,target=/x,sharing=everyone", /unsupported sharing value "everyone"/],
    ["type=bind,target=/x,sharing=locked", /invalid cache sharing set for bind mount/],
    ["type=secret", /invalid secret mount/],
    ["type=secret,id=a,source=b", /both source and id can't be set/],
    ["required,type=secret,id=a", /unexpected key 'required' for mount type 'bind'/],
    ["type=cache,target=/x,size=1g", /unexpected key 'size' for mount type 'cache'/],
    ["type=cache,target=/x,uid=abc", /invalid value abc for uid/],
    ["type=cache,target=/x,mode=999", /invalid value 999 for mode/],
    ["type=bind,target=/x,ro=maybe", /invalid value for ro: maybe/],
    ["type=bind,target", /invalid field 'target' must be a key=value pair/],
    ['type=bind,tar"get=/x', /bare " in non-quoted-field/],
  ];
  for (const [spec, re] of bad) assert.throws(() => parseMount(spec, id), re, spec);
  // Expansion happens before the checks.
  const lex = new ShellLex();
  const m = parseMount("type=$T,target=${DIR}/cache,id=${ID:-default}", (w) =>
    lex.processWord(w, { T: "cache", DIR: "/root" }),
  );
  assert.deepEqual([m.type, m.target, m.id], ["cache", "/root/cache", "default"]);
});

test("expansion touches only the words BuildKit expands", () => {
  const lex = new ShellLex();
  const env = { A: "1", DIR: "/app", U: "me" };
  const expand = (w: string) => lex.processWord(w, env);
  const raw = new ShellLex("\\", { skipProcessQuotes: true });
  const expandRaw = (w: string) => raw.processWord(w, env);
  const copy = expandCommand(
    firstCommand('COPY --chown=$U --from=s$A <<EOF "$DIR/a"b ${DIR}/\nv=$A "q"\nEOF'),
    expand,
    expandRaw,
  ) as CommandOf<"copy">;
  assert.equal(copy.chown, "me");
  assert.equal(copy.from, "s1");
  assert.deepEqual(copy.sources.sourcePaths, ["/app/ab"]);
  assert.equal(copy.sources.destPath, "/app/");
  assert.equal(copy.sources.sourceContents[0]!.data, 'v=1 "q"\n');
  const env2 = expandCommand(firstCommand('ENV X="$A two" Y=$A'), expand) as CommandOf<"env">;
  assert.deepEqual(env2.env, [
    { key: "X", value: "1 two" },
    { key: "Y", value: "1" },
  ]);
  const run = firstCommand("RUN echo $A");
  assert.equal(expandCommand(run, expand), run, "RUN is left to the shell");
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { DockerfileError } from "./errors.ts";
import { findDirective } from "./directives.ts";
import { type Instruction, parseDockerfile } from "./parser.ts";

const brief = (i: Instruction) => ({
  cmd: i.name,
  flags: i.flags,
  args: i.args,
  start: i.startLine,
  end: i.endLine,
});
const parse = (text: string) => parseDockerfile(text).instructions.map(brief);

test("instructions, flags, raw arguments and line numbers", () => {
  const df = [
    "FROM --platform=$BUILDPLATFORM golang:1.22 AS build",
    "ARG VERSION=1 OTHER",
    'RUN --mount=type=cache,target=/root/.cache --mount=type=bind,source=go.sum,target=go.sum go build -o /out "./cmd/$NAME"',
    'CMD ["/app", "--flag=1"]',
    'ENV a="x y" b=$c',
    "label version 1.0 beta",
    "COPY --from=build --chown=1:1 /out /app/",
    "WORKDIR /my dir",
    "EXPOSE 80/tcp 443",
    "HEALTHCHECK --interval=5s CMD curl -f http://x/",
    "ONBUILD RUN echo hi",
    'SHELL ["/bin/bash", "-c"]',
  ].join("\n");
  assert.deepEqual(parse(df), [
    {
      cmd: "from",
      flags: ["--platform=$BUILDPLATFORM"],
      args: ["golang:1.22", "AS", "build"],
      start: 1,
      end: 1,
    },
    { cmd: "arg", flags: [], args: ["VERSION=1", "OTHER"], start: 2, end: 2 },
    {
      cmd: "run",
      flags: ["--mount=type=cache,target=/root/.cache", "--mount=type=bind,source=go.sum,target=go.sum"],
      args: ['go build -o /out "./cmd/$NAME"'],
      start: 3,
      end: 3,
    },
    { cmd: "cmd", flags: [], args: ["/app", "--flag=1"], start: 4, end: 4 },
    { cmd: "env", flags: [], args: ["a", '"x y"', "b", "$c"], start: 5, end: 5 },
    { cmd: "label", flags: [], args: ["version", "1.0 beta"], start: 6, end: 6 },
    { cmd: "copy", flags: ["--from=build", "--chown=1:1"], args: ["/out", "/app/"], start: 7, end: 7 },
    { cmd: "workdir", flags: [], args: ["/my dir"], start: 8, end: 8 },
    { cmd: "expose", flags: [], args: ["80/tcp", "443"], start: 9, end: 9 },
    { cmd: "healthcheck", flags: ["--interval=5s"], args: ["CMD", "curl -f http://x/"], start: 10, end: 10 },
    { cmd: "onbuild", flags: [], args: ["RUN", "echo hi"], start: 11, end: 11 },
    { cmd: "shell", flags: [], args: ["/bin/bash", "-c"], start: 12, end: 12 },
  ]);
  const r = parseDockerfile(df);
  assert.equal(r.instructions[1]!.json, false);
  assert.equal(r.instructions[3]!.json, true);
  assert.deepEqual(r.instructions[5]!.pairs, [{ key: "version", value: "1.0 beta", delim: false }]);
  assert.equal(r.instructions[5]!.rawName, "label");
  assert.equal(r.instructions[10]!.sub?.name, "run");
});

test("continuation lines join; comments inside are dropped; blank ones warn", () => {
  const df = "FROM busybox\nRUN echo a \\\n  # a comment\n    b \\  \n\n  c\nRUN x\n";
  const r = parseDockerfile(df);
  assert.deepEqual(r.instructions.map(brief), [
    { cmd: "from", flags: [], args: ["busybox"], start: 1, end: 1 },
    { cmd: "run", flags: [], args: ["echo a     b   c"], start: 2, end: 6 },
    { cmd: "run", flags: [], args: ["x"], start: 7, end: 7 },
  ]);
  assert.deepEqual(
    r.linter.warnings.map((w) => [w.rule, w.location[0]!.start.line]),
    [["NoEmptyContinuation", 6]],
  );
  // An escaped escape at the end is not a continuation.
  assert.deepEqual(
    parse("RUN echo \\\\\nRUN b").map((i) => i.args),
    [["echo \\\\"], ["b"]],
  );
  // A continuation at the end of the file just ends the instruction.
  assert.deepEqual(
    parse("RUN a \\").map((i) => i.args),
    [["a"]],
  );
  // A lone escape character on a line continues too.
  assert.deepEqual(
    parse("RUN a\\\n\\\nb").map((i) => i.args),
    [["ab"]],
  );
});

test("escape=` makes the backtick the escape and continuation character", () => {
  const df =
    "# escape=`\nFROM mcr.microsoft.com/windows\nCOPY C:\\src\\ C:\\dst\\\nRUN dir `\n  C:\\ `\n  /b\n";
  const r = parseDockerfile(df);
  assert.equal(r.escapeToken, "`");
  assert.deepEqual(r.instructions.map(brief), [
    { cmd: "from", flags: [], args: ["mcr.microsoft.com/windows"], start: 2, end: 2 },
    { cmd: "copy", flags: [], args: ["C:\\src\\", "C:\\dst\\"], start: 3, end: 3 },
    { cmd: "run", flags: [], args: ["dir   C:\\   /b"], start: 4, end: 6 },
  ]);
  assert.deepEqual(parseDockerfile('# escape=`\nENV a="x`" y"').instructions[0]!.args, ["a", '"x`" y"']);
});

test("directives: only at the top, once each, with valid values", () => {
  const r = parseDockerfile("# syntax=docker/dockerfile:1\n#check=skip=JSONArgsRecommended\nFROM a\n");
  assert.deepEqual(
    r.directives.map((d) => [d.name, d.value, d.location[0]!.start.line]),
    [
      ["syntax", "docker/dockerfile:1", 1],
      ["check", "skip=JSONArgsRecommended", 2],
    ],
  );
  assert.equal(
    parseDockerfile("# a comment\n# escape=`\nFROM a").escapeToken,
    "\\",
    "too late to be a directive",
  );
  assert.equal(parseDockerfile("\n# escape=`\nFROM a").escapeToken, "\\", "a blank line ends directives");
  assert.equal(parseDockerfile("# unknown=1\n# escape=`\nFROM a").escapeToken, "\\");
  assert.equal(parseDockerfile("  #  ESCAPE = `  \nFROM a").escapeToken, "`");
  assert.throws(
    () => parseDockerfile("# escape=`\n# escape=\\\nFROM a"),
    /2: only one escape parser directive/,
  );
  assert.throws(() => parseDockerfile("# escape=x\nFROM a"), /invalid escape token 'x' does not match/);
  assert.throws(() => parseDockerfile("# check=bogus=1\nFROM a"), /failed to parse check options/);
  assert.equal(findDirective("syntax", "#!/usr/bin/env x\n# syntax=a/b:1\nFROM x")?.value, "a/b:1");
  assert.equal(findDirective("syntax", "// syntax=a/b:2\n")?.value, "a/b:2");
  assert.equal(findDirective("syntax", '{"syntax": "a/b:3"}')?.value, "a/b:3");
  assert.equal(findDirective("check", "FROM a\n# check=error=true"), undefined);
});

test("heredocs: bodies, quoted delimiters, <<-, several per instruction, line ranges", () => {
  const df = [
    "FROM busybox",
    "RUN <<EOF",
    "echo $HOME",
    "EOF",
    "RUN <<-'EOT' bash",
    "\techo one",
    "\tEOT",
    'COPY <<a.txt <<"b.txt" /dest/',
    "alpha",
    "a.txt",
    "beta $X",
    "b.txt",
    "RUN 3<<EOF cat /proc/self/fd/3 && echo '<<NOT'",
    "three",
    "EOF",
    'RUN ["sh", "-c", "cat <<EOF"]',
    "RUN echo done",
  ].join("\n");
  const r = parseDockerfile(df);
  const docs = r.instructions.map((i) => i.heredocs.map((h) => ({ ...h })));
  assert.deepEqual(
    r.instructions.map((i) => [i.name, i.startLine, i.endLine]),
    [
      ["from", 1, 1],
      ["run", 2, 4],
      ["run", 5, 7],
      ["copy", 8, 12],
      ["run", 13, 15],
      ["run", 16, 16],
      ["run", 17, 17],
    ],
  );
  assert.deepEqual(docs[1], [
    { name: "EOF", fileDescriptor: 0, expand: true, chomp: false, content: "echo $HOME\n" },
  ]);
  assert.deepEqual(docs[2], [
    { name: "EOT", fileDescriptor: 0, expand: false, chomp: true, content: "\techo one\n" },
  ]);
  assert.deepEqual(
    docs[3]!.map((d) => [d.name, d.expand, d.content]),
    [
      ["a.txt", true, "alpha\n"],
      ["b.txt", false, "beta $X\n"],
    ],
  );
  assert.deepEqual(docs[4], [
    { name: "EOF", fileDescriptor: 3, expand: true, chomp: false, content: "three\n" },
  ]);
  assert.deepEqual(docs[5], [], "JSON form never has heredocs");
  assert.deepEqual(r.instructions[3]!.args, ["<<a.txt", '<<"b.txt"', "/dest/"]);
  assert.throws(
    () => parseDockerfile("FROM a\nRUN <<EOF\necho\n"),
    (e: unknown) => e instanceof DockerfileError && /Dockerfile:2: unterminated heredoc/.test(e.message),
  );
  // ONBUILD keeps the heredoc of its trigger.
  const ob = parseDockerfile("FROM a\nONBUILD RUN <<EOF\nx\nEOF\n").instructions[1]!;
  assert.equal(ob.sub!.heredocs[0]!.content, "x\n");
  assert.equal(ob.endLine, 4);
});

test("JSON that is not JSON falls back to shell form with a warning; a non-string array is an error", () => {
  const r = parseDockerfile(
    "FROM a\nCMD ['sh', '-c', 'x']\nRUN [ -f /x ] && echo\nENTRYPOINT [\"a\" \"b\"]\n",
  );
  assert.deepEqual(r.instructions[1]!.args, ["['sh', '-c', 'x']"]);
  assert.equal(r.instructions[1]!.json, false);
  assert.deepEqual(r.instructions[2]!.args, ["[ -f /x ] && echo"], "a shell test command is not JSON");
  assert.deepEqual(
    r.linter.warnings.map((w) => [w.rule, w.location[0]!.start.line]),
    [
      ["InvalidJSONArgs", 2],
      ["InvalidJSONArgs", 4],
    ],
  );
  assert.match(r.linter.warnings[0]!.message, /^CMD arguments look like a JSON array but are not valid JSON/);
  assert.throws(() => parseDockerfile('FROM a\nCMD ["a", 1]'), /Dockerfile:2: when using JSON array syntax/);
  const skipped = parseDockerfile("# check=skip=InvalidJSONArgs\nFROM a\nCMD ['x']");
  assert.deepEqual(skipped.linter.warnings, []);
});

test("empty files, comments only, BOM and CRLF", () => {
  assert.deepEqual(parse(""), []);
  assert.deepEqual(parse("# just a comment\n\n   # another\n"), []);
  assert.deepEqual(parse("\uFEFFFROM a\r\nRUN b \\\r\n c\r\n"), [
    { cmd: "from", flags: [], args: ["a"], start: 1, end: 1 },
    { cmd: "run", flags: [], args: ["b  c"], start: 2, end: 3 },
  ]);
  const r = parseDockerfile("# desc of base\nFROM a AS base\n");
  assert.deepEqual(r.instructions[0]!.comments, ["desc of base"]);
});

test("ENV and LABEL forms and their errors", () => {
  assert.deepEqual(parse("ENV A=1 B='two words' C=\"3\" D=")[0]!.args, [
    "A",
    "1",
    "B",
    "'two words'",
    "C",
    '"3"',
    "D",
    "",
  ]);
  assert.deepEqual(parse("ENV A one two  three")[0]!.args, ["A", "one two  three"]);
  assert.deepEqual(parse("ENV A=a\\ b")[0]!.args, ["A", "a\\ b"]);
  assert.deepEqual(parse("ENV")[0]!.args, []);
  assert.throws(() => parseDockerfile("ENV A"), /Dockerfile:1: ENV must have two arguments/);
  assert.throws(
    () => parseDockerfile("FROM a\nLABEL a=1 b"),
    /Dockerfile:2: Syntax error - can't find = in "b"/,
  );
});

test("flags: quotes and escapes are removed, -- ends them, a value-less flag is kept", () => {
  assert.deepEqual(parse("COPY --chown=\"a b\" --link --exclude='*.md' src dst")[0], {
    cmd: "copy",
    flags: ["--chown=a b", "--link", "--exclude=*.md"],
    args: ["src", "dst"],
    start: 1,
    end: 1,
  });
  assert.deepEqual(parse("RUN --network=none -- --not-a-flag")[0]!.args, ["--not-a-flag"]);
  assert.deepEqual(parse("RUN --mount=type=tmpfs,target=/t")[0]!.args, []);
  assert.deepEqual(parse("FROM a\nCOPY a -b c")[1]!.args, ["a", "-b", "c"]);
});

test("errors carry the file, the lines and the instruction, and format like a compiler", () => {
  const src = 'FROM a\nRUN ok\nCMD ["x", 2]\nRUN after\n';
  let err: DockerfileError | undefined;
  try {
    parseDockerfile(src, { file: "app/Dockerfile.dev" });
  } catch (e) {
    err = e as DockerfileError;
  }
  assert.ok(err instanceof DockerfileError);
  assert.equal(err.file, "app/Dockerfile.dev");
  assert.equal(err.instruction, 'CMD ["x", 2]');
  assert.equal(err.ranges[0]!.start.line, 3);
  assert.equal(
    err.format(),
    [
      "app/Dockerfile.dev:3",
      "--------------------",
      "   1 |     FROM a",
      "   2 |     RUN ok",
      '   3 | >>> CMD ["x", 2]',
      "   4 |     RUN after",
      "--------------------",
      "app/Dockerfile.dev:3: when using JSON array syntax, arrays must be comprised of strings only",
      "",
    ].join("\n"),
  );
});

test("a line over 64 KiB is refused", () => {
  assert.throws(
    () => parseDockerfile(`FROM a\nRUN ${"x".repeat(70_000)}\n`),
    /Dockerfile:2: dockerfile line greater than max/,
  );
});

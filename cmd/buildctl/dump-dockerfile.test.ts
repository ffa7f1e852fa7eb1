// `buildctl debug dump-dockerfile`: JSON lines of the parse, from a file or stdin, in a child
// process as the CLI runs it.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, test } from "node:test";
import { dumpDockerfileText } from "./dump-dockerfile.ts";

const MODULE = pathToFileURL(join(import.meta.dirname, "dump-dockerfile.ts")).href;
const dir = mkdtempSync(join(tmpdir(), "dump-dockerfile-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function run(file: string | undefined, input?: string) {
  const script = `import { dumpDockerfile } from ${JSON.stringify(MODULE)};
try { await dumpDockerfile(process.argv[1]); } catch (e) { process.stderr.write("buildctl: " + e.message + "\\n"); process.exitCode = 1; }`;
  const args = ["--input-type=module", "-e", script, ...(file === undefined ? [] : [file])];
  const r = spawnSync(process.execPath, args, { input, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const DF = `# syntax=docker/dockerfile:1
FROM --platform=$BUILDPLATFORM golang:1.22 AS build
ENV a="x y" b=2
RUN --mount=type=cache,target=/root/.cache \\
    --mount=type=bind,source=.,target=/src \\
    go build -o /out ./...
COPY <<EOF <<-'EOT' /etc/
hello $a
EOF
\tliteral
\tEOT
CMD ["/out", "--serve"]
`;

test("one JSON line per instruction: name, flags, raw args, heredocs, lines", () => {
  const lines = dumpDockerfileText(DF)
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.deepEqual(lines, [
    {
      cmd: "from",
      flags: ["--platform=$BUILDPLATFORM"],
      args: ["golang:1.22", "AS", "build"],
      heredocs: [],
      start: 2,
      end: 2,
    },
    { cmd: "env", flags: [], args: ["a", '"x y"', "b", "2"], heredocs: [], start: 3, end: 3 },
    {
      cmd: "run",
      flags: ["--mount=type=cache,target=/root/.cache", "--mount=type=bind,source=.,target=/src"],
      args: ["go build -o /out ./..."],
      heredocs: [],
      start: 4,
      end: 6,
    },
    {
      cmd: "copy",
      flags: [],
      args: ["<<EOF", "<<-'EOT'", "/etc/"],
      heredocs: [
        { name: "EOF", content: "hello $a\n", expand: true },
        { name: "EOT", content: "\tliteral\n", expand: false },
      ],
      start: 7,
      end: 11,
    },
    { cmd: "cmd", flags: [], args: ["/out", "--serve"], heredocs: [], start: 12, end: 12 },
  ]);
  assert.deepEqual(Object.keys(lines[0]), ["cmd", "flags", "args", "heredocs", "start", "end"]);
});

test("reads a file or stdin; a syntax error shows the lines and exits 1", () => {
  const file = join(dir, "Dockerfile");
  writeFileSync(file, DF);
  const fromFile = run(file);
  assert.equal(fromFile.status, 0, fromFile.stderr);
  assert.equal(fromFile.stdout, dumpDockerfileText(DF));
  const fromStdin = run(undefined, "FROM a\nRUN b\n");
  assert.equal(fromStdin.status, 0, fromStdin.stderr);
  assert.equal(fromStdin.stdout.split("\n").length, 3);
  const empty = run("-", "# nothing here\n");
  assert.equal(empty.status, 0);
  assert.equal(empty.stdout, "");

  const bad = join(dir, "Dockerfile.bad");
  writeFileSync(bad, "FROM a\nRUN <<EOF\necho\n");
  const r = run(bad);
  assert.equal(r.status, 1);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, new RegExp(`^${bad.replace(/[/.]/g, "\\$&")}:2-3\\n-+\\n`));
  assert.match(r.stderr, / {3}2 \| >>> RUN <<EOF\n/);
  assert.match(r.stderr, /buildctl: .*Dockerfile\.bad:2: unterminated heredoc\n$/);
  const missing = run(join(dir, "nope"));
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /ENOENT/);
});

// `buildctl debug dump-llb` end to end: the real CLI on real definitions and on garbage.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { COMPAT_LLB_DIR } from "../../test/compat.ts";
import { image } from "../../llb/index.ts";

const MAIN = join(import.meta.dirname, "main.ts");
const CORPUS = COMPAT_LLB_DIR;

function buildctl(args: string[], input?: Uint8Array) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { input, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("dump-llb prints one JSON object per op, from stdin or a file", () => {
  const def = image("busybox")
    .run({ args: ["true"] })
    .root()
    .marshal().bytes;
  const fromStdin = buildctl(["debug", "dump-llb"], def);
  assert.equal(fromStdin.status, 0, fromStdin.stderr);
  const lines = fromStdin.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.equal(lines.length, 3);
  assert.equal(lines[0].Op.source.identifier, "docker-image://docker.io/library/busybox:latest");
  assert.deepEqual(Object.keys(lines[1]), ["Op", "Digest", "OpMetadata"]);

  const fromFile = buildctl(["debug", "dump-llb", join(CORPUS, "merge.pb")]);
  assert.equal(fromFile.status, 0, fromFile.stderr);
  const want = readFileSync(join(CORPUS, "merge.json"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l).Digest);
  assert.deepEqual(
    fromFile.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).Digest),
    want,
  );
});

test("dump-llb --dot prints a graph", () => {
  const r = buildctl(["debug", "dump-llb", "--dot", join(CORPUS, "diamond.pb")]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^digraph \{/);
  assert.equal(r.stdout.match(/ -> /g)?.length, 6);
});

test("dump-llb rejects bad input with one line and exit code 1", () => {
  for (const input of [
    new TextEncoder().encode("garbage\n"),
    new Uint8Array(),
    image("busybox").marshal().bytes.slice(0, 30),
  ]) {
    const r = buildctl(["debug", "dump-llb"], input);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^buildctl: invalid LLB definition: [^\n]+\n$/);
  }
  const missing = buildctl(["debug", "dump-llb", "/nonexistent/def.pb"]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /ENOENT/);
});

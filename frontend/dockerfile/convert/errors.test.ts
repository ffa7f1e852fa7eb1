// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" here is Dockerfile syntax, not a template.
// Errors and warnings like a compiler's: file, line, instruction, source lines; source maps.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DockerfileError } from "../parser/errors.ts";
import { locationsByDigest } from "./sourcemap.ts";
import { convert } from "./testing.ts";

async function conversionError(df: string, filename = "Dockerfile"): Promise<DockerfileError> {
  try {
    await convert(df, { filename });
  } catch (e) {
    assert.ok(e instanceof DockerfileError, String(e));
    return e;
  }
  assert.fail("no error");
}

test("a conversion error names the file, the line and the instruction, and shows the lines", async () => {
  const e = await conversionError(
    "FROM busybox\nRUN echo ok\nWORKDIR /app\nCOPY --chown=${USER:?unset} a b\nRUN echo never\n",
    "build/Dockerfile.ci",
  );
  assert.equal(e.message, 'build/Dockerfile.ci:4: failed to process "${USER:?unset}": USER: unset');
  assert.equal(e.instruction, "COPY --chown=${USER:?unset} a b");
  assert.equal(
    e.format(),
    [
      "build/Dockerfile.ci:4",
      "--------------------",
      "   2 |     RUN echo ok",
      "   3 |     WORKDIR /app",
      "   4 | >>> COPY --chown=${USER:?unset} a b",
      "   5 |     RUN echo never",
      "--------------------",
      'build/Dockerfile.ci:4: failed to process "${USER:?unset}": USER: unset',
      "",
    ].join("\n"),
  );
});

test("multi-line instructions are marked over all their lines", async () => {
  const e = await conversionError(
    "FROM busybox\nRUN --mount=type=cache,target=/c \\\n  --mount=type=cache,target=/c,sharing=bogus \\\n  make\n",
  );
  assert.deepEqual([e.ranges[0]!.start.line, e.ranges[0]!.end.line], [2, 4]);
  assert.match(e.format(), / {3}3 \| >>> {3}--mount=type=cache,target=\/c,sharing=bogus \\/);
  assert.match(e.format(), /^Dockerfile:2-4\n/);
});

test("the source map leads from an op back to its lines", async () => {
  const r = await convert("FROM busybox\nRUN a \\\n  b\nCOPY x /x\n");
  const def = r.state.marshal().definition;
  const byDigest = locationsByDigest(r.sourceMap, def);
  const run = r.named("[2/3] RUN a   b");
  assert.deepEqual(byDigest.get(run.digest)![0]!.start.line, 2);
  assert.deepEqual(byDigest.get(run.digest)![0]!.end.line, 3);
  assert.deepEqual(byDigest.get(r.named("[3/3] COPY x /x").digest)![0]!.start.line, 4);
  assert.deepEqual(
    byDigest.get(r.named("[1/3] FROM docker.io/library/busybox:latest").digest)![0]!.start.line,
    1,
  );
  assert.equal(r.sourceMap.filename, "Dockerfile");
  assert.match(r.sourceMap.data, /^FROM busybox/);
});

test("warnings for deprecated and suspicious forms, with their lines", async () => {
  const r = await convert(
    [
      "FROM busybox AS Base",
      "maintainer me",
      "ENV A 1",
      "CMD echo one",
      "CMD echo two",
      "ARG GITHUB_TOKEN",
      "WORKDIR rel",
      "FROM busybox AS base",
      "FROM scratch AS context",
      "FROM scratch",
      "COPY --from=0 /x /x",
    ].join("\n"),
  );
  assert.deepEqual(
    r.warnings.map((w) => [w.rule, w.location[0]!.start.line]).sort(),
    [
      ["ConsistentInstructionCasing", 2],
      ["DuplicateStageName", 8],
      ["JSONArgsRecommended", 4],
      ["JSONArgsRecommended", 5],
      ["LegacyKeyValueFormat", 3],
      ["MaintainerDeprecated", 2],
      ["MultipleInstructionsDisallowed", 4],
      ["ReservedStageName", 9],
      ["SecretsUsedInArgOrEnv", 6],
      ["StageNameCasing", 1],
      ["WorkdirRelativePath", 7],
    ].sort(),
  );
  const w = r.warnings.find((x) => x.rule === "LegacyKeyValueFormat")!;
  assert.equal(w.url, "https://docs.docker.com/go/dockerfile/rule/legacy-key-value-format/");
  assert.equal(w.message, '"ENV key=value" should be used instead of legacy "ENV key value" format');
});

test("# check= skips rules or turns warnings into an error", async () => {
  const skipped = await convert(
    "# check=skip=MaintainerDeprecated,JSONArgsRecommended\nFROM busybox\nMAINTAINER me\nCMD x\n",
  );
  assert.deepEqual(skipped.warnings, []);
  const none = await convert("# check=skip=all\nFROM busybox\nMAINTAINER me\n");
  assert.deepEqual(none.warnings, []);
  await assert.rejects(
    convert("# check=error=true\nFROM busybox\nCMD x\n"),
    /lint violation found for rules: JSONArgsRecommended/,
  );
});

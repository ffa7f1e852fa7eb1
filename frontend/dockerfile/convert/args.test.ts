// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" here is Dockerfile syntax, not a template.
// ARG scoping, build args, the automatic platform ARGs, and platforms in FROM.
import assert from "node:assert/strict";
import { test } from "node:test";
import { AMD64, ARM64, convert, execOf, fakeRegistry, baseConfig } from "./testing.ts";

const envOf = (r: Awaited<ReturnType<typeof convert>>, name: string | RegExp) =>
  execOf(r.named(name)).meta!.env;

test("global ARGs are for FROM; a stage sees them only after declaring them", async () => {
  const df = [
    "ARG BASE=busybox",
    "ARG TAG=1.36",
    "ARG ONLY_GLOBAL=g",
    "FROM ${BASE}:${TAG} AS a",
    "RUN echo none",
    "ARG TAG",
    "ARG ONLY_GLOBAL",
    "ARG LOCAL=l-$TAG",
    "RUN echo some",
    "FROM a",
    "RUN echo child",
  ].join("\n");
  const r = await convert(df);
  assert.ok(r.named(/FROM docker.io\/library\/busybox:1.36/));
  assert.deepEqual(envOf(r, "[a 2/3] RUN echo none"), [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  ]);
  assert.deepEqual(envOf(r, "[a 3/3] RUN echo some").slice(1), ["TAG=1.36", "ONLY_GLOBAL=g", "LOCAL=l-1.36"]);
  assert.ok(
    envOf(r, "[stage-1 1/1] RUN echo child").includes("LOCAL=l-1.36"),
    "a child stage inherits its parent's ARGs",
  );
  assert.deepEqual(r.image.config.Env, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
  assert.equal(
    r.history.find((h) => h.created_by?.startsWith("RUN |3"))?.created_by,
    "RUN |3 TAG=1.36 ONLY_GLOBAL=g LOCAL=l-1.36 /bin/sh -c echo some # buildkit",
  );
});

test("build args override global and stage defaults; undeclared ones are ignored", async () => {
  const r = await convert("ARG TAG=1\nFROM busybox:$TAG\nARG A=default\nARG B\nRUN x\n", {
    buildArgs: { TAG: "2", A: "from-cli", B: "b", UNUSED: "u" },
  });
  assert.ok(r.named(/FROM docker.io\/library\/busybox:2$/));
  const env = envOf(r, /RUN x/);
  assert.ok(env.includes("A=from-cli") && env.includes("B=b"));
  assert.ok(!env.some((e) => e.startsWith("UNUSED=") || e.startsWith("TAG=")));
  assert.deepEqual(
    r.history.map((h) => h.created_by),
    ["ARG A=from-cli", "ARG B=b", "RUN |2 A=from-cli B=b /bin/sh -c x # buildkit"],
  );
});

test("ENV set later overrides an ARG of the same name in RUN and history", async () => {
  const r = await convert("FROM busybox\nARG V=arg\nENV V=env\nRUN echo $V\n");
  assert.ok(envOf(r, /RUN echo/).includes("V=env"));
  assert.equal(r.history.at(-1)!.created_by, "RUN |1 V=env /bin/sh -c echo $V # buildkit");
});

test("platform ARGs: automatic in FROM, declared to be seen in a stage", async () => {
  const df = [
    "FROM --platform=$BUILDPLATFORM busybox AS build",
    "ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDARCH",
    "RUN build --for $TARGETOS/$TARGETARCH",
    "FROM busybox",
    "COPY --from=build /out /out",
  ].join("\n");
  const r = await convert(df, {
    targetPlatform: { os: "linux", architecture: "arm", variant: "v7" },
    buildPlatforms: [AMD64],
  });
  const build = r.named(/RUN build/);
  assert.deepEqual(envOf(r, /RUN build/).slice(1), [
    "TARGETPLATFORM=linux/arm/v7",
    "TARGETOS=linux",
    "TARGETARCH=arm",
    "TARGETVARIANT=v7",
    "BUILDPLATFORM=linux/amd64",
    "BUILDARCH=amd64",
  ]);
  assert.deepEqual(
    build.op.platform && [build.op.platform.OS, build.op.platform.Architecture],
    ["linux", "amd64"],
    "runs on the build platform",
  );
  const final = r.named("[stage-1 1/2] FROM docker.io/library/busybox:latest");
  assert.deepEqual(
    [final.op.platform!.Architecture, final.op.platform!.Variant],
    ["arm", "v7"],
    "the result is for the target",
  );
  assert.deepEqual([r.image.architecture, r.image.variant], ["arm", "v7"]);
});

test("FROM --platform with a constant platform, and multi-platform progress names", async () => {
  const r = await convert("FROM --platform=linux/arm64 busybox AS arm64tools\nRUN uname -m\n", {
    multiPlatform: true,
  });
  const run = r.named(/RUN uname/);
  assert.equal(run.op.platform!.Architecture, "arm64");
  assert.equal(run.name, "[linux/arm64 2/2] RUN uname -m");
  const cross = await convert("FROM --platform=$BUILDPLATFORM busybox\nARG TARGETARCH\nRUN make\n", {
    targetPlatform: ARM64,
    buildPlatforms: [AMD64],
    multiPlatform: true,
  });
  assert.equal(cross.named(/RUN make/).name, "[linux/amd64->arm64 2/2] RUN make");
  await assert.rejects(
    convert("FROM --platform=$NOPE busybox\n"),
    /empty platform value from expression \$NOPE/,
  );
  await assert.rejects(
    convert("FROM --platform=linux/a/b/c busybox\n"),
    /Dockerfile:1: failed to parse platform linux\/a\/b\/c/,
  );
});

test("a base image for another platform than asked: its platform is used when it matches the build platform", async () => {
  const reg = fakeRegistry({ "docker.io/library/armonly:latest": { config: baseConfig({}, ARM64) } });
  const r = await convert("FROM armonly\nRUN x\n", {
    resolveImageConfig: reg.resolve,
    targetPlatform: undefined,
    buildPlatforms: [AMD64, ARM64],
  });
  assert.equal(r.named(/RUN x/).op.platform!.Architecture, "arm64");
  assert.deepEqual(
    r.warnings.map((w) => w.rule),
    [],
  );
  const pinned = await convert("FROM armonly\n", { resolveImageConfig: reg.resolve });
  assert.deepEqual(
    pinned.warnings.map((w) => [w.rule, w.message]),
    [
      [
        "InvalidBaseImagePlatform",
        'Base image armonly was pulled with platform "linux/arm64", expected "linux/amd64" for current build',
      ],
    ],
  );
});

test("a global ARG default that makes an invalid image name is a warning", async () => {
  const r = await convert("ARG IMG\nFROM ${IMG}\n", { buildArgs: { IMG: "busybox" } });
  assert.deepEqual(
    r.warnings.map((w) => [w.rule, w.message]),
    [["InvalidDefaultArgInFrom", "Default value for ARG ${IMG} results in empty or invalid base image name"]],
  );
});

test("undefined variables in FROM and elsewhere are warnings", async () => {
  const r = await convert(
    "ARG VERSON=1\nFROM busybox:${VERSION:-latest}\nARG A\nENV B=$A$UNDEFINED\nCOPY $MISSING /x\n",
  );
  assert.deepEqual(
    r.warnings.map((w) => [w.rule, w.message, w.location[0]!.start.line]),
    [
      ["UndefinedArgInFrom", "FROM argument 'VERSION' is not declared (did you mean VERSON?)", 2],
      ["UndefinedVar", "Usage of undefined variable '$UNDEFINED'", 4],
      ["UndefinedVar", "Usage of undefined variable '$MISSING'", 5],
    ],
  );
});

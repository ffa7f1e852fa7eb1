// The stage graph: what a target pulls in, how stages reference each other, progress names.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DockerfileError } from "../parser/errors.ts";
import { convert, execOf, fakeRegistry, fileOf, baseConfig } from "./testing.ts";

const MULTI = `FROM golang:1.22 AS builder
WORKDIR /src
COPY . .
RUN go build -o /out/app .

FROM alpine:3.19 AS docs
RUN make-docs > /docs.html

FROM node:20 AS assets
RUN build-assets > /assets.tgz

FROM scratch
COPY --from=builder /out/app /app
COPY --from=assets /assets.tgz /
ENTRYPOINT ["/app"]
`;

test("COPY --from reads the builder stage's output; an unrelated stage is not in the graph", async () => {
  const r = await convert(MULTI);
  const copyApp = r.named("[stage-3 1/2] COPY --from=builder /out/app /app");
  const build = r.named("[builder 4/4] RUN go build -o /out/app .");
  const [action] = fileOf(copyApp);
  assert.equal(action!.action.case, "copy");
  // The copy's source input is the builder's last op.
  assert.deepEqual(
    r.inputsOf(copyApp).map((o) => o.name),
    ["[builder 4/4] RUN go build -o /out/app ."],
  );
  assert.equal(action!.input, -1n, "scratch has no input: the copy starts from nothing");
  assert.equal(action!.secondaryInput, 0n);
  assert.ok(build);
  assert.ok(!r.ops.some((o) => o.name?.includes("make-docs")), "the docs stage is not needed");
  assert.ok(!r.ops.some((o) => o.name?.includes("alpine")));
  assert.deepEqual(r.stages, ["builder", "assets", "stage-3"]);
  // builder and assets are independent branches that only meet in the final stage.
  const assets = r.named("[assets 2/2] RUN build-assets > /assets.tgz");
  const ancestors = (name: string) => {
    const seen = new Set<string>();
    const walk = (d: string) => {
      for (const i of r.byDigest.get(d)!.op.inputs) {
        if (seen.has(i.digest)) continue;
        seen.add(i.digest);
        walk(i.digest);
      }
    };
    walk(r.named(name).digest);
    return seen;
  };
  assert.ok(!ancestors(assets.name!).has(build.digest));
  assert.ok(!ancestors(build.name!).has(assets.digest));
});

test("a target builds only what it needs, and names its stage", async () => {
  const docs = await convert(MULTI, { target: "docs" });
  assert.deepEqual(docs.stages, ["docs"]);
  assert.deepEqual(
    docs.ops.map((o) => o.name),
    ["[docs 1/2] FROM docker.io/library/alpine:3.19", "[docs 2/2] RUN make-docs > /docs.html"],
  );
  await assert.rejects(convert(MULTI, { target: "nope" }), /target stage "nope" could not be found/);
  const upper = await convert(MULTI, { target: "DOCS" });
  assert.deepEqual(upper.stages, ["docs"], "target names are case-insensitive");
});

test("a single stage has no stage name in progress; step numbers are padded to the total", async () => {
  const steps = Array.from({ length: 10 }, (_, i) => `RUN step${i}`).join("\n");
  const r = await convert(`FROM busybox\n${steps}\n`);
  assert.equal(r.ops[0]!.name, "[ 1/11] FROM docker.io/library/busybox:latest");
  assert.equal(r.ops.at(-1)!.name, "[11/11] RUN step9");
});

test("FROM another stage continues its filesystem, config and working dir", async () => {
  const r = await convert("FROM busybox AS base\nENV A=1\nWORKDIR /w\nFROM base AS child\nRUN pwd\n");
  const run = execOf(r.named("[child 1/1] RUN pwd"));
  assert.equal(run.meta!.cwd, "/w");
  assert.ok(run.meta!.env.includes("A=1"));
  assert.deepEqual(
    r.inputsOf(r.named("[child 1/1] RUN pwd")).map((o) => o.name),
    ["[base 2/2] WORKDIR /w"],
  );
});

test("COPY --from an image or a stage index", async () => {
  const r = await convert(
    "FROM busybox AS a\nRUN one\nFROM scratch\nCOPY --from=0 /x /x\nCOPY --from=alpine:3 /etc/os-release /\n",
  );
  const img = r.named("FROM docker.io/library/alpine:3");
  assert.equal(
    img.op.op.case === "source" && img.op.op.value.identifier,
    "docker-image://docker.io/library/alpine:3",
  );
  const second = r.named("[stage-1 2/2] COPY --from=alpine:3 /etc/os-release /");
  assert.ok(r.inputsOf(second).some((o) => o.digest === img.digest));
  assert.ok(
    r.inputsOf(r.named("[stage-1 1/2] COPY --from=0 /x /x")).some((o) => o.name === "[a 2/2] RUN one"),
  );
});

test("stage errors: cycles, later stages, bad indexes, blank bases, with locations", async () => {
  const cases: [string, RegExp, number][] = [
    [
      "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n",
      /circular dependency detected on stage: a/,
      2,
    ],
    [
      "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nFROM a\n",
      /cannot copy from stage "b", it needs to be defined before current stage "a"/,
      2,
    ],
    ["FROM busybox\nCOPY --from=7 /x /x\n", /invalid stage index 7/, 2],
    ["ARG IMG\nFROM $IMG\n", /base name \(\$IMG\) should not be blank/, 2],
    ["FROM busybox\nRUN --mount=type=bind,target=/ true\n", /invalid mount target "\/"/, 2],
  ];
  for (const [df, re, line] of cases) {
    await assert.rejects(
      convert(df),
      (e: unknown) => e instanceof DockerfileError && re.test(e.message) && e.ranges[0]!.start.line === line,
      df,
    );
  }
  await assert.rejects(convert(""), /the Dockerfile cannot be empty/);
  await assert.rejects(convert("# only a comment\n"), /file with no instructions/);
  await assert.rejects(convert("ARG A=1\n"), /dockerfile contains no stages to build/);
});

test("base images are resolved, pinned by digest, and their config is the stage's starting point", async () => {
  const reg = fakeRegistry({
    "docker.io/library/golang:1.22": {
      digest: `sha256:${"1".repeat(64)}`,
      config: baseConfig({ Env: ["PATH=/go/bin:/usr/bin", "GOPATH=/go"], WorkingDir: "/go", User: "gopher" }),
    },
  });
  const r = await convert("FROM golang:1.22 AS b\nRUN go env\nFROM b AS c\nFROM b\nRUN x\n", {
    resolveImageConfig: reg.resolve,
    target: "c",
  });
  assert.deepEqual(reg.calls, [
    {
      ref: "docker.io/library/golang:1.22",
      platform: "linux/amd64",
      logName: "[internal] load metadata for docker.io/library/golang:1.22",
    },
  ]);
  const from = r.named(`[b 1/2] FROM docker.io/library/golang:1.22@sha256:${"1".repeat(64)}`);
  assert.equal(
    from.op.op.case === "source" && from.op.op.value.identifier,
    `docker-image://docker.io/library/golang:1.22@sha256:${"1".repeat(64)}`,
  );
  const run = execOf(r.named("[b 2/2] RUN go env"));
  assert.deepEqual(run.meta!.env, ["PATH=/go/bin:/usr/bin", "GOPATH=/go"]);
  assert.equal(run.meta!.cwd, "/go");
  assert.equal(run.meta!.user, "gopher");
  assert.deepEqual(r.image.config.Env, ["PATH=/go/bin:/usr/bin", "GOPATH=/go"]);
  assert.deepEqual(r.history, [{ created_by: "base layer" }, r.history[1]]);
  assert.equal(r.baseImage?.config.WorkingDir, "/go");
  await assert.rejects(
    convert("FROM nope\n", { resolveImageConfig: reg.resolve }),
    /Dockerfile:1: nope: docker.io\/library\/nope:latest: not found/,
  );
});

test("an image without layers is scratch", async () => {
  const reg = fakeRegistry({
    "docker.io/library/empty:latest": {
      config: { os: "linux", architecture: "amd64", config: {}, rootfs: { type: "layers", diff_ids: [] } },
    },
  });
  const r = await convert("FROM empty\nRUN true\n", { resolveImageConfig: reg.resolve });
  assert.equal(r.ops.length, 1);
  assert.equal(execOf(r.ops[0]!).mounts[0]!.input, -1n);
});

test("named contexts replace images and stages", async () => {
  const reg = fakeRegistry({
    "docker.io/library/alpine:3.20": { config: baseConfig({ Env: ["FROM_CTX=1"] }) },
  });
  const r = await convert(
    "FROM alpine AS base\nRUN a\nFROM golang AS build\nRUN b\nFROM base\nCOPY --from=build /x /x\n",
    {
      resolveImageConfig: reg.resolve,
      namedContexts: { alpine: "docker-image://alpine:3.20", build: "local:prebuilt" },
    },
  );
  // As in BuildKit, the replaced FROM keeps its step number but shows no step of its own.
  const run = r.named("[base 1/2] RUN a");
  assert.ok(execOf(run).meta!.env.includes("FROM_CTX=1"), "the context image's config is used");
  const src = r.inputsOf(run)[0]!;
  assert.equal(
    src.op.op.case === "source" && src.op.op.value.identifier,
    "docker-image://docker.io/library/alpine:3.20",
  );
  assert.ok(!r.ops.some((o) => o.name?.includes("RUN b")), "the build stage is replaced entirely");
  const copy = r.named(/COPY --from=build/);
  assert.ok(
    r
      .inputsOf(copy)
      .some((o) => o.op.op.case === "source" && o.op.op.value.identifier === "local://prebuilt"),
  );
});

test("ONBUILD triggers of a base image run first in the child, with ONBUILD in their names", async () => {
  const reg = fakeRegistry({
    "docker.io/library/onbuild:latest": {
      config: baseConfig({ OnBuild: ["COPY . /src", "RUN make -C /src"] }),
    },
  });
  const r = await convert("FROM onbuild\nRUN echo after\n", { resolveImageConfig: reg.resolve });
  assert.deepEqual(
    r.ops.filter((o) => /^\[\d/.test(o.name ?? "")).map((o) => o.name?.replace(/@sha256:\w+/, "")),
    [
      // BuildKit names FROM before it counts the triggers, hence "1/2".
      "[1/2] FROM docker.io/library/onbuild:latest",
      "[2/4] ONBUILD COPY . /src",
      "[3/4] ONBUILD RUN make -C /src",
      "[4/4] RUN echo after",
    ],
  );
  assert.equal(r.image.config.OnBuild, undefined, "triggers do not pass on to the result");
  const withOwn = await convert("FROM busybox AS base\nONBUILD RUN echo trigger\nRUN x\nFROM base\nRUN y\n");
  assert.deepEqual(withOwn.image.config.OnBuild, ["RUN echo trigger"]);
  assert.ok(withOwn.named("[stage-1 1/2] ONBUILD RUN echo trigger"));
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { describeOp, image, loadDefinition, scratch } from "../../../llb/index.ts";
import { stepsToLLB } from "./convert.ts";
import { parseStepsFile } from "./format.ts";

const file = (o: unknown) => JSON.stringify(o);

test("a build file parses with args expanded, defaults filled and the last step as target", () => {
  const f = parseStepsFile(
    file({
      args: { V: "1", WHO: "x" },
      steps: {
        base: { image: "busybox:{{V}}" },
        app: { from: "base", env: { WHO: "{{ WHO }}" }, run: ["echo $HOME {{WHO}}"] },
      },
    }),
    { WHO: "override" },
  );
  assert.equal(f.target, "app");
  assert.equal(f.steps.get("base")!.image, "busybox:1");
  assert.deepEqual(f.steps.get("app")!.env, { WHO: "override" });
  assert.deepEqual(f.steps.get("app")!.run, ["echo $HOME override"], "shell variables are left alone");
});

test("mistakes name the JSON path and what is expected", () => {
  const cases: [unknown, RegExp][] = [
    ["not json", /^not valid JSON/],
    [{ steps: {} }, /^\$\.steps: a build needs at least one step$/],
    [
      { steps: { a: { image: "x", from: "scratch" } } },
      /^\$\.steps\.a: give exactly one of image, from or dockerfile \(got image, from\)$/,
    ],
    [
      { steps: { a: { from: "nope" } } },
      /^\$\.steps\.a\.from: unknown step "nope" \(steps: a; or scratch, context\)$/,
    ],
    [
      { steps: { a: { from: "b" }, b: { from: "a" } } },
      /^\$\.steps\.a: steps depend on each other in a cycle: a -> b -> a$/,
    ],
    [{ steps: { a: { image: "x", run: [1] } } }, /^\$\.steps\.a\.run\[0\]: want a string, got number$/],
    [
      { steps: { a: { image: "x", copy: [{ from: "scratch", src: "/", dst: "/" }] } } },
      /^\$\.steps\.a\.copy\[0\]\.dst: unknown field/,
    ],
    [
      { steps: { a: { image: "{{NOPE}}" } } },
      /^\$\.steps\.a\.image: unknown arg \{\{NOPE\}\} \(args: none\)$/,
    ],
    [{ steps: { Bad: { image: "x" } } }, /^\$\.steps\.Bad: a step name is lowercase/],
    [{ steps: { context: { image: "x" } } }, /^\$\.steps\.context: "context" is a built-in source name$/],
    [{ steps: { a: { image: "x" } }, target: "b" }, /^\$\.target: unknown step "b"/],
    [{ steps: { a: { image: "x" } }, extra: 1 }, /^\$\.extra: unknown field/],
  ];
  for (const [doc, message] of cases) {
    assert.throws(
      () => parseStepsFile(typeof doc === "string" ? doc : file(doc)),
      (e: Error) => message.test(e.message),
      JSON.stringify(doc),
    );
  }
});

test("conversion: independent steps are separate branches, a shared step is built once, the image config follows the target", async () => {
  const f = parseStepsFile(
    file({
      steps: {
        base: { image: "busybox" },
        left: { from: "base", run: "echo left > /left" },
        right: { from: "base", workdir: "/w", run: "echo right > right" },
        final: {
          from: "scratch",
          copy: [
            { from: "left", src: "/left", dest: "/" },
            { from: "right", src: "/w/right", dest: "/" },
            { from: "context", src: "src", dest: "/src" },
          ],
        },
      },
      image: { cmd: ["cat", "/left"], labels: { a: "b" } },
    }),
  );
  let resolved = 0;
  const { state, image: config } = await stepsToLLB(f, {
    platform: { os: "linux", architecture: "amd64" },
    context: image("example.com/ctx"),
    resolveImage: async () => {
      resolved++;
      return {
        digest: `sha256:${"1".repeat(64)}`,
        config: { config: { Env: ["PATH=/bin"], Labels: { base: "yes" } } },
      };
    },
    buildDockerfile: async () => ({ state: scratch() }),
  });
  assert.equal(resolved, 1, "the shared base is resolved once");
  const def = loadDefinition(state.marshal().bytes);
  const ops = def.order.map((d) => describeOp(def.ops.get(d)!.op));
  assert.equal(ops.filter((o) => o.startsWith("source docker-image://docker.io/library/busybox")).length, 1);
  assert.equal(ops.filter((o) => o.startsWith("exec")).length, 2);
  // left and right both take the base as input and not each other: parallel branches.
  const execs = def.order.filter((d) => def.ops.get(d)!.op.op.case === "exec");
  const base = def.order.find(
    (d) => def.ops.get(d)!.op.op.case === "source" && /busybox/.test(describeOp(def.ops.get(d)!.op)),
  )!;
  for (const e of execs)
    assert.deepEqual(
      def.ops.get(e)!.op.inputs.map((i) => i.digest),
      [base],
    );
  assert.deepEqual(config.config.Cmd, ["cat", "/left"]);
  assert.deepEqual(config.config.Labels, { a: "b" });
  assert.equal(config.config.WorkingDir, "/");
  await assert.rejects(
    stepsToLLB(
      f,
      {
        platform: { os: "linux", architecture: "amd64" },
        context: scratch(),
        resolveImage: async () => ({ digest: "", config: {} }),
        buildDockerfile: async () => ({ state: scratch() }),
      },
      "nope",
    ),
    /target "nope" is not a step \(steps: base, left, right, final\)/,
  );
});

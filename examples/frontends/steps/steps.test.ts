// The steps frontend image end to end: a JSON build file and a context given as frontend inputs,
// built by the image through gateway.v0, with a step that nests the Dockerfile frontend.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { assertNothingLeft, build, startGatewayDaemon } from "../../../frontend/gateway/testing.ts";
import { mkfile, scratch } from "../../../llb/index.ts";
import { pushBusyboxImage } from "../../../test/busybox-image.ts";
import { pushImage } from "../../../test/oci-push.ts";
import { startRegistry } from "../../../test/registry.ts";
import { frontendImage } from "../image.ts";

let busybox = "";
let steps = "";
const registryAbort = new AbortController();
before(async () => {
  const registry = await startRegistry({ signal: registryAbort.signal });
  await pushBusyboxImage(registry);
  busybox = `${registry.host}/busybox:latest`;
  const img = await frontendImage({ entry: join(import.meta.dirname, "main.ts"), compression: "none" });
  await pushImage(registry.url, "buildd/steps:1", img);
  steps = `${registry.host}/buildd/steps:1`;
});
after(() => registryAbort.abort());

const inputs = (buildFile: unknown) => ({
  dockerfile: scratch().file(mkfile("/build.json", 0o644, JSON.stringify(buildFile))),
  context: scratch().file(mkfile("/input.txt", 0o644, "input\n")),
});

test("a steps file builds through its frontend image, a Dockerfile step nested inside", {
  timeout: 240_000,
}, async (t) => {
  const d = await startGatewayDaemon(t);
  const buildFile = {
    args: { WHO: "steps" },
    steps: {
      base: { image: busybox },
      gen: { dockerfile: `FROM ${busybox}\nRUN echo from-dockerfile-step > /gen.txt\n` },
      left: { from: "base", run: "echo left-{{WHO}} > /left.txt" },
      right: {
        from: "gen",
        workdir: "/w",
        copy: [{ from: "context", src: "/input.txt", dest: "in.txt" }],
        run: "cat /gen.txt in.txt > both.txt",
      },
      final: {
        from: "scratch",
        copy: [
          { from: "left", src: "/left.txt", dest: "/" },
          { from: "right", src: "/w/both.txt", dest: "/" },
        ],
      },
    },
    image: { cmd: ["cat", "/left.txt"], labels: { "made.with": "steps" } },
  };
  const r = await build(d, {
    frontend: "gateway.v0",
    opts: { source: steps, "build-arg:WHO": "override" },
    inputs: inputs(buildFile),
    read: ["/left.txt", "/both.txt"],
  });
  assert.ok(r.ok, `${r.error}\n${r.logs}`);
  assert.equal(r.response["file:/left.txt"], "left-override\n");
  assert.equal(r.response["file:/both.txt"], "from-dockerfile-step\ninput\n");
  const config = JSON.parse(r.response["meta:containerimage.config"]!);
  assert.deepEqual(config.config.Cmd, ["cat", "/left.txt"]);
  assert.deepEqual(config.config.Labels, { "made.with": "steps" });
  const names = r.vertices.map((v) => v.name);
  assert.ok(names.includes("[left] echo left-override > /left.txt"), names.join("\n"));
  assert.ok(
    names.some((n) => /RUN echo from-dockerfile-step/.test(n)),
    "the nested Dockerfile's step shows",
  );

  const broken = await build(d, {
    frontend: "gateway.v0",
    opts: { source: steps },
    inputs: inputs({ steps: { a: { from: "b" } } }),
  });
  assert.equal(
    broken.error,
    'failed to solve: build.json: $.steps.a.from: unknown step "b" (steps: a; or scratch, context)',
  );
  await assertNothingLeft(d);
});

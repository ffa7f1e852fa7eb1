// The Dockerfile frontend as an image and `# syntax=` routing: the image gives what the built-in
// frontend gives, a Dockerfile can name the frontend that builds it, and the daemon's allow-list
// decides which images may run.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { frontendImage } from "../../examples/frontends/image.ts";
import { mkfile, scratch } from "../../llb/index.ts";
import { pushBusyboxImage } from "../../test/busybox-image.ts";
import { pushImage } from "../../test/oci-push.ts";
import { startRegistry } from "../../test/registry.ts";
import { assertNothingLeft, build, startGatewayDaemon } from "./testing.ts";

let busybox = "";
let testFrontend = "";
let dockerfileFrontend = "";
const registryAbort = new AbortController();
before(async () => {
  const registry = await startRegistry({ signal: registryAbort.signal });
  await pushBusyboxImage(registry);
  busybox = `${registry.host}/busybox:latest`;
  const repo = join(import.meta.dirname, "../..");
  const [test, dockerfile] = await Promise.all([
    frontendImage({ entry: join(repo, "frontend/gateway/testdata/frontend.ts"), compression: "none" }),
    frontendImage({ entry: join(repo, "examples/frontends/dockerfile/main.ts"), compression: "none" }),
  ]);
  await pushImage(registry.url, "test/frontend:1", test);
  await pushImage(registry.url, "buildd/dockerfile:1", dockerfile);
  testFrontend = `${registry.host}/test/frontend:1`;
  dockerfileFrontend = `${registry.host}/buildd/dockerfile:1`;
});
after(() => registryAbort.abort());

const dockerfileInput = (text: string) => ({
  dockerfile: scratch().file(mkfile("/Dockerfile", 0o644, text)),
});

describe("the Dockerfile frontend image", () => {
  test("gives the built-in frontend's result: image config, files, and the same (cached) steps", {
    timeout: 240_000,
  }, async (t) => {
    const d = await startGatewayDaemon(t);
    const dockerfile = [
      `FROM ${busybox}`,
      "ENV GREETING=hi",
      "WORKDIR /app",
      'RUN echo "$GREETING from a Dockerfile" > out.txt',
      "LABEL made.by=buildd",
      'CMD ["cat", "out.txt"]',
      "",
    ].join("\n");
    const builtIn = await build(d, {
      frontend: "dockerfile.v0",
      inputs: dockerfileInput(dockerfile),
      read: ["/app/out.txt"],
    });
    assert.ok(builtIn.ok, builtIn.error);
    assert.equal(builtIn.response["file:/app/out.txt"], "hi from a Dockerfile\n");

    const viaImage = await build(d, {
      frontend: "gateway.v0",
      opts: { source: dockerfileFrontend },
      inputs: dockerfileInput(dockerfile),
      read: ["/app/out.txt"],
    });
    assert.ok(viaImage.ok, `${viaImage.error}\n${viaImage.logs}`);
    assert.equal(viaImage.response["file:/app/out.txt"], builtIn.response["file:/app/out.txt"]);
    assert.deepEqual(
      JSON.parse(viaImage.response["meta:containerimage.config"]!),
      JSON.parse(builtIn.response["meta:containerimage.config"]!),
    );
    const run = viaImage.vertices.find((v) => v.name.includes("RUN echo"));
    assert.ok(
      run?.cached,
      `the image built the same step, so it came from the cache: ${JSON.stringify(viaImage.vertices)}`,
    );
    await assertNothingLeft(d);
  });

  test("a failing step shows the same Dockerfile lines as the built-in frontend", {
    timeout: 240_000,
  }, async (t) => {
    const d = await startGatewayDaemon(t);
    const dockerfile = `FROM ${busybox}\nRUN echo one\nRUN echo broken-step; exit 4\n`;
    const builtIn = await build(d, { frontend: "dockerfile.v0", inputs: dockerfileInput(dockerfile) });
    const viaImage = await build(d, {
      frontend: "gateway.v0",
      opts: { source: dockerfileFrontend },
      inputs: dockerfileInput(dockerfile),
    });
    assert.equal(builtIn.ok, false);
    assert.match(builtIn.error!, /^failed to solve: Dockerfile:3: \[3\/3\] RUN echo broken-step; exit 4\n/);
    assert.match(builtIn.error!, /exit code: 4/);
    assert.equal(viaImage.error, builtIn.error);
    await assertNothingLeft(d);
  });
});

describe("# syntax=", () => {
  test("a Dockerfile names the frontend image that builds it; BUILDKIT_SYNTAX overrides it", {
    timeout: 240_000,
  }, async (t) => {
    const d = await startGatewayDaemon(t);
    // The test frontend ignores the Dockerfile and builds its own thing: proof that it ran.
    const routed = await build(d, {
      frontend: "dockerfile.v0",
      opts: { base: busybox, greeting: "syntax" },
      inputs: dockerfileInput(`# syntax=${testFrontend}\nFROM scratch\n`),
      read: ["/copy.txt"],
    });
    assert.ok(routed.ok, routed.error);
    assert.equal(routed.response["file:/copy.txt"], "hello from syntax\n");
    assert.equal(
      JSON.parse(routed.response["meta:containerimage.config"]!).config.Labels.inputs,
      "dockerfile",
    );

    const overridden = await build(d, {
      frontend: "dockerfile.v0",
      opts: { base: busybox, greeting: "override", "build-arg:BUILDKIT_SYNTAX": testFrontend },
      inputs: dockerfileInput(`FROM ${busybox}\nRUN exit 1\n`),
      read: ["/copy.txt"],
    });
    assert.ok(overridden.ok, overridden.error);
    assert.equal(overridden.response["file:/copy.txt"], "hello from override\n");

    // The Dockerfile image handed a build does not hand it over again (it would loop forever).
    const dockerfile = `# syntax=${dockerfileFrontend}\nFROM ${busybox}\nRUN echo handed-over > /h.txt\n`;
    const handed = await build(d, {
      frontend: "dockerfile.v0",
      inputs: dockerfileInput(dockerfile),
      read: ["/h.txt"],
    });
    assert.ok(handed.ok, `${handed.error}\n${handed.logs}`);
    assert.equal(handed.response["file:/h.txt"], "handed-over\n");
    assert.equal(handed.vertices.filter((v) => v.name.startsWith("[frontend]")).length, 1);
    await assertNothingLeft(d);
  });

  test("the allow-list decides which frontend images run, by gateway.v0 or by # syntax=", {
    timeout: 240_000,
  }, async (t) => {
    const allowedRepo = dockerfileFrontend.replace(/:1$/, "");
    const d = await startGatewayDaemon(t, { allowed: [allowedRepo] });
    const refused = await build(d, { frontend: "gateway.v0", opts: { source: testFrontend, base: busybox } });
    assert.equal(refused.ok, false);
    assert.equal(
      refused.error,
      `failed to solve: frontend image "${testFrontend}" is not allowed by this daemon: it runs only ${allowedRepo} ([frontend] allowed in buildd.toml)`,
    );
    const bySyntax = await build(d, {
      frontend: "dockerfile.v0",
      opts: { base: busybox },
      inputs: dockerfileInput(`# syntax=${testFrontend}\nFROM scratch\n`),
    });
    assert.match(bySyntax.error!, /frontend image "\S+\/test\/frontend:1" is not allowed by this daemon/);
    assert.ok(!bySyntax.vertices.some((v) => v.name.startsWith("[frontend]")), "nothing was pulled or run");
    const allowed = await build(d, {
      frontend: "gateway.v0",
      opts: { source: dockerfileFrontend },
      inputs: dockerfileInput(`FROM ${busybox}\nRUN true\n`),
    });
    assert.ok(allowed.ok, allowed.error);
    await assertNothingLeft(d);
  });
});

// gateway.v0 end to end on an in-process daemon: a frontend image built by the test (busybox +
// Node + a bundled frontend), pushed to a loopback registry, pulled and run by the daemon.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { frontendImage } from "../../examples/frontends/image.ts";
import { pushBusyboxImage } from "../../test/busybox-image.ts";
import { pushImage } from "../../test/oci-push.ts";
import { startRegistry } from "../../test/registry.ts";
import { assertNothingLeft, build, startGatewayDaemon } from "./testing.ts";

let busybox = "";
let fe = "";
const registryAbort = new AbortController();
before(async () => {
  const registry = await startRegistry({ signal: registryAbort.signal });
  await pushBusyboxImage(registry);
  busybox = `${registry.host}/busybox:latest`;
  const img = await frontendImage({
    entry: join(import.meta.dirname, "testdata/frontend.ts"),
    compression: "none",
  });
  fe = `${registry.host}/test/frontend:1`;
  await pushImage(registry.url, "test/frontend:1", img);
});
after(() => registryAbort.abort());

describe("gateway.v0", () => {
  test("a frontend image solves, reads its results and returns one with an image config", {
    timeout: 180_000,
  }, async (t) => {
    const d = await startGatewayDaemon(t);
    const r = await build(d, {
      frontend: "gateway.v0",
      opts: { source: fe, base: busybox, greeting: "the test" },
      read: ["/hello.txt", "/copy.txt"],
    });
    assert.ok(r.ok, `${r.error}\n${r.logs}`);
    assert.equal(r.response["file:/copy.txt"], "hello from the test\n");
    const config = JSON.parse(r.response["meta:containerimage.config"]!);
    assert.deepEqual(config.config.Labels, {
      hello: "hello from the test",
      part: "from",
      names: "a,b.txt,sub/",
      txt: "b.txt",
      size: "20",
      inputs: "",
      session: "none",
      caps: "yes",
    });
    assert.ok(config.config.Env.some((e: string) => e.startsWith("PATH=")));
    assert.equal(r.response["meta:frontend.mode"], "hello");
    assert.ok(
      r.vertices.some((v) => v.name === `[frontend] ${fe}`),
      JSON.stringify(r.vertices),
    );
    assert.match(r.logs, /this goes to stderr, not into the gRPC stream/);
    assert.deepEqual(r.warnings, ["a warning from the frontend"]);
    await assertNothingLeft(d);
  });
});

describe("nesting", () => {
  test("a frontend runs the Dockerfile frontend on a Dockerfile it wrote, a BuildOp, and builds on both; progress and cache are shared", {
    timeout: 180_000,
  }, async (t) => {
    const d = await startGatewayDaemon(t);
    const opts = { source: fe, base: busybox, mode: "nested" };
    const r = await build(d, { frontend: "gateway.v0", opts, read: ["/both.txt", "/op-copy.txt"] });
    assert.ok(r.ok, r.error);
    assert.equal(r.response["file:/both.txt"], "from-generated-dockerfile\n");
    assert.equal(r.response["file:/op-copy.txt"], "from-build-op\n");
    const config = JSON.parse(r.response["meta:containerimage.config"]!);
    assert.ok(config.config.Env.includes("GENERATED=1"), "the nested Dockerfile's image config came back");
    // The nested builds' steps show in this build's progress.
    const names = r.vertices.map((v) => v.name);
    assert.ok(
      names.some((n) => /RUN echo from-generated-dockerfile/.test(n)),
      names.join("\n"),
    );
    assert.ok(
      names.some((n) => /echo from-build-op/.test(n)),
      names.join("\n"),
    );
    assert.ok(r.vertices.every((v) => v.error === ""));
    // A second build shares the cache: every step it runs again is cached.
    const again = await build(d, { frontend: "gateway.v0", opts, read: ["/both.txt"] });
    assert.ok(again.ok, again.error);
    // (The BuildOp is cached as a whole: its nested definition is not even loaded again.)
    const steps = again.vertices.filter((v) => /RUN echo|^build$|cat \/gen.txt/.test(v.name));
    assert.equal(steps.length, 3, JSON.stringify(again.vertices));
    assert.ok(
      steps.every((v) => v.cached),
      JSON.stringify(steps),
    );
    await assertNothingLeft(d);
  });
});

describe("failures", () => {
  const cases: [mode: string, message: RegExp][] = [
    ["error", /^failed to solve: the build file has a mistake on line 3$/],
    [
      "crash",
      /frontend \S+ exited with code 3 before it returned a result; its last output:\nfrontend: about to crash/,
    ],
    ["garbage", /frontend \S+ broke the gateway protocol \(.+\): a frontend must speak gRPC on stdout/],
    ["unknown-ref", /returned a result with ref "not-a-ref-of-mine", which it was never given/],
    ["no-return", /frontend \S+ exited without returning a result/],
    [
      "step-fails",
      /process "\/bin\/sh -c echo step-output; exit 5" did not complete successfully: exit code: 5/,
    ],
  ];
  for (const [mode, message] of cases) {
    test(`mode ${mode}: a clear error and nothing left behind`, { timeout: 120_000 }, async (t) => {
      const d = await startGatewayDaemon(t);
      const r = await build(d, { frontend: "gateway.v0", opts: { source: fe, base: busybox, mode } });
      assert.equal(r.ok, false);
      assert.match(r.error!, message);
      assert.ok(r.vertices.some((v) => v.name === `[frontend] ${fe}` && v.error !== ""));
      await assertNothingLeft(d);
      // The daemon keeps serving.
      const ok = await build(d, { frontend: "gateway.v0", opts: { source: fe, base: busybox } });
      assert.ok(ok.ok, ok.error);
    });
  }

  test("cancelling the build kills a hanging frontend and its nested work", {
    timeout: 120_000,
  }, async (t) => {
    const d = await startGatewayDaemon(t);
    const ac = new AbortController();
    const r = await build(d, {
      frontend: "gateway.v0",
      opts: { source: fe, base: busybox, mode: "hang" },
      signal: ac.signal,
      onLog: (text) => {
        if (text.includes("frontend: hanging")) ac.abort();
      },
    });
    assert.equal(r.ok, false);
    assert.ok(ac.signal.aborted, "the frontend said it hangs before the build ended");
    await assertNothingLeft(d);
  });

  test("a frontend that keeps running after its Return is stopped; its result stands", {
    timeout: 120_000,
  }, async (t) => {
    const d = await startGatewayDaemon(t);
    const r = await build(d, {
      frontend: "gateway.v0",
      opts: { source: fe, base: busybox, mode: "linger" },
      read: ["/l.txt"],
    });
    assert.ok(r.ok, r.error);
    assert.equal(r.response["file:/l.txt"], "lingered\n");
    assert.match(r.logs, /frontend: returned, now lingering/);
    await assertNothingLeft(d);
  });

  test("gateway.v0 without a source, or with an image that does not exist", {
    timeout: 60_000,
  }, async (t) => {
    const d = await startGatewayDaemon(t);
    const none = await build(d, { frontend: "gateway.v0" });
    assert.match(none.error!, /gateway.v0 needs the frontend image: --opt source=IMAGE/);
    const missing = await build(d, {
      frontend: "gateway.v0",
      opts: { source: `${fe.replace(/:1$/, "")}:nope` },
    });
    assert.match(missing.error!, /resolving frontend \S+:nope: /);
    await assertNothingLeft(d);
  });
});

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
    assert.ok(r.ok, r.error);
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

// gateway.v0 through the real CLI and a real buildd process: `buildctl build --frontend
// gateway.v0 --opt source=IMAGE`, and `[frontend] allowed` read from buildd.toml.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { frontendImage } from "../../examples/frontends/image.ts";
import { pushBusyboxImage } from "../../test/busybox-image.ts";
import { startTestDaemon } from "../../test/daemon.ts";
import { pushImage } from "../../test/oci-push.ts";
import { startRegistry } from "../../test/registry.ts";

let busybox = "";
let fe = "";
let host = "";
const registryAbort = new AbortController();
before(async () => {
  const registry = await startRegistry({ signal: registryAbort.signal });
  await pushBusyboxImage(registry);
  host = registry.host;
  busybox = `${host}/busybox:latest`;
  const img = await frontendImage({
    entry: join(import.meta.dirname, "testdata/frontend.ts"),
    compression: "none",
  });
  await pushImage(registry.url, "test/frontend:1", img);
  fe = `${host}/test/frontend:1`;
});
after(() => registryAbort.abort());

test("buildctl runs a frontend image; the daemon's config limits which", { timeout: 240_000 }, async (t) => {
  const d = await startTestDaemon(t, { config: `[frontend]\nallowed = ["${host}/test/*"]\n` });
  const ok = await d.buildctl([
    "build",
    "--progress=plain",
    "--frontend",
    "gateway.v0",
    "--opt",
    `source=${fe}`,
    "--opt",
    `base=${busybox}`,
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, new RegExp(`^#\\d+ \\[frontend\\] ${fe.replace(/[.]/g, "\\.")}$`, "m"));
  assert.match(ok.stderr, /this goes to stderr, not into the gRPC stream/);
  assert.match(ok.stderr, /a warning from the frontend/);

  const refused = await d.buildctl(["build", "--frontend", "gateway.v0", "--opt", `source=${busybox}`]);
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    new RegExp(
      `error: failed to solve: frontend image "${busybox.replace(/[.]/g, "\\.")}" is not allowed by this daemon: it runs only ${host.replace(/[.]/g, "\\.")}/test/\\*`,
    ),
  );
  assert.deepEqual(await readdir(join(d.root, "executor/runc")).catch(() => []), []);
});

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { readlink } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { BUSYBOX_ENV, busyboxImage, pushBusyboxImage } from "./busybox-image.ts";
import { tempDir } from "./process.ts";
import { startRegistry } from "./registry.ts";

// Async only: the registry's proxy lives in this process, so a sync exec would deadlock it.
const run = promisify(execFile);

test("the pushed busybox image is a valid image for skopeo and umoci", async (t) => {
  const registry = await startRegistry();
  t.after(registry.stop);
  const work = await tempDir("busybox-image");
  t.after(work.cleanup);

  const digest = await pushBusyboxImage(registry);
  assert.equal(digest, (await busyboxImage()).digest);
  const ref = `docker://${registry.host}/busybox:latest`;
  const inspect = JSON.parse((await run("skopeo", ["inspect", "--tls-verify=false", ref])).stdout);
  assert.equal(inspect.Digest, digest);
  assert.deepEqual(inspect.Env, BUSYBOX_ENV);
  assert.equal(inspect.Layers.length, 1);
  const config = JSON.parse((await run("skopeo", ["inspect", "--config", "--tls-verify=false", ref])).stdout);
  assert.deepEqual(config.config.Cmd, ["sh"]);

  const layout = join(work.dir, "layout");
  await run("skopeo", ["copy", "--src-tls-verify=false", ref, `oci:${layout}:latest`]);
  const bundle = join(work.dir, "bundle");
  await run("umoci", ["unpack", "--image", `${layout}:latest`, bundle]);
  assert.ok(existsSync(join(bundle, "rootfs/bin/busybox")));
  assert.equal(await readlink(join(bundle, "rootfs/bin/sh")), "busybox");
  const { stdout } = await run("chroot", [
    join(bundle, "rootfs"),
    "/bin/sh",
    "-c",
    "echo hello from busybox",
  ]);
  assert.equal(stdout, "hello from busybox\n");
});

test("the busybox image is built once per process and is reproducible", async () => {
  const a = await busyboxImage();
  assert.equal(await busyboxImage(), a);
  assert.equal(a.layers.length, 1);
  assert.match(a.digest, /^sha256:[0-9a-f]{64}$/);
});

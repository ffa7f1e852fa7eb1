import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { image } from "../../llb/index.ts";
import { pushBusyboxImage } from "../../test/busybox-image.ts";
import { startRegistry } from "../../test/registry.ts";
import { forEachWorker } from "../testing.ts";

forEachWorker((open) => {
  test("an image from the registry is pulled once, unpacked, and runs", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    await pushBusyboxImage(registry);
    const w = await open(t);
    const ref = `${registry.host}/busybox:latest`;
    const step = image(ref)
      .run({ args: ["/bin/sh", "-c", "echo pulled > /proof"] })
      .root();
    const builds = await Promise.all([w.build(step), w.build(step), w.build(image(ref))]);
    await builds[0]!.read(async (dir) =>
      assert.equal(await readFile(join(dir, "proof"), "utf8"), "pulled\n"),
    );
    const blobGets = Object.entries(registry.stats()).filter(
      ([path, s]) => path.includes("/blobs/") && s.methods.GET,
    );
    for (const [path, s] of blobGets) assert.equal(s.methods.GET, 1, `${path} fetched once`);
    const pulls = builds[0]!.progress.statuses.filter((s) => s.total > 0);
    assert.ok(pulls.length > 0, "pull progress in bytes");
    // A second build resolves the tag again but downloads nothing.
    registry.resetStats();
    await w.build(step);
    assert.ok(!Object.keys(registry.stats()).some((p) => p.includes("/blobs/")), "no blob downloaded again");
  });

  test("an unknown image is a clear error naming it", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    const w = await open(t);
    await assert.rejects(w.build(image(`${registry.host}/nope:1`)), /nope/);
  });
});

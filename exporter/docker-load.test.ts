// The docker exporter's tarball as Docker itself reads it: `docker load` into a private dockerd
// (test/dockerd.ts), then the names, config and layers `docker image inspect` reports, and the
// built files (and a deleted one) seen from a container of the loaded image.
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { image } from "../llb/index.ts";
import { fileTarget } from "../session/filesend/receive.ts";
import { pushBusyboxImage } from "../test/busybox-image.ts";
import { type Dockerd, startDockerd } from "../test/dockerd.ts";
import { startRegistry } from "../test/registry.ts";
import { openTestWorker } from "../worker/testing.ts";
import { TarballExporter } from "./tarball.ts";
import { clientSession, exporterDeps, exportContext, tempDir } from "./testing.ts";

const imageConfig = {
  Env: ["PATH=/bin:/usr/bin", "GREETING=hello from buildd"],
  Cmd: ["/bin/sh", "-c", 'cat made; echo "$GREETING"; test -e /bin/vi && echo vi is still there; true'],
  WorkingDir: "/app",
  Labels: { "org.example.built-by": "buildd", "org.example.issue": "7" },
};

/**
 * `docker run` of a loaded image, offline. AppArmor unconfined: with the kernel's AppArmor on,
 * dockerd would need the docker-default profile, which needs apparmor_parser (only a Recommends
 * of docker.io, so CI does not install it).
 */
async function dockerRun(dockerd: Dockerd, args: string[]): Promise<string> {
  const run = ["run", "--rm", "--network", "none", "--security-opt", "apparmor=unconfined", ...args];
  return (await dockerd.docker(run)).stdout;
}

describe("docker exporter and docker load", () => {
  test("a gzip image with three names loads, inspects as built and runs", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    await pushBusyboxImage(registry);
    const dockerd = await startDockerd({ signal: t.signal });
    const w = await openTestWorker(t, { driver: "overlayfs" });
    const deps = await exporterDeps(t, w);
    const ref = (
      await w.build(
        image(`${registry.host}/busybox:latest`)
          .run({ args: ["/bin/sh", "-c", "mkdir /app && echo made by buildd > /app/made && rm /bin/vi"] })
          .root(),
      )
    ).ref!;
    const out = await tempDir(t, "docker-load");
    const tarball = join(out, "image.tar");
    const session = await clientSession(t, { targets: new Map([[0, fileTarget(tarball)]]) });
    // The docker.io name checks docker's short form; the digest-only name has no tag to load.
    const names = [
      "example.com/app:v1",
      "example.com/app:latest",
      "docker.io/library/buildd-load:2",
      `example.com/app@sha256:${"0".repeat(64)}`,
    ];
    const resp = await new TarballExporter("docker", deps).export(
      { ref, metadata: { "containerimage.config": Buffer.from(JSON.stringify({ config: imageConfig })) } },
      { name: names.join(",") },
      exportContext({ session, exporterId: 0 }),
    );

    const loaded = await dockerd.docker(["load", "-i", tarball]);
    assert.deepEqual(loaded.stdout.trim().split("\n").sort(), [
      "Loaded image: buildd-load:2",
      "Loaded image: example.com/app:latest",
      "Loaded image: example.com/app:v1",
    ]);
    const [inspect] = JSON.parse((await dockerd.docker(["image", "inspect", "example.com/app:v1"])).stdout);
    const configDigest = resp["containerimage.config.digest"]!;
    assert.equal(inspect.Id, configDigest, "docker's image id is the config we made");
    assert.deepEqual(inspect.RepoTags.sort(), [
      "buildd-load:2",
      "example.com/app:latest",
      "example.com/app:v1",
    ]);
    assert.deepEqual(inspect.Config.Env, imageConfig.Env);
    assert.deepEqual(inspect.Config.Cmd, imageConfig.Cmd);
    assert.equal(inspect.Config.WorkingDir, imageConfig.WorkingDir);
    assert.deepEqual(inspect.Config.Labels, imageConfig.Labels);
    assert.equal(inspect.Os, "linux");
    // docker recomputed each layer's diff id while loading; they match the config's own.
    const config = JSON.parse((await w.worker.content.readAll(configDigest)).toString());
    assert.equal(config.rootfs.diff_ids.length, 2, "busybox plus the RUN layer");
    assert.deepEqual(inspect.RootFS.Layers, config.rootfs.diff_ids);

    // The RUN layer's file is there and its deletion (a whiteout) hides busybox's /bin/vi.
    assert.equal(await dockerRun(dockerd, ["buildd-load:2"]), "made by buildd\nhello from buildd\n");
    assert.equal(await dockerRun(dockerd, ["example.com/app:v1", "cat", "/app/made"]), "made by buildd\n");
  });

  test("an uncompressed image without a name loads by id (native snapshots)", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    await pushBusyboxImage(registry);
    const dockerd = await startDockerd({ signal: t.signal });
    const w = await openTestWorker(t, { driver: "native" });
    const deps = await exporterDeps(t, w);
    const ref = (
      await w.build(
        image(`${registry.host}/busybox:latest`)
          .run({ args: ["/bin/sh", "-c", "mkdir /app && echo native > /app/made && rm /bin/vi"] })
          .root(),
      )
    ).ref!;
    const out = await tempDir(t, "docker-load");
    const tarball = join(out, "image.tar");
    const session = await clientSession(t, { targets: new Map([[0, fileTarget(tarball)]]) });
    const resp = await new TarballExporter("docker", deps).export(
      { ref, metadata: { "containerimage.config": Buffer.from(JSON.stringify({ config: imageConfig })) } },
      { compression: "uncompressed", "force-compression": "true" },
      exportContext({ session, exporterId: 0 }),
    );

    const id = resp["containerimage.config.digest"]!;
    const loaded = await dockerd.docker(["load", "-i", tarball]);
    assert.equal(loaded.stdout.trim(), `Loaded image ID: ${id}`);
    const [inspect] = JSON.parse((await dockerd.docker(["image", "inspect", id])).stdout);
    assert.deepEqual(inspect.RepoTags, []);
    assert.equal(inspect.RootFS.Layers.length, 2);
    assert.equal(await dockerRun(dockerd, [id]), "native\nhello from buildd\n");
  });
});

// oci, docker and tar outputs through a real client session into files: skopeo reads the
// image tarballs back, umoci unpacks them, GNU tar extracts the file tree exactly.
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { image, mkfile, scratch } from "../llb/index.ts";
import { fileTarget } from "../session/filesend/receive.ts";
import { pushBusyboxImage } from "../test/busybox-image.ts";
import { startRegistry } from "../test/registry.ts";
import { openTestWorker } from "../worker/testing.ts";
import { TarExporter } from "./tar.ts";
import { TarballExporter } from "./tarball.ts";
import { clientSession, exec, exporterDeps, exportContext, runImage, skopeo, tempDir } from "./testing.ts";

const sh = (script: string) => ({ args: ["/bin/sh", "-c", script] });
const config = (cmd: string[]) =>
  Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      config: { Env: ["PATH=/bin:/usr/bin"], Cmd: cmd },
    }),
  );

describe("tarball exporters", () => {
  for (const driver of ["overlayfs", "native"] as const) {
    test(`oci and docker tarballs (${driver} snapshots) load with skopeo and run`, async (t) => {
      const registry = await startRegistry({ signal: t.signal });
      await pushBusyboxImage(registry);
      const w = await openTestWorker(t, { driver });
      const deps = await exporterDeps(t, w);
      const ref = (
        await w.build(
          image(`${registry.host}/busybox:latest`).run(sh("echo tarball > /made && rm /bin/vi")).root(),
        )
      ).ref!;
      const out = await tempDir(t, "tarballs");
      const session = await clientSession(t, {
        targets: new Map([
          [0, fileTarget(join(out, "oci.tar"))],
          [1, fileTarget(join(out, "docker.tar"))],
        ]),
      });
      const res = {
        ref,
        metadata: {
          "containerimage.config": config([
            "/bin/sh",
            "-c",
            "cat /made; test -e /bin/vi && echo vi is still there; true",
          ]),
        },
      };
      const oci = await new TarballExporter("oci", deps).export(
        res,
        { name: "example.com/app:v1", dest: join(out, "oci.tar"), "source-date-epoch": "1700000000" },
        exportContext({ session, exporterId: 0 }),
      );
      const docker = await new TarballExporter("docker", deps).export(
        res,
        { name: "example.com/app:v1,example.com/app:latest" },
        exportContext({ session, exporterId: 1 }),
      );

      const ociInspect = JSON.parse(await skopeo(["inspect", `oci-archive:${join(out, "oci.tar")}`]));
      assert.equal(ociInspect.Digest, oci["containerimage.digest"]);
      assert.equal(ociInspect.Layers.length, 2);
      const layout = join(out, "layout");
      await skopeo(["copy", `oci-archive:${join(out, "oci.tar")}`, `oci:${layout}:from-oci`]);
      assert.equal(await runImage(t, layout, "from-oci"), "tarball\n");

      const { stdout: manifestJson } = await exec("tar", ["-xOf", join(out, "docker.tar"), "manifest.json"]);
      assert.deepEqual(JSON.parse(manifestJson)[0].RepoTags, [
        "example.com/app:v1",
        "example.com/app:latest",
      ]);
      const dockerInspect = JSON.parse(
        await skopeo(["inspect", `docker-archive:${join(out, "docker.tar")}`]),
      );
      assert.equal(dockerInspect.Layers.length, 2);
      await skopeo(["copy", `docker-archive:${join(out, "docker.tar")}`, `oci:${layout}:from-docker`]);
      assert.equal(await runImage(t, layout, "from-docker"), "tarball\n");
      const manifest = JSON.parse(
        (await w.worker.content.readAll(docker["containerimage.digest"]!)).toString(),
      );
      assert.equal(manifest.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
      // The tarball itself is deterministic: the same export gives the same bytes.
      const again = await tempDir(t, "again");
      const session2 = await clientSession(t, {
        targets: new Map([[0, fileTarget(join(again, "oci.tar"))]]),
      });
      await new TarballExporter("oci", deps).export(
        res,
        { name: "example.com/app:v1", "source-date-epoch": "1700000000" },
        exportContext({ session: session2, exporterId: 0 }),
      );
      const first = await readFile(join(out, "oci.tar"));
      const second = await readFile(join(again, "oci.tar"));
      assert.ok(first.equals(second), "same image, same tarball bytes");
    });
  }

  test("docker refuses a multi-platform result; attributes are checked", async (t) => {
    const w = await openTestWorker(t);
    const deps = await exporterDeps(t, w);
    const a = (await w.build(scratch().file(mkfile("/a", 0o644, "a")))).ref!;
    const exp = new TarballExporter("docker", deps);
    await assert.rejects(
      exp.export({ refs: { "linux/amd64": a, "linux/arm64": a }, metadata: {} }, {}, exportContext()),
      /the docker exporter writes one image, but the build made 2 platforms; use type=oci/,
    );
    assert.throws(() => exp.checkAttrs({ push: "true" }), /unknown attribute "push"/);
    await assert.rejects(
      new TarballExporter("oci", deps).export({ ref: a, metadata: {} }, {}, exportContext()),
      /the build has no client session/,
    );
  });
});

describe("tar exporter", () => {
  test("streams the result's files exactly: owners, modes, symlinks, hard links; platforms split", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    await pushBusyboxImage(registry);
    const w = await openTestWorker(t);
    const built = await w.build(
      image(`${registry.host}/busybox:latest`)
        .run(
          sh(
            "mkdir -p /out && echo data > /out/file && chown 1234:5678 /out/file && chmod 4711 /out/file && ln -s file /out/link && ln /out/file /out/hard",
          ),
        )
        .root(),
    );
    const out = await tempDir(t, "tar");
    const session = await clientSession(t, {
      targets: new Map([
        [0, fileTarget(join(out, "result.tar"))],
        [1, fileTarget(join(out, "multi.tar"))],
      ]),
    });
    await new TarExporter().export(
      { ref: built.ref!, metadata: {} },
      { dest: "ignored-by-daemon" },
      exportContext({ session, exporterId: 0 }),
    );
    const x = join(out, "x");
    await exec("mkdir", [x]);
    await exec("tar", ["-xpf", join(out, "result.tar"), "-C", x, "--numeric-owner"]);
    const { stdout } = await exec("stat", ["-c", "%a %u %g %h %F", join(x, "out/file"), join(x, "out/link")]);
    assert.equal(stdout, "4711 1234 5678 2 regular file\n777 0 0 1 symbolic link\n");
    assert.equal(await readFile(join(x, "out/hard"), "utf8"), "data\n");
    // The whole result: busybox's files are there too, with the same modes as in the build.
    await built.read(async (dir) => {
      for (const p of ["bin/busybox", "bin/sh", "etc"]) {
        const [a, b] = await Promise.all([stat(join(dir, p)), stat(join(x, p))]);
        assert.equal(b.mode, a.mode, p);
      }
    });

    const amd = (await w.build(scratch().file(mkfile("/f", 0o600, "amd")))).ref!;
    const arm = (await w.build(scratch().file(mkfile("/f", 0o600, "arm")))).ref!;
    await new TarExporter().export(
      { refs: { "linux/amd64": amd, "linux/arm64": arm }, metadata: {} },
      {},
      exportContext({ session, exporterId: 1 }),
    );
    const { stdout: list } = await exec("tar", ["-tf", join(out, "multi.tar")]);
    assert.deepEqual(list.trim().split("\n"), [
      "linux_amd64/",
      "linux_amd64/f",
      "linux_arm64/",
      "linux_arm64/f",
    ]);
    assert.throws(
      () => new TarExporter().checkAttrs({ compression: "gzip" }),
      /unknown attribute "compression"/,
    );
  });
});

// The image exporter against a real worker and a real registry: what the build made is what
// skopeo, umoci and runc see; pulled layers are reused; pushes skip what the registry has;
// reproducible builds give the same digest; bad input and refused pushes fail clearly.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { ImmutableRef } from "../cache/types.ts";
import type { FrontendResult } from "../frontend/types.ts";
import { image, mkfile, scratch } from "../llb/index.ts";
import { pushBusyboxImage } from "../test/busybox-image.ts";
import { startRegistry } from "../test/registry.ts";
import { openTestWorker, type TestWorker } from "../worker/testing.ts";
import { ImageExporter } from "./image.ts";
import { clientSession, exporterDeps, exportContext, runImage, skopeo, tempDir } from "./testing.ts";

const sh = (script: string) => ({ args: ["/bin/sh", "-c", script] });

/** The frontend's image config, as the Dockerfile frontend would write it. */
const CONFIG = {
  architecture: "amd64",
  os: "linux",
  config: {
    Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hello"],
    Entrypoint: ["/bin/sh", "-c"],
    Cmd: ['cat /made; echo "$GREETING as $(id -u) in $(pwd)"'],
    User: "0",
    WorkingDir: "/work",
    Labels: { "org.example.role": "test" },
    ExposedPorts: { "8080/tcp": {} },
    Volumes: { "/data": {} },
    StopSignal: "SIGINT",
    Healthcheck: { Test: ["CMD", "true"], Interval: 30_000_000_000 },
  },
  history: [
    { created_by: "busybox base", comment: "from the base image" },
    { created_by: "RUN make things" },
    { created_by: "ENV GREETING=hello", empty_layer: true },
  ],
};

async function buildOnBusybox(w: TestWorker, registryHost: string, script: string): Promise<ImmutableRef> {
  const r = await w.build(image(`${registryHost}/busybox:latest`).run(sh(script)).root());
  return r.ref!;
}

function result(ref: ImmutableRef, config: unknown = CONFIG): FrontendResult {
  return { ref, metadata: { "containerimage.config": Buffer.from(JSON.stringify(config)) } };
}

describe("image exporter", () => {
  test("push: skopeo inspects it, umoci unpacks it, runc runs it with the build's files and config", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    await pushBusyboxImage(registry);
    const w = await openTestWorker(t);
    const deps = await exporterDeps(t, w);
    const ref = await buildOnBusybox(
      w,
      registry.host,
      "mkdir -p /work && echo made-by-build > /made && rm /bin/vi && ln /made /work/hardlink",
    );
    const name = `${registry.host}/app:1`;
    const ctx = exportContext();
    const resp = await new ImageExporter(deps).export(result(ref), { name, push: "true" }, ctx);

    const digest = resp["containerimage.digest"]!;
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(resp["image.name"], name);
    const desc = JSON.parse(Buffer.from(resp["containerimage.descriptor"]!, "base64").toString());
    assert.equal(desc.digest, digest);
    assert.equal(
      desc.mediaType,
      "application/vnd.docker.distribution.manifest.v2+json",
      "docker types by default",
    );
    assert.equal(deps.images.get(name)?.digest, digest, "recorded in the image store");
    assert.ok(
      ctx.progress.statuses.some((s) => s.name.startsWith("pushing") && s.total > 0),
      "push progress in bytes",
    );

    const inspect = JSON.parse(await skopeo(["inspect", "--tls-verify=false", `docker://${name}`]));
    assert.equal(inspect.Digest, digest);
    assert.equal(inspect.Layers.length, 2);
    const config = JSON.parse(
      await skopeo(["inspect", "--config", "--raw", "--tls-verify=false", `docker://${name}`]),
    );
    assert.deepEqual(config.config.Entrypoint, CONFIG.config.Entrypoint);
    assert.deepEqual(config.config.Labels, CONFIG.config.Labels);
    assert.deepEqual(config.config.ExposedPorts, CONFIG.config.ExposedPorts);
    assert.deepEqual(config.config.Volumes, CONFIG.config.Volumes);
    assert.equal(config.config.StopSignal, "SIGINT");
    assert.deepEqual(config.config.Healthcheck, CONFIG.config.Healthcheck);
    assert.equal(config.rootfs.diff_ids.length, 2);
    assert.deepEqual(
      config.history.map((h: { created_by: string }) => h.created_by),
      ["busybox base", "RUN make things", "ENV GREETING=hello"],
    );
    assert.match(config.created, /^\d{4}-\d\d-\d\dT/);

    const out = await tempDir(t, "layout");
    const layout = join(out, "oci");
    await skopeo(["copy", "--src-tls-verify=false", `docker://${name}`, `oci:${layout}:app`]);
    assert.equal(
      await runImage(t, layout, "app"),
      `made-by-build\nhello as 0 in /work\n`,
      "the unpacked image runs the configured entrypoint, env, user and workdir",
    );
    // The layer really holds the build's changes: the deletion and the hard link.
    const { exec } = await import("./testing.ts");
    const bundle = join(out, "bundle");
    await exec("umoci", ["unpack", "--image", `${layout}:app`, bundle]);
    await assert.rejects(readFile(join(bundle, "rootfs/bin/vi")), /ENOENT/);
    const { stdout } = await exec("stat", ["-c", "%h", join(bundle, "rootfs/work/hardlink")]);
    assert.equal(stdout.trim(), "2");

    // Pulling it back with buildd itself.
    const back = await w.build(image(name).run(sh("cat /made > /again")).root());
    await back.read(async (dir) =>
      assert.equal(await readFile(join(dir, "again"), "utf8"), "made-by-build\n"),
    );
  });

  test("reuses the pulled base blob; pushes skip blobs the registry has and mount across repositories", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    await pushBusyboxImage(registry);
    const w = await openTestWorker(t);
    const deps = await exporterDeps(t, w);
    const ref = await buildOnBusybox(w, registry.host, "echo one > /one");
    const base = JSON.parse(
      await skopeo(["inspect", "--tls-verify=false", `docker://${registry.host}/busybox:latest`]),
    );
    const exp = new ImageExporter(deps);

    registry.resetStats();
    const ctx = exportContext();
    // A fixed creation time, so that the second export below makes the very same image.
    const attrs = { name: `${registry.host}/other/app:1`, push: "true", "source-date-epoch": "1700000000" };
    await exp.export(result(ref), attrs, ctx);
    const param = (r: { query: string }, k: string) => new URLSearchParams(r.query).get(k);
    const uploads = registry.log().filter((r) => r.method === "PUT" && r.path.includes("/blobs/uploads/"));
    const baseLayer = base.Layers[0] as string;
    assert.equal(uploads.length, 2, "the new layer and the config are uploaded");
    assert.ok(!uploads.some((r) => param(r, "digest") === baseLayer), "the base layer is not uploaded again");
    assert.ok(
      registry
        .log()
        .some(
          (r) => r.method === "POST" && param(r, "mount") === baseLayer && param(r, "from") === "busybox",
        ),
      "it is mounted from the repository it was pulled from",
    );
    const inspect = JSON.parse(
      await skopeo(["inspect", "--tls-verify=false", `docker://${registry.host}/other/app:1`]),
    );
    assert.equal(inspect.Layers[0], baseLayer, "the pulled blob is reused, not recompressed");

    // Same image again: every blob is there already; only the manifest goes up.
    registry.resetStats();
    await exp.export(result(ref), attrs, exportContext());
    const log = registry.log();
    assert.ok(!log.some((r) => r.path.includes("/blobs/uploads/")), "no upload at all");
    assert.ok(log.some((r) => r.method === "HEAD" && r.path.includes("/blobs/")));
    assert.ok(log.some((r) => r.method === "PUT" && r.path.includes("/manifests/1")));
  });

  test("SOURCE_DATE_EPOCH and rewrite-timestamp make the same image on two machines", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    await pushBusyboxImage(registry);
    const digests: string[] = [];
    for (let i = 0; i < 2; i++) {
      const w = await openTestWorker(t);
      const deps = await exporterDeps(t, w);
      const ref = await buildOnBusybox(w, registry.host, `mkdir -p /app/sub && echo same > /app/sub/file`);
      const resp = await new ImageExporter(deps).export(
        result(ref, {
          ...CONFIG,
          history: [{ created_by: "base" }, { created_by: "RUN", created: new Date().toISOString() }],
        }),
        { "rewrite-timestamp": "true" },
        exportContext({ buildArgs: { "build-arg:SOURCE_DATE_EPOCH": "1700000000" } }),
      );
      digests.push(resp["containerimage.digest"]!);
      const config = JSON.parse(
        (await w.worker.content.readAll(resp["containerimage.config.digest"]!)).toString(),
      );
      assert.equal(config.created, "2023-11-14T22:13:20Z");
      assert.ok(
        config.history.every(
          (h: { created?: string }) => h.created === undefined || h.created <= "2023-11-14T22:13:20Z",
        ),
      );
      // Built at different times on purpose.
      await new Promise((r) => setTimeout(r, 1100));
    }
    assert.equal(digests[0], digests[1]);
  });

  test("compression: zstd with OCI types, uncompressed, force-compression converts the pulled layer", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    await pushBusyboxImage(registry);
    const w = await openTestWorker(t);
    const deps = await exporterDeps(t, w);
    const ref = await buildOnBusybox(w, registry.host, "echo z > /z");
    const exp = new ImageExporter(deps);
    const manifestOf = async (resp: Record<string, string>) =>
      JSON.parse((await deps.content.readAll(resp["containerimage.digest"]!)).toString());

    const zstd = await manifestOf(await exp.export(result(ref), { compression: "zstd" }, exportContext()));
    assert.equal(zstd.mediaType, "application/vnd.oci.image.manifest.v1+json");
    assert.deepEqual(
      zstd.layers.map((l: { mediaType: string }) => l.mediaType),
      ["application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+zstd"],
      "the pulled gzip layer is kept as it is",
    );
    const forced = await manifestOf(
      await exp.export(result(ref), { compression: "zstd", "force-compression": "true" }, exportContext()),
    );
    assert.ok(forced.layers.every((l: { mediaType: string }) => l.mediaType.endsWith("+zstd")));
    assert.notEqual(forced.layers[0].digest, zstd.layers[0].digest);
    const configOf = async (m: { config: { digest: string } }) =>
      JSON.parse((await deps.content.readAll(m.config.digest)).toString());
    assert.deepEqual((await configOf(forced)).rootfs, (await configOf(zstd)).rootfs, "same diff ids");

    const plain = await manifestOf(
      await exp.export(
        result(ref),
        { compression: "uncompressed", "oci-mediatypes": "true" },
        exportContext(),
      ),
    );
    assert.equal(plain.layers[1].mediaType, "application/vnd.oci.image.layer.v1.tar");
    assert.equal(
      plain.layers[1].digest,
      (await configOf(plain)).rootfs.diff_ids[1],
      "uncompressed: digest = diff id",
    );
  });

  test("multi-platform results become an index with a manifest per platform", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    const w = await openTestWorker(t);
    const deps = await exporterDeps(t, w);
    const amd = (await w.build(scratch().file(mkfile("/arch", 0o644, "amd64\n")))).ref!;
    const arm = (await w.build(scratch().file(mkfile("/arch", 0o644, "arm64\n")))).ref!;
    const cfg = (architecture: string) =>
      Buffer.from(JSON.stringify({ architecture, os: "linux", config: {} }));
    const res: FrontendResult = {
      refs: { "linux/amd64": amd, "linux/arm64": arm },
      metadata: {
        "containerimage.config/linux/amd64": cfg("amd64"),
        "containerimage.config/linux/arm64": cfg("arm64"),
      },
    };
    const name = `${registry.host}/multi:1`;
    const resp = await new ImageExporter(deps).export(
      res,
      {
        name,
        push: "true",
        "oci-mediatypes": "true",
        "annotation-index.org.opencontainers.image.title": "multi",
      },
      exportContext(),
    );
    const raw = JSON.parse(await skopeo(["inspect", "--raw", "--tls-verify=false", `docker://${name}`]));
    assert.equal(raw.mediaType, "application/vnd.oci.image.index.v1+json");
    assert.deepEqual(
      raw.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture),
      ["amd64", "arm64"],
    );
    assert.equal(raw.annotations["org.opencontainers.image.title"], "multi");
    assert.equal(resp["containerimage.config.digest"], undefined);
    const arm64 = JSON.parse(
      await skopeo([
        "inspect",
        "--config",
        "--override-arch",
        "arm64",
        "--tls-verify=false",
        `docker://${name}`,
      ]),
    );
    assert.equal(arm64.architecture, "arm64");
  });

  test("credentials come from the build's session; a refused push fails clearly and keeps the local image", async (t) => {
    const auth = { username: "builder", password: "s3cret", mode: "basic" as const };
    const registry = await startRegistry({ signal: t.signal, auth });
    const w = await openTestWorker(t);
    const deps = await exporterDeps(t, w);
    const ref = (await w.build(scratch().file(mkfile("/f", 0o644, "x")))).ref!;
    const exp = new ImageExporter(deps);
    const name = `${registry.host}/private:1`;

    await assert.rejects(
      exp.export(result(ref, undefined), { name, push: "true" }, exportContext()),
      (e: Error) => {
        assert.match(e.message, new RegExp(`^pushing ${name.replace(/[.]/g, "\\.")}: .*unauthorized`));
        assert.match(e.message, /kept locally/);
        return true;
      },
    );
    assert.ok(deps.images.get(name), "the local image is intact");

    const session = await clientSession(t, { credentials: { [registry.host]: auth } });
    await exp.export(result(ref, undefined), { name, push: "true" }, exportContext({ session }));
    const inspect = JSON.parse(
      await skopeo(["inspect", "--tls-verify=false", "--creds", "builder:s3cret", `docker://${name}`]),
    );
    assert.equal(inspect.Layers.length, 1);
  });

  test("push-by-digest leaves tags alone; registry.insecure finds the plain-http registry", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    const w = await openTestWorker(t);
    const deps = await exporterDeps(t, w);
    const ref = (await w.build(scratch().file(mkfile("/d", 0o644, "digest")))).ref!;
    const name = `${registry.host}/bydigest:tag`;
    const resp = await new ImageExporter(deps).export(
      result(ref, undefined),
      { name, push: "true", "push-by-digest": "true", "registry.insecure": "true", store: "false" },
      exportContext(),
    );
    const digest = resp["containerimage.digest"]!;
    await assert.rejects(skopeo(["inspect", "--tls-verify=false", `docker://${name}`]), /manifest unknown/i);
    const inspect = JSON.parse(
      await skopeo([
        "inspect",
        "--no-tags",
        "--tls-verify=false",
        `docker://${registry.host}/bydigest@${digest}`,
      ]),
    );
    assert.equal(inspect.Digest, digest);
    assert.equal(deps.images.get(name), undefined, "store=false records nothing");
  });

  test("bad attributes are refused before the build", () => {
    const exp = new ImageExporter({} as never);
    assert.throws(
      () => exp.checkAttrs({ nmae: "x" }),
      /unknown attribute "nmae"; the image exporter accepts/,
    );
    assert.throws(
      () => exp.checkAttrs({ compression: "lz4" }),
      /compression=lz4: want gzip, zstd or uncompressed/,
    );
    assert.throws(
      () => exp.checkAttrs({ compression: "gzip", "compression-level": "12" }),
      /gzip takes 0 to 9/,
    );
    assert.throws(() => exp.checkAttrs({ push: "true" }), /push=true needs a name/);
    assert.throws(() => exp.checkAttrs({ push: "yes", name: "a/b" }), /push=yes: want true or false/);
    assert.throws(() => exp.checkAttrs({ name: "a/UPPER" }), /name=a\/UPPER/);
    assert.throws(() => exp.checkAttrs({ "source-date-epoch": "yesterday" }), /want whole seconds/);
    assert.throws(
      () => exp.checkAttrs({ compression: "zstd", "oci-mediatypes": "false" }),
      /zstd needs OCI media types/,
    );
  });
});

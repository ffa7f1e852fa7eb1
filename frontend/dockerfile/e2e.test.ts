// The Dockerfile frontend end to end: a real buildd, the real buildctl, contexts synced through
// the session, images from a loopback registry, results read back from local outputs and the
// registry.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile, mkdir, readlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pushBusyboxImage } from "../../test/busybox-image.ts";
import { startTestDaemon, type TestDaemon } from "../../test/daemon.ts";
import { startHttpServer } from "../../test/http.ts";
import { startRegistry } from "../../test/registry.ts";
import { digestOf } from "../../util/digest.ts";

let registryHost = "";
let busybox = "";
let daemon: TestDaemon;
const abort = new AbortController();
const dirs: string[] = [];

before(async () => {
  const registry = await startRegistry({ signal: abort.signal });
  await pushBusyboxImage(registry);
  registryHost = registry.host;
  busybox = `${registry.host}/busybox:latest`;
});
after(async () => {
  abort.abort();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function context(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "buildd-df-"));
  dirs.push(dir);
  for (const [p, c] of Object.entries(files)) {
    await mkdir(join(dir, p, ".."), { recursive: true });
    await writeFile(join(dir, p), c);
  }
  return dir;
}

async function build(dir: string, extra: string[] = [], env?: NodeJS.ProcessEnv) {
  const out = await mkdtemp(join(tmpdir(), "buildd-df-out-"));
  dirs.push(out);
  const r = await daemon.buildctl(
    [
      "build",
      "--frontend=dockerfile.v0",
      "--local",
      `context=${dir}`,
      "--local",
      `dockerfile=${dir}`,
      "--opt",
      `build-arg:BASE=${busybox}`,
      "--progress=plain",
      "--output",
      `type=local,dest=${out}`,
      ...extra,
    ],
    { env },
  );
  return { ...r, out };
}

function skopeo(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile("skopeo", args, (e, stdout, stderr) => (e ? reject(new Error(stderr)) : resolve(stdout))),
  );
}

describe("dockerfile.v0 end to end", () => {
  before(async () => {
    daemon = await startTestDaemon(undefined);
  });
  after(() => daemon.close());

  test("every instruction: files and image config as BuildKit makes them", async () => {
    const dir = await context({
      Dockerfile: `# syntax-free Dockerfile
ARG BASE
FROM $BASE AS builder
ARG VERSION=1.0
WORKDIR /src
COPY app.sh ./
RUN chmod +x app.sh && echo "version $VERSION" > version.txt

FROM $BASE
LABEL org.example.name="demo app" org.example.team=build
ENV APP_HOME=/app PATH=/app:$PATH
WORKDIR $APP_HOME
COPY --from=builder /src/app.sh /src/version.txt ./
COPY --chown=app:app --chmod=640 data.txt /app/data.txt
ADD files.tar /unpacked/
RUN ln -s /app/app.sh /usr/bin/app && echo ran > /app/ran.txt
USER app
EXPOSE 8080/tcp 9090
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s CMD ["app", "health"]
SHELL ["/bin/sh", "-c"]
ENTRYPOINT ["/app/app.sh"]
CMD ["serve"]
`,
      "app.sh": "#!/bin/sh\necho app $@\n",
      "data.txt": "data\n",
    });
    // A tar archive in the context: ADD unpacks it.
    await new Promise<void>((res, rej) =>
      execFile(
        "sh",
        [
          "-c",
          `cd ${dir} && mkdir -p t/sub && echo inner > t/sub/inner.txt && tar cf files.tar -C t . && rm -r t`,
        ],
        (e) => (e ? rej(e) : res()),
      ),
    );
    const r = await build(dir, [
      "--opt",
      "build-arg:VERSION=2.5",
      "--output",
      `type=image,name=${registryHost}/df/app:1,push=true`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\[builder 3\/4\] COPY app\.sh \.\//);
    assert.equal(await readFile(join(r.out, "app/version.txt"), "utf8"), "version 2.5\n");
    assert.equal(await readFile(join(r.out, "app/ran.txt"), "utf8"), "ran\n");
    assert.equal(await readFile(join(r.out, "unpacked/sub/inner.txt"), "utf8"), "inner\n");
    assert.equal(await readlink(join(r.out, "usr/bin/app")), "/app/app.sh");
    assert.equal((await stat(join(r.out, "app/data.txt"))).mode & 0o777, 0o640);
    assert.ok(
      (await stat(join(r.out, "app/app.sh"))).mode & 0o100,
      "chmod +x in the builder stage survived the copy",
    );

    const config = JSON.parse(
      await skopeo([
        "inspect",
        "--tls-verify=false",
        "--config",
        "--raw",
        `docker://${registryHost}/df/app:1`,
      ]),
    );
    const c = config.config;
    assert.ok(c.Healthcheck, JSON.stringify(config.config));
    assert.deepEqual(c.Entrypoint, ["/app/app.sh"]);
    assert.deepEqual(c.Cmd, ["serve"]);
    assert.equal(c.WorkingDir, "/app");
    assert.equal(c.User, "app");
    assert.ok(c.Env.includes("APP_HOME=/app"));
    assert.ok(c.Env.some((e: string) => e.startsWith("PATH=/app:")));
    assert.deepEqual(c.Labels, { "org.example.name": "demo app", "org.example.team": "build" });
    assert.deepEqual(c.ExposedPorts, { "8080/tcp": {}, "9090/tcp": {} });
    assert.deepEqual(c.Volumes, { "/data": {} });
    assert.equal(c.StopSignal, "SIGINT");
    assert.deepEqual(c.Healthcheck.Test, ["CMD", "app", "health"]);
    assert.deepEqual(c.Shell, ["/bin/sh", "-c"]);
    const history = config.history.map((h: { created_by: string }) => h.created_by);
    assert.ok(
      history.some((h: string) => /RUN \/bin\/sh -c ln -s/.test(h) && h.endsWith("# buildkit")),
      history.join("\n"),
    );
    assert.ok(history.includes('ENTRYPOINT ["/app/app.sh"]'));
    assert.equal(
      config.rootfs.diff_ids.length,
      config.history.filter((h: { empty_layer?: boolean }) => !h.empty_layer).length,
    );
  });

  test("RUN mounts: cache, secret, bind, tmpfs; network none", async () => {
    const dir = await context({
      Dockerfile: `ARG BASE
FROM $BASE
RUN --mount=type=cache,target=/cache echo x >> /cache/log && wc -l < /cache/log > /count
RUN --mount=type=secret,id=token,required=true cp /run/secrets/token /tmp/t && test -s /tmp/t && rm /tmp/t && echo has-secret > /secret-ok
RUN --mount=type=bind,source=src,target=/mnt/src cp /mnt/src/a.txt /copied.txt
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ! test -e /scratch-leak
RUN --network=none sh -c 'cat /proc/net/dev | grep -c : > /ifaces'
`,
      "src/a.txt": "from bind\n",
    });
    const env = { TOKEN_VALUE: "tok" };
    const first = await daemon.buildctl(
      [
        "build",
        "--frontend=dockerfile.v0",
        "--local",
        `context=${dir}`,
        "--local",
        `dockerfile=${dir}`,
        "--opt",
        `build-arg:BASE=${busybox}`,
        "--secret",
        "id=token,env=TOKEN_VALUE",
        "--progress=quiet",
      ],
      { env },
    );
    assert.equal(first.code, 0, first.stderr);
    const r = await build(dir, ["--secret", "id=token,env=TOKEN_VALUE", "--no-cache"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      (await readFile(join(r.out, "count"), "utf8")).trim(),
      "2",
      "the cache mount kept the first build's line",
    );
    assert.equal(await readFile(join(r.out, "secret-ok"), "utf8"), "has-secret\n");
    assert.equal(await readFile(join(r.out, "copied.txt"), "utf8"), "from bind\n");
    assert.equal((await readFile(join(r.out, "ifaces"), "utf8")).trim(), "1", "only lo");
    await assert.rejects(stat(join(r.out, "run/secrets/token")), /ENOENT/);
    await assert.rejects(stat(join(r.out, "mnt/src/a.txt")), /ENOENT/);
  });

  test("target builds only what it needs; .dockerignore and unrelated changes keep the cache", async () => {
    const dir = await context({
      Dockerfile: `ARG BASE
FROM $BASE AS broken
RUN echo this stage fails && exit 1

FROM $BASE AS app
COPY src/ /src/
RUN cat /src/*.txt > /all.txt
`,
      ".dockerignore": "src/ignored.txt\n",
      "src/a.txt": "a\n",
      "src/ignored.txt": "ignored\n",
      "README.md": "not copied\n",
    });
    const r = await build(dir, ["--opt", "target=app"]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /this stage fails/);
    assert.equal(await readFile(join(r.out, "all.txt"), "utf8"), "a\n");
    await assert.rejects(stat(join(r.out, "src/ignored.txt")), /ENOENT/);

    await writeFile(join(dir, "README.md"), "changed, still not copied\n");
    await writeFile(join(dir, "src/ignored.txt"), "changed and ignored\n");
    const again = await build(dir, ["--opt", "target=app"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /#\d+ \[app 3\/3\] RUN cat \/src\/\*\.txt > \/all\.txt\n#\d+ CACHED/);

    await writeFile(join(dir, "src/a.txt"), "a2\n");
    const changed = await build(dir, ["--opt", "target=app"]);
    assert.equal(changed.code, 0, changed.stderr);
    assert.equal(await readFile(join(changed.out, "all.txt"), "utf8"), "a2\n");
  });

  test("an unchanged context is not transferred again", async () => {
    const dir = await context({
      Dockerfile: "ARG BASE\nFROM $BASE\nCOPY big.bin /big.bin\n",
      ".dockerignore": "ignored/\n",
      "big.bin": "x".repeat(1 << 20),
    });
    /** The last "transferring context" line of the "[internal] load build context" step. */
    const transferred = (out: string) => {
      const n = /^#(\d+) \[internal\] load build context$/m.exec(out)?.[1];
      return [...out.matchAll(new RegExp(`^#${n} transferring context (.*)$`, "gm"))].at(-1)?.[1];
    };
    const first = await build(dir);
    assert.equal(first.code, 0, first.stderr);
    assert.match(transferred(first.stderr) ?? "", /^1\.05MB .*done$/);
    const second = await build(dir);
    assert.equal(second.code, 0, second.stderr);
    // Done with nothing received: no byte figure (or 0B) on the final line.
    assert.match(transferred(second.stderr) ?? "", /^(0B )?[\d.]+s done$/, second.stderr);
  });

  test("ADD of a URL with a checksum, COPY --from an image, labels and ONBUILD from a base", async () => {
    const body = "downloaded\n";
    const server = await startHttpServer({ "/file.txt": { body } }, { signal: abort.signal });
    const base = await context({
      Dockerfile: `ARG BASE
FROM $BASE
ONBUILD RUN echo triggered > /onbuild.txt
`,
    });
    const pushed = await build(base, ["--output", `type=image,name=${registryHost}/df/base:1,push=true`]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const dir = await context({
      Dockerfile: `FROM ${registryHost}/df/base:1
ADD --checksum=${digestOf(body)} ${server.url}/file.txt /downloaded.txt
COPY --from=${busybox} /bin/busybox /bb
`,
    });
    const r = await build(dir, ["--opt", "label:built-by=buildd"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await readFile(join(r.out, "onbuild.txt"), "utf8"), "triggered\n");
    assert.equal(await readFile(join(r.out, "downloaded.txt"), "utf8"), body);
    assert.ok((await stat(join(r.out, "bb"))).size > 100_000);
    const bad = await context({
      Dockerfile: `FROM ${busybox}\nADD --checksum=${digestOf("other")} ${server.url}/file.txt /f\n`,
    });
    const failed = await build(bad);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /checksum mismatch/);
  });

  test("errors name the file and line and show the source; warnings are reported", async () => {
    const syntax = await context({ Dockerfile: "FROM busybox\nRUN echo ok\nFROBNICATE now\n" });
    const s = await build(syntax);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /Dockerfile:3/);
    assert.match(s.stderr, /FROBNICATE/);

    const failing = await context({
      Dockerfile: `ARG BASE\nFROM $BASE\nRUN echo fine\nRUN echo about to fail && exit 3\n`,
    });
    const f = await build(failing);
    assert.equal(f.code, 1);
    assert.match(f.stderr, /Dockerfile:4/);
    assert.match(f.stderr, />>> RUN echo about to fail && exit 3/);
    assert.match(f.stderr, /did not complete successfully: exit code: 3/);

    const warned = await context({
      Dockerfile: `ARG BASE\nFROM $BASE\nMAINTAINER someone@example.com\nRUN true\n`,
    });
    const w = await build(warned);
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stderr, /MaintainerDeprecated/);
  });
});

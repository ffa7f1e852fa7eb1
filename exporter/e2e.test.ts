// End to end through the real daemon and buildctl: one build with three outputs (a registry
// push, an OCI tarball to a file, a tar on stdout), each reaching its destination; and the
// errors a user meets (unknown output type or attribute, unwritable dest, refused push).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { image } from "../llb/index.ts";
import { pushBusyboxImage } from "../test/busybox-image.ts";
import { spawnService } from "../test/process.ts";
import { startRegistry } from "../test/registry.ts";
import { exec, skopeo } from "./testing.ts";

const NODE = process.execPath;
const ROOT = join(import.meta.dirname, "..");

async function startBuildd(t: TestContext): Promise<{ addr: string; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "buildd-e2e-"));
  const sock = join(dir, "buildd.sock");
  const args = ["--root", join(dir, "root"), "--addr", `unix://${sock}`, "--config", "/dev/null"];
  const daemon = await spawnService(NODE, [join(ROOT, "cmd/buildd/main.ts"), ...args], {
    readyCheck: () => existsSync(sock),
    timeoutMs: 30_000,
  }).catch(async (e) => {
    await rm(dir, { recursive: true, force: true });
    throw e;
  });
  // The daemon goes first: its state dir is busy (mounts) until it has stopped.
  t.after(async () => {
    await daemon.stop();
    await rm(dir, { recursive: true, force: true });
  });
  return { addr: `unix://${sock}`, dir };
}

/** Runs buildctl build with the definition on stdin; resolves with stdout (bytes) and stderr. */
function buildctl(
  addr: string,
  args: string[],
  definition: Uint8Array,
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      NODE,
      [join(ROOT, "cmd/buildctl/main.ts"), "--addr", addr, "build", "--progress", "plain", ...args],
      { encoding: "buffer", maxBuffer: 256 << 20, timeout: 240_000, env: { ...process.env, ...env } },
      (err, stdout, stderr) =>
        resolve({
          code: err ? Number((err as { code?: number }).code ?? 1) : 0,
          stdout,
          stderr: stderr.toString(),
        }),
    );
    child.stdin!.end(Buffer.from(definition));
  });
}

describe("buildd and buildctl", () => {
  test("one build, three outputs: push to a registry, an OCI tarball file, a tar on stdout", async (t) => {
    const registry = await startRegistry({ signal: t.signal });
    await pushBusyboxImage(registry);
    const { addr, dir } = await startBuildd(t);
    const def = image(`${registry.host}/busybox:latest`)
      .run({ args: ["/bin/sh", "-c", "echo e2e > /e2e && ln -s e2e /e2e-link"] })
      .root()
      .marshal().bytes;
    const name = `${registry.host}/e2e/app:1`;
    const oci = join(dir, "out", "image.tar");
    await exec("mkdir", ["-p", join(dir, "out")]);
    const meta = join(dir, "metadata.json");
    const epoch = "source-date-epoch=1700000000";
    const r = await buildctl(
      addr,
      [
        "--output",
        `type=image,name=${name},push=true,oci-mediatypes=true,${epoch}`,
        "--output",
        `type=oci,dest=${oci},name=${name},${epoch}`,
        "--output",
        "type=tar,dest=-",
        "--metadata-file",
        meta,
      ],
      def,
    );
    assert.equal(r.code, 0, r.stderr);
    const pushed = JSON.parse(await skopeo(["inspect", "--tls-verify=false", `docker://${name}`]));
    const archived = JSON.parse(await skopeo(["inspect", `oci-archive:${oci}`]));
    assert.equal(archived.Digest, pushed.Digest, "the same image in the registry and in the tarball");
    const response = JSON.parse(await readFile(meta, "utf8"));
    assert.equal(response["containerimage.digest"], pushed.Digest);
    assert.equal(response["image.name"], name);

    const stdoutTar = join(dir, "stdout.tar");
    await writeFile(stdoutTar, r.stdout);
    const { stdout: listing } = await exec("tar", ["-tvf", stdoutTar]);
    assert.match(listing, /^-rw-r--r-- 0\/0\s+4 .* e2e$/m);
    assert.match(listing, /e2e-link -> e2e$/m);
    assert.match(listing, / bin\/busybox$/m, "the tar output is the whole result");
    assert.match(r.stderr, /pushing sha256:/, "push progress is shown");
    assert.ok(!existsSync(join(dir, "out", ".image.tar.tmp")), "no temporary file left");
  });

  test("unknown output types and attributes, unwritable destinations and refused pushes are clear errors", async (t) => {
    const registry = await startRegistry({
      signal: t.signal,
      auth: { username: "u", password: "p", mode: "basic" },
    });
    const { addr, dir } = await startBuildd(t);
    const { scratch, mkfile } = await import("../llb/index.ts");
    const def = scratch()
      .file(mkfile("/f", 0o644, "x"))
      .marshal().bytes;

    const unknownType = await buildctl(addr, ["--output", "type=floppy"], def);
    assert.notEqual(unknownType.code, 0);
    assert.match(
      unknownType.stderr,
      /unknown output type "floppy": this daemon supports .*image.*oci.*docker.*tar/,
    );

    const unknownAttr = await buildctl(addr, ["--output", "type=image,name=a/b,pusj=true"], def);
    assert.match(unknownAttr.stderr, /output type=image: unknown attribute "pusj"/);

    const unwritable = await buildctl(
      addr,
      ["--output", `type=oci,dest=${join(dir, "missing/dir/x.tar")}`],
      def,
    );
    assert.notEqual(unwritable.code, 0);
    assert.match(unwritable.stderr, /dest=.*missing\/dir\/x\.tar: directory .* does not exist/);

    // No login in docker's config: the push is refused, clearly.
    const push = ["--output", `type=image,name=${registry.host}/locked:1,push=true`];
    const refused = await buildctl(addr, push, def, { DOCKER_CONFIG: join(dir, "docker-empty") });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /pushing 127\.0\.0\.1:\d+\/locked:1: .*unauthorized.*kept locally/s);
    // With the login in docker's config.json, buildctl answers the daemon's Auth call.
    const login = join(dir, "docker");
    await exec("mkdir", ["-p", login]);
    const auths = { [registry.host]: { auth: Buffer.from("u:p").toString("base64") } };
    await writeFile(join(login, "config.json"), JSON.stringify({ auths }));
    const allowed = await buildctl(addr, push, def, { DOCKER_CONFIG: login });
    assert.equal(allowed.code, 0, allowed.stderr);
    await skopeo(["inspect", "--tls-verify=false", "--creds", "u:p", `docker://${registry.host}/locked:1`]);
  });
});

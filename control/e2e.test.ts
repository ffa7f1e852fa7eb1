// buildd and buildctl end to end: a real daemon process on a unix socket, the real CLI, images
// from a loopback registry, real runc containers.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { image, type State } from "../llb/index.ts";
import { pushBusyboxImage } from "../test/busybox-image.ts";
import { startTestDaemon, type TestDaemon } from "../test/daemon.ts";
import { startRegistry } from "../test/registry.ts";

let busybox = "";
const registryAbort = new AbortController();
before(async () => {
  const registry = await startRegistry({ signal: registryAbort.signal });
  await pushBusyboxImage(registry);
  busybox = `${registry.host}/busybox:latest`;
});
after(() => registryAbort.abort());

const llb = (s: State) => s.marshal().bytes;
const sh = (script: string) => image(busybox).run({ shell: script }).root();

async function runcContainers(d: TestDaemon): Promise<string[]> {
  return readdir(join(d.root, "executor/runc")).catch(() => []);
}

describe("buildd + buildctl", () => {
  test("builds LLB from stdin with plain progress, then fully cached", async (t) => {
    const d = await startTestDaemon(t);
    const def = llb(sh("echo hello-from-step; echo to-stderr >&2"));
    const first = await d.buildctl(["build", "--progress=plain"], { input: def });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /^#1 source docker-image:\/\/127\.0\.0\.1:\d+\/busybox:latest$/m);
    assert.match(first.stderr, /^#\d+ exec \/bin\/sh -c echo hello-from-step; echo to-stderr >&2$/m);
    assert.match(first.stderr, /^#\d+ \d+\.\d+ hello-from-step$/m);
    assert.match(first.stderr, /^#\d+ \d+\.\d+ to-stderr$/m);
    assert.match(first.stderr, /^#\d+ DONE \d+\.\ds$/m);
    const second = await d.buildctl(["build", "--progress=plain"], { input: def });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stderr, /^#\d+ CACHED$/m);
    assert.doesNotMatch(second.stderr, /^#\d+ \d+\.\d+ hello-from-step$/m, "the step did not run again");
    const raw = await d.buildctl(["build", "--progress=rawjson"], { input: def });
    const lines = raw.stderr
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.vertexes?.some((v: { cached?: boolean }) => v.cached)));
  });

  test("secrets reach the step and a failing step reports its output and exit code", async (t) => {
    const d = await startTestDaemon(t);
    const def = llb(
      image(busybox)
        .run({
          shell: 'test "$(cat /run/secrets/tok)" = "$EXPECT" && echo secret-ok',
          mounts: [{ type: "secret", dest: "/run/secrets/tok", id: "tok" }],
          env: { EXPECT: "abc" },
        })
        .root(),
    );
    const ok = await d.buildctl(["build", "--progress=plain", "--secret", "id=tok,env=MY_TOKEN"], {
      input: def,
      env: { MY_TOKEN: "abc" },
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stderr, /secret-ok/);
    // Secrets are not part of cache keys: a cached step needs none, so change the step.
    const uncached = llb(
      image(busybox)
        .run({
          shell: "cat /run/secrets/tok",
          mounts: [{ type: "secret", dest: "/run/secrets/tok", id: "tok" }],
        })
        .root(),
    );
    const missing = await d.buildctl(["build", "--progress=plain"], { input: uncached });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /secret "tok" not found/);

    const fail = await d.buildctl(["build", "--progress=plain"], {
      input: llb(sh("echo last words; exit 7")),
    });
    assert.equal(fail.code, 1);
    assert.match(fail.stderr, /last words/);
    assert.match(
      fail.stderr,
      /^error: failed to solve: process "\/bin\/sh -c echo last words; exit 7" did not complete successfully: exit code: 7/m,
    );
  });

  test("bad input gets one clear error and the daemon keeps serving", async (t) => {
    const d = await startTestDaemon(t);
    const garbage = await d.buildctl(["build"], { input: "not llb at all" });
    assert.equal(garbage.code, 1);
    assert.match(garbage.stderr, /^error: invalid LLB definition: not a protobuf/m);
    const fe = await d.buildctl(["build", "--frontend", "nope.v0"]);
    assert.equal(fe.code, 1);
    assert.match(fe.stderr, /unknown frontend "nope.v0"/);
    const out = await d.buildctl(["build", "--output", "type=floppy"], { input: llb(sh("true")) });
    assert.equal(out.code, 1);
    assert.match(out.stderr, /unknown output type "floppy"/);
    const local = await d.buildctl(["build", "--local", "context=/nonexistent/dir"], {
      input: llb(sh("true")),
    });
    assert.equal(local.code, 1);
    assert.match(local.stderr, /--local context=\/nonexistent\/dir: not a directory/);
    const noDaemon = await d.buildctl(["--addr", "unix:///nonexistent/buildd.sock", "debug", "workers"]);
    assert.equal(noDaemon.code, 1);
    assert.match(noDaemon.stderr, /cannot reach buildd/);
    const workers = await d.buildctl(["debug", "workers"]);
    assert.equal(workers.code, 0, workers.stderr);
    assert.match(workers.stdout, /linux\/amd64|linux\/arm64/);
  });

  test("du and prune work on real usage; 20 clients at once", async (t) => {
    const d = await startTestDaemon(t);
    const builds = Array.from({ length: 6 }, (_, i) =>
      d.buildctl(["build", "--progress=quiet"], {
        input: llb(sh(`dd if=/dev/zero of=/f${i} bs=1k count=${100 + i} 2>/dev/null`)),
      }),
    );
    const queries = Array.from({ length: 14 }, () => d.buildctl(["du"]));
    const results = await Promise.all([...builds, ...queries]);
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const du = await d.buildctl(["du", "-v"]);
    assert.match(du.stdout, /Total:\s+\d/);
    assert.match(du.stdout, /Type:\s+regular/);
    const total = Number(/Total:\s+([\d.]+)(kB|MB)/.exec(du.stdout)?.[1]);
    assert.ok(total > 0);
    const pruned = await d.buildctl(["prune", "--all"]);
    assert.equal(pruned.code, 0, pruned.stderr);
    assert.match(pruned.stdout, /Total:/);
    const after = await d.buildctl(["du"]);
    assert.match(after.stdout, /Total:\s+0B/);
  });

  test("a client that goes away mid-build cancels it; nothing is left running", async (t) => {
    const d = await startTestDaemon(t);
    const p = d.spawnBuildctl(["build", "--progress=plain"], llb(sh("echo started; sleep 60")));
    let err = "";
    p.stderr!.on("data", (b: Buffer) => (err += b.toString()));
    await waitUntil(async () => (await runcContainers(d)).length === 1, 60_000, `the step to start\n${err}`);
    p.kill("SIGKILL");
    await waitUntil(async () => (await runcContainers(d)).length === 0, 20_000);
    const next = await d.buildctl(["build", "--progress=quiet"], { input: llb(sh("echo still serving")) });
    assert.equal(next.code, 0, next.stderr);
  });

  test("SIGTERM lets a running build finish; SIGKILL mid-build recovers on restart with the cache kept", async (t) => {
    const d = await startTestDaemon(t);
    const cachedDef = llb(sh("echo cached-step"));
    assert.equal((await d.buildctl(["build", "--progress=quiet"], { input: cachedDef })).code, 0);

    const draining = d.buildctl(["build", "--progress=plain"], {
      input: llb(sh("echo begin; sleep 3; echo end")),
    });
    await waitUntil(
      async () => (await runcContainers(d)).length > 0,
      30_000,
      "the draining build's step to start",
    );
    const code = await d.stop("SIGTERM");
    const drained = await draining;
    assert.equal(drained.code, 0, drained.stderr);
    assert.match(drained.stderr, /end/);
    assert.equal(code, 0);

    await d.start();
    const killedBuild = d.buildctl(["build", "--progress=plain"], { input: llb(sh("echo begin; sleep 60")) });
    await waitUntil(
      async () => (await runcContainers(d)).length > 0,
      30_000,
      `the step after a restart to start\n${d.logs()}`,
    );
    await d.stop("SIGKILL");
    assert.equal((await killedBuild).code, 1);
    await d.start();
    assert.equal((await runcContainers(d)).length, 0, "the killed run's container was cleaned up");
    const mounts = (await readFile("/proc/self/mountinfo", "utf8"))
      .split("\n")
      .filter((l) => l.includes(join(d.root, "mnt")));
    assert.deepEqual(mounts, []);
    const again = await d.buildctl(["build", "--progress=plain"], { input: cachedDef });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /CACHED/);
    assert.doesNotMatch(again.stderr, /^#\d+ \d+\.\d+ cached-step$/m);
  });
});

async function waitUntil(
  fn: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what = "a condition",
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

void execFile;

describe("buildd over tcp with mutual TLS", () => {
  test("a client with a certificate from the CA gets in; one without does not", async (t) => {
    const { mkdtemp, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { makePKI } = await import("../test/pki.ts");
    const { freePort } = await import("../test/process.ts");
    const dir = await mkdtemp(join(tmpdir(), "buildd-pki-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    makePKI(dir);
    const port = await freePort();
    const tcp = `tcp://127.0.0.1:${port}`;
    const d = await startTestDaemon(t, {
      args: [
        "--addr",
        tcp,
        "--tlscert",
        join(dir, "server.pem"),
        "--tlskey",
        join(dir, "server.key"),
        "--tlscacert",
        join(dir, "ca.pem"),
      ],
    });
    // The test daemon's own unix address comes first; add it back so the helper can reach it.
    void d;
    const ok = await d.buildctl([
      "--addr",
      tcp,
      "--tlscacert",
      join(dir, "ca.pem"),
      "--tlscert",
      join(dir, "client.pem"),
      "--tlskey",
      join(dir, "client.key"),
      "debug",
      "workers",
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /PLATFORMS/);
    const noCert = await d.buildctl(["--addr", tcp, "--tlscacert", join(dir, "ca.pem"), "debug", "workers"]);
    assert.equal(noCert.code, 1);
  });
});

describe("ssh agent forwarding", () => {
  test("a step reaches the client's agent through the session; without --ssh it is a clear error", async (t) => {
    const { mkdtemp, rm, readFile: rf } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { createServer } = await import("node:net");
    const { pushNodeImage } = await import("../test/node-image.ts");
    const { startRegistry: sr } = await import("../test/registry.ts");
    const reg = await sr({ signal: t.signal });
    await pushNodeImage(reg);
    const dir = await mkdtemp(join(tmpdir(), "buildd-ssh-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    // A stand-in agent: answers every message with "agent says: " and the message.
    const agent = createServer((s) => s.on("data", (d) => s.write(`agent says: ${d}`)));
    await new Promise<void>((r) => agent.listen(join(dir, "agent.sock"), () => r()));
    t.after(() => agent.close());
    const script =
      "const s=require('net').connect(process.env.SSH_AUTH_SOCK);s.write('ping');s.on('data',d=>{require('fs').writeFileSync('/out/reply',d);process.exit(0)})";
    const def = llb(
      image(`${reg.host}/node:24`)
        .run({ args: ["node", "-e", script], mounts: [{ type: "ssh" }, { dest: "/out" }] })
        .getMount("/out"),
    );
    const d = await startTestDaemon(t);
    const out = join(dir, "out");
    const ok = await d.buildctl(
      [
        "build",
        "--progress=plain",
        "--ssh",
        `default=${join(dir, "agent.sock")}`,
        "--output",
        `type=local,dest=${out}`,
      ],
      { input: def },
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(await rf(join(out, "reply"), "utf8"), "agent says: ping");
    const missing = await d.buildctl(["build", "--progress=plain", "--no-cache"], { input: def });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no ssh agent "default" in the client's session: pass --ssh default/);
  });
});

describe("oci-layout sources", () => {
  test("an image from the client's OCI layout; the daemon's own store by digest", async (t) => {
    const { mkdtemp, rm, readFile: rf } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { busyboxImage } = await import("../test/busybox-image.ts");
    const { writeOCILayout } = await import("../test/oci.ts");
    const { ociLayout } = await import("../llb/index.ts");
    const dir = await mkdtemp(join(tmpdir(), "buildd-ocilayout-"));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const img = await busyboxImage();
    await writeOCILayout(join(dir, "layout"), img, { tag: "v1" });
    const d = await startTestDaemon(t);
    const step = (ref: string) =>
      llb(
        ociLayout(ref)
          .run({ shell: "echo from-layout > /out/proof", mounts: [{ dest: "/out" }] })
          .getMount("/out"),
      );
    const out = join(dir, "out");
    const r = await d.buildctl(
      [
        "build",
        "--progress=plain",
        "--oci-layout",
        `mine=${join(dir, "layout")}`,
        "--output",
        `type=local,dest=${out}`,
      ],
      {
        input: step("mine:v1"),
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await rf(join(out, "proof"), "utf8"), "from-layout\n");
    // The blobs are now in the daemon's content store: pinned by digest, no client layout needed.
    const pinned = await d.buildctl(["build", "--progress=plain", "--no-cache"], {
      input: step(`anything@${img.digest}`),
    });
    assert.equal(pinned.code, 0, pinned.stderr);
    const missing = await d.buildctl(["build", "--progress=plain"], {
      input: step(`other@sha256:${"0".repeat(64)}`),
    });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /not in the daemon's content store/);
  });
});

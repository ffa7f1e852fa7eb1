// buildd on containerd end to end: a real buildd process configured with the containerd worker,
// a private containerd (Debian's 1.6), the real buildctl and ctr. Covers the worker's listing,
// images registered in containerd and run by it, worker selection by label constraint, and the
// faults: containerd away at start (error, or the runc worker as configured fallback) and
// containerd restarted under a running build.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { after, before, describe, test } from "node:test";
import { image, type State } from "../../llb/index.ts";
import { pushBusyboxImage } from "../../test/busybox-image.ts";
import { startContainerd, type TestContainerd } from "../../test/containerd.ts";
import { startTestDaemon, type TestDaemon } from "../../test/daemon.ts";
import { tempDir, waitFor } from "../../test/process.ts";
import { startRegistry } from "../../test/registry.ts";

const NS = "buildd";
const BUILDD = join(import.meta.dirname, "../../cmd/buildd/main.ts");
const EXECUTOR_IS_CONTAINERD = 'labels."org.mobyproject.buildkit.worker.executor"==containerd';

let busybox = "";
const registryAbort = new AbortController();
before(async () => {
  const registry = await startRegistry({ signal: registryAbort.signal });
  await pushBusyboxImage(registry);
  busybox = `${registry.host}/busybox:latest`;
});
after(() => registryAbort.abort());

const llb = (s: State) => s.marshal().bytes;

function config(
  ctd: TestContainerd,
  more: { oci?: boolean; fallback?: string; address?: string } = {},
): string {
  return `[worker.oci]
enabled = ${more.oci ?? false}

[worker.containerd]
enabled = true
address = ${JSON.stringify(more.address ?? ctd.address)}
namespace = "${NS}"
runc-root = ${JSON.stringify(ctd.runcRoot)}
${more.fallback ? `fallback = "${more.fallback}"` : ""}
`;
}

/** containerd and a buildd on it; the daemon stops first, then containerd. */
async function start(
  t: TestContext,
  more: Parameters<typeof config>[1] = {},
): Promise<{ ctd: TestContainerd; d: TestDaemon }> {
  const ctd = await startContainerd();
  let d: TestDaemon | undefined;
  t.after(async () => {
    await d?.close();
    await ctd.stop();
  });
  d = await startTestDaemon(undefined, { config: config(ctd, more) });
  return { ctd, d };
}

/** This daemon's snapshots in containerd (names it gives them). */
async function buildSnapshots(ctd: TestContainerd): Promise<string[]> {
  const out = await ctd.ctr(NS, ["snapshots", "ls"]);
  return out
    .split("\n")
    .slice(1)
    .map((l) => l.split(/\s+/)[0]!)
    .filter((n) => n.startsWith("buildd/"));
}

describe("buildd on containerd", () => {
  test("lists the containerd worker, builds, and exports an image containerd runs", async (t) => {
    const { ctd, d } = await start(t);
    const workers = await d.buildctl(["debug", "workers", "--verbose"]);
    assert.equal(workers.code, 0, workers.stderr);
    assert.match(workers.stdout, /org\.mobyproject\.buildkit\.worker\.executor:\s+containerd/);
    assert.match(workers.stdout, /org\.mobyproject\.buildkit\.worker\.snapshotter:\s+overlayfs/);
    assert.match(workers.stdout, /org\.mobyproject\.buildkit\.worker\.hostname:\s+\S+/);
    assert.match(workers.stdout, /org\.mobyproject\.buildkit\.worker\.network:\s+host/);
    assert.match(
      workers.stdout,
      new RegExp(`org\\.mobyproject\\.buildkit\\.worker\\.containerd\\.namespace:\\s+${NS}`),
    );
    assert.match(workers.stdout, /^Platforms:\s+linux\/\w+/m);
    assert.doesNotMatch(workers.stdout, /executor:\s+oci/, "the runc worker is disabled");

    const name = `docker.io/library/buildd-ctd-test:${randomBytes(4).toString("hex")}`;
    const def = llb(image(busybox).run({ shell: "echo built-on-containerd > /hello" }).root());
    const built = await d.buildctl(["build", "--progress=plain", "--output", `type=image,name=${name}`], {
      input: def,
    });
    assert.equal(built.code, 0, built.stderr);
    const images = await ctd.ctr(NS, ["images", "ls", "-q"]);
    assert.ok(images.split("\n").includes(name), `ctr images ls shows ${name}:\n${images}`);
    assert.ok((await buildSnapshots(ctd)).length > 0, "the build's layers are containerd snapshots");
    const fifo = join(ctd.dir, "ctr-fifo");
    const ran = await ctd.ctr(NS, [
      "run",
      "--rm",
      "--fifo-dir",
      fifo,
      "--runc-root",
      ctd.runcRoot,
      name,
      `run-${randomBytes(4).toString("hex")}`,
      "cat",
      "/hello",
    ]);
    assert.equal(ran, "built-on-containerd\n", "containerd runs the exported image");
    // Exited build containers are removed in the background, right after their step.
    await waitFor(async () => (await ctd.ctr(NS, ["containers", "ls", "-q"])).trim() === "", {
      timeoutMs: 30_000,
      what: "no build container to be left in containerd",
    });
  });

  test("with both workers, a build asks for the containerd worker by label", async (t) => {
    const { ctd, d } = await start(t, { oci: true });
    const listed = await d.buildctl(["debug", "workers", "--verbose"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /executor:\s+oci/);
    assert.match(listed.stdout, /executor:\s+containerd/);
    const only = await d.buildctl(["debug", "workers", "--filter", EXECUTOR_IS_CONTAINERD]);
    assert.equal(only.code, 0, only.stderr);
    assert.equal(only.stdout.trim().split("\n").length, 2, `one worker listed:\n${only.stdout}`);
    assert.match(only.stdout, /-containerd\s/);

    const tag = randomBytes(4).toString("hex");
    // Unconstrained: the default (runc) worker; nothing lands in containerd.
    const plain = await d.buildctl(["build"], {
      input: llb(
        image(busybox)
          .run({ shell: `echo ${tag} > /a` })
          .root(),
      ),
    });
    assert.equal(plain.code, 0, plain.stderr);
    assert.deepEqual(await buildSnapshots(ctd), []);
    const picked = await d.buildctl(["build", "--progress=plain"], {
      input: llb(
        image(busybox)
          .run({ shell: `echo ${tag} > /b`, workerConstraints: [EXECUTOR_IS_CONTAINERD] })
          .root(),
      ),
    });
    assert.equal(picked.code, 0, picked.stderr);
    assert.ok((await buildSnapshots(ctd)).length > 0, "the constrained step ran on containerd's snapshots");
    const none = await d.buildctl(["build"], {
      input: llb(
        image(busybox)
          .run({
            shell: "true",
            workerConstraints: ['labels."org.mobyproject.buildkit.worker.executor"==nope'],
          })
          .root(),
      ),
    });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no worker matches its constraints/);
  });

  test("containerd restarted under a running build: the build fails clearly, the next one works", async (t) => {
    const { ctd, d } = await start(t);
    const tag = randomBytes(4).toString("hex");
    const long = d.spawnBuildctl(
      ["build", "--progress=plain"],
      llb(
        image(busybox)
          .run({ shell: `echo started-${tag}; sleep 60` })
          .root(),
      ),
    );
    let stderr = "";
    long.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => long.once("exit", (code) => resolve(code)));
    await waitFor(async () => /RUNNING/.test(await ctd.ctr(NS, ["tasks", "ls"])), {
      timeoutMs: 60_000,
      what: "the build's container to run in containerd",
    });
    await ctd.restart();
    assert.equal(await exited, 1, stderr);
    assert.match(stderr, /containerd at \S+containerd\.sock went away while the container ran/);
    const next = await d.buildctl(["build", "--progress=plain"], {
      input: llb(
        image(busybox)
          .run({ shell: `echo after-restart-${tag}` })
          .root(),
      ),
    });
    assert.equal(next.code, 0, next.stderr);
    assert.match(next.stderr, new RegExp(`after-restart-${tag}`));
    await waitFor(async () => (await ctd.ctr(NS, ["containers", "ls", "-q"])).trim() === "", {
      timeoutMs: 30_000,
      what: "the interrupted build's container to be removed",
    });
  });

  test("containerd not running at start: a clear error naming the socket, or the runc worker as fallback", async (t) => {
    const ctd = await startContainerd({ signal: t.signal });
    const missing = join(ctd.dir, "not-running.sock");
    const tmp = await tempDir("failed-daemon", { signal: t.signal });
    await writeFile(join(tmp.dir, "buildd.toml"), config(ctd, { address: missing }));
    const failed = await new Promise<{ code: number | null; output: string }>((resolve) => {
      execFile(
        process.execPath,
        [
          BUILDD,
          "--root",
          join(tmp.dir, "root"),
          "--addr",
          `unix://${join(tmp.dir, "buildd.sock")}`,
          "--config",
          join(tmp.dir, "buildd.toml"),
        ],
        { timeout: 60_000 },
        (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, output: stdout + stderr }),
      );
    });
    assert.notEqual(failed.code, 0, "buildd exits when containerd is not there");
    assert.ok(failed.output.includes(`containerd at ${missing}`), failed.output);
    assert.match(failed.output, /fallback/);
    const d = await startTestDaemon(t, { config: config(ctd, { address: missing, fallback: "oci" }) });
    const workers = await d.buildctl(["debug", "workers", "--verbose"]);
    assert.equal(workers.code, 0, workers.stderr);
    assert.match(workers.stdout, /executor:\s+oci/);
    assert.doesNotMatch(workers.stdout, /executor:\s+containerd/);
    const built = await d.buildctl(["build"], { input: llb(image(busybox).run({ shell: "true" }).root()) });
    assert.equal(built.code, 0, built.stderr);
    assert.match(d.logs(), /containerd is not reachable; running the runc \(oci\) worker instead/);
  });
});

// The shipped binaries, not the sources: `make binaries` bundles buildd and buildctl with esbuild
// (code splitting, shims for node:http/https), and the bundles must work end to end: a build that
// pulls from a registry (the daemon's http client) and reports through the session.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { image } from "../llb/index.ts";
import { pushBusyboxImage } from "../test/busybox-image.ts";
import { unmountUnder } from "../test/daemon.ts";
import { waitFor } from "../test/process.ts";
import { startRegistry } from "../test/registry.ts";

const REPO = join(import.meta.dirname, "..");

function run(
  cmd: string,
  args: string[],
  input?: Uint8Array,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = execFile(cmd, args, { cwd: REPO, maxBuffer: 64 << 20 }, (e, stdout, stderr) =>
      resolve({ code: e ? 1 : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
    p.stdin!.end(input ?? new Uint8Array());
  });
}

test("the bundled buildd and buildctl build an image pulled from a registry", async (t) => {
  const built = await run(process.execPath, ["scripts/build-binaries.ts"]);
  assert.equal(built.code, 0, built.stderr);
  const registry = await startRegistry({ signal: t.signal });
  await pushBusyboxImage(registry);
  const dir = await mkdtemp(join(tmpdir(), "buildd-bundle-"));
  t.after(async () => {
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  });
  await writeFile(join(dir, "buildd.toml"), `[registry."${registry.host}"]\nhttp = true\n`);
  const addr = `unix://${join(dir, "buildd.sock")}`;
  const daemon = spawn(
    join(REPO, "bin/buildd"),
    ["--root", join(dir, "root"), "--addr", addr, "--config", join(dir, "buildd.toml")],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let log = "";
  daemon.stdout!.on("data", (b: Buffer) => (log += b));
  daemon.stderr!.on("data", (b: Buffer) => (log += b));
  const exited = new Promise((r) => daemon.once("exit", r));
  t.after(async () => {
    daemon.kill("SIGTERM");
    await exited;
  });
  await waitFor(() => log.includes('"buildd started"'), {
    timeoutMs: 60_000,
    what: `the bundled buildd to start\n${log}`,
  });

  const def = image(`${registry.host}/busybox:latest`)
    .run({ shell: "echo from-the-bundle" })
    .root()
    .marshal().bytes;
  const r = await run(join(REPO, "bin/buildctl"), ["--addr", addr, "build", "--progress=plain"], def);
  assert.equal(r.code, 0, `${r.stderr}\n--- daemon ---\n${log}`);
  assert.match(r.stderr, /from-the-bundle/);
  const version = await run(join(REPO, "bin/buildctl"), ["--version"]);
  assert.match(version.stdout, /\d+\.\d+\.\d+/);
});

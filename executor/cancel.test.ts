// Cancellation, closing and crash recovery with real runc: the container's processes die and no
// mount, bundle, runc state or cgroup is left, even when the daemon itself was killed mid-run.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { cgroupParentDirs } from "./cgroups.ts";
import { mustRunTool } from "./command.ts";
import { readMountinfo } from "./hostmount.ts";
import { RuncExecutor } from "./runc.ts";
import {
  defer,
  mountsUnder,
  overlayRoot,
  sharedBusybox,
  shell,
  tempDir,
  testExecutor,
  unmountLeftovers,
} from "./testutil.ts";

after(async () => (await sharedBusybox()).cleanup());

/** The host pid of a running container's init, from runc's state. */
async function containerPid(root: string, id: string): Promise<number> {
  const state = await mustRunTool("runc", ["--root", join(root, "runc"), "state", id], "reading runc state");
  return (JSON.parse(state) as { pid: number }).pid;
}

/** True while `pid` is a live (not zombie) process. */
async function alive(pid: number): Promise<boolean> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  return status !== "" && !/^State:\s+Z/m.test(status);
}

async function waitDead(pid: number): Promise<boolean> {
  for (let i = 0; i < 100 && (await alive(pid)); i++) await sleep(50);
  return !(await alive(pid));
}

/** Container cgroups (in any hierarchy) whose name ends with `-id`. */
async function cgroupsOf(id: string): Promise<string[]> {
  const found: string[] = [];
  for (const dir of await cgroupParentDirs(await readMountinfo())) {
    for (const name of await readdir(dir).catch(() => []))
      if (name.endsWith(`-${id}`)) found.push(join(dir, name));
  }
  return found;
}

/** Processes whose command line mentions `text` (an orphaned `runc run`, say). */
async function processesMentioning(text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(text) && (await alive(Number(entry)))) pids.push(Number(entry));
  }
  return pids;
}

async function expectNothingLeft(root: string, id: string): Promise<void> {
  assert.deepEqual(await mountsUnder(root), []);
  assert.deepEqual(await readdir(join(root, "bundles")), []);
  assert.deepEqual(await readdir(join(root, "runc")), []);
  assert.deepEqual(await readdir(join(root, "sockets")), []);
  assert.deepEqual(await cgroupsOf(id), []);
}

test("aborting a run kills every process of the container and cleans up", { timeout: 60_000 }, async (t) => {
  const { executor, root } = await testExecutor(t);
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  const controller = new AbortController();
  let pid = 0;
  let inCgroup = "";
  const run = executor.run(
    "cancel-me",
    mounts,
    [{ type: "tmpfs", dest: "/scratch" }],
    shell("sleep 1000 & echo started; sleep 1000"),
    {
      stdout: (c) => {
        if (!c.toString().includes("started")) return;
        void (async () => {
          pid = await containerPid(root, "cancel-me");
          inCgroup = await readFile(`/proc/${pid}/cgroup`, "utf8");
          controller.abort(new Error("build cancelled"));
        })();
      },
    },
    controller.signal,
  );
  await assert.rejects(run, /build cancelled/);
  assert.ok(pid > 0);
  assert.match(inCgroup, /:\/.*buildd\/[0-9a-f]{12}-cancel-me$/m);
  assert.ok(await waitDead(pid), "the container's init is gone");
  await expectNothingLeft(root, "cancel-me");
});

test("a run cancelled before it starts creates nothing", async (t) => {
  const { executor, root } = await testExecutor(t);
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  await assert.rejects(
    executor.run("early", mounts, [], shell("true"), {}, AbortSignal.abort(new Error("too late"))),
    /too late/,
  );
  await expectNothingLeft(root, "early");
});

test("closing the executor kills running containers", { timeout: 60_000 }, async (t) => {
  const parent = await tempDir(t);
  const root = join(parent, "state");
  defer(t, () => unmountLeftovers(root));
  const executor = await RuncExecutor.open({ root });
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const run = executor.run("closing", mounts, [], shell("echo started; sleep 1000"), {
    stdout: () => started(),
  });
  await running;
  const pid = await containerPid(root, "closing");
  const rejected = assert.rejects(run, /executor was closed/);
  await executor.close();
  await rejected;
  assert.ok(await waitDead(pid));
  assert.deepEqual(
    (await readMountinfo()).filter((m) => m.mountPoint.startsWith(root)),
    [],
    "close() unmounts the state tmpfs too",
  );
  await assert.rejects(executor.run("after", mounts, [], shell("true"), {}), /executor is closed/);
});

test("a daemon killed mid-run leaves nothing once the next one opens", { timeout: 120_000 }, async (t) => {
  const parent = await tempDir(t);
  const root = join(parent, "state");
  defer(t, () => unmountLeftovers(root));
  const lower = (await sharedBusybox()).dir;
  for (const d of ["upper", "work"]) await mkdir(join(parent, d));
  const child = spawn(
    process.execPath,
    [
      join(import.meta.dirname, "testdata/run-sleep.ts"),
      root,
      lower,
      join(parent, "upper"),
      join(parent, "work"),
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const exited = new Promise((r) => child.once("exit", r));
  defer(t, () => {
    child.kill("SIGKILL");
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => d.toString().includes("READY") && resolve());
    child.once("exit", (code) => reject(new Error(`the child exited (${code}) before its container ran`)));
  });
  const pid = await containerPid(root, "crashed");
  assert.ok((await mountsUnder(root)).length > 0, "the rootfs is mounted while the container runs");
  child.kill("SIGKILL");
  await exited;
  assert.ok(await alive(pid), "the container outlives the killed daemon");

  const next = await RuncExecutor.open({ root });
  defer(t, () => next.close());
  assert.ok(await waitDead(pid), "the container's init was killed");
  await expectNothingLeft(root, "crashed");
  // The orphaned `runc run` of the dead daemon goes too, once its container is gone.
  let stragglers: number[] = [];
  for (let i = 0; i < 100; i++) {
    stragglers = await processesMentioning(root);
    if (stragglers.length === 0) break;
    await sleep(50);
  }
  assert.deepEqual(stragglers, []);
});

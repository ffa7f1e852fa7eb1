import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { tempBusyboxRootfs } from "./busybox.ts";
import { mountPointsUnder } from "./daemon.ts";
import { type Dockerd, startDockerd } from "./dockerd.ts";
import { tempDir, waitFor } from "./process.ts";

const run = promisify(execFile);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** What a dockerd in `dir` could leave behind: mounts, its cgroups, the container's shim socket, the dir. */
function leftovers(dir: string, containerdAddress: string, containerId: string): string[] {
  const found = mountPointsUnder(dir, readFileSync("/proc/self/mountinfo", "utf8"));
  const shimSocket = createHash("sha256").update(`${containerdAddress}/moby/${containerId}`).digest("hex");
  if (existsSync(join("/run/containerd/s", shimSocket))) found.push(shimSocket);
  if (existsSync(dirname(containerdAddress))) found.push(dirname(containerdAddress));
  const parent = dir.split("/").pop()!;
  for (const h of ["", ...readdirSync("/sys/fs/cgroup")]) {
    const cgroup = join("/sys/fs/cgroup", h, parent);
    if (existsSync(cgroup)) found.push(cgroup);
  }
  if (existsSync(dir)) found.push(dir);
  return found;
}

/** Imports a busybox rootfs as `name` and starts `sleep 600` in it. */
async function startSleeper(dockerd: Dockerd, name: string): Promise<{ id: string; pid: number }> {
  const rootfs = await tempBusyboxRootfs();
  const { dir, cleanup } = await tempDir("dockerd-test");
  try {
    await run("tar", ["-C", rootfs.dir, "-cf", join(dir, "rootfs.tar"), "."]);
    await dockerd.docker(["import", join(dir, "rootfs.tar"), name]);
  } finally {
    await rootfs.cleanup();
    await cleanup();
  }
  const security = ["--network", "none", "--security-opt", "apparmor=unconfined"];
  const id = (await dockerd.docker(["run", "-d", ...security, name, "sleep", "600"])).stdout.trim();
  return { id, pid: Number((await dockerd.docker(["inspect", "-f", "{{.State.Pid}}", id])).stdout.trim()) };
}

test("a private dockerd keeps its state in its dir and leaves nothing when stopped with a container running", async (t) => {
  const dockerd = await startDockerd({ signal: t.signal });
  const info = JSON.parse((await dockerd.docker(["info", "--format", "{{json .}}"])).stdout);
  assert.equal(info.DockerRootDir, join(dockerd.dir, "data"));
  assert.equal(info.Driver, "overlay2");
  assert.equal(info.CgroupDriver, "cgroupfs");
  const { id, pid } = await startSleeper(dockerd, "sleeper:1");
  assert.ok(alive(pid));
  await dockerd.stop();
  assert.equal(alive(pid), false, "the container died with its daemon");
  assert.deepEqual(leftovers(dockerd.dir, dockerd.containerdAddress, id), []);
});

test("a test process that exits without stopping its dockerd leaves nothing either", async (t) => {
  const { dir, cleanup } = await tempDir("dockerd-test");
  t.after(cleanup);
  const script = join(dir, "child.ts");
  await writeFile(
    script,
    `import { startDockerd } from ${JSON.stringify(join(import.meta.dirname, "dockerd.ts"))};
import { tempBusyboxRootfs } from ${JSON.stringify(join(import.meta.dirname, "busybox.ts"))};
const dockerd = await startDockerd();
const rootfs = await tempBusyboxRootfs();
const { execFileSync } = await import("node:child_process");
execFileSync("tar", ["-C", rootfs.dir, "-cf", rootfs.dir + ".tar", "."]);
await dockerd.docker(["import", rootfs.dir + ".tar", "sleeper:1"]);
await rootfs.cleanup();
const security = ["--network", "none", "--security-opt", "apparmor=unconfined"];
const id = (await dockerd.docker(["run", "-d", ...security, "sleeper:1", "sleep", "600"])).stdout.trim();
const pid = Number((await dockerd.docker(["inspect", "-f", "{{.State.Pid}}", id])).stdout.trim());
console.log(JSON.stringify({ dir: dockerd.dir, containerd: dockerd.containerdAddress, id, pid }));
process.exit(0);
`,
  );
  const { stdout } = await run(process.execPath, [script], { timeout: 120_000 });
  const child = JSON.parse(stdout) as { dir: string; containerd: string; id: string; pid: number };
  await waitFor(() => !alive(child.pid), { what: `container process ${child.pid} to die` });
  assert.deepEqual(leftovers(child.dir, child.containerd, child.id), []);
});

test("dockerd's CLI calls fail with docker's own message", async (t) => {
  const dockerd = await startDockerd({ signal: t.signal });
  await assert.rejects(
    dockerd.docker(["image", "inspect", "no-such-image:1"]),
    /docker image inspect no-such-image:1 failed: .*No such image/,
  );
});

test("the host's network is untouched: a docker0 bridge on the host survives a private dockerd", async (t) => {
  // dockerd with --bridge=none deletes a docker0 it can see; a system dockerd's would go too.
  const made = !existsSync("/sys/class/net/docker0");
  if (made) await run("ip", ["link", "add", "docker0", "type", "bridge"]);
  t.after(async () => {
    if (made) await run("ip", ["link", "del", "docker0"]).catch(() => {});
  });
  const before = readdirSync("/sys/class/net").sort();
  const dockerd = await startDockerd({ signal: t.signal });
  await dockerd.docker(["info", "--format", "{{.ID}}"]);
  await dockerd.stop();
  assert.deepEqual(readdirSync("/sys/class/net").sort(), before);
});

// Every kind of mount a build step gets, with real runc: inputs with selectors, outputs, shared
// writable dirs, tmpfs, secrets and ssh sockets.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, realpath, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import type { TestContext } from "node:test";
import type { ExecMount, Mount } from "./types.ts";
import {
  collect,
  defer,
  mountsUnder,
  overlayRoot,
  sharedBusybox,
  shell,
  tempDir,
  testExecutor,
} from "./testutil.ts";

after(async () => (await sharedBusybox()).cleanup());

const bind = (source: string, options = ["rbind"]): Mount[] => [{ type: "bind", source, options }];

/** Every regular file under `dir` whose content includes `needle`. */
async function filesContaining(dir: string, needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    if ((await readFile(p)).includes(needle)) found.push(p);
  }
  return found;
}

/** An overlay of a dir holding sub/file.txt, as a snapshot of an input would be. */
async function inputOverlay(t: TestContext): Promise<Mount[]> {
  const dir = await tempDir(t);
  await mkdir(join(dir, "lower/sub"), { recursive: true });
  await writeFile(join(dir, "lower/sub/file.txt"), "from the input\n");
  await writeFile(join(dir, "lower/top.txt"), "top\n");
  await mkdir(join(dir, "upper"));
  await mkdir(join(dir, "work"));
  return [
    {
      type: "overlay",
      source: "overlay",
      options: [
        `lowerdir=${join(dir, "lower")}`,
        `upperdir=${join(dir, "upper")}`,
        `workdir=${join(dir, "work")}`,
      ],
    },
  ];
}

test("read-only inputs, whole or a selected sub-path, from a dir or an overlay", async (t) => {
  const { executor, root } = await testExecutor(t);
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  const src = await tempDir(t);
  await mkdir(join(src, "a/b"), { recursive: true });
  await writeFile(join(src, "a/b/f"), "selected\n");
  await writeFile(join(src, "root.txt"), "whole\n");
  const input = await inputOverlay(t);
  const execMounts: ExecMount[] = [
    { type: "bind", dest: "/in/whole", mounts: bind(src), readonly: true },
    { type: "bind", dest: "/in/sel", mounts: bind(src), selector: "/a/b", readonly: true },
    { type: "bind", dest: "/in/ovl", mounts: input, readonly: true },
    { type: "bind", dest: "/in/ovlsel", mounts: input, selector: "sub", readonly: true },
    // The source's own "ro" holds even when the mount itself does not ask for it.
    { type: "bind", dest: "/in/rosrc", mounts: bind(src, ["rbind", "ro"]), selector: "a", readonly: false },
  ];
  const out = collect();
  await executor.run(
    "",
    mounts,
    execMounts,
    shell(
      "cat /in/whole/root.txt /in/sel/f /in/ovl/top.txt /in/ovlsel/file.txt; ls /in/sel; " +
        "for d in whole sel ovl ovlsel rosrc; do touch /in/$d/new 2>/dev/null && echo writable $d; done; true",
    ),
    out.io,
  );
  assert.equal(out.stdout(), "whole\nselected\ntop\nfrom the input\nf\n");
  assert.deepEqual((await readdir(src)).sort(), ["a", "root.txt"]);
  // The overlay for the selector was mounted on the host for the run only.
  assert.deepEqual(await mountsUnder(root), []);
});

test("writable outputs land in their source; two containers share one dir concurrently", async (t) => {
  const { executor } = await testExecutor(t);
  const lower = (await sharedBusybox()).dir;
  const cache = await tempDir(t);
  // Each container has its own rootfs, as each step has its own snapshot; only /cache is shared.
  const writer = async (name: string) =>
    executor.run(
      "",
      (await overlayRoot(t, lower)).mounts,
      [{ type: "bind", dest: "/cache", mounts: bind(cache), readonly: false }],
      shell(
        `for i in $(seq 1 200); do echo ${name} $i >> /cache/${name}.log; echo ${name} >> /cache/shared.log; done; ` +
          `while [ $(cat /cache/*.log | wc -l) -lt 800 ]; do sleep 0.01; done`,
      ),
      {},
    );
  // Each waits until the other has written everything too: they must run at the same time.
  await Promise.all([writer("one"), writer("two")]);
  assert.equal((await readFile(join(cache, "one.log"), "utf8")).split("\n").length, 201);
  assert.equal((await readFile(join(cache, "two.log"), "utf8")).split("\n").length, 201);
  const shared = (await readFile(join(cache, "shared.log"), "utf8")).trim().split("\n");
  assert.equal(shared.length, 400);
  assert.deepEqual(new Set(shared), new Set(["one", "two"]));
});

test("tmpfs mounts are sized and leave nothing behind", async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts, upper } = await overlayRoot(t, (await sharedBusybox()).dir);
  const out = collect();
  await executor.run(
    "",
    mounts,
    [{ type: "tmpfs", dest: "/tmp/scratch", size: 1 << 20 }],
    shell(
      "grep ' /tmp/scratch ' /proc/mounts; dd if=/dev/zero of=/tmp/scratch/fill bs=1024 count=2048 2>&1 | grep -o 'No space left on device'; true",
    ),
    out.io,
  );
  assert.match(out.stdout(), /^tmpfs \/tmp\/scratch tmpfs rw,nosuid,[^ ]*size=1024k/);
  assert.match(out.stdout(), /No space left on device/);
  assert.deepEqual(await readdir(join(upper, "tmp")), []);
});

test("secrets are files in a tmpfs with their mode and owner, never in the layer or on disk", async (t) => {
  const { executor, root } = await testExecutor(t);
  const { mounts, upper } = await overlayRoot(t, (await sharedBusybox()).dir);
  const secret = `secret-${randomBytes(8).toString("hex")}`;
  const out = collect();
  await executor.run(
    "",
    mounts,
    [
      {
        type: "secret",
        dest: "/run/secrets/token",
        data: Buffer.from(secret),
        uid: 1000,
        gid: 1000,
        mode: 0o400,
      },
    ],
    shell(
      "stat -c '%a %u %g' /run/secrets/token; cat /run/secrets/token; echo; " +
        "grep ' /run/secrets/token ' /proc/self/mountinfo | grep -o ' - tmpfs '; " +
        "cp /run/secrets/token /tmp/copy 2>/dev/null; echo x > /run/secrets/token 2>/dev/null || echo read-only",
      { user: "app" },
    ),
    out.io,
  );
  assert.equal(out.stdout(), `400 1000 1000\n${secret}\n - tmpfs \nread-only\n`);
  // The process itself copied the secret into /tmp: that is its business; our own files are gone.
  assert.deepEqual(await filesContaining(upper, secret), [join(upper, "tmp/copy")]);
  assert.deepEqual(await filesContaining(root, secret), []);
  assert.deepEqual(await readdir(join(root, "bundles")), []);
  // The stub of the secret's mount point is gone; the dirs runc made for it stay empty.
  assert.deepEqual(await readdir(join(upper, "run/secrets")), []);
});

test("an ssh socket is reachable from inside, with the owner and mode asked for", async (t) => {
  const { executor, root } = await testExecutor(t);
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  const agentDir = await tempDir(t);
  const agentPath = join(agentDir, "agent.sock");
  const agent = createServer((c) => c.on("data", (d) => c.end(`pong ${d}`)));
  await new Promise<void>((r) => agent.listen(agentPath, r));
  defer(t, () => new Promise<void>((r) => agent.close(() => r())));
  // busybox has no unix socket client: run the test's own node, with the host's libraries, inside.
  const node = process.execPath;
  const libDir = dirname(await realpath("/lib64/ld-linux-x86-64.so.2"));
  const client =
    "const s = require('net').connect('/run/ssh/agent.sock');" +
    "s.on('data', (d) => process.stdout.write(d)); s.on('error', (e) => { console.log(e.code); });" +
    "s.write('ping');";
  const hostTools: ExecMount[] = [
    { type: "bind", dest: "/host/lib", mounts: bind(libDir, ["rbind", "ro"]), readonly: true },
    { type: "bind", dest: "/host/node", mounts: bind(dirname(node), ["rbind", "ro"]), readonly: true },
  ];
  const args = [
    "/host/lib/ld-linux-x86-64.so.2",
    "--library-path",
    "/host/lib",
    "/host/node/node",
    "-e",
    client,
  ];
  const sshMount: ExecMount = {
    type: "ssh",
    dest: "/run/ssh/agent.sock",
    socketPath: agentPath,
    uid: 1000,
    gid: 1000,
    mode: 0o600,
  };
  const asUser = async (user: string) => {
    const out = collect();
    await executor.run("", mounts, [...hostTools, sshMount], { ...shell(""), args, user }, out.io);
    return out.stdout();
  };
  assert.equal(await asUser("app"), "pong ping");
  // The mode is the proxy socket's: another user may not connect.
  assert.equal(await asUser("nobody"), "EACCES\n");
  // The agent's own socket was not touched.
  assert.equal((await stat(agentPath)).uid, 0);
  assert.deepEqual(await readdir(join(root, "sockets")), []);
});

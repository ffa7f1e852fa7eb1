// The process side of the runc executor with real runc: what runs, as whom, where, and how it fails.
import assert from "node:assert/strict";
import { lstat, mkdir, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, test } from "node:test";
import { cgroupParentDirs } from "./cgroups.ts";
import { readMountinfo } from "./hostmount.ts";
import { ExecError } from "./runc.ts";
import {
  collect,
  mountsUnder,
  overlayRoot,
  readIfExists,
  sharedBusybox,
  shell,
  tempDir,
  testExecutor,
} from "./testutil.ts";

after(async () => (await sharedBusybox()).cleanup());

test("a process's writes land in the overlay's upper dir; nothing is left behind", async (t) => {
  const { executor, root } = await testExecutor(t);
  const { dir: lower } = await sharedBusybox();
  const { mounts, upper } = await overlayRoot(t, lower);
  const out = collect();
  const result = await executor.run(
    "writes",
    mounts,
    [],
    shell("echo built > /built.txt; echo done"),
    out.io,
  );
  assert.deepEqual(result, { exitCode: 0 });
  assert.equal(out.stdout(), "done\n");
  assert.equal(await readFile(join(upper, "built.txt"), "utf8"), "built\n");
  // The generated /etc files were bind mounts: their stubs are gone from the layer.
  assert.deepEqual(await readdir(join(upper, "etc")), []);
  assert.equal(await readIfExists(join(lower, "built.txt")), undefined);
  assert.deepEqual(await mountsUnder(root), []);
  assert.deepEqual(await readdir(join(root, "bundles")), []);
  assert.deepEqual(await readdir(join(root, "runc")), []);
  // runc removed the container's cgroups.
  for (const dir of await cgroupParentDirs(await readMountinfo())) {
    assert.deepEqual(
      (await readdir(dir).catch(() => [])).filter((n) => n.endsWith("-writes")),
      [],
    );
  }
});

test("env, cwd, hostname, extra hosts and secret env reach the process", async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts, upper } = await overlayRoot(t, (await sharedBusybox()).dir);
  const out = collect();
  await executor.run(
    "env",
    mounts,
    [],
    shell('echo "$GREETING $TOKEN"; echo "PATH=$PATH"; pwd; hostname; cat /etc/hosts; touch here', {
      env: ["GREETING=hello"],
      secretEnv: [{ name: "TOKEN", value: "s3cr3t" }],
      cwd: "/work/sub",
      hostname: "builder-1",
      extraHosts: [{ host: "registry.test", ip: "10.9.8.7" }],
    }),
    out.io,
  );
  const lines = out.stdout().split("\n");
  assert.equal(lines[0], "hello s3cr3t");
  assert.equal(lines[1], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  assert.equal(lines[2], "/work/sub");
  assert.equal(lines[3], "builder-1");
  assert.match(out.stdout(), /127\.0\.0\.1\tlocalhost builder-1\n/);
  assert.match(out.stdout(), /10\.9\.8\.7\tregistry\.test\n/);
  // The missing cwd was created in the rootfs and stays (like WORKDIR).
  assert.ok((await stat(join(upper, "work/sub/here"))).isFile());
});

test("users by name and by id, with their groups; a missing cwd belongs to the user", async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts, upper } = await overlayRoot(t, (await sharedBusybox()).dir);
  const ids = async (user: string, cwd = "/") => {
    const out = collect();
    await executor.run(
      "",
      mounts,
      [],
      shell("id -u; id -g; grep ^Groups: /proc/self/status", { user, cwd }),
      out.io,
    );
    return out
      .stdout()
      .trimEnd()
      .split("\n")
      .map((l) => l.trimEnd());
  };
  assert.deepEqual(await ids(""), ["0", "0", "Groups:"]);
  assert.deepEqual(await ids("app", "/home/app/project"), ["1000", "1000", "Groups:\t10"]);
  assert.deepEqual(await ids("app:nogroup"), ["1000", "65534", "Groups:"]);
  assert.deepEqual(await ids("4242:4343"), ["4242", "4343", "Groups:"]);
  const st = await stat(join(upper, "home/app/project"));
  assert.equal(st.uid, 1000);
  assert.equal(st.gid, 1000);
  await assert.rejects(
    executor.run("", mounts, [], shell("true", { user: "ghost" }), {}),
    /unable to find user ghost/,
  );
});

test("a failing process reports the command, exit code and the last lines of output", async (t) => {
  const { executor, root } = await testExecutor(t);
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  const script = "for i in $(seq 1 30); do echo line $i; done; echo oops; exit 3";
  const err = await executor.run("fails", mounts, [], shell(script), {}).then(
    () => assert.fail("expected the run to fail"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ExecError);
  assert.equal(err.exitCode, 3);
  assert.deepEqual(err.args, ["/bin/sh", "-c", script]);
  assert.deepEqual(err.outputTail, [...Array.from({ length: 9 }, (_, i) => `line ${22 + i}`), "oops"]);
  assert.match(
    err.message,
    /^process "\/bin\/sh -c for i in .* exit 3" did not complete successfully: exit code: 3\n/,
  );
  assert.deepEqual(await mountsUnder(root), []);
  // stderr is in the tail too (stdout and stderr are separate pipes: no order between them).
  await assert.rejects(executor.run("", mounts, [], shell("echo bad >&2; exit 4"), {}), {
    name: "ExecError",
    exitCode: 4,
    outputTail: ["bad"],
  });
  // validExitCodes admits other codes.
  assert.deepEqual(await executor.run("", mounts, [], shell("exit 3", { validExitCodes: [0, 3] }), {}), {
    exitCode: 3,
  });
  // A process that cannot start is runc's failure, reported as such.
  const missing = await executor.run("", mounts, [], { ...shell(""), args: ["/no/such/binary"] }, {}).then(
    () => assert.fail("expected the run to fail"),
    (e: unknown) => e,
  );
  assert.ok(missing instanceof ExecError);
  assert.match(
    missing.message,
    /process "\/no\/such\/binary" could not be started: .*no such file or directory/,
  );
  assert.deepEqual(await readdir(join(root, "bundles")), []);
});

test("stdin is fed to the process; output streams as it is written", { timeout: 60_000 }, async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  const out = collect();
  await executor.run(
    "",
    mounts,
    [],
    { ...shell(""), args: ["/bin/cat"] },
    { ...out.io, stdin: Buffer.from("piped\n") },
  );
  assert.equal(out.stdout(), "piped\n");
  // The first line must arrive while the process still runs: it waits for a file that the test
  // creates only on seeing that line (without streaming, this run would never end).
  const shared = await tempDir(t);
  let released = false;
  await executor.run(
    "",
    mounts,
    [
      {
        type: "bind",
        dest: "/shared",
        mounts: [{ type: "bind", source: shared, options: ["rbind"] }],
        readonly: true,
      },
    ],
    shell("echo waiting; while [ ! -e /shared/go ]; do sleep 0.05; done; echo released"),
    {
      stdout: (c) => {
        if (!released && c.toString().includes("waiting")) {
          released = true;
          void writeFile(join(shared, "go"), "");
        }
      },
    },
  );
  assert.ok(released);
});

test("a stdin stream is a conversation: each answer arrives before the next line is sent", {
  timeout: 60_000,
}, async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  const stdin = new PassThrough();
  const answers: string[] = [];
  let pending = "";
  const run = executor.run("", mounts, [], shell('while read -r line; do echo "got $line"; done; echo bye'), {
    stdin,
    stdout: (c) => {
      pending += c.toString();
      while (pending.includes("\n")) {
        const i = pending.indexOf("\n");
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        answers.push(line);
        // The next question depends on the answer: without a live pipe this never ends.
        const n = answers.length;
        if (line === `got ${n}`) {
          if (n < 3) stdin.write(`${n + 1}\n`);
          else stdin.end();
        }
      }
    },
  });
  stdin.write("1\n");
  await run;
  assert.deepEqual(answers, ["got 1", "got 2", "got 3", "bye"]);
});

test("a read-only rootfs cannot be written; mounts stay writable", async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts, upper } = await overlayRoot(t, (await sharedBusybox()).dir);
  const out = collect();
  await executor.run(
    "",
    mounts,
    [{ type: "tmpfs", dest: "/scratch" }],
    shell("touch /nope 2>&1 || echo refused; touch /scratch/ok && echo scratch-ok", { readonlyRootfs: true }),
    out.io,
  );
  assert.match(out.stdout(), /Read-only file system\nrefused\nscratch-ok\n/);
  assert.equal(await readIfExists(join(upper, "nope")), undefined);
  // The /scratch stub was removed from the layer.
  await assert.rejects(lstat(join(upper, "scratch")), { code: "ENOENT" });
});

test("mount-point stubs are removed, recursively when asked, but not when the process used them", async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts, upper } = await overlayRoot(t, (await sharedBusybox()).dir);
  const tmpfs = (dest: string) => ({ type: "tmpfs" as const, dest });
  await executor.run("", mounts, [tmpfs("/a/b/c"), tmpfs("/d/e")], shell("true"), {});
  // Non-recursive (BuildKit's default): the mount points go, the parents runc made stay.
  assert.deepEqual(await readdir(join(upper, "a/b")), []);
  assert.deepEqual(await readdir(join(upper, "d")), []);
  await executor.run("", mounts, [tmpfs("/x/y/z")], shell("true", { removeMountStubsRecursive: true }), {});
  await assert.rejects(lstat(join(upper, "x")), { code: "ENOENT" });
  // A process that writes next to a stub's parent keeps it.
  await executor.run(
    "",
    mounts,
    [tmpfs("/p/q")],
    shell("echo keep > /p/file", { removeMountStubsRecursive: true }),
    {},
  );
  assert.deepEqual((await readdir(join(upper, "p"))).sort(), ["file"]);
});

test("a cwd or mount destination through a symlink out of the rootfs stays inside it", async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts, upper } = await overlayRoot(t, (await sharedBusybox()).dir);
  const outside = await tempDir(t);
  // The lower dir is shared by the tests of this file: plant the links in the upper dir.
  await symlink("/", join(upper, "toroot"));
  await symlink("../../../../../../../../..", join(upper, "up"));
  await symlink(outside, join(upper, "tooutside"));
  const name = `escape-${process.pid}`;
  const out = collect();
  await executor.run(
    "",
    mounts,
    [
      { type: "tmpfs", dest: `/up/tmp/${name}-mnt` },
      { type: "tmpfs", dest: "/tooutside/mnt" },
    ],
    shell("pwd; touch marker", { cwd: `/toroot/tmp/${name}-cwd` }),
    out.io,
  );
  // The host's /tmp and the outside dir are untouched; everything happened in the rootfs.
  await assert.rejects(lstat(join("/tmp", `${name}-cwd`)), { code: "ENOENT" });
  await assert.rejects(lstat(join("/tmp", `${name}-mnt`)), { code: "ENOENT" });
  assert.deepEqual(await readdir(outside), []);
  assert.ok((await stat(join(upper, "tmp", `${name}-cwd`, "marker"))).isFile());
  assert.equal(out.stdout(), `/tmp/${name}-cwd\n`);
  // The same through a bind source's selector: it cannot leave the source.
  const src = await tempDir(t);
  await mkdir(join(src, "inside"));
  await writeFile(join(src, "inside/f"), "in");
  await symlink("/../../../../etc", join(src, "link"));
  await assert.rejects(
    executor.run(
      "",
      mounts,
      [
        {
          type: "bind",
          dest: "/m",
          mounts: [{ type: "bind", source: src, options: ["rbind"] }],
          selector: "link/passwd",
          readonly: true,
        },
      ],
      shell("cat /m"),
      {},
    ),
    /mounting \/link\/passwd of its source at \/m: the path does not exist in the source/,
  );
});

test("a cwd inside a mount is made there, not in the rootfs", async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts, upper } = await overlayRoot(t, (await sharedBusybox()).dir);
  const out = collect();
  await executor.run(
    "",
    mounts,
    [{ type: "tmpfs", dest: "/build" }],
    shell("pwd; touch f", { cwd: "/build/sub" }),
    out.io,
  );
  assert.equal(out.stdout(), "/build/sub\n");
  await assert.rejects(lstat(join(upper, "build")), { code: "ENOENT" });
});

test("ulimits apply; NOFILE defaults to BuildKit's, capped at the daemon's own limit", async (t) => {
  const { executor } = await testExecutor(t);
  const { mounts } = await overlayRoot(t, (await sharedBusybox()).dir);
  const limits = await readFile("/proc/self/limits", "utf8");
  const hard = /^Max open files\s+\S+\s+(\S+)/m.exec(limits)![1]!;
  const expected = hard === "unlimited" ? 1048576 : Math.min(1048576, Number(hard));
  const out = collect();
  await executor.run(
    "",
    mounts,
    [],
    shell("ulimit -n; ulimit -u; ulimit -Hu", { ulimits: [{ name: "nproc", soft: 100, hard: 200 }] }),
    out.io,
  );
  assert.deepEqual(out.stdout().trim().split("\n"), [String(expected), "100", "200"]);
  await assert.rejects(
    executor.run("", mounts, [], shell("true", { ulimits: [{ name: "bogus", soft: 1, hard: 1 }] }), {}),
    /invalid ulimit bogus/,
  );
});

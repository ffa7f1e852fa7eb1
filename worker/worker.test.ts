// The worker end to end through the solver, on both workers: real runc containers on overlay
// snapshots (oci), and real containerd tasks on containerd's snapshots (containerd).
import assert from "node:assert/strict";
import { readFile, readlink, stat, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { test } from "node:test";
import { copy, diff, merge, mkdir as mkdirAction, mkfile, scratch, symlink } from "../llb/index.ts";
import { mountsUsing } from "../snapshot/mount.ts";
import { SolveError } from "../solver/solver.ts";
import { forEachWorker } from "./testing.ts";

const sh = (script: string) => ({ args: ["/bin/sh", "-c", script] });

forEachWorker((open) => {
  test("exec writes into the root; the result holds exactly that", async (t) => {
    const w = await open(t);
    const base = w.stateOf(await w.busybox());
    const r = await w.build(base.run(sh("echo hello > /hello; mkdir -p /a/b && echo x > /a/b/c")).root());
    await r.read(async (dir) => {
      assert.equal(await readFile(join(dir, "hello"), "utf8"), "hello\n");
      assert.equal(await readFile(join(dir, "a/b/c"), "utf8"), "x\n");
      assert.ok((await stat(join(dir, "bin/busybox"))).isFile(), "the base is still there");
    });
    const logs = Buffer.concat(r.progress.logs.map((l) => l.data)).toString();
    assert.equal(logs, "");
  });

  test("env, cwd (created), user by name, hostname", async (t) => {
    const w = await open(t);
    const base = w.stateOf(await w.busybox());
    const r = await w.build(
      base
        .addEnv("GREETING", "hi")
        .dir("/work/dir")
        .user("app")
        .run({
          ...sh('echo "$GREETING $(id -u):$(id -g) $(pwd) $(hostname)" > /tmp/out; cp /tmp/out ./out'),
          hostname: "builder",
        })
        .root(),
    );
    await r.read(async (dir) => {
      assert.equal(await readFile(join(dir, "work/dir/out"), "utf8"), "hi 1000:1000 /work/dir builder\n");
      assert.equal((await stat(join(dir, "work/dir/out"))).uid, 1000);
    });
  });

  test("mounts: read-only input with selector, output from scratch, tmpfs, writable discarded", async (t) => {
    const w = await open(t);
    const base = w.stateOf(await w.busybox());
    const src = w.stateOf(
      await w.refFrom(async (d) => {
        await mkdir(join(d, "sub"));
        await writeFile(join(d, "sub/f"), "from input\n");
      }),
    );
    const e = base.run({
      ...sh(
        "cat /in/f > /out/copied; echo tmp > /t/x; cat /t/x >> /out/copied; touch /in/readonly 2>/dev/null || echo ro >> /out/copied",
      ),
      mounts: [
        { dest: "/in", from: src, selector: "/sub", readonly: true },
        { dest: "/out" },
        { type: "tmpfs", dest: "/t" },
      ],
    });
    const r = await w.build(e.getMount("/out"));
    await r.read(async (dir) =>
      assert.equal(await readFile(join(dir, "copied"), "utf8"), "from input\ntmp\nro\n"),
    );
    const root = await w.build(e.root());
    await root.read(async (dir) => {
      await assert.rejects(stat(join(dir, "t/x")), /ENOENT/, "tmpfs content is not in the root");
    });
  });

  test("a cache mount persists across builds and is shared", async (t) => {
    const w = await open(t);
    const base = w.stateOf(await w.busybox());
    const step = (n: string) =>
      base
        .run({
          ...sh(`echo ${n} >> /cache/log; cat /cache/log > /result`),
          mounts: [{ type: "cache", dest: "/cache", id: "c1" }],
        })
        .root();
    await w.build(step("one"));
    const r = await w.build(step("two"));
    await r.read(async (dir) => assert.equal(await readFile(join(dir, "result"), "utf8"), "one\ntwo\n"));
    const du = await w.cache.du();
    assert.ok(
      du.some((u) => u.recordType === "exec.cachemount"),
      "the cache mount is a record of its own type",
    );
  });

  test("a secret is readable in the step and lands nowhere", async (t) => {
    const w = await open(t);
    const base = w.stateOf(await w.busybox());
    const session = {
      id: "s1",
      getSecret: async (id: string) =>
        id === "token" ? new TextEncoder().encode("s3cr3t-value") : undefined,
    };
    const r = await w.build(
      base
        .run({
          // The expected value is spelled in two parts so the literal secret is not in the command.
          ...sh(
            'V="s3cr3t-$(echo dmFsdWU= | base64 -d)"; test "$(cat /run/secrets/token)" = "$V" && test "$TOKEN" = "$V" && echo ok > /ok',
          ),
          mounts: [{ type: "secret", dest: "/run/secrets/token", id: "token" }],
          secretEnv: [{ id: "token", name: "TOKEN" }],
        })
        .root(),
      { session },
    );
    await r.read(async (dir) => {
      assert.equal(await readFile(join(dir, "ok"), "utf8"), "ok\n");
      await assert.rejects(stat(join(dir, "run/secrets/token")), /ENOENT/);
    });
    const { execFile } = await import("node:child_process");
    const found = await new Promise<string>((res) =>
      execFile("grep", ["-rl", "s3cr3t-value", w.root], (_e, out) => res(out)),
    );
    assert.equal(found, "", "the secret is in no file under the daemon root");
    await assert.rejects(
      w.build(base.run({ ...sh("true"), mounts: [{ type: "secret", dest: "/s", id: "missing" }] }).root(), {
        session,
      }),
      /secret "missing" not found/,
    );
  });

  test("file ops: mkdir, mkfile, copy with owner by name, symlink, rm", async (t) => {
    const w = await open(t);
    const bb = w.stateOf(await w.busybox());
    const s = bb.file(
      mkdirAction("/data", 0o750, { owner: { user: "app", group: "app" } })
        .mkfile("/data/f", 0o640, "content\n")
        .copy(bb, "/etc/passwd", "/data/passwd", { owner: { user: "app" } })
        .symlink("/data/f", "/data/link")
        .rm("/etc/group"),
    );
    const r = await w.build(s);
    await r.read(async (dir) => {
      const d = await stat(join(dir, "data"));
      assert.equal(d.mode & 0o777, 0o750);
      assert.equal(d.uid, 1000);
      assert.equal(await readFile(join(dir, "data/f"), "utf8"), "content\n");
      assert.equal((await stat(join(dir, "data/passwd"))).uid, 1000);
      assert.equal(await readlink(join(dir, "data/link")), "/data/f");
      await assert.rejects(stat(join(dir, "etc/group")), /ENOENT/);
    });
  });

  test("a file op never writes through a symlink out of its root", async (t) => {
    const w = await open(t);
    const evil = w.stateOf(
      await w.refFrom(async (d) => {
        const { symlink: sl } = await import("node:fs/promises");
        await sl("/tmp", join(d, "escape"));
        await mkdir(join(d, "tmp"));
      }),
    );
    const marker = `buildd-escape-${process.pid}-${Date.now()}`;
    const r = await w.build(evil.file(mkfile(`/escape/${marker}`, 0o644, "pwned")));
    await assert.rejects(stat(join("/tmp", marker)), /ENOENT/, "nothing was written on the host");
    await r.read(async (dir) => assert.equal(await readFile(join(dir, "tmp", marker), "utf8"), "pwned"));
  });

  test("merge and diff", async (t) => {
    const w = await open(t);
    const bb = w.stateOf(await w.busybox());
    const a = bb.run(sh("echo a > /a; rm /bin/vi")).root();
    const b = bb.run(sh("echo b > /b")).root();
    const r = await w.build(merge([bb, diff(bb, a), diff(bb, b)]));
    await r.read(async (dir) => {
      assert.equal(await readFile(join(dir, "a"), "utf8"), "a\n");
      assert.equal(await readFile(join(dir, "b"), "utf8"), "b\n");
      await assert.rejects(stat(join(dir, "bin/vi")), /ENOENT/, "a deletion in a diff applies in the merge");
    });
    const d = await w.build(diff(bb, b));
    await d.read(async (dir) => {
      assert.equal(await readFile(join(dir, "b"), "utf8"), "b\n");
      await assert.rejects(stat(join(dir, "bin")), /ENOENT/, "the diff holds only the change");
    });
  });

  test("a failing step names its command, exit code and output", async (t) => {
    const w = await open(t);
    const bb = w.stateOf(await w.busybox());
    const err = await w.build(bb.run(sh("echo first; echo oops >&2; exit 3")).root()).catch((e) => e);
    assert.ok(err instanceof SolveError, String(err));
    assert.match(
      err.message,
      /process "\/bin\/sh -c echo first; echo oops >&2; exit 3" did not complete successfully: exit code: 3/,
    );
    // stdout and stderr are separate pipes: their relative order is not guaranteed.
    assert.deepEqual([...err.logTail].sort(), ["first", "oops"]);
  });

  test("a second build is cached; a read-only input counts by content", async (t) => {
    const w = await open(t);
    const bb = w.stateOf(await w.busybox());
    const step = bb.run(sh("date +%s%N > /stamp")).root();
    const first = await w.build(step);
    const second = await w.build(step);
    assert.equal(first.ref?.id, second.ref?.id);
    assert.ok(second.progress.vertexes.some((v) => v.cached && v.name.includes("date")));
  });

  test("cancelling a build kills the container and leaves no mount behind", async (t) => {
    const w = await open(t);
    const bb = w.stateOf(await w.busybox());
    const ac = new AbortController();
    const p = w.build(bb.run(sh("sleep 60")).root(), { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 1500));
    const t0 = Date.now();
    ac.abort(new Error("cancelled by the test"));
    await assert.rejects(p, /cancelled by the test/);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(Date.now() - t0 < 10_000);
    const mounted = (await Promise.all(w.mountRoots.map((d) => mountsUsing(d)))).flat();
    assert.deepEqual(mounted, [], "nothing the build used is still mounted");
  });

  test("a streamed stdin is a live conversation, as a gateway frontend's is", async (t) => {
    const w = await open(t);
    const rootfs = await w.cache.newMutable(await w.busybox(), { description: "stdin test" });
    const stdin = new PassThrough();
    const answers: string[] = [];
    let pending = "";
    const run = w.worker.executor.run(
      "",
      await rootfs.mount(),
      [],
      {
        args: ["/bin/sh", "-c", 'while read -r line; do echo "got $line"; done; echo bye'],
        env: ["PATH=/bin"],
        cwd: "/",
        network: "none",
        security: "sandbox",
      },
      {
        stdin,
        stdout: (c) => {
          pending += c.toString();
          for (let i = pending.indexOf("\n"); i >= 0; i = pending.indexOf("\n")) {
            const line = pending.slice(0, i);
            pending = pending.slice(i + 1);
            answers.push(line);
            // The next line depends on the answer: without a live pipe this never ends.
            const n = answers.length;
            if (line === `got ${n}`) {
              if (n < 3) stdin.write(`${n + 1}\n`);
              else stdin.end();
            }
          }
        },
      },
    );
    stdin.write("1\n");
    try {
      await run;
    } finally {
      await rootfs.release();
    }
    assert.deepEqual(answers, ["got 1", "got 2", "got 3", "bye"]);
  });

  test("network modes: none has only loopback, host sees the host's interfaces", async (t) => {
    const w = await open(t);
    const bb = w.stateOf(await w.busybox());
    const list = "ls /sys/class/net | sort | tr '\\n' ' ' > /ifaces";
    const none = await w.build(bb.run({ ...sh(list), network: "none" }).root());
    await none.read(async (dir) => assert.equal(await readFile(join(dir, "ifaces"), "utf8"), "lo "));
    const host = await w.build(bb.run({ ...sh(list), network: "host" }).root());
    const { readdir } = await import("node:fs/promises");
    const hostIfaces = `${(await readdir("/sys/class/net")).sort().join(" ")} `;
    await host.read(async (dir) => assert.equal(await readFile(join(dir, "ifaces"), "utf8"), hostIfaces));
  });

  test("security=insecure is refused unless the daemon allows it, then gets every capability", async (t) => {
    const w = await open(t);
    const bb = w.stateOf(await w.busybox());
    const step = bb.run({ ...sh("grep CapEff /proc/self/status > /caps"), security: "insecure" }).root();
    await assert.rejects(w.build(step), /security=insecure is not allowed by this daemon/);
    const allowed = await open(t, { allowInsecure: true });
    const abb = allowed.stateOf(await allowed.busybox());
    const r = await allowed.build(
      abb.run({ ...sh("grep CapEff /proc/self/status > /caps"), security: "insecure" }).root(),
    );
    const sandboxed = await allowed.build(abb.run(sh("grep CapEff /proc/self/status > /caps")).root());
    const caps = (res: typeof r) => res.read((dir) => readFile(join(dir, "caps"), "utf8"));
    assert.notEqual(await caps(r), await caps(sandboxed), "insecure has more capabilities than the sandbox");
  });

  test("a chain deeper than a page of overlay options runs as root and as a mount", async (t) => {
    const w = await open(t);
    let s = w.stateOf(await w.busybox());
    // 50 layers: with containerd's long snapshot paths their lowerdir list exceeds what mount(2)
    // takes in one page (the runc worker's shorter paths stay below it).
    for (let i = 0; i < 50; i++) s = s.file(mkfile(`/layer-${i}`, 0o644, `${i}\n`));
    const r = await w.build(
      s
        .run({
          ...sh("cat /layer-0 /layer-49 /deep/layer-42 > /seen"),
          mounts: [{ dest: "/deep", from: s, readonly: true }],
        })
        .root(),
    );
    await r.read(async (dir) => assert.equal(await readFile(join(dir, "seen"), "utf8"), "0\n49\n42\n"));
  });

  test("a build op solves a definition written by an earlier step", async (t) => {
    const w = await open(t);
    const inner = scratch().file(mkfile("/made-by-inner", 0o644, "nested\n"));
    const def = inner.marshal().bytes;
    const holder = scratch().file(mkfile("/buildkit.llb.definition", 0o644, def));
    const { build } = await import("../llb/index.ts");
    const r = await w.build(build(holder));
    await r.read(async (dir) => assert.equal(await readFile(join(dir, "made-by-inner"), "utf8"), "nested\n"));
    void copy;
    void symlink;
  });
});

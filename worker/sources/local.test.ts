// local:// sources end to end: a client session sharing a directory over a real unix socket, the
// daemon's SessionManager, and the real worker and solver (runc, snapshots) building from it.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { knownFileHash } from "../../cache/contenthash/checksum.ts";
import { copy, local } from "../../llb/index.ts";
import type { SolveStatus } from "../../progress/types.ts";
import { fileSyncRoutes } from "../../session/filesync/send.ts";
import { startSessionDaemon } from "../../session/filesync/testing.ts";
import type { SessionCaller } from "../../session/manager.ts";
import type { Session } from "../../session/session.ts";
import { forEachWorker } from "../testing.ts";
import type { SessionAccess } from "../types.ts";

const sh = (script: string) => ({ args: ["/bin/sh", "-c", script] });

async function tempDir(t: { after: (fn: () => unknown) => void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "buildd-local-"));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** What the worker gets from the daemon for a build's session. */
function access(caller: SessionCaller, others?: (id: string) => Promise<SessionCaller>): SessionAccess {
  return {
    id: caller.id,
    getSecret: async () => undefined,
    caller,
    getSession: others ? (id) => others(id) : undefined,
  };
}

/** The final "transferring NAME:" counter of a build. */
function transferred(progress: SolveStatus, name: string): number[] {
  return progress.statuses
    .filter((s) => s.name === `transferring ${name}:` && s.completed)
    .map((s) => s.current);
}

forEachWorker((open) => {
  test("a build reads a local dir through the session; an unrelated excluded change stays cached", async (t) => {
    const w = await open(t);
    const d = await startSessionDaemon(t);
    const src = await tempDir(t);
    await mkdir(join(src, "app"));
    await writeFile(join(src, "app/message"), "hello from the client\n");
    await writeFile(join(src, "build.log"), "noise\n");
    const { caller } = await d.open(fileSyncRoutes({ ctx: src }), { sharedKey: "project-1" });
    const bb = w.stateOf(await w.busybox());
    const ctx = local("ctx", { exclude: ["*.log"] });
    const step = bb
      .file(copy(ctx, "/", "/copied/"))
      .run({
        ...sh("cat /copied/app/message > /out; ls /copied > /list; cat /mounted/app/message > /out2"),
        mounts: [{ dest: "/mounted", from: ctx, readonly: true }],
      })
      .root();

    const first = await w.build(step, { session: access(caller) });
    await first.read(async (dir) => {
      assert.equal(await readFile(join(dir, "out"), "utf8"), "hello from the client\n");
      assert.equal(await readFile(join(dir, "out2"), "utf8"), "hello from the client\n");
      assert.equal(await readFile(join(dir, "list"), "utf8"), "app\n", "excluded files are not there");
    });
    assert.deepEqual(transferred(first.progress, "ctx"), [22]);

    // An excluded file changes: nothing is transferred, every step is cached.
    await writeFile(join(src, "build.log"), "much more noise than before\n");
    const second = await w.build(step, { session: access(caller) });
    assert.equal(second.ref?.id, first.ref?.id);
    assert.deepEqual(transferred(second.progress, "ctx"), [0]);
    const steps = second.progress.vertexes.filter(
      (v) => v.name.startsWith("exec ") || v.name.startsWith("file "),
    );
    assert.ok(steps.length >= 2 && steps.every((v) => v.cached), "the copy and run steps are cached");

    // A selected file changes: only it comes again, and the steps see it.
    await writeFile(join(src, "app/message"), "changed\n");
    const third = await w.build(step, { session: access(caller) });
    assert.notEqual(third.ref?.id, first.ref?.id);
    assert.deepEqual(transferred(third.progress, "ctx"), [8]);
    await third.read(async (dir) => assert.equal(await readFile(join(dir, "out"), "utf8"), "changed\n"));

    const copies = (await w.cache.du()).filter((u) => u.recordType === "source.local");
    assert.equal(copies.length, 1, "one persistent copy per shared key and name");
  });

  test("an unchanged local dir reuses the snapshot made last time, even without the solver's cache", async (t) => {
    const w = await open(t);
    const d = await startSessionDaemon(t);
    const src = await tempDir(t);
    await writeFile(join(src, "f"), "content\n");
    const { caller } = await d.open(fileSyncRoutes({ ctx: src }));
    const a = await w.build(local("ctx"), { session: access(caller), noCache: true });
    const b = await w.build(local("ctx"), { session: access(caller), noCache: true });
    assert.equal(b.ref?.id, a.ref?.id, "the same content gives the same snapshot, not a new copy");
    assert.deepEqual(transferred(b.progress, "ctx"), [0]);
    await writeFile(join(src, "f"), "other\n");
    const c = await w.build(local("ctx"), { session: access(caller), noCache: true });
    assert.notEqual(c.ref?.id, a.ref?.id);
    await c.read(async (dir) => assert.equal(await readFile(join(dir, "f"), "utf8"), "other\n"));
    await a.read(async (dir) => assert.equal(await readFile(join(dir, "f"), "utf8"), "content\n"));
  });

  test("a synced file's hash carries over to the snapshot, so a COPY's checksum need not read it", async (t) => {
    const w = await open(t);
    const d = await startSessionDaemon(t);
    const src = await tempDir(t);
    const content = randomBytes(4096);
    await writeFile(join(src, "f"), content);
    const { caller } = await d.open(fileSyncRoutes({ ctx: src }), { sharedKey: "hashes" });
    const r = await w.build(local("ctx"), { session: access(caller), noCache: true });
    await r.read(async (dir) => {
      const st = await lstat(join(dir, "f"), { bigint: true });
      assert.equal(knownFileHash(st), `sha256:${createHash("sha256").update(content).digest("hex")}`);
    });
  });

  test("a client that disconnects mid-sync fails the build clearly; the next build recovers", async (t) => {
    const w = await open(t);
    const d = await startSessionDaemon(t);
    const src = await tempDir(t);
    for (let i = 0; i < 6; i++) await writeFile(join(src, `blob${i}`), randomBytes(2 << 20));
    let session: Session | undefined;
    const dying = await d.open(
      fileSyncRoutes({ ctx: src }, { onProgress: (p) => (p.bytes > 3 << 20 ? session?.close() : undefined) }),
      { sharedKey: "k" },
    );
    session = dying.session;
    await assert.rejects(w.build(local("ctx"), { session: access(dying.caller) }), (err: Error) => {
      assert.match(err.message, /syncing local directory "ctx" from session \w+: .*closed/);
      return true;
    });
    const healthy = await d.open(fileSyncRoutes({ ctx: src }), { sharedKey: "k" });
    const r = await w.build(local("ctx"), { session: access(healthy.caller) });
    await r.read(async (dir) => {
      for (let i = 0; i < 6; i++) {
        assert.deepEqual(await readFile(join(dir, `blob${i}`)), await readFile(join(src, `blob${i}`)));
      }
    });
  });

  test("two sessions sharing one copy get their own content; a named session is looked up", async (t) => {
    const w = await open(t);
    const d = await startSessionDaemon(t);
    const srcA = await tempDir(t);
    const srcB = await tempDir(t);
    await writeFile(join(srcA, "who"), "a\n");
    await writeFile(join(srcB, "who"), "b\n");
    // Files of the same size and time are taken as the same (the sync compares metadata, as
    // BuildKit's does): make them differ, as two real checkouts would.
    await utimes(join(srcA, "who"), 1000, 1000);
    await utimes(join(srcB, "who"), 2000, 2000);
    const a = await d.open(fileSyncRoutes({ ctx: srcA }), { sharedKey: "same" });
    const b = await d.open(fileSyncRoutes({ ctx: srcB }), { sharedKey: "same" });
    const [ra, rb] = await Promise.all([
      w.build(local("ctx"), { session: access(a.caller) }),
      w.build(local("ctx"), { session: access(b.caller) }),
    ]);
    await ra.read(async (dir) => assert.equal(await readFile(join(dir, "who"), "utf8"), "a\n"));
    await rb.read(async (dir) => assert.equal(await readFile(join(dir, "who"), "utf8"), "b\n"));

    // local.session: the build's own session is a, the source names b.
    const named = await w.build(local("ctx", { sessionId: b.caller.id }), {
      session: access(a.caller, (id) => d.manager.get(id)),
    });
    await named.read(async (dir) => assert.equal(await readFile(join(dir, "who"), "utf8"), "b\n"));

    await assert.rejects(
      w.build(local("ctx"), { session: { id: "s", getSecret: async () => undefined } }),
      /local source "ctx" needs the client's session/,
    );
    await assert.rejects(
      w.build(local("nope"), { session: access(a.caller) }),
      /no access allowed to dir "nope"/,
    );
  });
});

// File sync end to end: the client's fileSyncRoutes and the daemon's syncDir over a real session
// (Control.Session on a unix socket), checked against the files on both sides and against the
// worker's content checksum of the result.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import {
  chmod,
  lchown,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { contentChecksum, FileHashCache } from "../../cache/contenthash/checksum.ts";
import { makeSpecialFile } from "../../fsutil/special.ts";
import { walk } from "../../fsutil/walk.ts";
import type { StatSchema } from "../../proto/gen/fsutil/types/stat_pb.ts";
import { type Packet, type PacketSchema, Packet_PacketType } from "../../proto/gen/fsutil/types/wire_pb.ts";
import { FileSync } from "../../proto/gen/moby/filesync/v1/filesync_pb.ts";
import type { SessionCaller } from "../manager.ts";
import type { Session } from "../session.ts";
import { type SyncDirOptions, type SyncResult, syncDir } from "./receive.ts";
import { fileSyncRoutes } from "./send.ts";
import { startSessionDaemon } from "./testing.ts";
import {
  comparePaths,
  decodeFileSyncHeaders,
  encodeFileSyncHeaders,
  GO_MODE_DEVICE,
  GO_MODE_DIR,
  GO_MODE_SYMLINK,
  goModeFromPosix,
  posixPermFromGo,
  queryEscape,
  queryUnescape,
} from "./wire.ts";

type PacketInit = MessageInitShape<typeof PacketSchema>;
type StatInit = MessageInitShape<typeof StatSchema>;
type Hooks = { after: (fn: () => unknown) => void };

async function tempDir(t: Hooks, prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `buildd-fs-${prefix}-`));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** Syncs and checks that the checksum computed on the way equals the one read back from disk. */
async function sync(caller: SessionCaller, opts: SyncDirOptions): Promise<SyncResult> {
  const r = await syncDir(caller, opts);
  assert.equal(
    r.checksum,
    await contentChecksum(opts.target, { path: "/" }, new FileHashCache()),
    "the checksum computed as files arrived is the content checksum of the result",
  );
  return r;
}

interface EntryInfo {
  type: string;
  perm: number;
  owner: string;
  size: number;
  content: string;
  mtimeUs: bigint;
}

/** Everything a sync should carry over, per path (times to the microsecond: utimes takes doubles). */
async function snapshotTree(root: string): Promise<Map<string, EntryInfo>> {
  const out = new Map<string, EntryInfo>();
  for await (const e of walk(root)) {
    const st = e.stat;
    const type = st.isDirectory() ? "dir" : st.isSymbolicLink() ? "link" : st.isFIFO() ? "fifo" : "file";
    const content =
      type === "file"
        ? createHash("sha256")
            .update(await readFile(join(root, e.path)))
            .digest("hex")
        : type === "link"
          ? (e.linkTarget ?? "")
          : "";
    out.set(e.path, {
      type,
      perm: Number(st.mode & 0o7777n),
      owner: `${st.uid}:${st.gid}`,
      size: type === "file" ? Number(st.size) : 0,
      content,
      mtimeUs: (st.mtimeNs + 500n) / 1000n,
    });
  }
  return out;
}

async function assertSameTree(src: string, dst: string, opts: { owners?: boolean } = {}): Promise<void> {
  const a = await snapshotTree(src);
  const b = await snapshotTree(dst);
  assert.deepEqual([...b.keys()], [...a.keys()], "the same paths");
  for (const [p, want] of a) {
    const got = b.get(p)!;
    const diff = got.mtimeUs - want.mtimeUs;
    assert.ok(diff >= -1n && diff <= 1n, `${p}: mtime ${got.mtimeUs} vs ${want.mtimeUs}`);
    assert.deepEqual(
      { ...got, mtimeUs: 0n, owner: opts.owners ? got.owner : "" },
      { ...want, mtimeUs: 0n, owner: opts.owners ? want.owner : "" },
      p,
    );
  }
}

/** What a full transfer of `root` carries: non-empty regular files, once per inode. */
async function dataToSend(root: string): Promise<{ files: number; bytes: number }> {
  const inodes = new Set<bigint>();
  let files = 0;
  let bytes = 0;
  for await (const e of walk(root)) {
    if (!e.stat.isFile() || e.stat.size === 0n || inodes.has(e.stat.ino)) continue;
    inodes.add(e.stat.ino);
    files++;
    bytes += Number(e.stat.size);
  }
  return { files, bytes };
}

/** A tree with every kind of entry a context holds. */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, "src/pkg/deep"), { recursive: true });
  await mkdir(join(root, "empty-dir"));
  await mkdir(join(root, "private"), 0o750);
  await chmod(join(root, "private"), 0o750);
  await writeFile(join(root, "README.md"), "# readme\n");
  await writeFile(join(root, "src/main.go"), "package main\n");
  await writeFile(join(root, "src/pkg/lib.go"), "package pkg\n");
  await writeFile(join(root, "src/pkg/deep/data.bin"), randomBytes(3 << 20)); // several chunks and flushes
  await writeFile(join(root, "src/pkg/deep/a.b"), "a.b sorts after the a/ directory\n");
  await writeFile(join(root, "empty"), "");
  await writeFile(join(root, "private/secret"), "s\n");
  await chmod(join(root, "private/secret"), 0o600);
  await writeFile(join(root, "tool"), "#!/bin/sh\n");
  await chmod(join(root, "tool"), 0o4755);
  await lchown(join(root, "private/secret"), 1000, 1001);
  await symlink("src/main.go", join(root, "rel-link"));
  await symlink("/etc/passwd", join(root, "abs-link"));
  await symlink("does/not/exist", join(root, "dangling"));
  await lchown(join(root, "dangling"), 1002, 1002);
  await makeSpecialFile(join(root, "fifo"), "fifo");
  await chmod(join(root, "fifo"), 0o640);
  await writeFile(join(root, "src/hard-1"), "shared inode\n");
  await link(join(root, "src/hard-1"), join(root, "src/hard-2"));
  await writeFile(join(root, "ünïcode name.txt"), "utf-8\n");
  // Times in the past and at odd nanoseconds, so that copying them is visible.
  await utimes(join(root, "README.md"), 1_000_000, 1_000_000.123456);
  await utimes(join(root, "src/pkg"), 2_000_000, 2_000_000.5);
}

test("first sync copies everything; an unchanged tree then transfers no file bytes", async (t) => {
  const d = await startSessionDaemon(t);
  const src = await tempDir(t, "src");
  const dst = await tempDir(t, "dst");
  await makeTree(src);
  const { caller } = await d.open(fileSyncRoutes({ ctx: { path: src, keepOwnership: true } }));

  const first = await sync(caller, { name: "ctx", target: dst });
  await assertSameTree(src, dst, { owners: true });
  // Every non-empty regular file once; hard-link partners and empty files need no data.
  assert.deepEqual({ files: first.filesRequested, bytes: first.bytesReceived }, await dataToSend(src));
  assert.equal(first.filesRequested, 9);
  const [h1, h2] = await Promise.all([lstat(join(dst, "src/hard-1")), lstat(join(dst, "src/hard-2"))]);
  assert.equal(h1.ino, h2.ino, "hard links stay hard links");
  assert.equal(await readlink(join(dst, "abs-link")), "/etc/passwd", "links are copied, not followed");

  const again = await sync(caller, { name: "ctx", target: dst, previous: first.manifest });
  assert.equal(again.filesRequested, 0);
  assert.equal(again.bytesReceived, 0);
  assert.equal(again.checksum, first.checksum);
  assert.equal(again.entries, first.entries);
  await assertSameTree(src, dst, { owners: true });

  // Without the manifest nothing on disk is trusted: everything comes again, to the same result.
  const fresh = await sync(caller, { name: "ctx", target: dst });
  assert.equal(fresh.filesRequested, 9);
  assert.equal(fresh.checksum, first.checksum);
});

test("owners are sent as 0:0 unless the client keeps them, as BuildKit's client does", async (t) => {
  const d = await startSessionDaemon(t);
  const src = await tempDir(t, "src");
  const dst = await tempDir(t, "dst");
  await writeFile(join(src, "f"), "x");
  await lchown(join(src, "f"), 1234, 5678);
  const { caller } = await d.open(fileSyncRoutes({ ctx: src }));
  await sync(caller, { name: "ctx", target: dst });
  const st = await lstat(join(dst, "f"));
  assert.deepEqual([st.uid, st.gid], [0, 0]);
});

test("changes: added, modified, deleted, replaced, mode-only and mtime-only", async (t) => {
  const d = await startSessionDaemon(t);
  const src = await tempDir(t, "src");
  const dst = await tempDir(t, "dst");
  await makeTree(src);
  const { caller } = await d.open(fileSyncRoutes({ ctx: { path: src, keepOwnership: true } }));
  let last = await sync(caller, { name: "ctx", target: dst });
  const step = async (change: () => Promise<void>, want: { files: number; bytes: number }) => {
    await change();
    const r = await sync(caller, { name: "ctx", target: dst, previous: last.manifest });
    await assertSameTree(src, dst, { owners: true });
    assert.deepEqual({ files: r.filesRequested, bytes: r.bytesReceived }, want);
    const changed = r.checksum !== last.checksum;
    last = r;
    return changed;
  };

  // Content: a modified file (same size), a new file, a new directory with a file.
  assert.ok(
    await step(
      async () => {
        await writeFile(join(src, "src/main.go"), "package MAIN\n");
        await writeFile(join(src, "NEW"), "new\n");
        await mkdir(join(src, "newdir/sub"), { recursive: true });
        await writeFile(join(src, "newdir/sub/f"), "f\n");
      },
      { files: 3, bytes: 13 + 4 + 2 },
    ),
  );
  // Deletions: a file, a directory with contents, an empty directory.
  assert.ok(
    await step(
      async () => {
        await rm(join(src, "README.md"));
        await rm(join(src, "newdir"), { recursive: true });
        await rm(join(src, "empty-dir"), { recursive: true });
      },
      { files: 0, bytes: 0 },
    ),
  );
  // Replacements: a file by a directory, a directory by a file, a file by a symlink, a link's target.
  assert.ok(
    await step(
      async () => {
        await rm(join(src, "tool"));
        await mkdir(join(src, "tool"));
        await writeFile(join(src, "tool/inside"), "in\n");
        await rm(join(src, "private"), { recursive: true });
        await writeFile(join(src, "private"), "now a file\n");
        await rm(join(src, "NEW"));
        await symlink("README.md", join(src, "NEW"));
        await rm(join(src, "rel-link"));
        await symlink("src/pkg/lib.go", join(src, "rel-link"));
      },
      { files: 2, bytes: 3 + 11 },
    ),
  );
  // Mode only: no data, but the checksum changes.
  assert.ok(await step(() => chmod(join(src, "src/pkg/lib.go"), 0o700), { files: 0, bytes: 0 }));
  // Owner only: no data either.
  assert.ok(await step(() => lchown(join(src, "src/pkg/lib.go"), 7, 8), { files: 0, bytes: 0 }));
  // Time only: the file may have changed, so it comes again; the content checksum stays.
  assert.ok(
    !(await step(() => utimes(join(src, "src/pkg/deep/data.bin"), 3_000_000, 3_000_000), {
      files: 1,
      bytes: 3 << 20,
    })),
  );
  // A hard link broken up: the former partner keeps its content, both are plain files.
  assert.ok(
    !(await step(
      async () => {
        await rm(join(src, "src/hard-2"));
        await writeFile(join(src, "src/hard-2"), "shared inode\n");
        await utimes(join(src, "src/hard-2"), 4_000_000, 4_000_000);
        await utimes(join(src, "src/hard-1"), 4_000_000, 4_000_000);
      },
      { files: 2, bytes: 26 },
    )),
  );
  const [h1, h2] = await Promise.all([lstat(join(dst, "src/hard-1")), lstat(join(dst, "src/hard-2"))]);
  assert.notEqual(h1.ino, h2.ino);
  // And nothing more to do afterwards.
  await step(async () => {}, { files: 0, bytes: 0 });
});

test("include and exclude patterns with exceptions, and followPaths, are applied by the client", async (t) => {
  const d = await startSessionDaemon(t);
  const src = await tempDir(t, "src");
  const dst = await tempDir(t, "dst");
  await mkdir(join(src, "app/logs"), { recursive: true });
  await mkdir(join(src, "docs"));
  await mkdir(join(src, "node_modules/x"), { recursive: true });
  await writeFile(join(src, "app/main.js"), "main\n");
  await writeFile(join(src, "app/logs/a.log"), "noise\n");
  await writeFile(join(src, "app/logs/keep.log"), "keep\n");
  await writeFile(join(src, "docs/guide.md"), "guide\n");
  await writeFile(join(src, "node_modules/x/index.js"), "x\n");
  await writeFile(join(src, "Dockerfile"), "FROM scratch\n");
  await symlink("app", join(src, "current"));
  const { caller } = await d.open(fileSyncRoutes({ ctx: src }));
  const names = async () => {
    const out: string[] = [];
    for await (const e of walk(dst)) out.push(e.path);
    return out;
  };

  const opts = {
    name: "ctx",
    target: dst,
    include: ["app", "Dockerfile"],
    exclude: ["**/*.log", "!app/logs/keep.log"],
  };
  const first = await sync(caller, opts);
  assert.deepEqual(await names(), ["Dockerfile", "app", "app/logs", "app/logs/keep.log", "app/main.js"]);
  // Changing what is excluded changes nothing.
  await writeFile(join(src, "app/logs/a.log"), "more noise, another size\n");
  await writeFile(join(src, "node_modules/x/index.js"), "y\n");
  const second = await sync(caller, { ...opts, previous: first.manifest });
  assert.deepEqual([second.filesRequested, second.checksum], [0, first.checksum]);

  // Other patterns into the same target: what is no longer selected goes away.
  const onlyDocs = await sync(caller, {
    name: "ctx",
    target: dst,
    include: ["docs"],
    previous: second.manifest,
  });
  assert.deepEqual(await names(), ["docs", "docs/guide.md"]);
  assert.equal(onlyDocs.filesRequested, 1);

  // followPaths: the named paths, plus what a symlink on the way points to.
  await sync(caller, { name: "ctx", target: dst, followPaths: ["Dockerfile", "current/main.js"] });
  assert.deepEqual(await names(), ["Dockerfile", "app", "app/main.js", "current"]);
});

test("patterns with commas, spaces and non-ASCII characters survive the request metadata", async (t) => {
  const d = await startSessionDaemon(t);
  const src = await tempDir(t, "src");
  const dst = await tempDir(t, "dst");
  for (const n of ["a, b", "c d", "ünï", "plain", "other"]) await writeFile(join(src, n), n);
  const { caller } = await d.open(fileSyncRoutes({ ctx: src }));
  await sync(caller, {
    name: "ctx",
    target: dst,
    include: ["a, b", "c d", "ünï", "plain"],
    exclude: ["plain"],
  });
  assert.deepEqual((await readdir(dst)).sort(), ["a, b", "c d", "ünï"]);
});

test("an unknown directory name is refused, naming it", async (t) => {
  const d = await startSessionDaemon(t);
  const dst = await tempDir(t, "dst");
  const { caller } = await d.open(fileSyncRoutes({ ctx: dst, other: dst }));
  await assert.rejects(
    syncDir(caller, { name: "nope", target: dst }),
    /syncing local directory "nope" from session .*: no access allowed to dir "nope": this client shares "ctx", "other"/,
  );
  const none = await d.open(() => {});
  await assert.rejects(
    syncDir(none.caller, { name: "ctx", target: dst }),
    /the client shares no local directories .*--local ctx=DIR/,
  );
});

test("the client reports what it cannot send, and refuses requests for files it did not offer", async (t) => {
  const d = await startSessionDaemon(t);
  const src = await tempDir(t, "src");
  const dst = await tempDir(t, "dst");
  await writeFile(join(src, "ok"), "ok\n");
  // A name that is not UTF-8 cannot travel in a Stat (a proto3 string).
  await writeFile(Buffer.concat([Buffer.from(`${src}/`), Buffer.from([0x62, 0xff, 0x61, 0x64])]), "x");
  const { caller } = await d.open(fileSyncRoutes({ ctx: src }));
  await assert.rejects(
    syncDir(caller, { name: "ctx", target: dst }),
    /the client failed to send it: EILSEQ: file name "b\u00ffad" in .* is not valid UTF-8/,
  );

  const good = await tempDir(t, "good");
  await writeFile(join(good, "f"), "f\n");
  const other = await d.open(fileSyncRoutes({ ctx: good }));
  const replies = other.caller.callerFor(FileSync).diffCopy(
    (async function* (): AsyncGenerator<PacketInit> {
      yield { type: Packet_PacketType.PACKET_REQ, ID: 99 };
    })(),
    { headers: encodeFileSyncHeaders({ name: "ctx" }) },
  );
  await assert.rejects(
    (async () => {
      for await (const _ of replies);
    })(),
    /the daemon asked for file id 99: no regular file has it/,
  );
});

/** A DiffCopy server that sends `stats` (then the end), answers REQs from `data`, and FIN. */
function scriptedSender(
  stats: StatInit[],
  data: Record<number, Uint8Array[]> = {},
  extra: PacketInit[] = [],
) {
  return (r: ConnectRouter) =>
    r.rpc(FileSync.method.diffCopy, async function* (reqs: AsyncIterable<Packet>) {
      for (const stat of stats) yield { type: Packet_PacketType.PACKET_STAT, stat };
      yield { type: Packet_PacketType.PACKET_STAT };
      yield* extra;
      for await (const p of reqs) {
        if (p.type === Packet_PacketType.PACKET_REQ) {
          for (const chunk of data[p.ID] ?? [])
            yield { type: Packet_PacketType.PACKET_DATA, ID: p.ID, data: chunk };
          yield { type: Packet_PacketType.PACKET_DATA, ID: p.ID };
        } else if (p.type === Packet_PacketType.PACKET_FIN) {
          yield { type: Packet_PacketType.PACKET_FIN };
          return;
        }
      }
    });
}

const file = (
  path: string,
  size = 0,
  extra: { linkname?: string; mode?: number; devmajor?: bigint } = {},
): StatInit => ({
  path,
  mode: 0o644,
  size: BigInt(size),
  modTime: 1n,
  ...extra,
});
const dir = (path: string): StatInit => ({ path, mode: (GO_MODE_DIR | 0o755) >>> 0, modTime: 1n });
const slink = (path: string, target: string): StatInit => ({
  path,
  mode: (GO_MODE_SYMLINK | 0o777) >>> 0,
  linkname: target,
  modTime: 1n,
});
const bytes = (s: string) => new TextEncoder().encode(s);

test("a hostile sender is refused and nothing is written outside the target", async (t) => {
  const d = await startSessionDaemon(t);
  const base = await tempDir(t, "hostile");
  const outside = join(base, "outside");
  await mkdir(outside);
  await writeFile(join(outside, "canary"), "untouched\n");
  const cases: { name: string; routes: (r: ConnectRouter) => void; error: RegExp }[] = [
    {
      name: "dot-dot",
      routes: scriptedSender([file("../outside/x", 1)], { 0: [bytes("x")] }),
      error: /"\.\." components/,
    },
    {
      name: "dot-dot inside",
      routes: scriptedSender([dir("a"), file("a/../../outside/x")]),
      error: /"\.\." components/,
    },
    {
      name: "absolute",
      routes: scriptedSender([file(`${outside}/x`, 1)]),
      error: /absolute paths are not allowed/,
    },
    { name: "empty component", routes: scriptedSender([dir("a"), file("a//x")]), error: /empty component/ },
    {
      name: "through a symlink",
      routes: scriptedSender([slink("l", "../outside"), file("l/x", 1)], { 1: [bytes("x")] }),
      error: /its parent "l" was not sent as a directory/,
    },
    {
      name: "through an absolute symlink",
      routes: scriptedSender([slink("l", outside), dir("l/sub")]),
      error: /its parent "l" was not sent as a directory/,
    },
    {
      name: "huge size",
      routes: scriptedSender([file("big", 2 ** 62)]),
      error: /size 4611686018427387904 is out of range/,
    },
    { name: "negative size", routes: scriptedSender([file("neg", -1)]), error: /out of range/ },
    {
      name: "more data than announced",
      routes: scriptedSender([file("f", 3)], { 0: [bytes("0123456789")] }),
      error: /more than the 3 bytes it announced for "f"/,
    },
    {
      name: "data never requested",
      routes: scriptedSender([dir("a")], {}, [
        { type: Packet_PacketType.PACKET_DATA, ID: 0, data: bytes("x") },
      ]),
      error: /data for file id 0, which was not requested/,
    },
    {
      name: "hard link out",
      routes: scriptedSender([file("h", 0, { linkname: "../outside/canary" })]),
      error: /hard link to "\.\.\/outside\/canary", which is no regular file sent before it/,
    },
    {
      name: "hard link to a directory",
      routes: scriptedSender([dir("a"), file("h", 0, { linkname: "a" })]),
      error: /hard link to "a"/,
    },
    {
      name: "device",
      routes: scriptedSender([file("sda", 0, { mode: (GO_MODE_DEVICE | 0o666) >>> 0, devmajor: 8n })]),
      error: /device files are not accepted/,
    },
    {
      name: "out of order",
      routes: scriptedSender([file("b"), file("a")]),
      error: /comes after "b", out of order/,
    },
    { name: "twice", routes: scriptedSender([file("a", 1), file("a", 1)]), error: /out of order or twice/ },
    {
      name: "error packet",
      routes: (r) =>
        r.rpc(FileSync.method.diffCopy, async function* () {
          yield { type: Packet_PacketType.PACKET_ERR, data: bytes("disk on fire") };
        }),
      error: /the client failed to send it: disk on fire/,
    },
    {
      name: "early FIN",
      routes: (r) =>
        r.rpc(FileSync.method.diffCopy, async function* () {
          yield { type: Packet_PacketType.PACKET_STAT, stat: file("a") };
          yield { type: Packet_PacketType.PACKET_FIN };
        }),
      error: /ended the transfer \(FIN\) before it was complete/,
    },
    {
      name: "stream cut short",
      routes: (r) =>
        r.rpc(FileSync.method.diffCopy, async function* () {
          yield { type: Packet_PacketType.PACKET_STAT, stat: file("a") };
        }),
      error: /ended the transfer before it was complete/,
    },
  ];
  for (const c of cases) {
    const target = join(base, `target-${c.name.replace(/\W/g, "-")}`);
    await mkdir(target);
    const { caller } = await d.open(c.routes);
    await assert.rejects(syncDir(caller, { name: "ctx", target }), (err: Error) => {
      assert.match(err.message, /^syncing local directory "ctx" from session /, c.name);
      assert.match(err.message, c.error, c.name);
      return true;
    });
    assert.deepEqual(await readdir(outside), ["canary"], `${c.name}: nothing written outside`);
    assert.equal(await readFile(join(outside, "canary"), "utf8"), "untouched\n");
  }
  const left = (await readdir(base)).filter((n) => !n.startsWith("target-"));
  assert.deepEqual(left, ["outside"]);
});

test("a symlink left in the target by an earlier sync is never followed by a later one", async (t) => {
  const d = await startSessionDaemon(t);
  const base = await tempDir(t, "relink");
  const outside = join(base, "outside");
  const target = join(base, "target");
  await mkdir(outside);
  await mkdir(target);
  await writeFile(join(outside, "keep"), "keep\n");
  // First: "d" is a symlink pointing out of the target; a relative "up" link too.
  const first = await d.open(scriptedSender([slink("d", outside), slink("up", "..")]));
  const r1 = await syncDir(first.caller, { name: "ctx", target });
  assert.equal(await readlink(join(target, "d")), outside);
  // Then: "d" is a directory with files, and "up" one with a file called "outside".
  const second = await d.open(
    scriptedSender([dir("d"), file("d/keep", 3), dir("up"), dir("up/outside"), file("up/outside/keep", 3)], {
      1: [bytes("new")],
      4: [bytes("new")],
    }),
  );
  await sync(second.caller, { name: "ctx", target, previous: r1.manifest });
  assert.ok((await lstat(join(target, "d"))).isDirectory());
  assert.equal(await readFile(join(target, "d/keep"), "utf8"), "new");
  assert.equal(await readFile(join(outside, "keep"), "utf8"), "keep\n");
  assert.deepEqual(await readdir(outside), ["keep"]);
});

test("a client that goes away mid-sync fails it clearly; the next sync recovers", async (t) => {
  const d = await startSessionDaemon(t);
  const src = await tempDir(t, "src");
  const dst = await tempDir(t, "dst");
  for (let i = 0; i < 8; i++) await writeFile(join(src, `f${i}`), randomBytes(2 << 20));
  let session: Session | undefined;
  const dying = await d.open(
    fileSyncRoutes(
      { ctx: src },
      {
        onProgress: (p) => {
          if (p.bytes > 5 << 20) session?.close();
        },
      },
    ),
  );
  session = dying.session;
  await assert.rejects(syncDir(dying.caller, { name: "ctx", target: dst }), (err: Error) => {
    assert.match(err.message, /^syncing local directory "ctx" from session \w+: /);
    assert.match(err.message, /closed: the client (ended the session|went away)/);
    return true;
  });
  const healthy = await d.open(fileSyncRoutes({ ctx: src }));
  const r = await sync(healthy.caller, { name: "ctx", target: dst });
  await assertSameTree(src, dst);
  assert.equal(r.filesRequested, 8);
});

test("the sender holds back when the receiver does not read (backpressure)", async (t) => {
  const d = await startSessionDaemon(t);
  const src = await tempDir(t, "src");
  const size = 64 << 20;
  // Random, so that no compression on the way could hide a missing stall.
  await writeFile(join(src, "big"), randomBytes(size));
  let sent = 0;
  const { caller } = await d.open(
    fileSyncRoutes(
      { ctx: src },
      {
        onProgress: (p) => {
          sent = p.bytes;
        },
      },
    ),
  );
  // A raw receiver: asks for the file once announced, then stops reading for a while.
  let announced!: () => void;
  const statSeen = new Promise<void>((resolve) => {
    announced = resolve;
  });
  const requests = (async function* (): AsyncGenerator<PacketInit> {
    await statSeen;
    yield { type: Packet_PacketType.PACKET_REQ, ID: 0 };
    await new Promise<void>((resolve) => setTimeout(resolve, 60_000).unref());
  })();
  const ac = new AbortController();
  t.after(() => ac.abort());
  const replies = caller
    .callerFor(FileSync)
    .diffCopy(requests, { signal: ac.signal, headers: encodeFileSyncHeaders({ name: "ctx" }) })
    [Symbol.asyncIterator]();
  const first = await replies.next();
  assert.equal(first.value?.stat?.path, "big");
  announced();
  let last = -1;
  while (sent !== last) {
    last = sent;
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.ok(sent < size / 2, `the sender stalls well before ${size} bytes, sent ${sent}`);
  let received = 0;
  for (;;) {
    const n = await replies.next();
    if (n.done) break;
    if (n.value.type === Packet_PacketType.PACKET_DATA) {
      if (n.value.data.length === 0) break;
      received += n.value.data.length;
    }
  }
  assert.equal(received, size);
});

test("wire helpers: modes, path order, metadata escaping", () => {
  assert.equal(goModeFromPosix(0o040755), (GO_MODE_DIR | 0o755) >>> 0);
  assert.equal(goModeFromPosix(0o120777), (GO_MODE_SYMLINK | 0o777) >>> 0);
  assert.equal(posixPermFromGo(goModeFromPosix(0o106755)), 0o6755);
  assert.equal(posixPermFromGo(goModeFromPosix(0o041777)), 0o1777);
  const sorted = ["a.b", "a/b", "a", "b", "a/b/c", "a-b"].sort(comparePaths);
  assert.deepEqual(sorted, ["a", "a/b", "a/b/c", "a-b", "a.b", "b"]);
  for (const s of ["plain", "a b+c", "100%", "ünï/ℤ", "a,b"]) assert.equal(queryUnescape(queryEscape(s)), s);
  assert.equal(queryEscape("a b,ü"), "a+b%2C%C3%BC");
  const h = encodeFileSyncHeaders({ name: "ctx", include: ["x, y", "z"], exclude: ["e"] });
  assert.equal(h.get("include-patterns-encoded"), "1");
  assert.equal(h.get("exclude-patterns-encoded"), null);
  assert.deepEqual(decodeFileSyncHeaders(h), {
    name: "ctx",
    include: ["x, y", "z"],
    exclude: ["e"],
    followPaths: [],
  });
});

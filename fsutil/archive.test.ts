import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, type TestContext, test } from "node:test";
import { gzipSync, zstdCompressSync } from "node:zlib";
import { type Header, pack } from "tar-stream";
import { detectArchive, extractArchive, isTarHeader } from "./archive.ts";
import { copy } from "./copy.ts";

type Entry = Partial<Header> & { name: string; data?: string };

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const p = pack();
  for (const { data, ...header } of entries) {
    await new Promise<void>((resolve, reject) =>
      p.entry({ mtime: new Date("2001-01-01T00:00:00Z"), ...header }, data ?? "", (err) =>
        err ? reject(err) : resolve(),
      ),
    );
  }
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function compress(buf: Buffer, tool: "bzip2" | "xz"): Buffer {
  return execFileSync(tool, ["-c"], { input: buf, maxBuffer: 1 << 26 });
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "buildd-archive-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const simple: Entry[] = [
  { name: "./", type: "directory", mode: 0o755 },
  {
    name: "./dir/",
    type: "directory",
    mode: 0o750,
    uid: 12,
    gid: 34,
    mtime: new Date("2002-02-02T00:00:00Z"),
  },
  { name: "./dir/file", data: "hello\n", mode: 0o4755, uid: 1000, gid: 1000 },
  { name: "./dir/link", type: "symlink", linkname: "file" },
  { name: "./dir/hard", type: "link", linkname: "./dir/file" },
  { name: "./fifo", type: "fifo", mode: 0o600 },
  { name: "./null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666 },
];

describe("detectArchive", () => {
  test("knows tar in every supported compression, and nothing else", async (t) => {
    const dir = await tempDir(t);
    const tar = await makeTar(simple);
    const files: Record<string, Buffer> = {
      "a.tar": tar,
      "a.tar.gz": gzipSync(tar),
      "a.tar.bz2": compress(tar, "bzip2"),
      "a.tar.xz": compress(tar, "xz"),
      "a.tar.zst": zstdCompressSync(tar),
      "text.gz": gzipSync(Buffer.from("not a tar\n".repeat(100))),
      "text.xz": compress(Buffer.from("not a tar either"), "xz"),
      "text.txt": Buffer.from("plain text"),
      "empty.tar": Buffer.alloc(1024),
      empty: Buffer.alloc(0),
      "bad.gz": Buffer.from([0x1f, 0x8b, 1, 2, 3, 4, 5]),
    };
    for (const [name, data] of Object.entries(files)) await writeFile(join(dir, name), data);
    await symlink("a.tar", join(dir, "link.tar"));
    const want: Record<string, string | undefined> = {
      "a.tar": "none",
      "a.tar.gz": "gzip",
      "a.tar.bz2": "bzip2",
      "a.tar.xz": "xz",
      "a.tar.zst": "zstd",
      "link.tar": undefined,
    };
    for (const name of [...Object.keys(files), "link.tar"]) {
      assert.equal(await detectArchive(join(dir, name)), want[name], name);
    }
  });

  test("isTarHeader checks the checksum", async () => {
    const block = (await makeTar([{ name: "x", data: "y" }])).subarray(0, 512);
    assert.equal(isTarHeader(block), true);
    const broken = Buffer.from(block);
    broken[0] = broken[0]! ^ 1;
    assert.equal(isTarHeader(broken), false);
  });
});

describe("extractArchive", () => {
  for (const kind of ["tar", "gzip", "bzip2", "xz", "zstd"] as const) {
    test(`extracts a ${kind} archive with modes, owners, times, links and special files`, async (t) => {
      const dir = await tempDir(t);
      const tar = await makeTar(simple);
      const data =
        kind === "tar"
          ? tar
          : kind === "gzip"
            ? gzipSync(tar)
            : kind === "zstd"
              ? zstdCompressSync(tar)
              : compress(tar, kind);
      await writeFile(join(dir, "archive"), data);
      const dest = join(dir, "dest");
      await mkdir(dest, { mode: 0o711 });
      await extractArchive(join(dir, "archive"), dest);
      assert.equal((await lstat(dest)).mode & 0o7777, 0o711, "the destination itself is left alone");
      const file = await lstat(join(dest, "dir/file"));
      assert.equal(file.mode & 0o7777, 0o4755);
      assert.deepEqual([file.uid, file.gid], [1000, 1000]);
      assert.equal(file.mtime.toISOString(), "2001-01-01T00:00:00.000Z");
      assert.equal(file.nlink, 2);
      assert.equal((await lstat(join(dest, "dir/hard"))).ino, file.ino);
      assert.equal(await readFile(join(dest, "dir/file"), "utf8"), "hello\n");
      assert.equal(await readlink(join(dest, "dir/link")), "file");
      const d = await lstat(join(dest, "dir"));
      assert.equal(d.mode & 0o7777, 0o750);
      assert.deepEqual([d.uid, d.gid], [12, 34]);
      assert.equal(d.mtime.toISOString(), "2002-02-02T00:00:00.000Z");
      assert.ok((await lstat(join(dest, "fifo"))).isFIFO());
      const dev = await lstat(join(dest, "null"));
      assert.ok(dev.isCharacterDevice());
      assert.equal(dev.rdev, (1 << 8) | 3);
    });
  }

  test("an owner override applies to every entry", async (t) => {
    const dir = await tempDir(t);
    await writeFile(join(dir, "a.tar"), await makeTar(simple));
    await mkdir(join(dir, "dest"));
    await extractArchive(join(dir, "a.tar"), join(dir, "dest"), { owner: { uid: 7, gid: 8 } });
    for (const p of ["dir", "dir/file", "dir/link", "fifo"]) {
      const s = await lstat(join(dir, "dest", p));
      assert.deepEqual([s.uid, s.gid], [7, 8], p);
    }
  });

  const hostile: Array<{ name: string; entries: Entry[]; error?: RegExp; inside?: string[] }> = [
    {
      name: "a name climbing out with ..",
      entries: [{ name: "../victim", data: "evil" }],
      error: /outside of the destination/,
    },
    {
      name: "a name climbing out in the middle",
      entries: [{ name: "a/../../victim", data: "evil" }],
      error: /outside/,
    },
    {
      name: "an absolute name stays inside",
      entries: [{ name: "/abs/evil", data: "evil" }],
      inside: ["abs/", "abs/evil"],
    },
    {
      name: "writing through an absolute symlink from the archive",
      entries: [
        { name: "esc", type: "symlink", linkname: "/" },
        { name: "esc/victim", data: "evil" },
      ],
      inside: ["esc -> /", "victim"],
    },
    {
      name: "writing through a relative symlink climbing out",
      entries: [
        { name: "up", type: "symlink", linkname: "../../../../.." },
        { name: "up/etc/evil", data: "evil" },
      ],
      inside: ["etc/", "etc/evil", "up -> ../../../../.."],
    },
    {
      name: "a hard link to outside with ..",
      entries: [{ name: "h", type: "link", linkname: "../outside/victim" }],
      error: /outside of the destination/,
    },
    {
      name: "a hard link through a symlink to the host",
      entries: [
        { name: "o", type: "symlink", linkname: "OUTSIDE" },
        { name: "h", type: "link", linkname: "o/victim" },
      ],
      error: /not a file extracted before it/,
    },
    {
      name: "a symlink replaced by a file is not written through",
      entries: [
        { name: "x", type: "symlink", linkname: "OUTSIDE/victim" },
        { name: "x", data: "replaced" },
      ],
      inside: ["x"],
    },
  ];
  for (const c of hostile) {
    test(`hostile: ${c.name}`, async (t) => {
      const dir = await tempDir(t);
      const outside = join(dir, "outside");
      await mkdir(outside);
      await writeFile(join(outside, "victim"), "untouched");
      const entries = c.entries.map((e) => ({ ...e, linkname: e.linkname?.replace("OUTSIDE", outside) }));
      await writeFile(join(dir, "a.tar"), await makeTar(entries));
      const dest = join(dir, "dest");
      await mkdir(dest);
      if (c.error) await assert.rejects(extractArchive(join(dir, "a.tar"), dest), c.error);
      else await extractArchive(join(dir, "a.tar"), dest);
      assert.deepEqual(await readdir(outside), ["victim"]);
      assert.equal(await readFile(join(outside, "victim"), "utf8"), "untouched");
      if (c.inside) {
        const found: string[] = [];
        for (const e of await readdir(dest, { recursive: true, withFileTypes: true })) {
          const rel = join(e.parentPath, e.name).slice(dest.length + 1);
          found.push(
            e.isDirectory()
              ? rel + "/"
              : e.isSymbolicLink()
                ? `${rel} -> ${await readlink(join(dest, rel))}`
                : rel,
          );
        }
        assert.deepEqual(found.sort(), c.inside.sort());
      }
    });
  }

  test("a truncated archive fails", async (t) => {
    const dir = await tempDir(t);
    const tar = await makeTar([{ name: "big", data: "x".repeat(5000) }]);
    await writeFile(join(dir, "a.tar"), tar.subarray(0, 1024));
    await mkdir(join(dir, "dest"));
    await assert.rejects(extractArchive(join(dir, "a.tar"), join(dir, "dest")), /Unexpected end of data/);
  });
});

describe("copy with attemptUnpackDockerCompatibility (ADD)", () => {
  test("extracts archives, copies everything else as it is", async (t) => {
    const dir = await tempDir(t);
    const [src, dst] = [join(dir, "src"), join(dir, "dst")];
    await mkdir(src);
    await mkdir(dst);
    await writeFile(
      join(src, "app.tar.gz"),
      gzipSync(await makeTar([{ name: "bin/app", data: "app", mode: 0o755 }])),
    );
    await writeFile(join(src, "notes.gz"), gzipSync(Buffer.from("just text")));
    await copy(src, "app.tar.gz", dst, "/opt/", {
      attemptUnpackDockerCompatibility: true,
      createDestPath: true,
    });
    assert.equal(await readFile(join(dst, "opt/bin/app"), "utf8"), "app");
    await copy(src, "notes.gz", dst, "/opt/", { attemptUnpackDockerCompatibility: true });
    assert.ok((await lstat(join(dst, "opt/notes.gz"))).isFile());
    // Without the flag, the archive is a file like any other.
    await copy(src, "*.tar.gz", dst, "/raw/", { allowWildcard: true });
    assert.deepEqual(await readdir(join(dst, "raw")), ["app.tar.gz"]);
  });
});

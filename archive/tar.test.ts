import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chown, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { test } from "node:test";
import { promisify } from "node:util";
import { packTar } from "../test/oci.ts";
import { tempDir } from "../test/process.ts";
import { SyscallHelper } from "./syscalls.ts";
import { readTar, type TarHeader, TarFormatError } from "./tar.ts";

const run = promisify(execFile);

async function readAll(tar: Buffer, chunkSize = tar.length): Promise<{ header: TarHeader; data: Buffer }[]> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < tar.length; i += chunkSize) chunks.push(tar.subarray(i, i + chunkSize));
  const out: { header: TarHeader; data: Buffer }[] = [];
  for await (const entry of readTar(Readable.from(chunks))) {
    const parts: Buffer[] = [];
    for await (const c of entry.body) parts.push(c);
    out.push({ header: entry.header, data: Buffer.concat(parts) });
  }
  return out;
}

test("GNU tar's long names, big uids (base-256 and PAX) and binary PAX xattrs are read exactly", async (t) => {
  const tmp = await tempDir("tar");
  t.after(tmp.cleanup);
  const src = join(tmp.dir, "src");
  const longDir = "d".repeat(120);
  const longName = `${longDir}/${"f".repeat(150)}`;
  await mkdir(join(src, longDir), { recursive: true });
  await writeFile(join(src, longName), "long\n");
  await writeFile(join(src, "cap"), "binary xattr\n");
  const helper = new SyscallHelper();
  t.after(() => helper.close());
  const binary = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0xff, 0x00, 0x0a]);
  await helper.setXattr(join(src, "cap"), "user.bin", binary);
  await chown(join(src, "cap"), 3_000_000, 3_000_001);

  for (const format of ["gnu", "posix"]) {
    const archive = join(tmp.dir, `${format}.tar`);
    await run("tar", [
      `--format=${format}`,
      "--xattrs",
      "--xattrs-include=user.*",
      "-C",
      src,
      "-cf",
      archive,
      ".",
    ]);
    const tar = await readFile(archive);
    // Tiny chunks make every header and body cross chunk boundaries.
    for (const chunkSize of [tar.length, 7]) {
      const entries = await readAll(tar, chunkSize);
      const byName = new Map(entries.map((e) => [e.header.name.replace(/^\.\//, ""), e]));
      assert.equal(byName.get(longName)?.data.toString(), "long\n", `${format} long name`);
      if (format === "posix") assert.deepEqual(byName.get("cap")?.header.xattrs.get("user.bin"), binary);
      assert.deepEqual(
        [byName.get("cap")?.header.uid, byName.get("cap")?.header.gid],
        [3_000_000, 3_000_001],
      );
      assert.equal(byName.get(`${longDir}/`)?.header.type, "dir");
    }
  }
});

test("tar-stream's PAX paths and ustar prefixes, uid and modes are read", async () => {
  const entries = await readAll(
    await packTar([
      { path: `${"p".repeat(90)}/${"q".repeat(90)}`, content: "prefixed" },
      { path: "s", symlink: "/target", uid: 70000, gid: 7 },
      { path: "h", hardlink: "s" },
      { path: "dev", device: { type: "block", major: 8, minor: 1 }, mode: 0o660 },
      { path: "x", content: "setuid", mode: 0o4755 },
    ]),
  );
  assert.deepEqual(
    entries.map((e) => [e.header.name, e.header.type, e.data.toString()]),
    [
      [`${"p".repeat(90)}/${"q".repeat(90)}`, "file", "prefixed"],
      ["s", "symlink", ""],
      ["h", "link", ""],
      ["dev", "block", ""],
      ["x", "file", "setuid"],
    ],
  );
  assert.deepEqual([entries[1]!.header.linkname, entries[1]!.header.uid], ["/target", 70000]);
  assert.deepEqual(
    [entries[3]!.header.devmajor, entries[3]!.header.devminor, entries[3]!.header.mode],
    [8, 1, 0o660],
  );
  assert.equal(entries[4]!.header.mode, 0o4755);
});

test("an unread body is skipped, a truncated entry or header is an error naming the entry", async () => {
  const tar = await packTar([
    { path: "a", content: "A".repeat(1000) },
    { path: "b", content: "B" },
  ]);
  const names: string[] = [];
  for await (const e of readTar(Readable.from([tar]))) names.push(e.header.name);
  assert.deepEqual(names, ["a", "b"]);

  await assert.rejects(readAll(tar.subarray(0, 700)), (e: unknown) => {
    assert.ok(e instanceof TarFormatError);
    assert.equal(e.entry, "a");
    assert.match(e.message, /ended in the middle of entry "a" \(188 of 1000 bytes\)/);
    return true;
  });
  await assert.rejects(
    readAll(tar.subarray(0, 1536 + 100)),
    /ended in the middle of a header .*after entry "a"/,
  );
});

test("a corrupt header is refused", async () => {
  const tar = await packTar([{ path: "a", content: "x" }]);
  tar[10] = 0x41;
  await assert.rejects(readAll(tar), /bad checksum/);
  await assert.rejects(readAll(Buffer.alloc(512, 0x41)), /not a tar|bad checksum|invalid/);
});

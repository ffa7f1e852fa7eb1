// Layer and tree tars: read back with our tar reader and with GNU tar; whiteouts, opaque dirs,
// hard links, xattrs, long names, clamped times, and byte-for-byte determinism.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmod,
  chown,
  link,
  lutimes,
  mkdir,
  mkdtemp,
  rm,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { promisify } from "node:util";
import { makeSpecialFile } from "../fsutil/special.ts";
import { readTar, type TarHeader } from "./tar.ts";
import { encodeTarHeader } from "./tar-header.ts";
import { diffLayerTar, overlayLayerTar, treeTar } from "./write.ts";

const run = promisify(execFile);

async function temp(t: TestContext, name: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `buildd-write-${name}-`));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

type Entry = Omit<TarHeader, "xattrs"> & { xattrs: Record<string, string>; content: string };

async function entries(tar: Buffer): Promise<Entry[]> {
  const out: Entry[] = [];
  for await (const e of readTar(
    (async function* () {
      yield tar;
    })(),
  )) {
    const parts: Buffer[] = [];
    for await (const c of e.body) parts.push(c);
    const { xattrs, ...h } = e.header;
    out.push({
      ...h,
      xattrs: Object.fromEntries([...xattrs].map(([k, v]) => [k, v.toString("hex")])),
      content: Buffer.concat(parts).toString(),
    });
  }
  return out;
}

const T = 1_700_000_000;

async function setTime(p: string, s = T): Promise<void> {
  await lutimes(p, s, s);
}

describe("overlayLayerTar", () => {
  test("converts whiteouts and opaque dirs, keeps hard links, xattrs and owners, in name order", async (t) => {
    const d = await temp(t, "upper");
    await mkdir(join(d, "etc"));
    await writeFile(join(d, "etc/passwd"), "root:x:0:0\n");
    await chown(join(d, "etc/passwd"), 1000, 2000);
    await chmod(join(d, "etc/passwd"), 0o4755);
    await link(join(d, "etc/passwd"), join(d, "etc/passwd-link"));
    await makeSpecialFile(join(d, "etc/gone"), "char", 0, 0);
    await mkdir(join(d, "opaque"));
    await writeFile(join(d, "opaque/kept"), "k");
    await run("setfattr", ["-n", "trusted.overlay.opaque", "-v", "y", join(d, "opaque")]);
    await run("setfattr", ["-n", "user.note", "-v", "0x00ff", join(d, "etc/passwd")]);
    await symlink("../etc/passwd", join(d, "link"));
    await makeSpecialFile(join(d, "null"), "char", 1, 3);
    for (const p of ["etc/passwd", "etc/gone", "opaque/kept", "opaque", "etc", "link", "null"])
      await setTime(join(d, p));

    const tar = await collect(overlayLayerTar(d));
    const got = await entries(tar);
    assert.deepEqual(
      got.map((e) => [e.name, e.type]),
      [
        ["etc/", "dir"],
        ["etc/.wh.gone", "file"],
        ["etc/passwd", "file"],
        ["etc/passwd-link", "link"],
        ["link", "symlink"],
        ["null", "char"],
        ["opaque/", "dir"],
        ["opaque/.wh..wh..opq", "file"],
        ["opaque/kept", "file"],
      ],
    );
    const passwd = got.find((e) => e.name === "etc/passwd")!;
    assert.equal(passwd.content, "root:x:0:0\n");
    assert.equal(passwd.mode, 0o4755);
    assert.equal(passwd.uid, 1000);
    assert.equal(passwd.gid, 2000);
    assert.equal(passwd.mtime, T);
    assert.deepEqual(passwd.xattrs, { "user.note": "00ff" }, "overlay's own xattrs are not exported");
    assert.equal(got.find((e) => e.name === "etc/passwd-link")!.linkname, "etc/passwd");
    assert.equal(got.find((e) => e.name === "link")!.linkname, "../etc/passwd");
    const nul = got.find((e) => e.name === "null")!;
    assert.deepEqual([nul.devmajor, nul.devminor], [1, 3]);
    assert.deepEqual(got.find((e) => e.name === "opaque/")!.xattrs, {});
    // GNU tar agrees with the stream.
    const file = join(await temp(t, "gnu"), "layer.tar");
    await writeFile(file, tar);
    const { stdout } = await run("tar", ["-tvf", file]);
    assert.match(stdout, /-rwsr-xr-x 1000\/2000\s+11 \S+ \S+ etc\/passwd\n/);
    assert.match(stdout, /etc\/passwd-link link to etc\/passwd/);
  });

  test("is byte-for-byte the same for the same tree, and rewrite-timestamp clamps times", async (t) => {
    const d = await temp(t, "same");
    await mkdir(join(d, "a"));
    for (let i = 0; i < 50; i++) await writeFile(join(d, `a/f${i}`), `file ${i}\n`.repeat(i * 100));
    await writeFile(join(d, "old"), "old");
    await utimes(join(d, "old"), 1000, 1000);
    const one = await collect(overlayLayerTar(d));
    const two = await collect(overlayLayerTar(d));
    assert.ok(one.equals(two));
    const clamped = await entries(await collect(overlayLayerTar(d, { clampMtime: 5000 })));
    assert.equal(clamped.find((e) => e.name === "old")!.mtime, 1000, "older times stay");
    assert.ok(
      clamped.filter((e) => e.name !== "old").every((e) => e.mtime === 5000),
      "newer times are clamped",
    );
  });
});

describe("diffLayerTar", () => {
  test("writes what changed between two trees, deletions as whiteouts, with parent dirs", async (t) => {
    const lower = await temp(t, "lower");
    const upper = await temp(t, "upper");
    for (const root of [lower, upper]) {
      await mkdir(join(root, "keep/deep"), { recursive: true });
      await writeFile(join(root, "keep/deep/same"), "same");
      await writeFile(join(root, "keep/changed"), "v1");
      await setTime(join(root, "keep/deep/same"));
      await setTime(join(root, "keep/changed"));
      await setTime(join(root, "keep/deep"));
      await setTime(join(root, "keep"));
    }
    await writeFile(join(lower, "keep/deleted"), "bye");
    await writeFile(join(upper, "keep/changed"), "v2!");
    await mkdir(join(upper, "new/sub"), { recursive: true });
    await writeFile(join(upper, "new/sub/file"), "n");
    const got = await entries(await collect(diffLayerTar(lower, upper)));
    assert.deepEqual(
      got.map((e) => e.name),
      ["keep/", "keep/changed", "keep/.wh.deleted", "new/", "new/sub/", "new/sub/file"],
    );
    assert.equal(got.find((e) => e.name === "keep/changed")!.content, "v2!");
  });
});

describe("treeTar", () => {
  test("archives a tree under a prefix; GNU tar extracts it with owners, modes and links", async (t) => {
    const d = await temp(t, "tree");
    await mkdir(join(d, "bin"));
    await writeFile(join(d, "bin/tool"), "#!/bin/sh\n");
    await chmod(join(d, "bin/tool"), 0o755);
    await chown(join(d, "bin/tool"), 33, 44);
    await link(join(d, "bin/tool"), join(d, "bin/tool2"));
    const long = `${"x".repeat(120)}/${"y".repeat(120)}`;
    await mkdir(join(d, "x".repeat(120)));
    await writeFile(join(d, long), "long");
    const tar = await collect(treeTar(d, { prefix: "linux_amd64" }));
    const out = await temp(t, "extract");
    await writeFile(join(out, "t.tar"), tar);
    await mkdir(join(out, "x"));
    await run("tar", ["-xpf", join(out, "t.tar"), "-C", join(out, "x"), "--numeric-owner"]);
    const { stdout } = await run("stat", ["-c", "%a %u %g %h", join(out, "x/linux_amd64/bin/tool")]);
    assert.equal(stdout.trim(), "755 33 44 2");
    const { stdout: longContent } = await run("cat", [join(out, "x/linux_amd64", long)]);
    assert.equal(longContent, "long");
  });
});

describe("encodeTarHeader", () => {
  test("uses PAX records for what ustar cannot hold, and reads back exactly", async () => {
    const name = `dir/${"é".repeat(80)}`;
    const header = encodeTarHeader({
      name,
      type: "symlink",
      mode: 0o777,
      uid: 3_000_000,
      gid: 5,
      size: 0,
      mtime: T,
      linkname: "t".repeat(150),
      xattrs: new Map([["security.capability", Buffer.from([1, 0, 0, 2])]]),
    });
    const [e] = await entries(Buffer.concat([header, Buffer.alloc(1024)]));
    assert.equal(e!.name, name);
    assert.equal(e!.linkname, "t".repeat(150));
    assert.equal(e!.uid, 3_000_000);
    assert.deepEqual(e!.xattrs, { "security.capability": "01000002" });
    assert.equal(
      createHash("sha256").update(header).digest("hex"),
      createHash("sha256")
        .update(
          encodeTarHeader({
            name,
            type: "symlink",
            mode: 0o777,
            uid: 3_000_000,
            gid: 5,
            size: 0,
            mtime: T,
            linkname: "t".repeat(150),
            xattrs: new Map([["security.capability", Buffer.from([1, 0, 0, 2])]]),
          }),
        )
        .digest("hex"),
    );
  });
});

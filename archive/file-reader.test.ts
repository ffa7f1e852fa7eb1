// The reader thread: pieces come back in order, in one buffer; a file shorter than listed, a
// missing file or a symlink in place of a file fail with the entry's name.
import assert from "node:assert/strict";
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { FileReader } from "./file-reader.ts";

const reader = new FileReader();
after(() => reader.close());

test("assembles bytes and file ranges in order; refuses short files, missing files and symlinks", async (t) => {
  const d = await mkdtemp(join(tmpdir(), "buildd-reader-"));
  t.after(() => rm(d, { recursive: true, force: true }));
  await writeFile(join(d, "a"), "0123456789");
  await symlink("a", join(d, "link"));
  const seg = (name: string, offset: number, length: number) => ({
    path: join(d, name),
    offset,
    length,
    name,
  });
  const out = await reader.read([
    Buffer.from("<"),
    seg("a", 2, 3),
    Buffer.from("|"),
    seg("a", 0, 10),
    Buffer.from(">"),
  ]);
  assert.equal(out.toString(), "<234|0123456789>");
  await assert.rejects(
    reader.read([seg("a", 5, 10)]),
    /reading "a" for the archive: it has 10 bytes, not the 15/,
  );
  await assert.rejects(reader.read([seg("missing", 0, 1)]), /reading "missing" for the archive: ENOENT/);
  await assert.rejects(reader.read([seg("link", 0, 1)]), /reading "link" for the archive: ELOOP/);
  assert.equal((await reader.read([seg("a", 0, 1)])).toString(), "0", "the reader still works after errors");
});

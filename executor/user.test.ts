import assert from "node:assert/strict";
import { mkdir, rm, rmdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { tempBusyboxRootfs } from "../test/busybox.ts";
import { resolveUser } from "./user.ts";

let rootfs: { dir: string; cleanup: () => Promise<void> };
before(async () => {
  rootfs = await tempBusyboxRootfs();
});
after(() => rootfs.cleanup());

test("users by name get their passwd gid and /etc/group memberships", async () => {
  assert.deepEqual(await resolveUser(rootfs.dir, ""), { uid: 0, gid: 0, additionalGids: [] });
  assert.deepEqual(await resolveUser(rootfs.dir, "root"), { uid: 0, gid: 0, additionalGids: [] });
  assert.deepEqual(await resolveUser(rootfs.dir, "app"), { uid: 1000, gid: 1000, additionalGids: [10] });
  assert.deepEqual(await resolveUser(rootfs.dir, "1000"), { uid: 1000, gid: 1000, additionalGids: [10] });
  assert.deepEqual(await resolveUser(rootfs.dir, "nobody"), { uid: 65534, gid: 65534, additionalGids: [] });
});

test("an explicit group replaces the supplementary groups", async () => {
  assert.deepEqual(await resolveUser(rootfs.dir, "app:wheel"), { uid: 1000, gid: 10, additionalGids: [] });
  assert.deepEqual(await resolveUser(rootfs.dir, "app:33"), { uid: 1000, gid: 33, additionalGids: [] });
  assert.deepEqual(await resolveUser(rootfs.dir, "1234:5678"), { uid: 1234, gid: 5678, additionalGids: [] });
  assert.deepEqual(await resolveUser(rootfs.dir, "4321:nogroup"), {
    uid: 4321,
    gid: 65534,
    additionalGids: [],
  });
});

test("numeric ids need no passwd entry; unknown names are errors", async () => {
  assert.deepEqual(await resolveUser(rootfs.dir, "5000"), { uid: 5000, gid: 0, additionalGids: [] });
  await assert.rejects(
    resolveUser(rootfs.dir, "ghost"),
    /unable to find user ghost: no matching entries in \/etc\/passwd/,
  );
  await assert.rejects(resolveUser(rootfs.dir, "app:ghosts"), /unable to find group ghosts/);
  await assert.rejects(resolveUser(rootfs.dir, "app:"), /invalid user/);
});

test("account files are read inside the rootfs even through an escaping symlink", async (t) => {
  const other = await tempBusyboxRootfs();
  t.after(other.cleanup);
  // The host's /etc/passwd has no user "app"; the rootfs' /etc/passwd points at "/../../etc/passwd".
  await writeFile(join(other.dir, "etc/real-passwd"), "builder:x:4242:4243::/:/bin/sh\n");
  await rm(join(other.dir, "etc/passwd"));
  await symlink("../../../../etc/real-passwd", join(other.dir, "etc/passwd"));
  assert.deepEqual(await resolveUser(other.dir, "builder"), { uid: 4242, gid: 4243, additionalGids: [] });
  await assert.rejects(resolveUser(other.dir, "root"), /unable to find user root/);
});

test("a passwd that is not a regular file is refused", async (t) => {
  const other = await tempBusyboxRootfs();
  t.after(other.cleanup);
  await rm(join(other.dir, "etc/passwd"));
  await mkdir(join(other.dir, "etc/passwd"));
  await assert.rejects(
    resolveUser(other.dir, "app"),
    /reading \/etc\/passwd of the root filesystem: not a regular file/,
  );
  // A link to a device is resolved inside the rootfs, where /dev/zero does not exist: no entries.
  await rmdir(join(other.dir, "etc/passwd"));
  await symlink("/dev/zero", join(other.dir, "etc/passwd"));
  await assert.rejects(resolveUser(other.dir, "app"), /unable to find user app/);
});

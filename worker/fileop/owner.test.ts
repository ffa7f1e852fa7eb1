import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { type ChownOpt, ChownOptSchema, type UserOpt, UserOptSchema } from "../../proto/gen/pb/ops_pb.ts";
import { parseUserDb, resolveOwner } from "./owner.ts";

const byName = (name: string, input = -1n): UserOpt =>
  create(UserOptSchema, { user: { case: "byName", value: { name, input } } });
const byId = (id: number): UserOpt => create(UserOptSchema, { user: { case: "byID", value: id } });
const chown = (user?: UserOpt, group?: UserOpt): ChownOpt => create(ChownOptSchema, { user, group });

let base: string;
let rootfs: string;

async function rootWith(name: string, files: Record<string, string>): Promise<string> {
  const dir = join(base, name);
  await mkdir(join(dir, "etc"), { recursive: true });
  for (const [p, content] of Object.entries(files)) await writeFile(join(dir, p), content);
  return dir;
}

before(async () => {
  base = await mkdtemp(join(tmpdir(), "buildd-owner-"));
  rootfs = await rootWith("rootfs", {
    "etc/passwd":
      "root:x:0:0:root:/root:/bin/sh\n# a comment\nbroken line\napp:x:1000:1001:app:/home/app:/bin/sh\nweb:x:33:33::/var/www:\n",
    "etc/group": "root:x:0:\nwheel:x:10:app\napp:x:1001:\nstaff:x:50:\n",
  });
});

after(() => rm(base, { recursive: true, force: true }));

describe("resolveOwner", () => {
  const cases: Array<{
    name: string;
    chown: ChownOpt | undefined;
    want: { uid: number; gid: number } | undefined;
  }> = [
    { name: "no ChownOpt keeps owners", chown: undefined, want: undefined },
    { name: "an empty ChownOpt is root, as in BuildKit", chown: chown(), want: { uid: 0, gid: 0 } },
    {
      name: "a user name gives its primary group",
      chown: chown(byName("app")),
      want: { uid: 1000, gid: 1001 },
    },
    {
      name: "user and group names",
      chown: chown(byName("app"), byName("wheel")),
      want: { uid: 1000, gid: 10 },
    },
    {
      name: "a numeric user without group uses it as gid",
      chown: chown(byId(1234)),
      want: { uid: 1234, gid: 1234 },
    },
    { name: "numbers pass through", chown: chown(byId(5), byId(6)), want: { uid: 5, gid: 6 } },
    { name: "a name with a numeric group", chown: chown(byName("web"), byId(7)), want: { uid: 33, gid: 7 } },
    {
      name: "a group alone leaves uid 0",
      chown: chown(undefined, byName("staff")),
      want: { uid: 0, gid: 50 },
    },
    {
      name: "an unknown numeric name is that number",
      chown: chown(byName("4242")),
      want: { uid: 4242, gid: 4242 },
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      assert.deepEqual(await resolveOwner(c.chown, rootfs), c.want);
    });
  }

  test("user and group can come from different roots", async () => {
    const other = await rootWith("other", { "etc/group": "app:x:777:\n" });
    assert.deepEqual(
      await resolveOwner(chown(byName("app"), byName("app")), { user: rootfs, group: other }),
      {
        uid: 1000,
        gid: 777,
      },
    );
  });

  const failures: Array<{ name: string; setup: () => Promise<string>; chown: ChownOpt; error: RegExp }> = [
    {
      name: "an unknown user names the user and the file",
      setup: async () => rootfs,
      chown: chown(byName("nobody-here")),
      error: /unable to find user "nobody-here": no matching entry in \/etc\/passwd/,
    },
    {
      name: "an unknown group names the group and the file",
      setup: async () => rootfs,
      chown: chown(byName("app"), byName("nogroup")),
      error: /unable to find group "nogroup": no matching entry in \/etc\/group/,
    },
    {
      name: "a missing passwd file",
      setup: () => rootWith("empty", {}),
      chown: chown(byName("app")),
      error: /unable to find user "app": \/etc\/passwd does not exist/,
    },
    {
      name: "a passwd symlink to a host file is re-rooted, not read on the host",
      setup: async () => {
        const dir = await rootWith("hostlink", {});
        await writeFile(join(base, "host-passwd"), "evil:x:666:666::/:\n");
        await symlink(join(base, "host-passwd"), join(dir, "etc/passwd"));
        return dir;
      },
      chown: chown(byName("evil")),
      error: /\/etc\/passwd does not exist/,
    },
    {
      name: "a passwd fifo is refused without hanging",
      setup: async () => {
        const dir = await rootWith("fifo", {});
        execFileSync("mkfifo", [join(dir, "etc/passwd")]);
        return dir;
      },
      chown: chown(byName("app")),
      error: /not a regular file/,
    },
    {
      name: "a passwd directory is refused",
      setup: async () => {
        const dir = await rootWith("dir", {});
        await mkdir(join(dir, "etc/passwd"));
        return dir;
      },
      chown: chown(byName("app")),
      error: /not a regular file/,
    },
    {
      name: "a passwd symlink loop fails",
      setup: async () => {
        const dir = await rootWith("loop", {});
        await symlink("passwd", join(dir, "etc/passwd"));
        return dir;
      },
      chown: chown(byName("app")),
      error: /ELOOP/,
    },
  ];
  for (const f of failures) {
    test(f.name, async () => {
      await assert.rejects(resolveOwner(f.chown, await f.setup()), f.error);
    });
  }

  test("a passwd symlink inside the root is followed", async () => {
    const dir = await rootWith("inlink", {});
    await mkdir(join(dir, "usr/lib"), { recursive: true });
    await writeFile(join(dir, "usr/lib/passwd"), "svc:x:99:98::/:\n");
    await symlink("/usr/lib/passwd", join(dir, "etc/passwd"));
    assert.deepEqual(await resolveOwner(chown(byName("svc")), dir), { uid: 99, gid: 98 });
  });
});

test("parseUserDb skips malformed lines", () => {
  assert.deepEqual(parseUserDb("a:x:1:2\nb:x:bad:2\n\n#c:x:3:4\nd:x:5\ne:x:6:7:extra:fields\n", "passwd"), [
    { name: "a", id: 1, gid: 2 },
    { name: "e", id: 6, gid: 7 },
  ]);
  assert.deepEqual(parseUserDb("g:x:10:a,b\nh:x:\n", "group"), [{ name: "g", id: 10 }]);
});

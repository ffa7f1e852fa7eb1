import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readlink, stat } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { busyboxApplets, tempBusyboxRootfs } from "./busybox.ts";

test("the busybox rootfs has a shell, applet links and users", async (t) => {
  const { dir, cleanup } = await tempBusyboxRootfs();
  t.after(cleanup);
  assert.ok(busyboxApplets().includes("sh"));
  assert.equal(await readlink(join(dir, "bin/sh")), "busybox");
  assert.equal((await stat(join(dir, "tmp"))).mode & 0o7777, 0o1777);
  const out = execFileSync("chroot", [dir, "/bin/sh", "-c", "echo ok; grep ^app: /etc/passwd"], {
    encoding: "utf8",
  });
  assert.equal(out, "ok\napp:x:1000:1000:app:/home/app:/bin/sh\n");
});

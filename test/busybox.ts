// A busybox root filesystem made from Debian's busybox-static: the base every test that runs a
// container uses, so no test needs the internet.
import { execFileSync } from "node:child_process";
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const BUSYBOX_BIN = "/usr/bin/busybox";

/** Users every test rootfs has: root, a regular user and nobody. */
export const TEST_USERS = {
  root: { uid: 0, gid: 0 },
  app: { uid: 1000, gid: 1000 },
  nobody: { uid: 65534, gid: 65534 },
} as const;

let appletCache: string[] | undefined;

/** The applet names of the installed busybox ("sh", "ls", ...). */
export function busyboxApplets(): string[] {
  appletCache ??= execFileSync(BUSYBOX_BIN, ["--list"], { encoding: "utf8" })
    .split("\n")
    .filter((a) => a !== "" && !a.includes("/") && a !== "busybox");
  return appletCache;
}

/**
 * Fills `dir` with a minimal busybox system: /bin/busybox and a symlink per applet in /bin,
 * /etc/passwd and /etc/group (root, app 1000, nobody), and the usual empty dirs.
 */
export async function makeBusyboxRootfs(dir: string): Promise<string> {
  for (const d of ["bin", "etc", "tmp", "root", "home/app", "dev", "proc", "sys", "var", "usr/bin"]) {
    await mkdir(join(dir, d), { recursive: true });
  }
  await chmod(join(dir, "tmp"), 0o1777);
  await copyFile(BUSYBOX_BIN, join(dir, "bin/busybox"));
  await chmod(join(dir, "bin/busybox"), 0o755);
  for (const applet of busyboxApplets()) {
    await symlink("busybox", join(dir, "bin", applet)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "EEXIST") throw e;
    });
  }
  await writeFile(
    join(dir, "etc/passwd"),
    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
  );
  await writeFile(join(dir, "etc/group"), "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n");
  return dir;
}

/** A fresh busybox rootfs in a new temporary dir; `cleanup` removes it. */
export async function tempBusyboxRootfs(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const parent = await mkdtemp(join(tmpdir(), "buildd-rootfs-"));
  const dir = join(parent, "rootfs");
  await mkdir(dir);
  await makeBusyboxRootfs(dir);
  return { dir, cleanup: () => rm(parent, { recursive: true, force: true }) };
}

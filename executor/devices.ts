// The host's device nodes, which an `insecure` container gets (containerd's WithHostDevices).
import { readdir, stat } from "node:fs/promises";
import { posix } from "node:path";
import type { SpecDevice } from "./spec.ts";

// Not devices to copy: the container has its own pts, shm and mqueue, and /dev/console is a tty.
const SKIP_DIRS = new Set(["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"]);
const SKIP_FILES = new Set(["console"]);

function deviceNumbers(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/** Every character and block device under `dir` (default /dev). */
export async function hostDevices(dir = "/dev"): Promise<SpecDevice[]> {
  const out: SpecDevice[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const path = posix.join(dir, e.name);
    if (e.isDirectory()) {
      if (!SKIP_DIRS.has(e.name)) out.push(...(await hostDevices(path)));
      continue;
    }
    if (!(e.isCharacterDevice() || e.isBlockDevice()) || SKIP_FILES.has(e.name)) continue;
    const st = await stat(path, { bigint: true }).catch(() => undefined);
    if (st === undefined) continue;
    out.push({
      path,
      type: e.isCharacterDevice() ? "c" : "b",
      ...deviceNumbers(st.rdev),
      fileMode: Number(st.mode & 0o777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
    });
  }
  return out;
}

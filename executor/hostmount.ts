// Mounting snapshot mounts on the host (a rootfs the executor must inspect, an overlay a selector
// reaches into) and finding what is still mounted, through mount(8)/umount(8): Node has no mount(2).
import { lstat, readdir, readFile, rmdir, unlink } from "node:fs/promises";
import { posix } from "node:path";
import { MOUNT_DATA_MAX, mountAll as mountWithRelativePaths } from "../snapshot/mount.ts";
import { mustRunTool, runTool } from "./command.ts";
import { mountSyscall, SyscallError, umountSyscall } from "../util/syscalls.ts";
import type { Mount } from "./types.ts";

/** One line of /proc/self/mountinfo, the parts the executor needs. */
export interface MountInfo {
  id: number;
  parentId: number;
  /** Where it is mounted, with mountinfo's octal escapes decoded. */
  mountPoint: string;
  /** The path inside the mounted filesystem that is mounted (bind mounts of a subdir). */
  root: string;
  fsType: string;
  source: string;
  superOptions: string;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(Number.parseInt(oct, 8)));
}

/** Parses mountinfo text (see proc(5)). */
export function parseMountinfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const f = line.split(" ");
    const sep = f.indexOf("-", 6);
    if (sep < 0 || f.length < sep + 4) continue;
    out.push({
      id: Number(f[0]),
      parentId: Number(f[1]),
      root: unescapeMountinfo(f[3]!),
      mountPoint: unescapeMountinfo(f[4]!),
      fsType: f[sep + 1]!,
      source: unescapeMountinfo(f[sep + 2]!),
      superOptions: f[sep + 3]!,
    });
  }
  return out;
}

/** The mounts of this process' mount namespace. */
export async function readMountinfo(): Promise<MountInfo[]> {
  return parseMountinfo(await readFile("/proc/self/mountinfo", "utf8"));
}

/** Mount points strictly below `dir` (a real path), deepest (most recently stacked) first. */
export function mountPointsUnder(mounts: MountInfo[], dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : dir + "/";
  return mounts
    .filter((m) => m.mountPoint.startsWith(prefix))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length || b.id - a.id)
    .map((m) => m.mountPoint);
}

/** The mount(8) arguments for one snapshot mount at `target`. */
export function mountArgs(m: Mount, target: string): string[] {
  if (m.type === "bind") {
    const opts = m.options.some((o) => o === "bind" || o === "rbind") ? m.options : ["rbind", ...m.options];
    return ["-t", "none", "-o", opts.join(","), m.source, target];
  }
  const args = ["-t", m.type];
  if (m.options.length > 0) args.push("-o", m.options.join(","));
  return [...args, m.source, target];
}

const MS_RDONLY = 0x1;
const MS_NOSUID = 0x2;
const MS_NODEV = 0x4;
const MS_NOEXEC = 0x8;
const MS_SYNCHRONOUS = 0x10;
const MS_REMOUNT = 0x20;
const MS_MANDLOCK = 0x40;
const MS_DIRSYNC = 0x80;
const MS_NOATIME = 0x400;
const MS_NODIRATIME = 0x800;
const MS_BIND = 0x1000;
const MS_REC = 0x4000;
const MS_RELATIME = 0x200000;
const MS_STRICTATIME = 0x1000000;
const MNT_DETACH = 0x2;

/** mount(8)'s flag options (containerd's table): set or clear a flag; the rest is fs data. */
const FLAG_OPTIONS: Record<string, { clear: boolean; flag: number }> = {
  async: { clear: true, flag: MS_SYNCHRONOUS },
  atime: { clear: true, flag: MS_NOATIME },
  bind: { clear: false, flag: MS_BIND },
  defaults: { clear: false, flag: 0 },
  dev: { clear: true, flag: MS_NODEV },
  diratime: { clear: true, flag: MS_NODIRATIME },
  dirsync: { clear: false, flag: MS_DIRSYNC },
  exec: { clear: true, flag: MS_NOEXEC },
  mand: { clear: false, flag: MS_MANDLOCK },
  noatime: { clear: false, flag: MS_NOATIME },
  nodev: { clear: false, flag: MS_NODEV },
  nodiratime: { clear: false, flag: MS_NODIRATIME },
  noexec: { clear: false, flag: MS_NOEXEC },
  nomand: { clear: true, flag: MS_MANDLOCK },
  norelatime: { clear: true, flag: MS_RELATIME },
  nostrictatime: { clear: true, flag: MS_STRICTATIME },
  nosuid: { clear: false, flag: MS_NOSUID },
  rbind: { clear: false, flag: MS_BIND | MS_REC },
  relatime: { clear: false, flag: MS_RELATIME },
  remount: { clear: false, flag: MS_REMOUNT },
  ro: { clear: false, flag: MS_RDONLY },
  rw: { clear: true, flag: MS_RDONLY },
  strictatime: { clear: false, flag: MS_STRICTATIME },
  suid: { clear: true, flag: MS_NOSUID },
  sync: { clear: false, flag: MS_SYNCHRONOUS },
};

/** Splits mount options into mount(2) flags and the filesystem's data string. */
export function parseMountOptions(options: string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const o of options) {
    const f = FLAG_OPTIONS[o];
    if (f === undefined) data.push(o);
    else if (f.clear) flags &= ~f.flag;
    else flags |= f.flag;
  }
  return { flags, data: data.join(",") };
}

/** One snapshot mount at `target` through mount(2), as containerd does it. */
async function mountWithSyscalls(m: Mount, target: string): Promise<void> {
  let { flags, data } = parseMountOptions(m.options);
  if (m.type === "bind" && (flags & MS_BIND) === 0) flags |= MS_BIND | MS_REC;
  const fstype = m.type === "bind" ? "" : m.type;
  await mountSyscall(m.source, target, fstype, flags, data);
  // A bind mount ignores MS_RDONLY: read-only takes a remount.
  if ((flags & (MS_BIND | MS_RDONLY)) === (MS_BIND | MS_RDONLY)) {
    try {
      await mountSyscall("", target, "", flags | MS_REMOUNT, "");
    } catch (e) {
      await umountSyscall(target, MNT_DETACH).catch(() => {});
      throw e;
    }
  }
}

/** Whether a failure means the syscall helper cannot run here, rather than that mount(2) failed. */
function helperUnavailable(e: unknown): boolean {
  return !(e instanceof SyscallError);
}

/**
 * Whether a mount's options exceed what mount(2) takes in one page: a deep overlay chain with long
 * paths (containerd's snapshot dirs). Such a mount is made with paths relative to its layers'
 * common dir (containerd does the same), and never handed to runc in a spec.
 */
export function tooLongForMount(m: Mount): boolean {
  return m.type === "overlay" && m.options.join(",").length > MOUNT_DATA_MAX;
}

/**
 * Mounts a snapshot's mount list at `target`, in order (containerd's mount.All): usually one
 * overlay or one bind. On failure, what was already mounted is unmounted again.
 */
export async function mountAll(mounts: Mount[], target: string, what: string): Promise<void> {
  for (let i = 0; i < mounts.length; i++) {
    const m = mounts[i]!;
    try {
      if (tooLongForMount(m)) {
        await mountWithRelativePaths([m], target);
        continue;
      }
      try {
        await mountWithSyscalls(m, target);
      } catch (e) {
        if (!helperUnavailable(e)) throw e;
        await mustRunTool("mount", mountArgs(m, target), `mounting ${what} at ${target}`);
      }
    } catch (e) {
      await unmountAll(Array(i).fill(target)).catch(() => {});
      throw new Error(`mounting ${what} (${m.type} ${m.source}) at ${target}: ${(e as Error).message}`);
    }
  }
}

/**
 * Unmounts each target once (a target listed twice comes off twice: stacked mounts), in the order
 * given. A target with mounts below it, or one still in use, is detached lazily: it goes once
 * nothing uses it. One that is not mounted is skipped.
 */
export async function unmountAll(targets: string[]): Promise<void> {
  for (const target of targets) {
    try {
      await umountSyscall(target, 0);
    } catch (e) {
      if (e instanceof SyscallError && (e.code === "EINVAL" || e.code === "ENOENT")) continue; // not mounted
      if (e instanceof SyscallError && e.code === "EBUSY") await umountSyscall(target, MNT_DETACH);
      else if (helperUnavailable(e)) await unmountWithTool(target);
      else throw e;
    }
  }
}

/** umount(8) -R, lazily for what stays busy: the fallback where the syscall helper cannot run. */
async function unmountWithTool(target: string): Promise<void> {
  const r = await runTool("umount", ["-R", target]);
  if (r.code === 0) return;
  if (!(await readMountinfo()).some((m) => m.mountPoint === target)) return;
  await mustRunTool("umount", ["-R", "-l", target], `unmounting ${target} (${r.stderr})`);
}

/**
 * Removes `path` recursively, but refuses when anything at or below it is still mounted: a mount's
 * contents (a snapshot, a host dir) must never be deleted. As a second guard it never descends
 * into another filesystem than `path`'s parent's. Used for the executor's own bundle dirs.
 */
export async function removeUnmountedTree(path: string): Promise<void> {
  const mounted = (await readMountinfo()).filter(
    (m) => m.mountPoint === path || m.mountPoint.startsWith(path + "/"),
  );
  if (mounted.length > 0) {
    throw new Error(`removing ${path}: ${mounted[0]!.mountPoint} is still a mount point; unmount it first`);
  }
  let parentDev: number;
  try {
    parentDev = (await lstat(posix.dirname(path))).dev;
  } catch {
    return;
  }
  await removeOnDevice(path, parentDev);
}

async function removeOnDevice(path: string, dev: number): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  if (st.dev !== dev) throw new Error(`removing ${path}: it is still a mount point; unmount it first`);
  if (!st.isDirectory()) {
    await unlink(path);
    return;
  }
  for (const name of await readdir(path)) await removeOnDevice(posix.join(path, name), dev);
  await rmdir(path);
}

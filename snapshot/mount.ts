// Mounting snapshot mount lists with mount(8) (we run as root), and finding what is mounted.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, sep } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { mountSyscall, SyscallError, syscallsSupported, umountSyscall } from "../util/syscalls.ts";
import type { Mount } from "./types.ts";

/**
 * The legacy mount(2) API takes all options in one page; longer overlay option strings are mounted
 * with paths relative to their common directory (mount runs with that directory as its cwd).
 */
export const MOUNT_DATA_MAX = 4000;

/** overlayfs refuses more lower layers than this (OVL_MAX_STACK). */
export const OVERLAY_MAX_LOWERS = 500;

function run(cmd: string, args: string[], cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, encoding: "utf8" }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Mounts each entry of `mounts` on `target` in order; on failure unmounts what it did. */
export async function mountAll(mounts: Mount[], target: string): Promise<void> {
  try {
    for (const m of mounts) await mountOne(m, target);
  } catch (e) {
    await unmountAll(target).catch(() => {});
    throw new Error(`mounting ${JSON.stringify(mounts)} at ${target}: ${(e as Error).message}`);
  }
}

async function mountOne(m: Mount, target: string): Promise<void> {
  if (syscallsSupported()) {
    try {
      if (await mountWithSyscall(m, target)) return;
    } catch (e) {
      if (e instanceof SyscallError) throw e;
      // The helper could not run here: fall through to mount(8).
    }
  }
  if (m.type === "bind") {
    const recursive = m.options.includes("rbind");
    await run("mount", [recursive ? "--rbind" : "--bind", m.source, target]);
    const rest = m.options.filter((o) => o !== "rbind" && o !== "bind" && o !== "rw");
    // A bind mount ignores flags on creation; they take effect only by remounting it.
    if (rest.length > 0) await run("mount", ["-o", ["remount", "bind", ...rest].join(","), target]);
    return;
  }
  if (m.type === "overlay") {
    const data = m.options.join(",");
    if (data.length <= MOUNT_DATA_MAX) {
      await run("mount", ["-t", "overlay", "-o", data, m.source || "overlay", target]);
      return;
    }
    const { cwd, options } = relativeOverlayOptions(m.options);
    const relData = options.join(",");
    if (relData.length > MOUNT_DATA_MAX) {
      throw new Error(
        `overlay options are ${relData.length} bytes even with relative paths: too many layers`,
      );
    }
    await run("mount", ["-t", "overlay", "-o", relData, m.source || "overlay", target], cwd);
    return;
  }
  await run("mount", ["-t", m.type, "-o", m.options.join(",") || "defaults", m.source || m.type, target]);
}

const MS_RDONLY = 0x1;
const MS_REMOUNT = 0x20;
const MS_BIND = 0x1000;
const MS_REC = 0x4000;

/**
 * The common mounts (binds, overlays that fit in a page) through mount(2) in the long-lived
 * syscall helper: spawning mount(8) and umount(8) costs tens of milliseconds per mount on a busy
 * host, and a cached build mounts to read files. Returns false for what it leaves to mount(8).
 */
async function mountWithSyscall(m: Mount, target: string): Promise<boolean> {
  const ro = m.options.includes("ro");
  if (m.type === "bind") {
    if (m.options.some((o) => !["bind", "rbind", "ro", "rw"].includes(o))) return false;
    const flags = MS_BIND | (m.options.includes("rbind") ? MS_REC : 0);
    await mountSyscall(m.source, target, "", flags, "");
    if (ro) {
      try {
        await mountSyscall("", target, "", flags | MS_REMOUNT | MS_RDONLY, "");
      } catch (e) {
        await umountSyscall(target, MNT_DETACH).catch(() => {});
        throw e;
      }
    }
    return true;
  }
  if (m.type === "overlay") {
    const data = m.options.filter((o) => o !== "ro" && o !== "rw").join(",");
    if (data.length > MOUNT_DATA_MAX) return false;
    await mountSyscall(m.source || "overlay", target, "overlay", ro ? MS_RDONLY : 0, data);
    return true;
  }
  return false;
}

const MNT_DETACH = 0x2;

/** Rewrites overlay dir options relative to the deepest directory that holds all of them. */
export function relativeOverlayOptions(options: string[]): { cwd: string; options: string[] } {
  const dirs: string[] = [];
  for (const o of options) {
    const [k, v] = splitOption(o);
    if (k === "lowerdir") dirs.push(...v.split(":"));
    else if (k === "upperdir" || k === "workdir") dirs.push(v);
  }
  let common = dirs[0]!.split(sep).slice(0, -1);
  for (const d of dirs) {
    const parts = d.split(sep);
    let i = 0;
    while (i < common.length && i < parts.length - 1 && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  const cwd = common.join(sep) || sep;
  const rel = (d: string) => relative(cwd, d);
  return {
    cwd,
    options: options.map((o) => {
      const [k, v] = splitOption(o);
      if (k === "lowerdir") return `lowerdir=${v.split(":").map(rel).join(":")}`;
      if (k === "upperdir" || k === "workdir") return `${k}=${rel(v)}`;
      return o;
    }),
  };
}

function splitOption(o: string): [string, string] {
  const i = o.indexOf("=");
  return i < 0 ? [o, ""] : [o.slice(0, i), o.slice(i + 1)];
}

/** Unmounts everything stacked on `target`; a busy mount is retried, then detached lazily. */
export async function unmountAll(target: string): Promise<void> {
  for (let i = 0; i < 64; i++) {
    if (!(await isMountPoint(target))) return;
    let done = false;
    for (let attempt = 0; attempt < 5 && !done; attempt++) {
      try {
        await umountOnce(target, 0);
        done = true;
      } catch {
        await sleep(20 * (attempt + 1));
      }
    }
    if (!done) await umountOnce(target, MNT_DETACH);
  }
  throw new Error(`unmounting ${target}: still mounted after 64 unmounts`);
}

/** umount2(2) through the helper where it runs, else umount(8) (-l for a lazy detach). */
async function umountOnce(target: string, flags: number): Promise<void> {
  if (syscallsSupported()) {
    try {
      await umountSyscall(target, flags);
      return;
    } catch (e) {
      if (e instanceof SyscallError) throw e;
    }
  }
  await run("umount", flags & MNT_DETACH ? ["-l", target] : [target]);
}

/** The directory of a mount list that is one bind mount, readable without mounting it. */
export function readonlyDir(mounts: Mount[]): string | undefined {
  const only = mounts.length === 1 ? mounts[0] : undefined;
  return only?.type === "bind" ? only.source : undefined;
}

/** Read-only versions of mounts: binds get "ro", an overlay's upper dir becomes its top lower dir. */
export function readonlyMounts(mounts: Mount[]): Mount[] {
  return mounts.map((m) => {
    if (m.type === "overlay") {
      let upper: string | undefined;
      let lower = "";
      const other: string[] = [];
      for (const o of m.options) {
        const [k, v] = splitOption(o);
        if (k === "upperdir") upper = v;
        else if (k === "lowerdir") lower = v;
        else if (k !== "workdir") other.push(o);
      }
      if (upper === undefined) return m;
      return { ...m, options: [...other, `lowerdir=${upper}:${lower}`] };
    }
    return { ...m, options: [...m.options.filter((o) => o !== "rw" && o !== "ro"), "ro"] };
  });
}

/**
 * Mounts `mounts` on a fresh directory under `base` (default: the OS temp dir), runs `fn` with it,
 * and always unmounts and removes the directory afterwards.
 */
export async function withMounted<T>(
  mounts: Mount[],
  fn: (dir: string) => Promise<T>,
  opts: { readonly?: boolean; base?: string; inPlace?: boolean } = {},
): Promise<T> {
  // Reading a plain directory needs no mount: with `inPlace` it is handed over as it is (the
  // caller promises not to write). Most results are one layer, so a cached build's reads take this.
  const plain = readonlyDir(mounts);
  if (opts.readonly && opts.inPlace && plain !== undefined) return fn(plain);
  const dir = await mkdtemp(join(opts.base ?? tmpdir(), "buildd-mnt-"));
  try {
    await mountAll(opts.readonly ? readonlyMounts(mounts) : mounts, dir);
    try {
      return await fn(dir);
    } finally {
      await unmountAll(dir);
    }
  } finally {
    await rmdir(dir).catch(() => {});
  }
}

/** One line of /proc/self/mountinfo. */
export type MountInfo = {
  /** major:minor of the mounted filesystem. */
  dev: string;
  /** The directory of the filesystem that is mounted (not "/" for bind mounts). */
  root: string;
  mountPoint: string;
  fsType: string;
  source: string;
  /** Per-mount and superblock options together. */
  options: string[];
};

function unescapeMountInfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Everything mounted in this mount namespace, in mount order. */
export async function readMountInfo(): Promise<MountInfo[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  const out: MountInfo[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    if (dash < 6) continue;
    out.push({
      dev: fields[2]!,
      root: unescapeMountInfo(fields[3]!),
      mountPoint: unescapeMountInfo(fields[4]!),
      fsType: fields[dash + 1]!,
      source: unescapeMountInfo(fields[dash + 2] ?? ""),
      options: [...fields[5]!.split(","), ...(fields[dash + 3] ?? "").split(",")],
    });
  }
  return out;
}

/** True when `path` is itself a mount point. */
export async function isMountPoint(path: string): Promise<boolean> {
  return (await readMountInfo()).some((m) => m.mountPoint === path);
}

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/**
 * Mount points that show data from under `dir`: mounted inside it, overlays whose layers live in it,
 * or bind mounts of something in it. Deepest first, so they can be unmounted in this order.
 */
export async function mountsUsing(dir: string): Promise<string[]> {
  const infos = await readMountInfo();
  const fsRoots = new Map<string, string>();
  for (const m of infos) if (m.root === "/" && !fsRoots.has(m.dev)) fsRoots.set(m.dev, m.mountPoint);
  const found = new Set<string>();
  for (const m of infos) {
    if (isUnder(m.mountPoint, dir)) found.add(m.mountPoint);
    else if (m.fsType === "overlay") {
      const dirs = m.options.flatMap((o) => {
        const [k, v] = splitOption(o);
        return k === "lowerdir" || k === "upperdir" || k === "workdir" ? v.split(":") : [];
      });
      if (dirs.some((d) => isUnder(d, dir))) found.add(m.mountPoint);
    } else if (m.root !== "/") {
      const base = fsRoots.get(m.dev);
      if (base !== undefined && isUnder(join(base, m.root), dir)) found.add(m.mountPoint);
    }
  }
  return [...found].sort((a, b) => b.length - a.length);
}

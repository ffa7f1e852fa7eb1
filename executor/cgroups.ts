// The containers' cgroups: runc puts each in `<our cgroup>/buildd/<name>` of every hierarchy (a
// relative cgroupsPath), so builds stay inside the daemon's own limits. runc removes them when a
// container is deleted; these helpers find and remove what a crash left behind.
import { readdir, readFile, rmdir } from "node:fs/promises";
import { posix } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { MountInfo } from "./hostmount.ts";

/** The parent under which every container cgroup of the daemon lives (a relative cgroupsPath). */
export const CGROUP_PARENT = "buildd";

/**
 * The host directories `<hierarchy mount>/<own cgroup>/buildd` of every cgroup hierarchy (v1
 * controllers, named hierarchies and the v2/unified one) this process belongs to.
 */
export async function cgroupParentDirs(mounts: MountInfo[]): Promise<string[]> {
  const own = new Map<string, string>(); // controller list ("memory", "name=systemd", "" for v2) -> path
  for (const line of (await readFile("/proc/self/cgroup", "utf8")).split("\n")) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m !== null) own.set(m[1]!, m[2]!);
  }
  const dirs: string[] = [];
  for (const m of mounts) {
    let key: string | undefined;
    if (m.fsType === "cgroup2") key = "";
    else if (m.fsType === "cgroup") {
      const opts = m.superOptions.split(",").filter((o) => o !== "rw" && o !== "ro");
      // Each controller belongs to one hierarchy, so all of a line's controllers name its mount.
      key = [...own.keys()].find((k) => k !== "" && k.split(",").every((c) => opts.includes(c)));
    }
    const ownPath = key === undefined ? undefined : own.get(key);
    if (ownPath === undefined || !ownPath.startsWith(m.root)) continue;
    dirs.push(posix.join(m.mountPoint, ownPath.slice(m.root.length), CGROUP_PARENT));
  }
  return [...new Set(dirs)];
}

/** Names of the container cgroups under the parent dirs whose name starts with `prefix`. */
export async function listCgroups(parentDirs: string[], prefix: string): Promise<string[]> {
  const names = new Set<string>();
  for (const dir of parentDirs) {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory() && e.name.startsWith(prefix)) names.add(e.name);
  }
  return [...names];
}

/**
 * Kills every process in the container cgroup `name` and removes it from every hierarchy. A
 * cgroup can only be removed once its processes have exited, so this retries for a while.
 */
export async function removeCgroup(parentDirs: string[], name: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const left: string[] = [];
    for (const parent of parentDirs) {
      const dir = posix.join(parent, name);
      const procs = await readFile(posix.join(dir, "cgroup.procs"), "utf8").catch(() => undefined);
      if (procs === undefined) continue; // not in this hierarchy, or already gone
      for (const pid of procs.split("\n").filter((p) => p !== "")) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // already exited
        }
      }
      try {
        await rmdir(dir);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== "ENOENT") left.push(`${dir}: ${code}`);
      }
    }
    if (left.length === 0) return;
    if (Date.now() > deadline) throw new Error(`removing container cgroups: ${left.join(", ")} still busy`);
    await sleep(50);
  }
}

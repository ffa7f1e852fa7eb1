// Test helpers for code built on snapshots: temporary roots that are always unmounted and removed,
// and trees described as plain objects so two filesystems can be compared with deepEqual.
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { digestOf } from "../util/digest.ts";
import { mountsUsing, unmountAll, withMounted } from "./mount.ts";
import type { Mount } from "./types.ts";

/** A temporary directory removed after the test, after unmounting anything that uses it. */
export async function tempRoot(t: TestContext, prefix = "buildd-snap-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(async () => {
    for (const mp of await mountsUsing(dir)) await unmountAll(mp);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

function fileSummary(data: Buffer): string {
  return data.length <= 256 ? data.toString("utf8") : `${data.length} bytes ${digestOf(data)}`;
}

/**
 * Every entry under `dir` as "type mode uid:gid payload" (payload: file content, link target or
 * device number). Directory times are left out: they legitimately differ between copies.
 */
export async function describeTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const name of (await readdir(join(dir, rel))).sort()) {
      const path = rel === "" ? name : `${rel}/${name}`;
      const st = await lstat(join(dir, path));
      const head = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isDirectory()) {
        out[path] = `dir ${head}`;
        await walk(path);
      } else if (st.isSymbolicLink()) out[path] = `link ${head} ${await readlink(join(dir, path))}`;
      else if (st.isFile()) out[path] = `file ${head} ${fileSummary(await readFile(join(dir, path)))}`;
      else out[path] = `node ${head} ${st.rdev}`;
    }
  };
  await walk("");
  return out;
}

/** describeTree of what `mounts` show, mounted read-only under `base`. */
export async function describeMounts(mounts: Mount[], base?: string): Promise<Record<string, string>> {
  return withMounted(mounts, describeTree, { readonly: true, base });
}

/** Paths whose descriptions differ between two described trees, as "path: a | b", for short failures. */
export function treeDifferences(a: Record<string, string>, b: Record<string, string>): string[] {
  const out: string[] = [];
  for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
    if (a[k] !== b[k]) out.push(`${k}: ${a[k] ?? "(missing)"} | ${b[k] ?? "(missing)"}`);
  }
  return out;
}

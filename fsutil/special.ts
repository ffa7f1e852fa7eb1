// Device files and fifos: Node has no mknod(2), so coreutils' mknod(1) makes them (we run as root).
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** The kinds of special file {@link makeSpecialFile} creates. */
export type SpecialKind = "char" | "block" | "fifo";

/** Linux's major and minor numbers of a st_rdev. */
export function splitDevice(rdev: bigint): { major: number; minor: number } {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { major, minor };
}

/**
 * Creates a device file or fifo at `path`, which must not exist (mknod(2) never follows a symlink
 * there). Mode 0600 until the caller sets the real one.
 */
export async function makeSpecialFile(path: string, kind: SpecialKind, major = 0, minor = 0): Promise<void> {
  const args = ["-m", "600", "--", path, kind === "char" ? "c" : kind === "block" ? "b" : "p"];
  if (kind !== "fifo") args.push(String(major), String(minor));
  try {
    await execFileAsync("mknod", args);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    throw new Error(`creating ${kind} special file ${path} failed: ${e.stderr?.trim() || e.message}`);
  }
}

// Fixtures for the executor's tests: a busybox lower dir shared by a test file, a writable overlay
// over it per test, an executor on a temporary state dir, and output collection.
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { tempBusyboxRootfs } from "../test/busybox.ts";
import { readMountinfo, unmountAll } from "./hostmount.ts";
import { RuncExecutor, type RuncExecutorOptions } from "./runc.ts";
import type { ExecIO, Mount, ProcessSpec } from "./types.ts";

/** A process spec with the defaults most tests want. */
export function shell(script: string, extra: Partial<ProcessSpec> = {}): ProcessSpec {
  return {
    args: ["/bin/sh", "-c", script],
    env: [],
    cwd: "/",
    network: "none",
    security: "sandbox",
    ...extra,
  };
}

/** A temporary dir removed after the test. */
export async function tempDir(t: TestContext, prefix = "buildd-exec-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

let lowerPromise: Promise<{ dir: string; cleanup: () => Promise<void> }> | undefined;

/** One read-only busybox dir per test process, removed at exit by the caller's `after`. */
export function sharedBusybox(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  lowerPromise ??= tempBusyboxRootfs();
  return lowerPromise;
}

/** A writable overlay over `lower` whose upper dir shows what a run wrote. */
export async function overlayRoot(
  t: TestContext,
  lower: string,
): Promise<{ mounts: Mount[]; upper: string }> {
  const dir = await tempDir(t, "buildd-exec-overlay-");
  const upper = join(dir, "upper");
  const work = join(dir, "work");
  await mkdir(upper);
  await mkdir(work);
  return {
    upper,
    mounts: [
      {
        type: "overlay",
        source: "overlay",
        options: [`lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${work}`],
      },
    ],
  };
}

/** An executor on a fresh state dir, closed (and its tmpfs unmounted) after the test. */
export async function testExecutor(
  t: TestContext,
  opts: Partial<RuncExecutorOptions> = {},
): Promise<{ executor: RuncExecutor; root: string }> {
  const parent = await mkdtemp(join(tmpdir(), "buildd-exec-root-"));
  const root = join(parent, "state");
  const executor = await RuncExecutor.open({ root, ...opts });
  // One hook, in this order: `after` hooks run first-registered first, and removing the dir
  // before unmounting the executor's tmpfs would fail.
  t.after(async () => {
    await executor.close();
    // Whatever happened, leave no mount behind for the next test.
    const left = (await readMountinfo()).filter((m) => m.mountPoint.startsWith(root)).map((m) => m.mountPoint);
    await unmountAll(left.reverse());
    await rm(parent, { recursive: true, force: true });
  });
  return { executor, root };
}

/** Collects a run's output as text. */
export function collect(): { io: ExecIO; stdout: () => string; stderr: () => string } {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  return {
    io: { stdout: (c) => out.push(c), stderr: (c) => err.push(c) },
    stdout: () => Buffer.concat(out).toString("utf8"),
    stderr: () => Buffer.concat(err).toString("utf8"),
  };
}

/** Mount points below `dir` right now. */
export async function mountsUnder(dir: string): Promise<string[]> {
  return (await readMountinfo()).filter((m) => m.mountPoint.startsWith(dir + "/")).map((m) => m.mountPoint);
}

/** A file's content, or undefined when it does not exist. */
export async function readIfExists(path: string): Promise<string | undefined> {
  return readFile(path, "utf8").catch(() => undefined);
}

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

const deferred = new WeakMap<TestContext, (() => Promise<void> | void)[]>();

/**
 * Runs `fn` after the test, last deferred first (node:test runs `after` hooks first-registered
 * first, but a state dir must be unmounted before the dir holding it is removed). Every step runs
 * even when one fails.
 */
export function defer(t: TestContext, fn: () => Promise<void> | void): void {
  let steps = deferred.get(t);
  if (steps === undefined) {
    const list: (() => Promise<void> | void)[] = [];
    deferred.set(t, list);
    t.after(async () => {
      const errors: unknown[] = [];
      for (const step of list.reverse()) {
        try {
          await step();
        } catch (e) {
          errors.push(e);
        }
      }
      if (errors.length > 0) throw errors[0];
    });
    steps = list;
  }
  steps.push(fn);
}

/** A temporary dir removed after the test. */
export async function tempDir(t: TestContext, prefix = "buildd-exec-test-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  defer(t, () => rm(dir, { recursive: true, force: true }));
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
  const root = join(await tempDir(t, "buildd-exec-root-"), "state");
  const executor = await RuncExecutor.open({ root, ...opts });
  defer(t, async () => {
    await executor.close();
    await unmountLeftovers(root);
  });
  return { executor, root };
}

/** Unmounts whatever is still mounted at or below `dir`, so that a failed test leaks no mount. */
export async function unmountLeftovers(dir: string): Promise<void> {
  const left = (await readMountinfo())
    .filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + "/"))
    .map((m) => m.mountPoint);
  await unmountAll(left.reverse());
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

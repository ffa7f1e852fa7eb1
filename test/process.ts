// Processes, ports and temporary dirs for test fixtures, cleaned up even when a test fails or the
// test process is killed: a leaked registry or git daemon would outlive the run and hold ports.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const SETPRIV = "/usr/bin/setpriv";
const liveChildren = new Set<ChildProcess>();
const liveDirs = new Set<string>();
const exitCleanups = new Set<() => void>();
let exitHooksInstalled = false;

/**
 * Kills every child process group, runs the fixtures' own exit cleanups and removes every temp
 * dir still registered; sync, for exit.
 */
function cleanupNow(): void {
  for (const child of liveChildren) killGroup(child, "SIGKILL");
  liveChildren.clear();
  for (const cleanup of exitCleanups) {
    try {
      cleanup();
    } catch {
      // One fixture's failure must not keep the others' dirs around.
    }
  }
  exitCleanups.clear();
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on("exit", cleanupNow);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    // A listener replaces the default "die" action, so clean up and then die by the same signal.
    process.once(signal, () => {
      cleanupNow();
      process.kill(process.pid, signal);
    });
  }
}

/**
 * Runs `cleanup` (synchronous) if the process exits or is interrupted while it is registered,
 * after services are killed and before temp dirs are removed: a daemon that mounts things needs
 * them unmounted before its dir can go. Returns the unregister function.
 */
export function onExitCleanup(cleanup: () => void): () => void {
  installExitHooks();
  exitCleanups.add(cleanup);
  return () => exitCleanups.delete(cleanup);
}

/** Services run in their own process group (detached) so forked workers (git daemon) die too. */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}

/**
 * Runs `stop` when `signal` aborts: pass a test's `t.signal` (aborted when the test ends) to tie a
 * fixture's life to the test without a t.after. Errors are swallowed; exit hooks catch the rest.
 */
export function stopWhenAborted(signal: AbortSignal | undefined, stop: () => Promise<void>): void {
  if (!signal) return;
  const run = () => void stop().catch(() => {});
  if (signal.aborted) run();
  else signal.addEventListener("abort", run, { once: true });
}

/** A TCP port that was free a moment ago; callers that hand it to another process must retry on EADDRINUSE. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("freePort: no TCP address");
  return address.port;
}

/** Polls `check` until it returns a truthy value (which is returned); fixtures wait for readiness. */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string; signal?: AbortSignal } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  let lastError: unknown;
  for (;;) {
    opts.signal?.throwIfAborted();
    try {
      const value = await check();
      if (value) return value;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? `: last error: ${lastError.message}` : "";
      throw new Error(
        `timed out after ${opts.timeoutMs ?? 15_000}ms waiting for ${opts.what ?? "condition"}${why}`,
      );
    }
    await sleep(opts.intervalMs ?? 25, undefined, { signal: opts.signal }).catch(() => {});
  }
}

/** A running service started by spawnService. */
export type Service = {
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far (last 64 KiB), for error messages. */
  output(): string;
  /** Kills the process group (SIGTERM, then SIGKILL after 3 s) and waits for it to exit. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
};

/**
 * Starts a long-running process and resolves once `readyCheck` answers truthy; rejects (and
 * kills it) if it exits first or never gets ready. The process is killed on process exit too.
 */
export async function spawnService(
  cmd: string,
  args: string[],
  opts: {
    readyCheck: () => Promise<unknown> | unknown;
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    timeoutMs?: number;
    /** Stops the service when this aborts (e.g. a test's `t.signal`). */
    signal?: AbortSignal;
  },
): Promise<Service> {
  installExitHooks();
  // setpriv (util-linux) makes the kernel kill the service if this process dies without cleanup (SIGKILL).
  const [file, argv] = existsSync(SETPRIV)
    ? [SETPRIV, ["--pdeathsig", "SIGKILL", "--", cmd, ...args]]
    : [cmd, args];
  const child = spawn(file, argv, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  liveChildren.add(child);
  let out = "";
  const collect = (chunk: Buffer) => {
    out = (out + chunk.toString("utf8")).slice(-65536);
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  // An exit or spawn failure ends the readiness wait at once instead of at the timeout.
  const gone = new AbortController();
  const exited = new Promise<void>((resolve) => {
    const done = () => {
      liveChildren.delete(child);
      resolve();
    };
    child.once("close", done);
    child.once("error", (e) => {
      gone.abort(new Error(`could not run ${cmd}: ${e.message}`));
      if (child.pid === undefined) done();
    });
  });
  void exited.then(() =>
    gone.abort(new Error(`${cmd} exited (${child.exitCode ?? child.signalCode}) before it was ready`)),
  );
  const stop = async () => {
    killGroup(child, "SIGTERM");
    const timer = setTimeout(() => killGroup(child, "SIGKILL"), 3000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitFor(opts.readyCheck, {
      timeoutMs: opts.timeoutMs,
      signal: gone.signal,
      what: `${cmd} to be ready`,
    });
  } catch (e) {
    await stop();
    throw new Error(`starting ${cmd} ${args.join(" ")}: ${(e as Error).message}\n--- output ---\n${out}`);
  }
  stopWhenAborted(opts.signal, stop);
  return { child, output: () => out, stop, [Symbol.asyncDispose]: stop };
}

/** A fresh temporary dir, removed by `cleanup` or at process exit, whichever comes first. */
export async function tempDir(
  prefix: string,
  opts: { signal?: AbortSignal } = {},
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  installExitHooks();
  const dir = await mkdtemp(join(tmpdir(), `buildd-${prefix}-`));
  liveDirs.add(dir);
  const cleanup = async () => {
    liveDirs.delete(dir);
    await rm(dir, { recursive: true, force: true });
  };
  stopWhenAborted(opts.signal, cleanup);
  return { dir, cleanup };
}

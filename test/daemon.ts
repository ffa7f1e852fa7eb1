// A real buildd for end-to-end tests: started as a child process on a unix socket in a
// temporary root, driven with the real buildctl, stopped (SIGTERM) or killed (SIGKILL) and
// restarted on the same root. Mounts a killed daemon leaves are removed before the root is.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { waitFor } from "./process.ts";

const REPO = join(import.meta.dirname, "..");
const BUILDD = join(REPO, "cmd/buildd/main.ts");
const BUILDCTL = join(REPO, "cmd/buildctl/main.ts");
const SETPRIV = "/usr/bin/setpriv";

export interface BuildctlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestDaemon {
  root: string;
  addr: string;
  /** Everything the daemon logged so far (all of its runs). */
  logs(): string;
  /** Runs buildctl against this daemon. */
  buildctl(
    args: string[],
    opts?: { input?: Uint8Array | string; env?: NodeJS.ProcessEnv; signal?: AbortSignal; cwd?: string },
  ): Promise<BuildctlResult>;
  /** Starts a buildctl that the test controls (to kill it mid-build). */
  spawnBuildctl(args: string[], input?: Uint8Array): ChildProcess;
  /** Stops the daemon with a signal and waits for it to exit; returns its exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Starts it again on the same root. */
  start(): Promise<void>;
  readonly pid: number | undefined;
  /** Stops the daemon and removes its root (done after the test when a test context was given). */
  close(): Promise<void>;
}

export async function startTestDaemon(
  t: TestContext | undefined,
  opts: { config?: string; args?: string[]; root?: string } = {},
): Promise<TestDaemon> {
  const base = opts.root ?? (await mkdtemp(join(tmpdir(), "buildd-e2e-")));
  const root = join(base, "root");
  const sock = join(base, "buildd.sock");
  const configPath = join(base, "buildd.toml");
  await writeFile(configPath, opts.config ?? "");
  const addr = `unix://${sock}`;
  let child: ChildProcess | undefined;
  let exited: Promise<number | null> = Promise.resolve(null);
  let log = "";

  const start = async () => {
    const args = [
      process.execPath,
      BUILDD,
      "--root",
      root,
      "--addr",
      addr,
      "--config",
      configPath,
      ...(opts.args ?? []),
    ];
    const [file, argv] = existsSync(SETPRIV)
      ? [SETPRIV, ["--pdeathsig", "SIGKILL", "--", ...args]]
      : [args[0]!, args.slice(1)];
    const c = spawn(file, argv, { stdio: ["ignore", "pipe", "pipe"] });
    const startsBefore = log.split('"buildd started"').length;
    child = c;
    c.stdout!.on("data", (b: Buffer) => (log += b.toString()));
    c.stderr!.on("data", (b: Buffer) => (log += b.toString()));
    exited = new Promise((resolve) => c.once("exit", (code) => resolve(code)));
    let gone = false;
    void exited.then(() => (gone = true));
    await waitFor(
      async () => {
        if (gone) throw new Error(`buildd exited before it was ready:\n${log}`);
        return log.split('"buildd started"').length > startsBefore;
      },
      { timeoutMs: 60_000, what: "buildd to start" },
    );
  };

  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    child.kill(signal);
    const timer = setTimeout(() => child?.kill("SIGKILL"), 60_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };

  const d: TestDaemon = {
    root,
    addr,
    logs: () => log,
    get pid() {
      return child?.pid;
    },
    buildctl: (args, o = {}) =>
      new Promise((resolve) => {
        const p = execFile(
          process.execPath,
          [BUILDCTL, "--addr", addr, ...args],
          {
            env: { ...process.env, ...o.env },
            maxBuffer: 256 << 20,
            signal: o.signal,
            cwd: o.cwd,
            encoding: "buffer",
          },
          (err, stdout, stderr) => {
            const code = err
              ? typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === "number"
                ? (err as unknown as { code: number }).code
                : 1
              : 0;
            resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
          },
        );
        if (o.input !== undefined) p.stdin!.end(o.input);
        else p.stdin!.end();
      }),
    spawnBuildctl: (args, input) => {
      const p = spawn(process.execPath, [BUILDCTL, "--addr", addr, ...args], {
        stdio: ["pipe", "pipe", "pipe"],
      });
      p.stdin!.end(input ?? new Uint8Array());
      return p;
    },
    stop,
    start,
    close: async () => {},
  };
  let closed: Promise<void> | undefined;
  d.close = () => {
    closed ??= (async () => {
      await stop("SIGTERM");
      await unmountUnder(base);
      if (!opts.root) await rm(base, { recursive: true, force: true });
    })();
    return closed;
  };
  await start();
  t?.after(() => d.close());
  return d;
}

/** Unmounts everything below `dir`, deepest first (a killed daemon may leave mounts). */
export async function unmountUnder(dir: string): Promise<void> {
  for (const p of mountPointsUnder(dir, await readFile("/proc/self/mountinfo", "utf8"))) {
    await new Promise<void>((resolve) => execFile("umount", ["-l", p], () => resolve()));
  }
}

/** The mount points at or below `dir` in a mountinfo text, deepest first (the order to unmount). */
export function mountPointsUnder(dir: string, mountinfo: string): string[] {
  return mountinfo
    .split("\n")
    .map((l) => l.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map((p) =>
      p.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))),
    )
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

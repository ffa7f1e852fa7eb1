// A private containerd (Debian's 1.6) for tests: its config, root, state, sockets and runc state
// all live in one temporary dir, so it never touches a system containerd or /run/containerd's
// sockets. It can be restarted or killed under a running build (fault tests), and `stop()`
// removes everything it ran: containers (runc delete), shims, mounts, the dir.
//
// One thing stays outside the dir: containerd 1.6's runc shim (v2) always puts its ttrpc socket in
// /run/containerd/s/<sha256 of our socket path, namespace and container id>. The name cannot
// collide with a system containerd's shims, and the shim removes the socket when it exits.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { readdir, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { onExitCleanup, type Service, spawnService, stopWhenAborted, tempDir } from "./process.ts";
import { unmountUnder } from "./daemon.ts";

const run = promisify(execFile);

export const CONTAINERD_BIN = "/usr/bin/containerd";
export const CTR_BIN = "/usr/bin/ctr";
const RUNC_BIN = "/usr/sbin/runc";

/** Plugins a build worker does not need (and that would reach outside the temporary dir). */
const DISABLED_PLUGINS = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
];

/** A running test containerd. */
export type TestContainerd = {
  /** The temporary dir holding everything. */
  dir: string;
  /** The gRPC socket (what `worker.containerd.address` names). */
  address: string;
  /** A runc root for tasks (the runc shim's `root` option), inside the dir. */
  runcRoot: string;
  /** Runs `ctr -a <socket> -n <namespace> ...args` and returns its stdout. */
  ctr(namespace: string, args: string[]): Promise<string>;
  /** Stops containerd (SIGTERM) and starts it again on the same dir; shims keep running. */
  restart(): Promise<void>;
  /** Stops containerd only (for "not running" tests); `start()` brings it back. */
  stopDaemon(signal?: NodeJS.Signals): Promise<void>;
  start(): Promise<void>;
  /** Everything containerd logged (last 64 KiB of the current run). */
  output(): string;
  /** Stops containerd, deletes every container and shim it started, unmounts, removes the dir. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
};

function configToml(dir: string): string {
  const q = (s: string) => JSON.stringify(s);
  return `version = 2
root = ${q(join(dir, "root"))}
state = ${q(join(dir, "state"))}
disabled_plugins = ${JSON.stringify(DISABLED_PLUGINS)}

[grpc]
  address = ${q(join(dir, "containerd.sock"))}

[ttrpc]
  address = ${q(join(dir, "containerd.sock.ttrpc"))}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""
`;
}

/** Whether something accepts connections on the unix socket `path`. */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Starts containerd in a fresh temporary dir; pass `t.signal` to stop it when the test ends. */
export async function startContainerd(opts: { signal?: AbortSignal } = {}): Promise<TestContainerd> {
  const tmp = await tempDir("containerd");
  const dir = tmp.dir;
  const address = join(dir, "containerd.sock");
  const runcRoot = join(dir, "runc");
  const configPath = join(dir, "config.toml");
  await writeFile(configPath, configToml(dir));
  let service: Service | undefined;

  const start = async () => {
    service = await spawnService(CONTAINERD_BIN, ["--config", configPath], {
      readyCheck: async () => existsSync(address) && (await listening(address)),
      timeoutMs: 30_000,
    });
  };
  const stopDaemon = async (signal: NodeJS.Signals = "SIGTERM") => {
    const s = service;
    service = undefined;
    if (!s) return;
    if (signal === "SIGTERM") await s.stop();
    else {
      s.child.kill(signal);
      await s.stop();
    }
  };
  // If the test process exits or is interrupted without stop(), its exit hooks kill containerd and
  // remove the dir; the shims (and the containers under them) would outlive it: kill them first.
  const forgetExitCleanup = onExitCleanup(() => killShimsSync(address));
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      forgetExitCleanup();
      await stopDaemon();
      await removeContainers(runcRoot);
      killShimsSync(address);
      await unmountUnder(dir);
      await tmp.cleanup();
    })();
    return stopped;
  };
  try {
    await start();
  } catch (e) {
    await stop();
    throw e;
  }
  stopWhenAborted(opts.signal, stop);
  return {
    dir,
    address,
    runcRoot,
    ctr: async (namespace, args) => {
      try {
        const { stdout } = await run(CTR_BIN, ["-a", address, "-n", namespace, ...args], {
          maxBuffer: 64 << 20,
        });
        return stdout;
      } catch (e) {
        const err = e as Error & { stderr?: string };
        throw new Error(`ctr -n ${namespace} ${args.join(" ")}: ${err.stderr || err.message}`);
      }
    },
    restart: async () => {
      await stopDaemon();
      await start();
    },
    stopDaemon,
    start,
    output: () => service?.output() ?? "",
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** Kills and deletes every container runc still knows under `runcRoot` (one dir per namespace). */
async function removeContainers(runcRoot: string): Promise<void> {
  for (const ns of await readdir(runcRoot).catch(() => [])) {
    const root = join(runcRoot, ns);
    for (const id of await readdir(root).catch(() => [])) {
      await run(RUNC_BIN, ["--root", root, "delete", "-f", id]).catch(() => {});
    }
  }
}

/**
 * Kills the runc shims serving the containerd at `address` (found by their `-address` argument)
 * and their children (the containers' init processes), and removes their sockets, which the shim
 * names sha256("<address>/<namespace>/<id>") under /run/containerd/s. Synchronous: it also runs
 * at process exit.
 */
function killShimsSync(address: string): void {
  const shims: { pid: number; socket: string }[] = [];
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(name)]);
      if (!readlinkSync(`/proc/${name}/exe`).includes("containerd-shim")) continue;
      const argv = readFileSync(`/proc/${name}/cmdline`, "utf8").split("\0");
      const arg = (flag: string) => argv[argv.indexOf(flag) + 1] ?? "";
      if (arg("-address") !== address) continue;
      const hash = createHash("sha256")
        .update(`${address}/${arg("-namespace")}/${arg("-id")}`)
        .digest("hex");
      shims.push({ pid: Number(name), socket: `/run/containerd/s/${hash}` });
    } catch {
      // gone meanwhile
    }
  }
  for (const shim of shims) {
    for (const pid of [...(children.get(shim.pid) ?? []), shim.pid]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  for (const shim of shims) {
    for (let i = 0; i < 200 && alive(shim.pid); i++)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    rmSync(shim.socket, { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

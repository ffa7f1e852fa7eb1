// A private Docker daemon (Debian's docker.io, dockerd 20.10) for interop tests: its own
// containerd, data root, exec root and sockets in temp dirs, no network setup, so a test can
// `docker load` what the exporters write and run it without touching the host's Docker.
//
// dockerd is always handed a containerd of our own (test/containerd.ts): left to itself it uses
// the system containerd whenever /run/containerd/containerd.sock exists (it does on CI, where the
// containerd package runs one) and only otherwise starts a managed one. The host's cgroup tree
// gets a parent of our own for the containers, removed on stop.
import { execFile, execFileSync } from "node:child_process";
import { type Dirent, existsSync, readdirSync, readFileSync, rmdirSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CONTAINERD_BIN, startContainerd, type TestContainerd } from "./containerd.ts";
import { mountPointsUnder, unmountUnder } from "./daemon.ts";
import { onExitCleanup, type Service, spawnService, stopWhenAborted, tempDir } from "./process.ts";

export const DOCKERD_BIN = "/usr/sbin/dockerd";
/** The CLI from the same docker.io package (another `docker` may come first in PATH). */
export const DOCKER_BIN = "/usr/bin/docker";

/** A running private dockerd. */
export type Dockerd = {
  /** "unix://DIR/docker.sock", for `docker -H`. */
  host: string;
  dir: string;
  /** The gRPC socket of its containerd (which has a temp dir of its own). */
  containerdAddress: string;
  /** Runs the docker CLI against this daemon; rejects with its stderr when it fails. */
  docker(args: string[], opts?: { timeoutMs?: number }): Promise<{ stdout: string; stderr: string }>;
  /** What dockerd and containerd logged so far, for error messages. */
  logs(): string;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
};

/** Starts containerd and dockerd in a fresh temp dir; ready once `docker version` answers. */
export async function startDockerd(opts: { signal?: AbortSignal } = {}): Promise<Dockerd> {
  for (const [bin, what] of [
    [DOCKERD_BIN, "dockerd"],
    [DOCKER_BIN, "the docker CLI"],
    [CONTAINERD_BIN, "containerd"],
  ]) {
    if (!existsSync(bin)) {
      throw new Error(
        `${bin} is missing: the docker interop tests need ${what} from Debian's docker.io package (apt-get install docker.io; .ci/run installs it)`,
      );
    }
  }
  const tmp = await tempDir("dockerd");
  const dir = tmp.dir;
  const host = `unix://${join(dir, "docker.sock")}`;
  // A cgroup parent of our own: the default (/docker) is the system dockerd's.
  const cgroupParent = basename(dir);
  const env = dockerEnv(dir);
  let containerd: TestContainerd | undefined;
  let dockerd: Service | undefined;

  const forgetExitCleanup = onExitCleanup(() => {
    // The services were just SIGKILLed; the containers were not (containerd's fixture kills its
    // shims), and what dockerd mounted must go before the dir can.
    removeCgroups(cgroupParent);
    for (const p of mountPointsUnder(dir, readFileSync("/proc/self/mountinfo", "utf8"))) {
      try {
        execFileSync("umount", ["-l", p], { stdio: "ignore" });
      } catch {}
    }
    // The killed containers take a moment to leave their cgroups.
    for (let i = 0; i < 40 && !removeCgroups(cgroupParent); i++) sleepSync(50);
  });
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      // dockerd would give each running container its 10 s to stop: nothing here needs that.
      if (dockerd) {
        await run(DOCKER_BIN, ["-H", host, "ps", "-q"], env, 10_000)
          .then(({ stdout }) => {
            const ids = stdout.split("\n").filter(Boolean);
            if (ids.length > 0) return run(DOCKER_BIN, ["-H", host, "rm", "-f", ...ids], env, 30_000);
          })
          .catch(() => {});
        // Before containerd: dockerd unmounts the rootfs of its containers on the way out.
        await stopPatiently(dockerd, 20_000);
      }
      await containerd?.stop();
      await unmountUnder(dir);
      for (let i = 0; i < 40 && !removeCgroups(cgroupParent); i++) await sleep(50);
      forgetExitCleanup();
      await tmp.cleanup();
    })();
    return stopping;
  };

  try {
    containerd = await startContainerd();
    // daemon.json, not /etc/docker/daemon.json: the host's settings (hosts, mirrors) stay out, and
    // the identity key dockerd 20.10 creates goes here instead of /etc/docker/key.json.
    await writeFile(
      join(dir, "daemon.json"),
      JSON.stringify({ "deprecated-key-path": join(dir, "key.json") }),
    );
    // In a network namespace of its own: with --bridge=none, dockerd deletes any docker0 bridge it
    // finds at start, and the host's (a system dockerd's) must not be it.
    dockerd = await spawnService(
      "unshare",
      [
        "--net",
        "--",
        DOCKERD_BIN,
        "--config-file",
        join(dir, "daemon.json"),
        "--data-root",
        join(dir, "data"),
        "--exec-root",
        join(dir, "exec"),
        "--pidfile",
        join(dir, "dockerd.pid"),
        "-H",
        host,
        "--containerd",
        containerd.address,
        // No bridge, NAT or iptables rules on the host: containers run with --network none.
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--storage-driver",
        "overlay2",
        // cgroupfs whatever the host runs: the systemd driver (20.10's default on cgroup v2 with
        // systemd) would make containers systemd units of the host's systemd.
        "--exec-opt",
        "native.cgroupdriver=cgroupfs",
        "--cgroup-parent",
        cgroupParent,
      ],
      {
        env,
        readyCheck: async () => (await run(DOCKER_BIN, ["-H", host, "version"], env, 5_000)).stdout,
        timeoutMs: 60_000,
      },
    );
  } catch (e) {
    const out = containerd ? `\n--- containerd output ---\n${containerd.output()}` : "";
    await stop();
    throw new Error(`starting a private dockerd: ${(e as Error).message}${out}`);
  }
  stopWhenAborted(opts.signal, stop);
  const logs = () =>
    `--- dockerd ---\n${dockerd?.output() ?? ""}\n--- containerd ---\n${containerd?.output() ?? ""}`;
  return {
    host,
    dir,
    containerdAddress: containerd.address,
    docker: async (args, o = {}) => {
      try {
        return await run(DOCKER_BIN, ["-H", host, ...args], env, o.timeoutMs ?? 120_000);
      } catch (e) {
        const err = e as Error & { stderr?: string };
        throw new Error(`docker ${args.join(" ")} failed: ${err.stderr || err.message}`);
      }
    },
    logs,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** The CLI's own config dir, and nothing from the caller that points it at another daemon. */
function dockerEnv(dir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_CONFIG: join(dir, "cli") };
  for (const k of ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"]) delete env[k];
  return env;
}

/** Async: servers in the test process must keep serving while docker runs. */
function run(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeout: number,
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr }));
      else resolve({ stdout, stderr });
    });
  });
}

/** Exit handlers cannot await. */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** SIGTERM, a grace period, then spawnService's stop (SIGTERM again, SIGKILL after 3 s). */
async function stopPatiently(service: Service, graceMs: number): Promise<void> {
  const child = service.child;
  if (child.exitCode === null && child.signalCode === null) {
    let timer: NodeJS.Timeout | undefined;
    const closed = new Promise<void>((resolve) => {
      child.once("close", () => resolve());
      timer = setTimeout(resolve, graceMs);
    });
    child.kill("SIGTERM");
    await closed;
    clearTimeout(timer);
  }
  await service.stop();
}

/**
 * Kills what is left in our cgroup parent (in every v1 hierarchy, or the v2 tree) and removes
 * it, children first; true when nothing of it is left.
 */
function removeCgroups(parent: string): boolean {
  const roots = [join("/sys/fs/cgroup", parent)];
  try {
    for (const h of readdirSync("/sys/fs/cgroup")) roots.push(join("/sys/fs/cgroup", h, parent));
  } catch {}
  let clean = true;
  const remove = (dir: string) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) remove(join(dir, e.name));
    try {
      for (const pid of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean)) {
        process.kill(Number(pid), "SIGKILL");
      }
    } catch {}
    try {
      rmdirSync(dir);
    } catch {
      clean = false;
    }
  };
  for (const root of roots) remove(root);
  return clean;
}

// Running a prepared container through containerd: a container record with the executor's OCI
// spec (root.path is the rootfs the executor mounted), a task on the runc shim (v2) with FIFOs
// for stdio in the bundle dir, Wait for the exit, then the task and the record are deleted.
//
// containerd may go away under a run (restarted): the run fails naming containerd's socket, the
// container is remembered, and it is killed and deleted once containerd answers again (at the
// next run or cleanup). Containers carry the worker's label, so a new daemon finds what an
// earlier one left and removes it at open.
import { execFile } from "node:child_process";
import { close as closeFd, constants as fsConstants, open as openFd } from "node:fs";
import { Socket } from "node:net";
import { posix } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import type { ContainerRuntime, RuntimeExit, RuntimeRun } from "../../executor/runtime.ts";
import { OptionsSchema } from "../../proto/gen/containerd/runc/v1/options_pb.ts";
import { type ContainerdClient, isNotFound, isUnavailable } from "./client.ts";

const run = promisify(execFile);
/** Raw descriptors (not FileHandles, which close themselves when collected): sockets own them. */
const openRaw = promisify(openFd);

/** The type URL containerd registers the OCI runtime spec under (its value is the spec's JSON). */
export const SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/** The type URL of the runc shim's options. */
export const RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options";
/** The runtime containers are created with. */
export const RUNC_SHIM_V2 = "io.containerd.runc.v2";
/** Label every container of one worker carries (its value: the worker's id). */
export const WORKER_LABEL = "buildd.worker";

const SIGKILL = 9;
const KILL_RETRY_MS = 100;
const KILL_GIVE_UP_MS = 10_000;
/** How long output may trail the exit before the FIFOs are closed anyway. */
const OUTPUT_DRAIN_MS = 2_000;

export interface ContainerdRuntimeOptions {
  client: ContainerdClient;
  /** Labels containers with it, to find this worker's leftovers. */
  workerId: string;
  /** runc's state dir for the shim (its `root` option); default: the shim's (/run/containerd/runc). */
  runcRoot?: string;
  log?: { warn(msg: string, fields?: Record<string, unknown>): void };
}

/** Containers as containerd tasks on the runc shim. */
export class ContainerdRuntime implements ContainerRuntime {
  readonly name: string;
  readonly #client: ContainerdClient;
  readonly #workerId: string;
  readonly #runcRoot: string | undefined;
  readonly #log: ContainerdRuntimeOptions["log"];
  /** Containers a run could not remove (containerd was away): removed when it answers again. */
  readonly #leftovers = new Set<string>();
  /**
   * Removals of containers whose process exited: deleting the task stops the shim, which takes
   * about as long as starting it, and nothing of the step waits for it. cleanup() waits for them.
   */
  readonly #removing = new Map<string, Promise<void>>();

  constructor(opts: ContainerdRuntimeOptions) {
    this.#client = opts.client;
    this.#workerId = opts.workerId;
    this.#runcRoot = opts.runcRoot;
    this.#log = opts.log;
    this.name = `containerd at ${opts.client.address}`;
  }

  async run(r: RuntimeRun): Promise<RuntimeExit> {
    await this.#removeLeftovers();
    const c = this.#client;
    const options = this.#runcOptions();
    await c.containers.create(
      {
        container: {
          id: r.id,
          labels: { [WORKER_LABEL]: this.#workerId },
          runtime: { name: RUNC_SHIM_V2, options },
          spec: { typeUrl: SPEC_TYPE_URL, value: new TextEncoder().encode(JSON.stringify(r.spec)) },
        },
      },
      { signal: r.signal },
    );
    const io = await openStdio(r);
    let waited: Promise<RuntimeExit> | undefined;
    try {
      // The shim opens the FIFOs while it creates the task; our readers are open already.
      try {
        await c.tasks.create({
          containerId: r.id,
          stdin: io.stdinPath ?? "",
          stdout: io.stdoutPath,
          stderr: io.stderrPath,
          options,
        });
      } catch (e) {
        if (isUnavailable(e)) throw e;
        // The runtime refused to start the process (bad binary, cwd, mount): runc's message.
        return { exitCode: 1, runtimeError: runtimeMessage((e as Error).message) };
      }
      io.shimConnected();
      waited = c.tasks.wait({ containerId: r.id }).then((w) => ({ exitCode: w.exitStatus }) as RuntimeExit);
      waited.catch(() => {});
      let killing: Promise<void> | undefined;
      let giveUp!: (e: Error) => void;
      const gaveUp = new Promise<never>((_, reject) => {
        giveUp = reject;
      });
      gaveUp.catch(() => {});
      const kill = () => {
        killing ??= this.#kill(r.id, waited!).then((dead) => {
          if (!dead) {
            giveUp(new Error(`container ${r.id} did not exit after SIGKILL; is ${this.name} stuck?`));
          }
        });
      };
      r.signal.addEventListener("abort", kill, { once: true });
      try {
        try {
          await c.tasks.start({ containerId: r.id });
        } catch (e) {
          if (isUnavailable(e)) throw e;
          return { exitCode: 1, runtimeError: runtimeMessage((e as Error).message) };
        }
        if (r.signal.aborted) kill();
        if (io.stdinPath) {
          // The shim keeps a write end of stdin open until asked to close it.
          const closeStdin = io
            .stdinWritten()
            .then(() => c.tasks.closeIO({ containerId: r.id, stdin: true }));
          // A stream is read while the process runs (it may end only after it exits).
          if (r.stdin instanceof Uint8Array) await closeStdin;
          else closeStdin.catch(() => {});
        }
        const exit = await Promise.race([waited, gaveUp]);
        await io.drained(OUTPUT_DRAIN_MS);
        this.#removeLater(r.id);
        return exit;
      } finally {
        r.signal.removeEventListener("abort", kill);
        await killing;
      }
    } catch (e) {
      if (isUnavailable(e)) {
        this.#leftovers.add(r.id);
        throw new Error(
          `${this.name} went away while the container ran (restarted or stopped?); the step failed, run the build again: ${(e as Error).message}`,
          { cause: e },
        );
      }
      throw e;
    } finally {
      io.close();
    }
  }

  async remove(id: string): Promise<void> {
    if (this.#removing.has(id)) return;
    try {
      await this.#removeContainer(id);
      this.#leftovers.delete(id);
    } catch (e) {
      if (!isUnavailable(e)) throw e;
      this.#leftovers.add(id);
    }
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.#removing.values());
    try {
      const { containers } = await this.#client.containers.list({
        filters: [`labels."${WORKER_LABEL}"==${this.#workerId}`],
      });
      for (const ctr of containers) await this.#removeContainer(ctr.id);
      this.#leftovers.clear();
    } catch (e) {
      if (!isUnavailable(e)) throw e;
      // containerd is away (stopped before the daemon): the next open removes what is left.
      this.#log?.warn("containerd is unreachable; leftover containers are removed at the next start", {
        error: (e as Error).message,
      });
    }
  }

  /** Kills the task until Wait returns (the process may not have started yet); false: it did not. */
  async #kill(id: string, waited: Promise<RuntimeExit>): Promise<boolean> {
    let done = false;
    const finished = waited.then(
      () => {
        done = true;
      },
      () => {
        done = true;
      },
    );
    const deadline = Date.now() + KILL_GIVE_UP_MS;
    while (!done && Date.now() < deadline) {
      await this.#client.tasks.kill({ containerId: id, signal: SIGKILL, all: true }).catch(() => {});
      await Promise.race([finished, sleep(KILL_RETRY_MS)]);
    }
    return done;
  }

  /** Kills and deletes the task (if any), then deletes the container record. */
  async #removeContainer(id: string): Promise<void> {
    const c = this.#client;
    try {
      const { process } = await c.tasks.get({ containerId: id });
      if (process && process.status !== 3 /* STOPPED */ && process.status !== 1 /* CREATED */) {
        await c.tasks.kill({ containerId: id, signal: SIGKILL, all: true }).catch(() => {});
        await Promise.race([c.tasks.wait({ containerId: id }).catch(() => {}), sleep(KILL_GIVE_UP_MS)]);
      }
      await c.tasks.delete({ containerId: id });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    try {
      await c.containers.delete({ id });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  /** Deletes the exited container in the background; a failure leaves it for the next run. */
  #removeLater(id: string): void {
    const p = this.#removeContainer(id)
      .catch((e) => {
        this.#leftovers.add(id);
        this.#log?.warn("removing an exited container failed; the next run retries", {
          id,
          error: (e as Error).message,
        });
      })
      .finally(() => this.#removing.delete(id));
    this.#removing.set(id, p);
  }

  async #removeLeftovers(): Promise<void> {
    for (const id of [...this.#leftovers]) {
      try {
        await this.#removeContainer(id);
        this.#leftovers.delete(id);
      } catch (e) {
        this.#log?.warn("removing a container left by a run containerd did not finish failed", {
          id,
          error: (e as Error).message,
        });
        return;
      }
    }
  }

  #runcOptions() {
    if (this.#runcRoot === undefined) return undefined;
    return {
      typeUrl: RUNC_OPTIONS_TYPE_URL,
      value: toBinary(OptionsSchema, create(OptionsSchema, { root: this.#runcRoot })),
    };
  }
}

/** runc's reason without containerd's wrapping ("failed to create shim task: OCI runtime create failed: ..."). */
function runtimeMessage(message: string): string {
  const m = /runc (?:create|run) failed: (.*?)(?:: unknown)?$/.exec(message);
  return (m?.[1] ?? message).replace(/^unable to start container process: /, "");
}

/** The stdio FIFOs of one run, read (and written) from our side. */
interface Stdio {
  stdoutPath: string;
  stderrPath: string;
  stdinPath?: string;
  /** The shim holds the FIFOs now: drop the write ends that kept our readers from seeing EOF. */
  shimConnected(): void;
  /** Resolves once the stdin data is in the pipe and our end of it is closed. */
  stdinWritten(): Promise<void>;
  /** Resolves when both outputs reached EOF, or after `ms`. */
  drained(ms: number): Promise<void>;
  close(): void;
}

/**
 * Makes the FIFOs in the bundle dir (our tmpfs) and opens our ends before the shim opens its
 * own: a reader on each output, kept from reading EOF by a write end of our own until the shim
 * has connected, and the stdin data queued on a read-write end the shim's reader drains.
 */
async function openStdio(r: RuntimeRun): Promise<Stdio> {
  const stdoutPath = posix.join(r.bundle, "stdout");
  const stderrPath = posix.join(r.bundle, "stderr");
  const stdinPath = r.stdin === undefined ? undefined : posix.join(r.bundle, "stdin");
  await run("mkfifo", ["-m", "0600", stdoutPath, stderrPath, ...(stdinPath ? [stdinPath] : [])]);
  const sockets: Socket[] = [];
  const holders: number[] = [];
  const ends: Promise<void>[] = [];
  let stdinWritten = Promise.resolve();
  let stdinSocket: Socket | undefined;
  const reader = async (path: string, sink: (c: Buffer) => void) => {
    const fd = await openRaw(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    holders.push(await openRaw(path, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK));
    const s = new Socket({ fd, readable: true, writable: false });
    sockets.push(s);
    s.on("data", sink);
    ends.push(
      new Promise<void>((resolve) => {
        s.once("end", resolve);
        s.once("close", () => resolve());
        s.once("error", () => resolve());
      }),
    );
  };
  let dropped = false;
  const dropHolders = () => {
    if (dropped) return;
    dropped = true;
    for (const fd of holders) closeFd(fd, () => {});
  };
  try {
    await reader(stdoutPath, (c) => r.stdout(c));
    await reader(stderrPath, (c) => r.stderr(c));
    if (stdinPath) {
      const fd = await openRaw(stdinPath, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
      const s = new Socket({ fd, readable: false, writable: true });
      s.on("error", () => {});
      sockets.push(s);
      stdinSocket = s;
    }
  } catch (e) {
    dropHolders();
    for (const s of sockets) s.destroy();
    throw new Error(`opening the stdio FIFOs of container ${r.id}: ${(e as Error).message}`, { cause: e });
  }
  return {
    stdoutPath,
    stderrPath,
    stdinPath,
    stdinWritten: () => stdinWritten,
    shimConnected: () => {
      dropHolders();
      const s = stdinSocket;
      if (!s) return;
      // Written only now: a pipe nobody else holds open would drop what we put in it. Our end is
      // read-write (write-only cannot be opened before the shim reads): it is closed, not only
      // shut down, so that the pipe loses this writer.
      const data = r.stdin!;
      stdinWritten = new Promise<void>((resolve) => {
        if (data instanceof Uint8Array) {
          s.end(data, () => resolve());
          return;
        }
        s.once("finish", () => resolve());
        s.once("close", () => resolve());
        data.pipe(s);
      }).then(() => {
        s.destroy();
      });
    },
    drained: async (ms) => {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(ends),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, ms);
        }),
      ]);
      clearTimeout(timer);
    },
    close: () => {
      dropHolders();
      if (stdinSocket && r.stdin !== undefined && !(r.stdin instanceof Uint8Array))
        r.stdin.unpipe(stdinSocket);
      for (const s of sockets) s.destroy();
    },
  };
}

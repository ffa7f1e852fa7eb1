// The runc executor: runs one build step in a container with Debian's runc. Per run it writes an
// OCI bundle into its own tmpfs, mounts the rootfs when it is not a plain directory, runs
// `runc run` with pipes, and afterwards removes mount stubs, unmounts and deletes the bundle.
// State that a crash leaves (containers, mounts, bundles, cgroups) is removed by `cleanup()`.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, chown, lstat, mkdir, readdir, readFile, realpath, writeFile } from "node:fs/promises";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { constants as osConstants } from "node:os";
import { posix } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CGROUP_PARENT, cgroupParentDirs, listCgroups, removeCgroup } from "./cgroups.ts";
import { runTool } from "./command.ts";
import { hostDevices } from "./devices.ts";
import { checkHostname, DEFAULT_HOSTNAME, hostsFile, resolvConf } from "./etcfiles.ts";
import {
  mountAll,
  mountPointsUnder,
  readMountinfo,
  removeUnmountedTree,
  tooLongForMount,
  unmountAll,
} from "./hostmount.ts";
import { mkdirAllInRoot, resolveInRoot } from "./rootpath.ts";
import {
  buildSpec,
  capabilitiesFromMask,
  DEFAULT_CAPABILITIES,
  type SpecMount,
  type SpecRlimit,
} from "./spec.ts";
import { findMountStubs, removeMountStubs } from "./stubs.ts";
import type { ExecIO, ExecMount, ExecResult, Executor, Mount, ProcessSpec } from "./types.ts";
import { resolveUser } from "./user.ts";
import { OutputTail } from "./outputtail.ts";
import type { ContainerRuntime } from "./runtime.ts";

/** How the executor is set up; the daemon's config fills it in. */
export interface RuncExecutorOptions {
  /** State dir: a tmpfs is mounted here for bundles, runc's state and secrets. */
  root: string;
  /** The runc binary; defaults to `runc` on PATH. */
  runcBinary?: string;
  /** Whether `security: "insecure"` runs are permitted (BuildKit's security.insecure entitlement). */
  allowInsecure?: boolean;
  /** The resolv.conf containers' /etc/resolv.conf is made from; defaults to /etc/resolv.conf. */
  dnsResolvConf?: string;
  /**
   * Runs the prepared containers instead of runc's CLI (the containerd worker: containerd's
   * tasks). The bundle, rootfs, mounts and spec are made the same way either way.
   */
  runtime?: ContainerRuntime;
}

/** A process that ran and exited with a code outside `validExitCodes`, or could not be started. */
export class ExecError extends Error {
  readonly exitCode: number;
  readonly args: string[];
  /** The last lines of stdout and stderr, as they interleaved. */
  readonly outputTail: string[];
  /** runc's own error when the process could not be started (bad cwd, missing binary, ...). */
  readonly runtimeError: string | undefined;

  constructor(args: string[], exitCode: number, outputTail: string[], runtimeError?: string) {
    const cmd = args.join(" ");
    const headline =
      runtimeError === undefined
        ? `process "${cmd}" did not complete successfully: exit code: ${exitCode}`
        : `process "${cmd}" could not be started: ${runtimeError}`;
    super(outputTail.length === 0 ? headline : `${headline}\n${outputTail.join("\n")}`);
    this.name = "ExecError";
    this.exitCode = exitCode;
    this.args = args;
    this.outputTail = outputTail;
    this.runtimeError = runtimeError;
  }
}

const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_NOFILE = 1048576; // BuildKit's default, capped at what the daemon itself may have
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const ENV_NAME_RE = /^[^=\0]+$/;
const RLIMITS = new Set([
  "as",
  "core",
  "cpu",
  "data",
  "fsize",
  "locks",
  "memlock",
  "msgqueue",
  "nice",
  "nofile",
  "nproc",
  "rss",
  "rtprio",
  "rttime",
  "sigpending",
  "stack",
]);
const KILL_RETRY_MS = 100;
const KILL_GIVE_UP_MS = 10_000;

/** A run in progress, for cancelling it when the executor closes. */
interface ActiveRun {
  cancel: AbortController;
  settled: Promise<unknown>;
}

/** What one run must undo, last first, even when it failed half-way. */
type Undo = () => Promise<void>;

/** Runs build steps with runc; one instance owns one state dir (see RuncExecutorOptions.root). */
export class RuncExecutor implements Executor {
  readonly #root: string;
  readonly #runcRoot: string;
  readonly #bundles: string;
  readonly #sockets: string;
  readonly #runc: string;
  readonly #allowInsecure: boolean;
  readonly #resolvConfPath: string;
  /** Distinguishes this state dir's cgroups from those of other executors on the host. */
  readonly #cgroupPrefix: string;
  readonly #cgroupParents: string[];
  readonly #capabilities: string[];
  readonly #nofile: number;
  readonly #runtime: ContainerRuntime | undefined;
  readonly #active = new Map<string, ActiveRun>();
  #closed = false;
  readonly #onExit = () => this.#killAllSync();

  private constructor(init: {
    root: string;
    runc: string;
    allowInsecure: boolean;
    resolvConfPath: string;
    cgroupParents: string[];
    capabilities: string[];
    nofile: number;
    runtime: ContainerRuntime | undefined;
  }) {
    this.#root = init.root;
    this.#runcRoot = posix.join(init.root, "runc");
    this.#bundles = posix.join(init.root, "bundles");
    this.#sockets = posix.join(init.root, "sockets");
    this.#runc = init.runc;
    this.#allowInsecure = init.allowInsecure;
    this.#resolvConfPath = init.resolvConfPath;
    this.#cgroupPrefix = createHash("sha256").update(init.root).digest("hex").slice(0, 12) + "-";
    this.#cgroupParents = init.cgroupParents;
    this.#capabilities = init.capabilities;
    this.#nofile = init.nofile;
    this.#runtime = init.runtime;
  }

  /**
   * Opens the executor on its state dir: mounts a tmpfs there (so that bundles, secrets and
   * runc's state never touch a disk) and removes whatever a previous daemon left behind.
   */
  static async open(opts: RuncExecutorOptions): Promise<RuncExecutor> {
    await mkdir(opts.root, { recursive: true, mode: 0o700 });
    const root = await realpath(opts.root);
    const mounts = await readMountinfo();
    if (mounts.filter((m) => m.mountPoint === root).at(-1)?.fsType !== "tmpfs") {
      await mountAll(
        [{ type: "tmpfs", source: "buildd-executor", options: ["mode=0700"] }],
        root,
        "the executor's state tmpfs",
      );
    }
    const status = await readFile("/proc/self/status", "utf8");
    const mask = (name: string) =>
      /^\S+:\s*([0-9a-f]+)$/m.exec(status.split("\n").find((l) => l.startsWith(name)) ?? "")?.[1] ?? "0";
    const bounding = new Set(capabilitiesFromMask(mask("CapBnd:")));
    const limits = await readFile("/proc/self/limits", "utf8");
    const nofileHard = /^Max open files\s+\S+\s+(\S+)/m.exec(limits)?.[1];
    const executor = new RuncExecutor({
      root,
      runc: opts.runcBinary ?? "runc",
      allowInsecure: opts.allowInsecure ?? false,
      resolvConfPath: opts.dnsResolvConf ?? "/etc/resolv.conf",
      cgroupParents: await cgroupParentDirs(mounts),
      capabilities: capabilitiesFromMask(mask("CapEff:")).filter((c) => bounding.has(c)),
      nofile:
        nofileHard === undefined || nofileHard === "unlimited"
          ? DEFAULT_NOFILE
          : Math.min(DEFAULT_NOFILE, Number(nofileHard)),
      runtime: opts.runtime,
    });
    await executor.cleanup();
    for (const dir of [executor.#runcRoot, executor.#bundles, executor.#sockets]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    }
    process.on("exit", executor.#onExit);
    return executor;
  }

  /**
   * Runs `proc` in a container on `root` with `mounts`. Resolves when it exits with a valid code;
   * rejects with an ExecError otherwise, or with `signal.reason` when cancelled. Nothing it set up
   * (mounts, bundle, runc state, cgroups, mount-point stubs) outlives the call.
   */
  async run(
    id: string,
    root: Mount[],
    mounts: ExecMount[],
    proc: ProcessSpec,
    io: ExecIO,
    signal?: AbortSignal,
  ): Promise<ExecResult> {
    if (this.#closed) throw new Error("running a container: the executor is closed");
    if (id === "") id = randomBytes(12).toString("hex");
    if (!ID_RE.test(id)) {
      throw new Error(
        `invalid container id ${JSON.stringify(id)}: use up to 64 letters, digits, '_', '.', '-'`,
      );
    }
    if (this.#active.has(id)) throw new Error(`running container ${id}: a container with this id is running`);
    if (proc.args.length === 0) throw new Error(`running container ${id}: the process has no arguments`);
    if (proc.security === "insecure" && !this.#allowInsecure) {
      throw new Error(
        `running ${JSON.stringify(proc.args.join(" "))} with security mode "insecure": not allowed by this daemon; start it with the security.insecure entitlement allowed`,
      );
    }
    if (root.length === 0) throw new Error(`running container ${id}: no root filesystem mounts given`);
    signal?.throwIfAborted();

    const bundle = posix.join(this.#bundles, id);
    try {
      await mkdir(bundle, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") {
        throw new Error(`running container ${id}: a container with this id is being set up or torn down`);
      }
      throw e;
    }
    const undo: Undo[] = [() => removeUnmountedTree(bundle)];
    let settle!: () => void;
    const cancel = new AbortController();
    this.#active.set(id, { cancel, settled: new Promise<void>((r) => (settle = r)) });
    const runSignal = signal === undefined ? cancel.signal : AbortSignal.any([signal, cancel.signal]);
    let outcome: { ok: true; result: ExecResult } | { ok: false; error: unknown };
    try {
      outcome = {
        ok: true,
        result: await this.#runInBundle(id, bundle, root, mounts, proc, io, undo, runSignal),
      };
    } catch (error) {
      outcome = { ok: false, error };
    }
    const errors = await this.#teardown(id, undo);
    this.#active.delete(id);
    settle();
    if (!outcome.ok) throw outcome.error;
    // A leaked mount or container matters more than the process' success: report it.
    if (errors.length > 0) {
      throw new Error(`cleaning up container ${id}: ${errors.map((e) => (e as Error).message).join("; ")}`);
    }
    return outcome.result;
  }

  /** Undoes one run's setup, last step first, carrying on past failures; returns them. */
  async #teardown(id: string, undo: Undo[]): Promise<unknown[]> {
    const errors: unknown[] = [];
    if (this.#runtime) {
      await this.#runtime.remove(id).catch((e) => errors.push(e));
    } else if (await exists(posix.join(this.#runcRoot, id))) {
      // runc run itself was killed: the container and its state are still there.
      await runTool(this.#runc, ["--root", this.#runcRoot, "delete", "-f", id]).catch((e) => errors.push(e));
      await removeCgroup(this.#cgroupParents, this.#cgroupPrefix + id).catch((e) => errors.push(e));
    }
    for (const step of undo.reverse()) {
      try {
        await step();
      } catch (e) {
        errors.push(e);
      }
    }
    return errors;
  }

  async #runInBundle(
    id: string,
    bundle: string,
    root: Mount[],
    mounts: ExecMount[],
    proc: ProcessSpec,
    io: ExecIO,
    undo: Undo[],
    signal: AbortSignal,
  ): Promise<ExecResult> {
    // The root filesystem: a plain directory is used in place, anything else is mounted.
    let rootPath: string;
    let readonlyRoot = proc.readonlyRootfs ?? false;
    const first = root[0]!;
    if (root.length === 1 && first.type === "bind") {
      rootPath = first.source;
      if (first.options.includes("ro")) readonlyRoot = true;
    } else {
      rootPath = posix.join(bundle, "rootfs");
      await mkdir(rootPath);
      await mountAll(root, rootPath, "the root filesystem");
      undo.push(() => unmountAll(root.map(() => rootPath)));
    }

    const user = await resolveUser(rootPath, proc.user ?? "");
    const hostname = proc.hostname || DEFAULT_HOSTNAME;
    checkHostname(hostname);
    const dests = mounts.map((m) => checkDest(m.dest));
    const cwd = posix.join("/", proc.cwd || "/");
    // A cwd inside a mount is made by runc in that mount; one in the rootfs belongs to the user.
    if (!dests.some((d) => cwd === d || cwd.startsWith(d + "/"))) {
      await mkdirAllInRoot(rootPath, cwd, user.uid, user.gid);
    }
    const stubs = await findMountStubs(
      rootPath,
      ["/etc/resolv.conf", "/etc/hosts", ...dests],
      proc.removeMountStubsRecursive ?? false,
    );
    if (stubs.length > 0) undo.push(() => removeMountStubs(rootPath, stubs));

    const hostsPath = posix.join(bundle, "hosts");
    const resolvPath = posix.join(bundle, "resolv.conf");
    await writeFile(hostsPath, hostsFile(hostname, proc.extraHosts));
    await writeFile(resolvPath, resolvConf(await readFile(this.#resolvConfPath, "utf8"), proc.network));
    const etcOptions = ["nosuid", "noexec", "nodev", "rbind", "ro"];
    const specMounts: SpecMount[] = [
      { destination: "/etc/resolv.conf", type: "bind", source: resolvPath, options: etcOptions },
      { destination: "/etc/hosts", type: "bind", source: hostsPath, options: etcOptions },
    ];
    for (let i = 0; i < mounts.length; i++) {
      specMounts.push(...(await this.#prepareMount(mounts[i]!, dests[i]!, i, bundle, undo)));
    }
    // Parents before children, whatever order the mounts came in.
    const depth = (p: string) => p.split("/").length;
    specMounts.sort((a, b) => depth(a.destination) - depth(b.destination));

    const spec = buildSpec({
      rootPath,
      readonlyRoot,
      args: proc.args,
      env: processEnv(proc),
      cwd,
      user,
      hostname,
      network: proc.network,
      security: proc.security,
      capabilities:
        proc.security === "insecure"
          ? this.#capabilities
          : DEFAULT_CAPABILITIES.filter((c) => this.#capabilities.includes(c)),
      rlimits: this.#rlimits(proc),
      mounts: specMounts,
      devices: proc.security === "insecure" ? await hostDevices() : [],
      cgroupsPath: `${CGROUP_PARENT}/${this.#cgroupPrefix}${id}`,
    });
    await writeFile(posix.join(bundle, "config.json"), JSON.stringify(spec), { mode: 0o600 });
    signal.throwIfAborted();
    if (this.#runtime) return await this.#runWithRuntime(this.#runtime, id, bundle, spec, proc, io, signal);
    return await this.#runContainer(id, bundle, proc, io, signal);
  }

  /** Runs the prepared bundle with the configured runtime; output, exit codes and errors as with runc. */
  async #runWithRuntime(
    runtime: ContainerRuntime,
    id: string,
    bundle: string,
    spec: Record<string, unknown>,
    proc: ProcessSpec,
    io: ExecIO,
    signal: AbortSignal,
  ): Promise<ExecResult> {
    const tail = new OutputTail();
    let callbackError: unknown;
    const forward = (sink: ((chunk: Buffer) => void) | undefined) => (chunk: Buffer) => {
      tail.push(chunk);
      if (sink === undefined || callbackError !== undefined) return;
      try {
        sink(chunk);
      } catch (e) {
        callbackError = e;
      }
    };
    const exit = await runtime.run({
      id,
      bundle,
      spec,
      stdin: io.stdin,
      stdout: forward(io.stdout),
      stderr: forward(io.stderr),
      signal,
    });
    if (signal.aborted) throw signal.reason;
    if (callbackError !== undefined) throw callbackError;
    if (exit.runtimeError === undefined && (proc.validExitCodes ?? [0]).includes(exit.exitCode)) {
      return { exitCode: exit.exitCode };
    }
    throw new ExecError(proc.args, exit.exitCode, tail.lines(), exit.runtimeError);
  }

  /** The spec mounts for one ExecMount, setting up on the host what they need. */
  async #prepareMount(
    m: ExecMount,
    dest: string,
    index: number,
    bundle: string,
    undo: Undo[],
  ): Promise<SpecMount[]> {
    switch (m.type) {
      case "bind": {
        const selector = posix.join("/", m.selector ?? "/");
        // runc cannot mount an overlay whose options exceed a page: such a source is mounted here.
        if (selector === "/" && !m.mounts.some(tooLongForMount)) {
          return m.mounts.map((src) => ({
            destination: dest,
            type: src.type,
            source: src.source,
            options: specMountOptions(src, m.readonly),
          }));
        }
        // A sub-path of the source: a plain directory is entered directly, anything else is
        // mounted on the host first so that the path can be resolved inside it.
        let base: string;
        const only = m.mounts[0];
        if (m.mounts.length === 1 && only?.type === "bind") base = only.source;
        else {
          base = posix.join(bundle, `mnt${index}`);
          await mkdir(base);
          await mountAll(m.mounts, base, `the source of the mount at ${dest}`);
          undo.push(() => unmountAll(m.mounts.map(() => base)));
        }
        const source = await resolveInRoot(base, selector);
        if (!(await exists(source))) {
          throw new Error(
            `mounting ${selector} of its source at ${dest}: the path does not exist in the source`,
          );
        }
        // Read-only when asked, or when the source itself is (a committed snapshot's view).
        const ro = m.readonly || m.mounts.some((src) => src.options.includes("ro"));
        return [{ destination: dest, type: "bind", source, options: ro ? ["rbind", "ro"] : ["rbind"] }];
      }
      case "tmpfs": {
        const options = ["nosuid"];
        if (m.size !== undefined && m.size > 0) {
          if (!Number.isSafeInteger(m.size)) throw new Error(`tmpfs at ${dest}: invalid size ${m.size}`);
          options.push(`size=${m.size}`);
        }
        return [{ destination: dest, type: "tmpfs", source: "tmpfs", options }];
      }
      case "secret": {
        // The executor's state dir is a tmpfs: secret bytes never reach a disk.
        const dir = posix.join(bundle, "secrets");
        await mkdir(dir, { recursive: true, mode: 0o700 });
        const file = posix.join(dir, String(index));
        await writeFile(file, m.data, { mode: 0o600 });
        await chown(file, m.uid, m.gid);
        await chmod(file, m.mode & 0o7777);
        return [
          {
            destination: dest,
            type: "bind",
            source: file,
            options: ["ro", "rbind", "nodev", "nosuid", "noexec"],
          },
        ];
      }
      case "ssh": {
        const socket = posix.join(this.#sockets, randomBytes(8).toString("hex") + ".sock");
        const proxy = await listenProxy(socket, m.socketPath);
        undo.push(() => proxy.close());
        await chown(socket, m.uid, m.gid);
        await chmod(socket, m.mode & 0o7777);
        return [
          {
            destination: dest,
            type: "bind",
            source: socket,
            options: ["rbind", "nodev", "nosuid", "noexec"],
          },
        ];
      }
    }
  }

  #rlimits(proc: ProcessSpec): SpecRlimit[] {
    const byType = new Map<string, SpecRlimit>([
      ["RLIMIT_NOFILE", { type: "RLIMIT_NOFILE", soft: this.#nofile, hard: this.#nofile }],
    ]);
    for (const u of proc.ulimits ?? []) {
      const name = u.name.toLowerCase();
      if (
        !RLIMITS.has(name) ||
        !Number.isSafeInteger(u.soft) ||
        !Number.isSafeInteger(u.hard) ||
        u.soft > u.hard
      ) {
        throw new Error(`invalid ulimit ${u.name}=${u.soft}:${u.hard}: want a known name and soft <= hard`);
      }
      byType.set(`RLIMIT_${name.toUpperCase()}`, {
        type: `RLIMIT_${name.toUpperCase()}`,
        soft: u.soft,
        hard: u.hard,
      });
    }
    return [...byType.values()];
  }

  /** `runc run` with pipes: streams output, waits, and kills the container when cancelled. */
  async #runContainer(
    id: string,
    bundle: string,
    proc: ProcessSpec,
    io: ExecIO,
    signal: AbortSignal,
  ): Promise<ExecResult> {
    const logPath = posix.join(bundle, "runc.log");
    const child = spawn(
      this.#runc,
      ["--root", this.#runcRoot, "--log", logPath, "--log-format", "json", "run", "--bundle", bundle, id],
      { stdio: [io.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"] },
    );
    const tail = new OutputTail();
    let callbackError: unknown;
    const forward = (sink: ((chunk: Buffer) => void) | undefined) => (chunk: Buffer) => {
      tail.push(chunk);
      if (sink === undefined || callbackError !== undefined) return;
      try {
        sink(chunk);
      } catch (e) {
        callbackError = e;
      }
    };
    child.stdout!.on("data", forward(io.stdout));
    child.stderr!.on("data", forward(io.stderr));
    const stdin = io.stdin;
    if (stdin !== undefined) {
      child.stdin!.on("error", () => {}); // the process may exit without reading it all
      if (stdin instanceof Uint8Array) child.stdin!.end(stdin);
      else stdin.pipe(child.stdin!);
    }
    const exited = new Promise<number>((resolve, reject) => {
      child.once("error", (e) =>
        reject(new Error(`starting ${this.#runc} for container ${id}: ${e.message}; is runc installed?`)),
      );
      child.once("close", (code, sig) =>
        resolve(code ?? 128 + (sig === null ? 0 : osConstants.signals[sig])),
      );
    });
    exited.catch(() => {});

    let killing: Promise<void> | undefined;
    const kill = () => {
      killing ??= this.#killContainer(id, child, exited);
    };
    signal.addEventListener("abort", kill, { once: true });
    let exitCode: number;
    try {
      exitCode = await exited;
    } finally {
      signal.removeEventListener("abort", kill);
      if (stdin !== undefined && !(stdin instanceof Uint8Array)) stdin.unpipe(child.stdin!);
      await killing;
    }
    if (signal.aborted) throw signal.reason;
    if (callbackError !== undefined) throw callbackError;
    if ((proc.validExitCodes ?? [0]).includes(exitCode)) return { exitCode };
    throw new ExecError(proc.args, exitCode, tail.lines(), await runtimeError(logPath));
  }

  /** Kills the container's processes until `runc run` returns; the container may not exist yet. */
  async #killContainer(id: string, child: ChildProcess, exited: Promise<number>): Promise<void> {
    let done = false;
    const finished = exited.then(
      () => {
        done = true;
      },
      () => {
        done = true;
      },
    );
    const deadline = Date.now() + KILL_GIVE_UP_MS;
    while (!done) {
      await runTool(this.#runc, ["--root", this.#runcRoot, "kill", id, "KILL"]).catch(() => {});
      if (Date.now() > deadline) {
        // runc itself is stuck: kill it; run()'s cleanup then deletes the container by force.
        child.kill("SIGKILL");
        await finished;
        return;
      }
      await Promise.race([finished, sleep(KILL_RETRY_MS)]);
    }
  }

  /** At process exit, nothing async runs any more: kill the containers synchronously. */
  #killAllSync(): void {
    for (const id of this.#active.keys()) {
      spawnSync(this.#runc, ["--root", this.#runcRoot, "kill", id, "KILL"], { stdio: "ignore" });
    }
  }

  /**
   * Removes what earlier runs left behind: kills and deletes every container in runc's state,
   * kills what is left in this executor's cgroups, unmounts everything below the state dir and
   * removes the bundles. `open()` calls it; call it only when no run is in progress.
   */
  async cleanup(): Promise<void> {
    await this.#runtime?.cleanup();
    for (const id of await readdir(this.#runcRoot).catch(() => [])) {
      await runTool(this.#runc, ["--root", this.#runcRoot, "delete", "-f", id]);
    }
    for (const name of await listCgroups(this.#cgroupParents, this.#cgroupPrefix)) {
      await removeCgroup(this.#cgroupParents, name);
    }
    await unmountAll(mountPointsUnder(await readMountinfo(), this.#root));
    const left = mountPointsUnder(await readMountinfo(), this.#root);
    if (left.length > 0) throw new Error(`cleaning up ${this.#root}: still mounted: ${left.join(", ")}`);
    for (const dir of [this.#runcRoot, this.#bundles, this.#sockets]) {
      for (const name of await readdir(dir).catch(() => [])) await removeUnmountedTree(posix.join(dir, name));
    }
  }

  /** Kills running containers, waits for their runs to clean up, and unmounts the state dir. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const run of this.#active.values()) {
      run.cancel.abort(new Error("the executor was closed while the container ran"));
    }
    await Promise.all([...this.#active.values()].map((r) => r.settled));
    process.off("exit", this.#onExit);
    await this.cleanup();
    await unmountAll([this.#root]);
  }
}

/** The mount options for a snapshot mount placed in the spec. */
function specMountOptions(m: Mount, readonly: boolean): string[] {
  const options = [...m.options];
  if (m.type === "bind" && !options.includes("bind") && !options.includes("rbind")) options.unshift("rbind");
  if (readonly && !options.includes("ro")) options.push("ro");
  return options;
}

/** A mount destination, cleaned; "/" is the rootfs itself and cannot be a mount. */
function checkDest(dest: string): string {
  const clean = posix.join("/", dest);
  if (clean === "/") throw new Error(`invalid mount destination ${JSON.stringify(dest)}: it is the root`);
  return clean;
}

/** The process' environment: its own, a default PATH when it has none, then the secret ones. */
function processEnv(proc: ProcessSpec): string[] {
  const env = [...proc.env];
  if (!env.some((e) => e.startsWith("PATH="))) env.push(`PATH=${DEFAULT_PATH}`);
  for (const { name, value } of proc.secretEnv ?? []) {
    if (!ENV_NAME_RE.test(name))
      throw new Error(`invalid secret environment variable name ${JSON.stringify(name)}`);
    env.push(`${name}=${value}`);
  }
  return env;
}

/** runc's error message from its JSON log, when the failure was runc's rather than the process'. */
async function runtimeError(logPath: string): Promise<string | undefined> {
  const log = await readFile(logPath, "utf8").catch(() => "");
  let message: string | undefined;
  for (const line of log.split("\n")) {
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if (entry.level === "error" || entry.level === "fatal") message = entry.msg;
    } catch {
      // not a JSON line
    }
  }
  return message?.replace(/^runc run failed: /, "");
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** A unix socket at `path` that forwards every connection to `target` (the session's ssh agent). */
async function listenProxy(path: string, target: string): Promise<{ close: () => Promise<void> }> {
  const conns = new Set<Socket>();
  const server: Server = createServer((conn) => {
    const upstream = createConnection(target);
    conns.add(conn).add(upstream);
    const drop = () => {
      conn.destroy();
      upstream.destroy();
      conns.delete(conn);
      conns.delete(upstream);
    };
    conn.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    conn.pipe(upstream);
    upstream.pipe(conn);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(new Error(`listening on the ssh socket ${path}: ${e.message}`)));
    server.listen(path, resolve);
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of conns) c.destroy();
        server.close(() => resolve());
      }),
  };
}

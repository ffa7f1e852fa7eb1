// The executor's contract: what the worker hands in (a rootfs as snapshot mounts, the LLB mounts
// resolved to host paths, the process) and what it gets back.
import type { Readable } from "node:stream";

/**
 * A filesystem mount as the snapshotter describes it, shaped like containerd's so that it can be
 * given to mount(8) or placed in an OCI runtime spec. Structurally identical to `snapshot/types.ts`.
 */
export type Mount = { type: "bind" | "overlay" | "tmpfs"; source: string; options: string[] };

/** How a container reaches the network: the host's stack, or a fresh namespace with only `lo`. */
export type NetworkMode = "host" | "none";

/** `insecure` gives every capability, all host devices and a writable /sys; the daemon must allow it. */
export type SecurityMode = "sandbox" | "insecure";

/** The process to run and the environment it sees. */
export interface ProcessSpec {
  /** argv; args[0] is looked up in the container's PATH when it is not absolute. */
  args: string[];
  /** "KEY=value" strings; a default PATH is added when none is given. */
  env: string[];
  /** Working directory inside the container, created (owned by the user) when missing. */
  cwd: string;
  /** "" (root), "name", "uid", "uid:gid", "name:group"; names come from the rootfs' /etc/passwd and /etc/group. */
  user?: string;
  /** Defaults to `buildkitsandbox`, as in BuildKit. */
  hostname?: string;
  /** Extra /etc/hosts lines. */
  extraHosts?: { host: string; ip: string }[];
  network: NetworkMode;
  security: SecurityMode;
  readonlyRootfs?: boolean;
  /** Resource limits by lower-case name without the RLIMIT_ prefix ("nofile", "nproc", ...). */
  ulimits?: { name: string; soft: number; hard: number }[];
  /** Exit codes that count as success; defaults to [0]. */
  validExitCodes?: number[];
  /** Remove every missing parent a mount point needed, not just the mount point itself. */
  removeMountStubsRecursive?: boolean;
  /** Secret environment variables: only ever held in memory and in the executor's tmpfs. */
  secretEnv?: { name: string; value: string }[];
}

/** One mount the process sees, already resolved by the worker to host paths or bytes. */
export type ExecMount =
  | {
      type: "bind";
      dest: string;
      /** The source as snapshot mounts: one bind mount of a host dir, or an overlay. */
      mounts: Mount[];
      /** A path inside the source to mount instead of its root (LLB's mount selector). */
      selector?: string;
      readonly: boolean;
    }
  | { type: "tmpfs"; dest: string; size?: number }
  | { type: "secret"; dest: string; data: Uint8Array; uid: number; gid: number; mode: number }
  | {
      type: "ssh";
      dest: string;
      /** Host path of a unix socket (the session's agent); the container gets a proxy socket. */
      socketPath: string;
      uid: number;
      gid: number;
      mode: number;
    };

/** Where the process' output goes as it is written, and what it reads. */
export interface ExecIO {
  stdout?: (chunk: Buffer) => void;
  stderr?: (chunk: Buffer) => void;
  /**
   * Bytes to feed and then close, or a stream piped in as it is written (for processes the
   * caller talks to while they run: a gateway frontend speaks gRPC over its stdin and stdout).
   */
  stdin?: Uint8Array | Readable;
}

/** What a successful run reports: useful when `validExitCodes` admits more than 0. */
export interface ExecResult {
  exitCode: number;
}

/** Runs one process in a container; implemented by `RuncExecutor`. */
export interface Executor {
  run(
    id: string,
    root: Mount[],
    mounts: ExecMount[],
    proc: ProcessSpec,
    io: ExecIO,
    signal?: AbortSignal,
  ): Promise<ExecResult>;
}

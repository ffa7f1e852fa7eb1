// The seam between preparing a container (the executor: bundle, rootfs, mounts, spec) and running
// it. runc's CLI is built into RuncExecutor; another runtime (containerd's tasks service, for the
// containerd worker) plugs in here and gets the same bundle and spec.

import type { Readable } from "node:stream";

/** One container to run: its prepared bundle and spec, and where its output goes. */
export interface RuntimeRun {
  id: string;
  /** The bundle dir (in the executor's tmpfs); config.json is already written there. */
  bundle: string;
  /** The OCI runtime spec (what config.json holds); its root.path is the mounted rootfs. */
  spec: Record<string, unknown>;
  /** Bytes to write and close, or a stream the container reads while it runs (a gateway frontend's). */
  stdin?: Uint8Array | Readable;
  stdout(chunk: Buffer): void;
  stderr(chunk: Buffer): void;
  /** Aborts the run: the runtime kills the container and returns once it is gone. */
  signal: AbortSignal;
}

/** How a run ended: the process' exit code, or the runtime's own error when it never started. */
export interface RuntimeExit {
  exitCode: number;
  runtimeError?: string;
}

/** Starts and supervises containers in place of runc's CLI. */
export interface ContainerRuntime {
  /** For messages: what runs the containers (e.g. "containerd at /run/containerd/containerd.sock"). */
  readonly name: string;
  /**
   * Runs the container until it exits (or `signal` aborts, then kills it). Removing what is left
   * of an exited container may go on in the background; `cleanup()` waits for it.
   */
  run(r: RuntimeRun): Promise<RuntimeExit>;
  /** Removes what is left of container `id` after a run that failed half-way; never throws for "not found". */
  remove(id: string): Promise<void>;
  /** Removes containers earlier daemons left behind; called by the executor's cleanup(). */
  cleanup(): Promise<void>;
}

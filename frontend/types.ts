// The contract between the daemon and a frontend (the Dockerfile frontend built in, frontends
// shipped as images over the gateway): a frontend turns its options into LLB through a bridge
// that solves, reads results and resolves image configs, the same bridge for every frontend.
import type { WorkerRef } from "../worker/types.ts";
import type { ProgressSink } from "../worker/vertex-log.ts";

/** What a build produced: a result per platform and metadata (image config, ...). */
export interface FrontendResult {
  /** The single result; multi-platform results use `refs`. */
  ref?: WorkerRef;
  /** Results by platform ("linux/amd64"), for multi-platform builds. */
  refs?: Record<string, WorkerRef>;
  /** Exporter metadata, e.g. "containerimage.config" (JSON) as BuildKit names it. */
  metadata: Record<string, Uint8Array>;
}

/** What a frontend may ask of the daemon during a build. */
export interface FrontendBridge {
  /** Solves a definition in this build; the result is held until the build ends. */
  solve(definition: Uint8Array): Promise<WorkerRef | undefined>;
  /** Reads a file of a result (at most `limit` bytes), e.g. the Dockerfile. */
  readFile(ref: WorkerRef, path: string, opts?: { offset?: number; limit?: number }): Promise<Uint8Array>;
  /** The config of an image (env, cmd, onbuild...) and the digest to pin it to. */
  resolveImageConfig(ref: string, opts: { platform?: string }): Promise<{ digest: string; config: unknown }>;
  /** A warning shown in the build's progress. */
  warn(message: string, detail?: string[]): void;
  /** The session id of the client (for local sources), if any. */
  sessionId?: string;
  /** Options the client passed (--opt key=value). */
  opts: Record<string, string>;
  /** Definitions the client passed as frontend inputs (named contexts). */
  inputs: Record<string, Uint8Array>;
  signal: AbortSignal;
  /**
   * Another frontend of this daemon by name ("gateway.v0", "dockerfile.v0"), to hand the build
   * over (`# syntax=`) or nest one (a gateway client's Solve with a frontend). Run it with a
   * bridge like this one with its own `opts` and `inputs`: its results belong to the same build.
   */
  frontend(name: string): Frontend | undefined;
  /** The build's progress, for frontends that report steps of their own (a frontend container's output). */
  progress: ProgressSink;
}

export interface Frontend {
  solve(bridge: FrontendBridge): Promise<FrontendResult>;
}

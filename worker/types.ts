// The contract between the solver and a worker. The solver knows graphs, keys and sharing; the
// worker knows how to resolve and execute one op on its platform. Everything the solver needs
// from a worker is here.
import type { Op, OpMetadata } from "../proto/gen/pb/ops_pb.ts";
import type { SessionCaller } from "../session/manager.ts";
import type { Digest } from "../util/digest.ts";
import type { VertexLog } from "./vertex-log.ts";

/** A counted handle on an immutable result (a snapshot in the worker's cache). */
export interface WorkerRef {
  readonly id: string;
  /** Another handle on the same result; each handle is released once. */
  clone(): WorkerRef;
  release(): Promise<void>;
}

/** Which part of an input an op reads, for content-based cache keys. */
export interface ContentSelector {
  /** Absolute path inside the input; "/" for everything. */
  path: string;
  followLinks?: boolean;
  /** The last path components may contain wildcards (filepath.Match syntax). */
  wildcard?: boolean;
  include?: string[];
  exclude?: string[];
}

/**
 * How one input participates in the op's cache key: through the input's own cache key
 * ("definition"), or through a checksum of the files the op reads from it ("content"), so that
 * changing a file the op does not read does not change the key.
 */
export type InputDependency = { kind: "definition" } | { kind: "content"; selectors: ContentSelector[] };

export interface CacheMap {
  /** The op's own cache-relevant identity (for sources: the resolved content, e.g. a commit). */
  digest: Digest;
  /** One entry per op input, in order. */
  deps: InputDependency[];
  /** Never reuse a cached result for this op (e.g. an http source without validators). */
  volatile?: boolean;
}

/** What an op implementation may use while it runs. */
export interface OpContext {
  signal: AbortSignal;
  /** Logs and byte counters of this vertex, shown in the build's progress. */
  log: VertexLog;
  /** The session of the build(s) waiting for this op; undefined when none is attached. */
  session?: SessionAccess;
  /** Solves a nested definition in the same job (BuildOp, frontends). */
  solveNested(definition: Uint8Array): Promise<WorkerRef>;
  /** Build-wide switches. */
  job: { id: string; noCache: boolean };
}

/** Calls back into the client that started the build. */
export interface SessionAccess {
  readonly id: string;
  /** The client's key for its synced directories (BuildKit's session shared key). */
  readonly sharedKey?: string;
  getSecret(id: string, signal: AbortSignal): Promise<Uint8Array | undefined>;
  /** The client's session channel: local sources sync its directories through it. */
  readonly caller?: SessionCaller;
  /** Another live session by id (a local source may name one), waiting briefly for it to connect. */
  getSession?(id: string, signal: AbortSignal): Promise<SessionCaller>;
}

/** One op, bound to a worker. */
export interface OpSolver {
  cacheMap(ctx: OpContext): Promise<CacheMap>;
  /** Runs the op; returns one ref per output. The inputs stay owned by the caller. */
  exec(ctx: OpContext, inputs: WorkerRef[]): Promise<WorkerRef[]>;
}

/** A decoded op as the solver hands it to the worker. */
export interface VertexOp {
  digest: Digest;
  op: Op;
  metadata?: OpMetadata;
  name: string;
}

export interface Worker {
  readonly id: string;
  readonly labels: Record<string, string>;
  readonly platforms: { os: string; architecture: string; variant?: string }[];
  /** Binds an op to this worker; throws a clear error for ops it cannot run. */
  resolveOp(v: VertexOp): OpSolver;
  /** A handle on a result stored earlier, or undefined when it is gone (e.g. pruned). */
  loadRef(id: string): Promise<WorkerRef | undefined>;
  /** Checksum of the files selected from a result; memoized per result and selector. */
  contentChecksum(ref: WorkerRef, selector: ContentSelector): Promise<Digest>;
}

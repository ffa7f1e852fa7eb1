// The solver: resolves a graph concurrently with content-addressed caching, and shares work
// between builds. See docs/solver.md for the design; in short:
//   - keys bottom-up: key(v) = H(op identity, per input: the input's key or a checksum of the
//     files read from it); computing keys runs sources' resolution but no exec;
//   - results top-down and lazily: a vertex whose key has a record is loaded, not run, and its
//     inputs are then never needed;
//   - one SharedVertex per sharing identity across all jobs: concurrent builds that reach the
//     same vertex await the same promise; the work is aborted only when every job left.
import type { LoadedDefinition, LoadedOp } from "../llb/definition.ts";
import { loadDefinition } from "../llb/definition.ts";
import { ProgressBus } from "../progress/bus.ts";
import type { VertexUpdate } from "../progress/types.ts";
import { type Digest, digestOf } from "../util/digest.ts";
import { raceAbort } from "../util/abort.ts";
import { Semaphore } from "../util/semaphore.ts";
import type { CacheMap, OpContext, OpSolver, SessionAccess, Worker, WorkerRef } from "../worker/types.ts";
import { type ProgressSink, VertexLog } from "../worker/vertex-log.ts";
import { isSessionBound, numOutputs, sharingIdentities, vertexName } from "./graph.ts";
import type { CacheRecords } from "./records.ts";

/** A failure of one vertex, carrying which vertex so the client can show where it came from. */
export class SolveError extends Error {
  override name = "SolveError";
  readonly vertex: { digest: Digest; name: string };
  /** The output tail of a failed process, when there is one. */
  readonly logTail: string[];
  constructor(
    message: string,
    vertex: { digest: Digest; name: string },
    logTail: string[] = [],
    cause?: unknown,
  ) {
    super(message, { cause });
    this.vertex = vertex;
    this.logTail = logTail;
  }
}

/**
 * An imported build cache (remotecache/): results by cache key, fetched only when a key the
 * build needs is a hit. Asked only when this daemon has no record of its own for the key.
 */
export interface RemoteCache {
  /**
   * The results of `key` (one ref per output) made local, or undefined on a miss or when the
   * cache cannot deliver them (it warns through `log` and the step runs normally). `hit` is
   * called once the record is found, before its layers are fetched.
   */
  load(
    key: string,
    outputs: number,
    ctx: { signal: AbortSignal; log: VertexLog; hit(): void },
  ): Promise<WorkerRef[] | undefined>;
}

/** A vertex of a finished solve whose results can go into an exported cache. */
export interface ExportableVertex {
  digest: Digest;
  name: string;
  key: string;
  /** The keys of its inputs (undefined for one that has none, e.g. it failed). */
  inputs: { key?: string; index: number }[];
  /** One handle per output, owned by the caller (release them). */
  refs: WorkerRef[];
}

export interface SolverOptions {
  worker: Worker;
  records: CacheRecords;
  /** How many ops execute at once; defaults to the number of CPUs. */
  maxParallelism?: number;
}

export interface JobOptions {
  id: string;
  session?: SessionAccess;
  noCache?: boolean;
  /** Aborts the job: every vertex only this job needed is cancelled. */
  signal?: AbortSignal;
}

export class Solver {
  readonly worker: Worker;
  readonly records: CacheRecords;
  private readonly exec: Semaphore;
  private readonly shared = new Map<string, SharedVertex>();

  constructor(opts: SolverOptions) {
    this.worker = opts.worker;
    this.records = opts.records;
    this.exec = new Semaphore(opts.maxParallelism ?? (navigator.hardwareConcurrency || 1));
  }

  /** Starts a build job; solves within it share progress, results and cancellation. */
  newJob(opts: JobOptions): Job {
    return new Job(this, opts);
  }

  /** Number of vertices currently held by some job (for tests and metrics). */
  get activeVertices(): number {
    return this.shared.size;
  }

  /** @internal */
  attach(job: Job, id: string, make: () => SharedVertex): SharedVertex {
    let sv = this.shared.get(id);
    if (!sv) {
      sv = make();
      this.shared.set(id, sv);
    }
    sv.addJob(job);
    return sv;
  }

  /** @internal */
  detach(job: Job, sv: SharedVertex): void {
    if (sv.removeJob(job) && this.shared.get(sv.id) === sv) this.shared.delete(sv.id);
  }

  /** @internal A failed vertex is not offered to builds that arrive later: they retry it. */
  forget(sv: SharedVertex): void {
    if (this.shared.get(sv.id) === sv) this.shared.delete(sv.id);
  }

  /** @internal */
  runExec<T>(fn: () => Promise<T>, signal: AbortSignal): Promise<T> {
    return this.exec.run(fn, signal);
  }
}

/** One build: a progress stream and the vertices it holds until it is discarded. */
export class Job {
  readonly id: string;
  readonly progress = new ProgressBus();
  readonly session?: SessionAccess;
  readonly noCache: boolean;
  readonly signal: AbortSignal;
  private readonly solver: Solver;
  private readonly held = new Set<SharedVertex>();
  private readonly results: WorkerRef[] = [];
  private discarded = false;
  readonly sink: ProgressSink;
  /** Imported caches this job may take results from (set before the first solve). */
  remoteCache?: RemoteCache;

  constructor(solver: Solver, opts: JobOptions) {
    this.solver = solver;
    this.id = opts.id;
    this.session = opts.session;
    this.noCache = opts.noCache ?? false;
    this.signal = opts.signal ?? new AbortController().signal;
    this.sink = (s) => this.progress.write(s);
    this.signal.addEventListener("abort", () => this.discard(), { once: true });
  }

  /**
   * Solves a definition and returns a handle on its result (undefined for an empty result),
   * owned by the job until `discard`. May be called many times (nested and partial solves).
   */
  async solve(definition: Uint8Array | LoadedDefinition): Promise<WorkerRef | undefined> {
    if (this.discarded) throw new Error(`build ${this.id} was cancelled`);
    const def = definition instanceof Uint8Array ? loadDefinition(definition) : definition;
    if (!def.result) return undefined;
    const vertices = this.load(def);
    const target = vertices.get(def.result.digest)!;
    try {
      const refs = await raceAbort(target.result(), this.signal);
      const ref = refs[def.result.index];
      if (!ref) throw new Error(`op ${def.result.digest} has no output ${def.result.index}`);
      const mine = ref.clone();
      this.results.push(mine);
      return mine;
    } finally {
      for (const sv of vertices.values()) sv.settleProgress(this);
    }
  }

  private load(def: LoadedDefinition): Map<Digest, SharedVertex> {
    const ids = sharingIdentities(def, { sessionId: this.session?.id, noCache: this.noCache });
    const out = new Map<Digest, SharedVertex>();
    for (const digest of def.order) {
      if (digest === def.terminal && def.ops.get(digest)!.op.op.case === undefined) continue;
      const lop = def.ops.get(digest)!;
      const inputs = lop.op.inputs.map((i) => ({ sv: out.get(i.digest as Digest)!, index: Number(i.index) }));
      const sv = this.solver.attach(
        this,
        ids.get(digest)!,
        () => new SharedVertex(this.solver, ids.get(digest)!, lop, inputs),
      );
      this.held.add(sv);
      out.set(digest, sv);
    }
    return out;
  }

  /**
   * Every vertex of the job's solves that has a cache key and results (run, cached, or in a
   * local record), inputs before the vertices that use them. For cache export; session-bound
   * sources (the client's files) and volatile ops are left out.
   */
  async exportable(): Promise<ExportableVertex[]> {
    const out: ExportableVertex[] = [];
    for (const sv of this.held) {
      const e = await sv.exportable();
      if (e) out.push(e);
    }
    return out;
  }

  /** Releases everything the job holds; vertices no other job needs are cancelled. */
  discard(): void {
    if (this.discarded) return;
    this.discarded = true;
    for (const ref of this.results.splice(0)) void ref.release();
    for (const sv of this.held) this.solver.detach(this, sv);
    this.held.clear();
    this.progress.close();
  }

  /** @internal context for ops run on behalf of this job. */
  solveNested = async (bytes: Uint8Array): Promise<WorkerRef> => {
    const ref = await this.solve(bytes);
    if (!ref) throw new Error("nested definition has an empty result");
    return ref;
  };
}

/** One vertex's work, shared by every job that needs it. */
class SharedVertex {
  readonly id: string;
  private readonly solver: Solver;
  private readonly v: LoadedOp;
  private readonly name: string;
  private readonly inputs: { sv: SharedVertex; index: number }[];
  private readonly jobs = new Set<Job>();
  private readonly sinks = new Set<ProgressSink>();
  private readonly controller = new AbortController();
  private readonly log: VertexLog;
  private opSolver?: OpSolver;
  private cacheMapP?: Promise<CacheMap>;
  private keyP?: Promise<string>;
  private resultP?: Promise<WorkerRef[]>;
  private resultRefs?: WorkerRef[];
  private state: Omit<VertexUpdate, "digest" | "inputs" | "name"> = {};

  constructor(solver: Solver, id: string, v: LoadedOp, inputs: { sv: SharedVertex; index: number }[]) {
    this.solver = solver;
    this.id = id;
    this.v = v;
    this.name = vertexName(v);
    this.inputs = inputs;
    this.log = new VertexLog(v.digest, this.sinks);
  }

  addJob(job: Job): void {
    if (this.jobs.has(job)) return;
    this.jobs.add(job);
    this.sinks.add(job.sink);
    if (this.state.started !== undefined) job.sink({ vertexes: [this.update()] });
  }

  /** Returns true when no job is left (the vertex is then cancelled and its results released). */
  removeJob(job: Job): boolean {
    this.jobs.delete(job);
    this.sinks.delete(job.sink);
    if (this.jobs.size > 0) return false;
    this.controller.abort(new Error(`${this.name}: cancelled: no build needs it any more`));
    for (const r of this.resultRefs?.splice(0) ?? []) void r.release();
    return true;
  }

  private ctx(): OpContext {
    const job = this.jobs.values().next().value as Job | undefined;
    return {
      signal: this.controller.signal,
      log: this.log,
      session: [...this.jobs].find((j) => j.session)?.session,
      solveNested: (bytes) => {
        if (!job) throw new Error("no build is waiting for this op");
        return job.solveNested(bytes);
      },
      job: { id: job?.id ?? "", noCache: this.noCache() },
    };
  }

  private noCache(): boolean {
    return this.v.metadata?.ignoreCache === true || [...this.jobs].some((j) => j.noCache);
  }

  private op(): OpSolver {
    this.opSolver ??= this.solver.worker.resolveOp({
      digest: this.v.digest,
      op: this.v.op,
      metadata: this.v.metadata,
      name: this.name,
    });
    return this.opSolver;
  }

  private cacheMap(): Promise<CacheMap> {
    this.cacheMapP ??= this.guard(async () => {
      const isSource = this.v.op.op.case === "source";
      if (isSource) this.start();
      const cm = await this.op().cacheMap(this.ctx());
      if (cm.deps.length !== this.inputs.length) {
        throw new Error(
          `internal error: ${this.name} declares ${cm.deps.length} input dependencies for ${this.inputs.length} inputs`,
        );
      }
      return cm;
    });
    return this.cacheMapP;
  }

  /** The cache key: the op's identity combined with its inputs' keys or content checksums. */
  key(): Promise<string> {
    this.keyP ??= this.guard(async () => {
      const cm = await this.cacheMap();
      const parts = await Promise.all(
        cm.deps.map(async (dep, i) => {
          const input = this.inputs[i]!;
          if (dep.kind === "definition") return ["key", await input.sv.key(), input.index];
          const ref = (await input.sv.result())[input.index];
          if (!ref) throw new Error(`${this.name}: input ${i} has no output ${input.index}`);
          const sums = await Promise.all(
            dep.selectors.map((s) => this.solver.worker.contentChecksum(ref, s)),
          );
          return ["content", ...sums];
        }),
      );
      return digestOf(JSON.stringify(["buildd.v1", cm.digest, parts]));
    });
    return this.keyP;
  }

  /** The results, from the cache when the key has a record, otherwise by running the op. */
  result(): Promise<WorkerRef[]> {
    this.resultP ??= this.guard(async () => {
      const key = await this.key();
      const cm = await this.cacheMap();
      const outputs = numOutputs(this.v.op);
      if (!this.noCache() && !cm.volatile) {
        const cached = await this.lookup(key, outputs);
        if (cached) {
          this.resultRefs = cached;
          this.finish(true);
          return cached;
        }
      }
      const inputRefs = await Promise.all(
        this.inputs.map(async (i, n) => {
          const ref = (await i.sv.result())[i.index];
          if (!ref) throw new Error(`${this.name}: input ${n} has no output ${i.index}`);
          return ref;
        }),
      );
      const outs = await this.solver.runExec(async () => {
        this.start();
        return this.op().exec(this.ctx(), inputRefs);
      }, this.controller.signal);
      if (outs.length !== outputs) {
        for (const r of outs) void r.release();
        throw new Error(`internal error: ${this.name} produced ${outs.length} results, want ${outputs}`);
      }
      this.solver.records.put(
        key,
        outs.map((r) => r.id),
      );
      this.resultRefs = outs;
      this.finish(false);
      return outs;
    });
    return this.resultP;
  }

  /** This vertex's entry for an exported cache, or undefined when it has none to offer. */
  async exportable(): Promise<ExportableVertex | undefined> {
    if (!this.keyP || isSessionBound(this.v.op)) return undefined;
    const settled = async <T>(p: Promise<T> | undefined) => {
      try {
        return await p;
      } catch {
        return undefined;
      }
    };
    const key = await settled(this.keyP);
    const cm = await settled(this.cacheMapP);
    if (key === undefined || !cm || cm.volatile) return undefined;
    const outputs = numOutputs(this.v.op);
    const refs = this.resultRefs?.map((r) => r.clone()) ?? (await this.localRecord(key, outputs));
    if (!refs || refs.length !== outputs) return undefined;
    const inputs = await Promise.all(
      this.inputs.map(async (i) => ({ key: await settled(i.sv.keyP), index: i.index })),
    );
    return { digest: this.v.digest, name: this.name, key, inputs, refs };
  }

  private async lookup(key: string, outputs: number): Promise<WorkerRef[] | undefined> {
    const local = await this.localRecord(key, outputs);
    if (local) return local;
    // Imported caches come after the local records: they never override a result of this daemon.
    for (const job of [...this.jobs]) {
      if (!job.remoteCache) continue;
      const refs = await job.remoteCache.load(key, outputs, {
        signal: this.controller.signal,
        log: this.log,
        hit: () => this.start(),
      });
      if (!refs) continue;
      if (refs.length !== outputs) {
        for (const r of refs) void r.release();
        continue;
      }
      this.solver.records.put(
        key,
        refs.map((r) => r.id),
      );
      return refs;
    }
    return undefined;
  }

  private async localRecord(key: string, outputs: number): Promise<WorkerRef[] | undefined> {
    const ids = this.solver.records.get(key, outputs);
    if (!ids) return undefined;
    const refs: WorkerRef[] = [];
    for (const id of ids) {
      const ref = await this.solver.worker.loadRef(id);
      if (!ref) {
        // The result was pruned: the record is stale and must not be trusted again.
        for (const r of refs) void r.release();
        this.solver.records.deleteKey(key);
        return undefined;
      }
      refs.push(ref);
    }
    return refs;
  }

  /** Runs a step of this vertex; failures become one SolveError shared by every job. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const err =
        e instanceof SolveError
          ? e
          : new SolveError(
              (e as Error).message ?? String(e),
              { digest: this.v.digest, name: this.name },
              this.log.lastLines(),
              e,
            );
      this.solver.forget(this);
      if (err.vertex.digest === this.v.digest && this.state.error === undefined) {
        this.state.error = err.message;
        this.state.completed = Date.now();
        this.state.started ??= this.state.completed;
        this.emit();
      }
      throw err;
    }
  }

  private start(): void {
    if (this.state.started !== undefined) return;
    this.state.started = Date.now();
    this.emit();
  }

  private finish(cached: boolean): void {
    const now = Date.now();
    this.state.started ??= now;
    this.state.completed = now;
    this.state.cached = cached;
    this.emit();
  }

  /**
   * Called when a job's solve ends: a vertex this job never needed to run (a later step was
   * cached) is shown as cached, one that started work is shown as completed.
   */
  settleProgress(job: Job): void {
    if (this.state.completed !== undefined) return;
    if (this.state.started !== undefined && this.resultP === undefined && this.keyP !== undefined) {
      // A source that resolved (or synced) but whose result no step needed: the rest came from
      // the cache, so it is shown as cached, like BuildKit does.
      job.sink({ vertexes: [{ ...this.update(), completed: Date.now(), cached: true }] });
      return;
    }
    if (this.state.started === undefined) {
      const now = Date.now();
      job.sink({ vertexes: [{ ...this.update(), started: now, completed: now, cached: true }] });
    }
  }

  private update(): VertexUpdate {
    const pg = this.v.metadata?.progressGroup;
    return {
      digest: this.v.digest,
      inputs: this.v.op.inputs.map((i) => i.digest),
      name: this.name,
      ...this.state,
      ...(pg ? { progressGroup: { id: pg.id, name: pg.name, weak: pg.weak } } : {}),
    };
  }

  private emit(): void {
    const u = this.update();
    for (const sink of this.sinks) sink({ vertexes: [u] });
  }
}

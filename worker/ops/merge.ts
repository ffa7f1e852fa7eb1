// MergeOp and DiffOp: stacking results and extracting the changes between two, done by the cache
// manager (on overlayfs, by reusing layers without copying).
import type { ImmutableRef } from "../../cache/types.ts";
import type { DiffOp as PbDiffOp, MergeOp as PbMergeOp } from "../../proto/gen/pb/ops_pb.ts";
import type { CacheMap, OpContext, OpSolver, VertexOp, WorkerRef } from "../types.ts";
import type { OCIWorker } from "../worker.ts";
import { opCacheDigest } from "./identity.ts";

export class MergeOp implements OpSolver {
  private readonly w: OCIWorker;
  private readonly v: VertexOp;
  private readonly m: PbMergeOp;

  constructor(w: OCIWorker, v: VertexOp, m: PbMergeOp) {
    this.w = w;
    this.v = v;
    this.m = m;
    if (m.inputs.length === 0) throw new Error(`${v.name}: merge op has no inputs`);
  }

  async cacheMap(): Promise<CacheMap> {
    return { digest: opCacheDigest(this.v.op), deps: this.v.op.inputs.map(() => ({ kind: "definition" })) };
  }

  async exec(_ctx: OpContext, inputs: WorkerRef[]): Promise<WorkerRef[]> {
    const refs = this.m.inputs.map((mi) => {
      const r = inputs[Number(mi.input)];
      if (!r) throw new Error(`${this.v.name}: merge input ${mi.input} does not exist`);
      return r as ImmutableRef;
    });
    return [await this.w.cache.merge(refs, { description: this.v.name })];
  }
}

export class DiffOp implements OpSolver {
  private readonly w: OCIWorker;
  private readonly v: VertexOp;
  private readonly d: PbDiffOp;

  constructor(w: OCIWorker, v: VertexOp, d: PbDiffOp) {
    this.w = w;
    this.v = v;
    this.d = d;
  }

  async cacheMap(): Promise<CacheMap> {
    return { digest: opCacheDigest(this.v.op), deps: this.v.op.inputs.map(() => ({ kind: "definition" })) };
  }

  async exec(_ctx: OpContext, inputs: WorkerRef[]): Promise<WorkerRef[]> {
    const pick = (i: bigint | undefined, what: string): ImmutableRef | undefined => {
      if (i === undefined || i < 0n) return undefined;
      const r = inputs[Number(i)];
      if (!r) throw new Error(`${this.v.name}: diff ${what} input ${i} does not exist`);
      return r as ImmutableRef;
    };
    const lower = pick(this.d.lower?.input, "lower");
    const upper = pick(this.d.upper?.input, "upper");
    if (!upper) {
      // The changes from lower to nothing would be deletions of everything; BuildKit gives an
      // empty result, and so do we.
      const empty = await this.w.cache.newMutable(undefined, { description: this.v.name });
      return [await empty.commit()];
    }
    return [await this.w.cache.diff(lower, upper, { description: this.v.name })];
  }
}

// BuildOp: solve a definition that an earlier step wrote into a file, as part of this build.
import { readFile } from "node:fs/promises";
import type { ImmutableRef } from "../../cache/types.ts";
import { resolveInRoot } from "../../fsutil/resolve.ts";
import type { BuildOp as PbBuildOp } from "../../proto/gen/pb/ops_pb.ts";
import { withMounted } from "../../snapshot/index.ts";
import type { CacheMap, OpContext, OpSolver, VertexOp, WorkerRef } from "../types.ts";
import type { OCIWorker } from "../worker.ts";
import { opCacheDigest } from "./identity.ts";

const DEFAULT_FILENAME = "buildkit.llb.definition";
const MAX_DEFINITION_BYTES = 64 << 20;

export class BuildOp implements OpSolver {
  private readonly w: OCIWorker;
  private readonly v: VertexOp;
  private readonly filename: string;
  private readonly input: number;

  constructor(w: OCIWorker, v: VertexOp, b: PbBuildOp) {
    this.w = w;
    this.v = v;
    if (b.builder !== -1n)
      throw new Error(`${v.name}: build ops with a builder other than LLB (-1) are not supported`);
    const input = b.inputs["buildkit.llb.definition"];
    if (!input) throw new Error(`${v.name}: build op has no "buildkit.llb.definition" input`);
    this.input = Number(input.input);
    this.filename = b.attrs["llbbuild.filename"] || DEFAULT_FILENAME;
  }

  async cacheMap(): Promise<CacheMap> {
    return {
      digest: opCacheDigest(this.v.op),
      deps: this.v.op.inputs.map((_, i) =>
        i === this.input
          ? { kind: "content", selectors: [{ path: `/${this.filename}`, followLinks: true }] }
          : { kind: "definition" },
      ),
    };
  }

  async exec(ctx: OpContext, inputs: WorkerRef[]): Promise<WorkerRef[]> {
    const src = inputs[this.input] as ImmutableRef | undefined;
    if (!src) throw new Error(`${this.v.name}: the definition input ${this.input} does not exist`);
    const bytes = await withMounted(
      await src.mount({ readonly: true }),
      async (dir) => {
        const path = await resolveInRoot(dir, this.filename);
        const data = await readFile(path).catch((e: NodeJS.ErrnoException) => {
          throw new Error(
            `${this.v.name}: reading the definition file ${this.filename}: ${e.code === "ENOENT" ? "it does not exist" : e.message}`,
          );
        });
        if (data.length > MAX_DEFINITION_BYTES)
          throw new Error(`${this.v.name}: definition file ${this.filename} is larger than 64 MiB`);
        return new Uint8Array(data);
      },
      { readonly: true, inPlace: true, base: this.w.mountRoot },
    );
    const result = await ctx.solveNested(bytes);
    return [result.clone()];
  }
}

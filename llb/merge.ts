// Merge, diff and build ops: combining filesystems without copying, extracting the changes
// between two, and solving a definition that an earlier step produced.
import type { Op } from "../proto/gen/pb/ops_pb.ts";
import { State } from "./state.ts";
import { type MarshalContext, type OpOptions, type Output, Vertex } from "./vertex.ts";

class MergeVertex extends Vertex {
  readonly inputs: Output[];

  constructor(inputs: Output[], opts: OpOptions) {
    super(opts);
    this.inputs = inputs;
  }

  protected build(_ctx: MarshalContext): { op: Pick<Op, "op">; caps: string[]; withPlatform: boolean } {
    return {
      op: {
        op: {
          case: "merge",
          value: {
            $typeName: "pb.MergeOp",
            inputs: this.inputs.map((_, i) => ({ $typeName: "pb.MergeInput" as const, input: BigInt(i) })),
          },
        },
      },
      caps: ["mergeop"],
      withPlatform: false,
    };
  }
}

/**
 * Stacks filesystems, later ones on top (files they delete are deleted). Empty states are
 * dropped; merging one state is that state.
 */
export function merge(states: State[], opts: OpOptions = {}): State {
  const inputs = states.flatMap((s) => (s.output ? [s.output] : []));
  const first = states[0] ?? new State();
  if (inputs.length === 0) return first.withOutput(undefined);
  if (inputs.length === 1) return first.withOutput(inputs[0]);
  return first.withOutput({ vertex: new MergeVertex(inputs, opts), index: 0 });
}

class DiffVertex extends Vertex {
  readonly inputs: Output[] = [];
  private readonly lower: number;
  private readonly upper: number;

  constructor(lower: Output | undefined, upper: Output | undefined, opts: OpOptions) {
    super(opts);
    const add = (o: Output | undefined) => (o ? this.inputs.push(o) - 1 : -1);
    this.lower = add(lower);
    this.upper = add(upper);
  }

  protected build(_ctx: MarshalContext): { op: Pick<Op, "op">; caps: string[]; withPlatform: boolean } {
    return {
      op: {
        op: {
          case: "diff",
          value: {
            $typeName: "pb.DiffOp",
            lower: { $typeName: "pb.LowerDiffInput", input: BigInt(this.lower) },
            upper: { $typeName: "pb.UpperDiffInput", input: BigInt(this.upper) },
          },
        },
      },
      caps: ["diffop"],
      withPlatform: false,
    };
  }
}

/** The changes that turn `lower` into `upper`, as a filesystem of their own (with deletions). */
export function diff(lower: State, upper: State, opts: OpOptions = {}): State {
  if (!upper.output) return upper;
  return upper.withOutput({ vertex: new DiffVertex(lower.output, upper.output, opts), index: 0 });
}

class BuildVertex extends Vertex {
  readonly inputs: Output[];
  private readonly filename: string;

  constructor(source: Output, filename: string, opts: OpOptions) {
    super(opts);
    this.inputs = [source];
    this.filename = filename;
  }

  protected build(_ctx: MarshalContext): { op: Pick<Op, "op">; caps: string[]; withPlatform: boolean } {
    return {
      op: {
        op: {
          case: "build",
          value: {
            $typeName: "pb.BuildOp",
            builder: -1n,
            inputs: { "buildkit.llb.definition": { $typeName: "pb.BuildInput", input: 0n } },
            attrs: { "llbbuild.filename": this.filename },
          },
        },
      },
      // The capability name BuildKit uses for this op.
      caps: ["source.buildop.llbfilename"],
      withPlatform: true,
    };
  }
}

/**
 * Solves the LLB definition found in file `filename` of `source` (written by an earlier step)
 * and gives its result: a nested build inside this graph.
 */
export function build(source: State, opts: OpOptions & { filename?: string } = {}): State {
  if (!source.output) throw new Error("build needs a state that holds a definition file, not scratch");
  const { filename = "buildkit.llb.definition", ...rest } = opts;
  return new State().withOutput({
    vertex: new BuildVertex(source.output, filename, {
      ...rest,
      platform: rest.platform ?? source.getPlatform(),
    }),
    index: 0,
  });
}

// A State from a Definition: lets a frontend build on a result the daemon solved (a gateway
// Ref carries its definition), as BuildKit's llb.NewDefinitionOp does. The ops are replayed
// byte for byte, so their digests, and cache keys, stay what they were.
import { create } from "@bufbuild/protobuf";
import { loadDefinition } from "../../../llb/definition.ts";
import { type State, scratch } from "../../../llb/index.ts";
import { type MarshalledVertex, type Output, Vertex } from "../../../llb/vertex.ts";
import { type Op, type OpMetadata, OpMetadataSchema } from "../../../proto/gen/pb/ops_pb.ts";
import type { Digest } from "../../../util/digest.ts";

/** One op of an existing definition: it marshals to exactly the bytes it was loaded from. */
class DefinitionVertex extends Vertex {
  readonly inputs: Output[];
  readonly #marshalled: MarshalledVertex;

  constructor(digest: Digest, bytes: Uint8Array, metadata: OpMetadata | undefined, inputs: Output[]) {
    super();
    this.inputs = inputs;
    this.#marshalled = { digest, bytes, metadata: metadata ?? create(OpMetadataSchema) };
  }

  protected build(): { op: Pick<Op, "op">; caps: string[]; withPlatform: boolean } {
    throw new Error("internal error: a definition op is marshalled from its bytes, never built");
  }

  override marshal(): MarshalledVertex {
    return this.#marshalled;
  }
}

/** The state a definition builds (scratch for an empty result); it can be extended like any other. */
export function stateFromDefinition(definition: Uint8Array): State {
  const loaded = loadDefinition(definition);
  const base = scratch();
  if (!loaded.result) return base;
  const vertices = new Map<Digest, DefinitionVertex>();
  for (const digest of loaded.order) {
    if (digest === loaded.terminal && loaded.ops.get(digest)!.op.op.case === undefined) continue;
    const lop = loaded.ops.get(digest)!;
    const inputs = lop.op.inputs.map((i) => ({
      vertex: vertices.get(i.digest as Digest)!,
      index: Number(i.index),
    }));
    vertices.set(digest, new DefinitionVertex(digest, lop.bytes, lop.metadata, inputs));
  }
  return base.withOutput({ vertex: vertices.get(loaded.result.digest)!, index: loaded.result.index });
}

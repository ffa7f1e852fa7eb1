// The cache identity of an op: its body and platform without its inputs' digests. The inputs
// take part in the cache key through their own keys or content checksums (the solver adds
// them), so an input whose digest changes without its content changing (a local source with a
// new session id, an image pinned by another tag) does not change this op's key.
import { clone, toBinary } from "@bufbuild/protobuf";
import { type Op, OpSchema } from "../../proto/gen/pb/ops_pb.ts";
import { type Digest, digestOf } from "../../util/digest.ts";

export function opCacheDigest(op: Op, edit?: (clone: Op) => void): Digest {
  // clone(), not create(): create() hands back the same object when given a message.
  const copy = clone(OpSchema, op);
  copy.inputs = [];
  edit?.(copy);
  return digestOf(toBinary(OpSchema, copy));
}

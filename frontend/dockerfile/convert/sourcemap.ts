// From a marshalled definition back to Dockerfile lines: each op's progress name is looked up
// in the conversion's source map, so a failing step can show the instruction it came from.
import type { Definition } from "../../../proto/gen/pb/ops_pb.ts";
import type { Range } from "../parser/errors.ts";
import type { SourceMap } from "./options.ts";

/** Op digest → the Dockerfile ranges that produced it, for the ops the source map knows. */
export function locationsByDigest(sourceMap: SourceMap, definition: Definition): Map<string, Range[]> {
  const out = new Map<string, Range[]>();
  for (const [digest, meta] of Object.entries(definition.metadata)) {
    const name = meta.description["llb.customname"];
    const ranges = name === undefined ? undefined : sourceMap.locations.get(name);
    if (ranges) out.set(digest, ranges);
  }
  return out;
}

// Turning a loaded definition into the solver's vertices: names for progress, output counts,
// and an identity that says when two builds may share one vertex's work.
import type { LoadedDefinition, LoadedOp } from "../llb/definition.ts";
import { describeOp } from "../llb/dump.ts";
import { MountType, type Op } from "../proto/gen/pb/ops_pb.ts";
import { type Digest, digestOf } from "../util/digest.ts";

/** How many results an op produces. */
export function numOutputs(op: Op): number {
  switch (op.op.case) {
    case "exec":
      // Only bind mounts produce outputs; secret and ssh mounts leave `output` at its zero value.
      return op.op.value.mounts.filter((m) => m.mountType === MountType.BIND && m.output >= 0n).length;
    case "file": {
      let max = -1n;
      for (const a of op.op.value.actions) if (a.output > max) max = a.output;
      return Number(max) + 1;
    }
    case undefined:
      return 0;
    default:
      return 1;
  }
}

/** The progress name of a vertex: its custom name, or a description of the op. */
export function vertexName(v: LoadedOp): string {
  return v.metadata?.description["llb.customname"] ?? describeOp(v.op);
}

/**
 * Ops that read from the client session (its local dirs, its OCI layouts) are only the same
 * work within one session; everything else is shared across builds by digest.
 */
export function isSessionBound(op: Op): boolean {
  if (op.op.case !== "source") return false;
  const id = op.op.value.identifier;
  if (id.startsWith("local://")) return true;
  return id.startsWith("oci-layout://") && op.op.value.attrs["oci.store"] === undefined;
}

/**
 * The sharing identity of every reachable op: its digest, its inputs' identities, the session
 * for session-bound sources, and whether the cache is bypassed (a --no-cache build must not
 * pick up a result another build took from the cache).
 */
export function sharingIdentities(
  def: LoadedDefinition,
  scope: { sessionId?: string; noCache: boolean },
): Map<Digest, string> {
  const ids = new Map<Digest, string>();
  for (const digest of def.order) {
    const v = def.ops.get(digest)!;
    const parts: string[] = [digest, scope.noCache || v.metadata?.ignoreCache ? "nocache" : ""];
    if (isSessionBound(v.op)) parts.push(`session:${scope.sessionId ?? ""}`);
    for (const input of v.op.inputs) parts.push(ids.get(input.digest as Digest) ?? input.digest);
    ids.set(digest, parts.length === 2 && parts[1] === "" ? digest : digestOf(parts.join("\n")));
  }
  return ids;
}

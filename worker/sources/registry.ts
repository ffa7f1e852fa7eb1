// Sources by scheme: the daemon registers one handler per kind of source identifier
// (docker-image://, local://, git://, https://, oci-layout://), so a new kind of source is one
// new handler and one registration line.
import type { SourceOp } from "../../proto/gen/pb/ops_pb.ts";
import type { OpSolver, VertexOp } from "../types.ts";
import type { OCIWorker } from "../worker.ts";

export interface SourceHandler {
  /** Binds one source op; throws a clear error for a malformed identifier. */
  resolve(w: OCIWorker, v: VertexOp, src: SourceOp): OpSolver;
}

export class SourceRegistry {
  private readonly handlers = new Map<string, SourceHandler>();

  /** Registers `handler` for identifiers starting with `scheme://`. */
  register(scheme: string, handler: SourceHandler): this {
    this.handlers.set(scheme, handler);
    return this;
  }

  resolve(w: OCIWorker, v: VertexOp, src: SourceOp): OpSolver {
    const m = /^([a-z][a-z0-9+.-]*):\/\//.exec(src.identifier);
    const handler = m ? this.handlers.get(m[1]!) : undefined;
    if (!handler) {
      throw new Error(
        `${v.name}: unsupported source ${JSON.stringify(src.identifier)}: known kinds are ${[...this.handlers.keys()].map((k) => `${k}://`).join(", ")}`,
      );
    }
    return handler.resolve(w, v, src);
  }
}

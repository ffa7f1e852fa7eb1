// The contract of an exporter: turn a build's result into an output (an image, a registry push,
// a tarball, files on the client) and report what it made.
import type { ImmutableRef } from "../cache/types.ts";
import type { FrontendResult } from "../frontend/types.ts";
import type { Descriptor } from "../source/registry/index.ts";
import type { Digest } from "../util/digest.ts";
import type { VertexLog } from "../worker/vertex-log.ts";
import type { SessionAccess } from "../worker/types.ts";

export interface ExportContext {
  /** The build's client session: local and tar outputs stream back through it. */
  session?: SessionAccess;
  /** Progress of the export step ("exporting to image", pushes in bytes). */
  log: VertexLog;
  signal: AbortSignal;
  /** Build-wide values, e.g. SOURCE_DATE_EPOCH from the frontend. */
  buildArgs?: Record<string, string>;
  /**
   * The exporter's index among the request's exporters: outputs the client writes (tar, oci,
   * docker, local) are routed to the right destination by it (BuildKit's exporter id).
   */
  exporterId?: number;
  /** Set when the build exports an inline cache: fields to add to each image config. */
  inlineCache?: InlineCacheHook;
}

/** The image config fields (remotecache's inline cache) for a result and its image layers, bottom first. */
export type InlineCacheHook = (
  ref: ImmutableRef,
  layers: { desc: Descriptor; diffID: Digest }[],
) => Promise<Record<string, unknown> | undefined>;

export interface Exporter {
  /** Validates attributes up front: an unknown attribute is an error before the build runs. */
  checkAttrs?(attrs: Record<string, string>): void;
  /** Exports; returns the exporter response (e.g. "containerimage.digest"). */
  export(
    result: FrontendResult,
    attrs: Record<string, string>,
    ctx: ExportContext,
  ): Promise<Record<string, string>>;
}

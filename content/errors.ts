// Errors of the content store carry a code, so callers (and later the gRPC layer) can tell a
// missing blob from a corrupt download without parsing messages.
import { type Digest, isDigest } from "../util/digest.ts";

/** What went wrong, in the vocabulary containerd and gRPC use for the same situations. */
export type ContentErrorCode =
  | "invalid-argument"
  | "not-found"
  | "locked"
  | "mismatch"
  | "too-large"
  | "already-exists"
  | "closed";

/** An error from the content store; `code` says what kind, the message says what and what to do. */
export class ContentError extends Error {
  readonly code: ContentErrorCode;

  constructor(code: ContentErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ContentError";
    this.code = code;
  }
}

/** True when `e` is a ContentError, optionally of one code. */
export function isContentError(e: unknown, code?: ContentErrorCode): e is ContentError {
  return e instanceof ContentError && (code === undefined || e.code === code);
}

/** Checks a digest from input before it goes anywhere near a path; `doing` names the operation. */
export function requireDigest(digest: unknown, doing: string): Digest {
  if (typeof digest !== "string" || !isDigest(digest)) {
    throw new ContentError(
      "invalid-argument",
      `${doing}: invalid digest ${JSON.stringify(digest)?.slice(0, 100)}: want sha256:<64 lowercase hex> (only sha256 is supported)`,
    );
  }
  return digest;
}

/** Checks a byte count from input: a non-negative safe integer. */
export function requireSize(size: unknown, doing: string): number {
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw new ContentError(
      "invalid-argument",
      `${doing}: invalid size ${String(size)}: want a whole number of bytes`,
    );
  }
  return size;
}

// Errors of the http source carry a code, so the worker can tell a bad op, a missing file, a
// corrupt download and a dead server apart without parsing messages.

/** What went wrong with an http source. */
export type HttpSourceErrorCode =
  | "invalid-argument"
  | "not-found"
  | "http-status"
  | "checksum-mismatch"
  | "too-large"
  | "truncated"
  | "network"
  | "cancelled";

/** An error from the http source; the message says what was fetched, what happened, what to do. */
export class HttpSourceError extends Error {
  readonly code: HttpSourceErrorCode;

  constructor(code: HttpSourceErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HttpSourceError";
    this.code = code;
  }
}

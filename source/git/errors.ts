// Errors of the git source carry a code, so the worker can tell a bad op from a missing ref or a
// failing remote without parsing messages.

/** What went wrong: the op is malformed, a ref/commit/subdir does not exist, or git failed. */
export type GitSourceErrorCode = "invalid-argument" | "not-found" | "git-failed" | "cancelled";

/** An error from the git source; the message says what was done, to which remote, and what to do. */
export class GitSourceError extends Error {
  readonly code: GitSourceErrorCode;

  constructor(code: GitSourceErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GitSourceError";
    this.code = code;
  }
}

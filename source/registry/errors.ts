// Errors of the registry client carry a code (so the solver and the gRPC layer can tell a
// missing tag from a wrong password) and a message that names the image and, for blobs, the
// layer: the first thing a user needs to act on a failed pull or push.

/** What went wrong, in terms a user can act on. */
export type RegistryErrorCode =
  /** Bad input: a malformed reference, descriptor or manifest. */
  | "invalid"
  /** No credentials, or the registry refused them (401). */
  | "unauthorized"
  /** Authenticated but not allowed (403). */
  | "denied"
  | "not-found"
  /** Connection refused, name not resolved, timeouts. */
  | "unreachable"
  /** Certificate or TLS handshake problems. */
  | "tls"
  /** Bytes that do not match their digest or size. */
  | "digest-mismatch"
  /** Valid but not supported here: schema 1 manifests, non-sha256 digests. */
  | "unsupported"
  /** No manifest in an index for the wanted platform. */
  | "no-match"
  /** The registry answered with an error status we cannot recover from. */
  | "server";

/** An error of the registry client. */
export class RegistryError extends Error {
  readonly code: RegistryErrorCode;
  /** The HTTP status behind it, when there was one. */
  readonly status: number | undefined;

  constructor(code: RegistryErrorCode, message: string, opts: { status?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "RegistryError";
    this.code = code;
    this.status = opts.status;
  }
}

/** True when `e` is a RegistryError, optionally of one code. */
export function isRegistryError(e: unknown, code?: RegistryErrorCode): e is RegistryError {
  return e instanceof RegistryError && (code === undefined || e.code === code);
}

/** The `errors` of a distribution API error body ("MANIFEST_UNKNOWN: manifest unknown"), or the raw text. */
export function describeErrorBody(body: Buffer): string {
  const text = body.toString("utf8").trim();
  try {
    const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string }[]; details?: string };
    if (Array.isArray(parsed.errors) && parsed.errors.length > 0) {
      return parsed.errors.map((e) => [e.code, e.message].filter(Boolean).join(": ")).join("; ");
    }
    if (typeof parsed.details === "string") return parsed.details;
  } catch {
    // Not JSON: fall through to the text.
  }
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

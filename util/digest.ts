// OCI-style digests ("sha256:<hex>"), the identity of every blob, op and cache key.
import { createHash } from "node:crypto";

export type Digest = `sha256:${string}`;

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

/** The sha256 digest of some bytes or a string (UTF-8). */
export function digestOf(data: Uint8Array | string): Digest {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** True when `s` is a well-formed sha256 digest. */
export function isDigest(s: string): s is Digest {
  return DIGEST_RE.test(s);
}

/** The hex part of a digest, for file names. Throws on anything that is not a digest. */
export function digestHex(d: string): string {
  if (!isDigest(d)) throw new Error(`invalid digest ${JSON.stringify(d)}: want sha256:<64 hex>`);
  return d.slice("sha256:".length);
}

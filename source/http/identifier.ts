// What an http source op asks for, read from its identifier (the URL) and attrs as BuildKit
// writes them, plus the rules that turn a download into one file: its name, its mode and owner,
// its mtime, and the cache identity of the result.
import { type Digest, digestOf, isDigest } from "../../util/digest.ts";
import { HttpSourceError } from "./errors.ts";

/** A parsed http source op. */
export type HttpSourceId = {
  url: string;
  /** The expected sha256 of the body ("sha256:…"); a mismatch fails the download. */
  checksum?: Digest;
  /** The file name the op asked for; unset means: from the response, else from the URL. */
  filename?: string;
  /** The file's mode; 0o600 unless the op says otherwise (BuildKit's default). */
  perm: number;
  uid: number;
  gid: number;
};

/** BuildKit's name when neither the op, the response nor the URL gives one. */
export const DEFAULT_HTTP_FILENAME = "download";
const DEFAULT_PERM = 0o600;
const MAX_ID = 0xfffffffe;

/** Reads an http source op; malformed attrs are errors, never silently ignored. */
export function parseHttpIdentifier(identifier: string, attrs: Record<string, string> = {}): HttpSourceId {
  const doing = `reading http source ${JSON.stringify(identifier)}`;
  const url = checkHttpUrl(identifier, doing);
  const id: HttpSourceId = { url, perm: DEFAULT_PERM, uid: 0, gid: 0 };
  const checksum = attrs["http.checksum"];
  if (checksum !== undefined && checksum !== "") {
    if (!isDigest(checksum)) {
      throw new HttpSourceError(
        "invalid-argument",
        `${doing}: invalid checksum ${JSON.stringify(checksum)}: want sha256:<64 lowercase hex> (only sha256 is supported)`,
      );
    }
    id.checksum = checksum;
  }
  const filename = attrs["http.filename"];
  if (filename !== undefined && filename !== "") {
    if (!isSafeFileName(filename)) {
      throw new HttpSourceError(
        "invalid-argument",
        `${doing}: invalid filename ${JSON.stringify(filename)}: want one path component (no "/", not "." or "..")`,
      );
    }
    id.filename = filename;
  }
  const perm = attrs["http.perm"];
  if (perm !== undefined) {
    const n = parseGoInt(perm, `${doing}: http.perm`);
    if (n > 0o7777)
      throw new HttpSourceError(
        "invalid-argument",
        `${doing}: http.perm 0${n.toString(8)} is not a file mode`,
      );
    // BuildKit treats 0 as "not set".
    if (n !== 0) id.perm = n;
  }
  for (const key of ["uid", "gid"] as const) {
    const v = attrs[`http.${key}`];
    if (v === undefined) continue;
    const n = parseGoInt(v, `${doing}: http.${key}`);
    if (n > MAX_ID)
      throw new HttpSourceError("invalid-argument", `${doing}: http.${key} ${n} is out of range`);
    id[key] = n;
  }
  return id;
}

/** Accepts absolute http:// and https:// URLs only. */
export function checkHttpUrl(url: string, doing: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new HttpSourceError("invalid-argument", `${doing}: ${JSON.stringify(url)} is not a URL`);
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new HttpSourceError(
      "invalid-argument",
      `${doing}: ${JSON.stringify(url)}: want an http:// or https:// URL`,
    );
  }
  return url;
}

/**
 * The downloaded file's name, by BuildKit's precedence: the op's filename, the response's
 * Content-Disposition, the URL's last path component, "download".
 */
export function httpFileName(
  id: { url: string; filename?: string },
  response?: { filename?: string },
): string {
  if (id.filename) return id.filename;
  if (response?.filename) return response.filename;
  return fileNameFromUrl(id.url) ?? DEFAULT_HTTP_FILENAME;
}

/** The last component of a URL's path, when it is a usable file name. */
export function fileNameFromUrl(url: string): string | undefined {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return undefined;
  }
  const last = path
    .split("/")
    .filter((p) => p !== "")
    .pop();
  if (last === undefined) return undefined;
  let name: string;
  try {
    name = decodeURIComponent(last);
  } catch {
    name = last;
  }
  return isSafeFileName(name) ? name : undefined;
}

/** The file name a Content-Disposition header offers (filename* preferred), if it is safe. */
export function fileNameFromContentDisposition(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const params = new Map<string, string>();
  const re = /;\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g;
  for (const m of header.matchAll(re)) {
    let value = m[2]!.trim();
    if (value.startsWith('"')) value = value.slice(1, -1).replace(/\\(.)/g, "$1");
    params.set(m[1]!.toLowerCase(), value);
  }
  let name = params.get("filename");
  const extended = params.get("filename*");
  if (extended !== undefined) {
    const m = /^([\w!#$%&+^`{}~-]*)'[^']*'(.*)$/.exec(extended);
    if (m && (m[1] === "" || /^utf-8$/i.test(m[1]!))) {
      try {
        name = decodeURIComponent(m[2]!);
      } catch {
        // Keep the plain filename.
      }
    }
  }
  if (name === undefined || name.endsWith("/") || name.endsWith("\\")) return undefined;
  const base = name.split(/[/\\]/).pop()!;
  return isSafeFileName(base) ? base : undefined;
}

/** One path component that names a regular entry: no "/", not "." or "..", no NUL, not too long. */
export function isSafeFileName(name: string): boolean {
  return (
    typeof name === "string" &&
    name !== "" &&
    name !== "." &&
    name !== ".." &&
    !name.includes("/") &&
    !name.includes("\0") &&
    Buffer.byteLength(name) <= 255
  );
}

/** The file's mtime: the response's Last-Modified, else the epoch (as in BuildKit). */
export function httpMtime(lastModified: string | undefined): Date {
  const ms = lastModified ? Date.parse(lastModified) : Number.NaN;
  return Number.isNaN(ms) ? new Date(0) : new Date(ms);
}

/**
 * The identity of the file an http source produces, for the worker's cache: BuildKit's
 * formatCacheKey (the JSON of filename, mode, owner, content digest and Last-Modified, hashed).
 * Pass `lastModified` only when the op had no checksum, as BuildKit does.
 */
export function httpCacheKey(k: {
  digest: Digest;
  filename: string;
  perm: number;
  uid: number;
  gid: number;
  lastModified?: string;
}): Digest {
  let json = `{"Filename":${goJsonString(k.filename)},"Perm":${k.perm},"UID":${k.uid},"GID":${k.gid},"Checksum":${goJsonString(k.digest)}`;
  if (k.lastModified) json += `,"LastModTime":${goJsonString(k.lastModified)}`;
  return digestOf(`${json}}`);
}

/** Go's json.Marshal of a string: JSON.stringify plus escaped <, >, & and U+2028/2029. */
function goJsonString(s: string): string {
  return JSON.stringify(s).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Go's strconv.ParseInt(s, 0, 64) for non-negative values: "0755" and "0o755" are octal, "0x" hex. */
export function parseGoInt(s: string, doing: string): number {
  const t = s.replaceAll("_", "");
  let n: number;
  if (/^0[xX][0-9a-fA-F]+$/.test(t)) n = Number.parseInt(t.slice(2), 16);
  else if (/^0[oO][0-7]+$/.test(t)) n = Number.parseInt(t.slice(2), 8);
  else if (/^0[bB][01]+$/.test(t)) n = Number.parseInt(t.slice(2), 2);
  else if (/^0[0-7]+$/.test(t)) n = Number.parseInt(t.slice(1), 8);
  else if (/^(0|[1-9][0-9]*)$/.test(t)) n = Number.parseInt(t, 10);
  else
    throw new HttpSourceError(
      "invalid-argument",
      `${doing}: ${JSON.stringify(s)} is not a non-negative integer`,
    );
  if (!Number.isSafeInteger(n))
    throw new HttpSourceError("invalid-argument", `${doing}: ${JSON.stringify(s)} is too large`);
  return n;
}

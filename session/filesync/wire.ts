// What both ends of BuildKit's file sync (tonistiigi/fsutil's DiffCopy) must agree on: the request
// metadata naming the directory and its filters, Go's os.FileMode bits in Stat.mode, and the order
// paths travel in.
import { compareNames } from "../../fsutil/walk.ts";

/** The method the daemon calls to pull a local directory (BuildKit picks it when the client announces it). */
export const DIFF_COPY_METHOD = "/moby.filesync.v1.FileSync/DiffCopy";

/** Request metadata keys, as BuildKit's session/filesync names them. */
export const DIR_NAME_HEADER = "dir-name";
export const INCLUDE_PATTERNS_HEADER = "include-patterns";
export const EXCLUDE_PATTERNS_HEADER = "exclude-patterns";
export const FOLLOW_PATHS_HEADER = "followpaths";
/** `<key>` + this suffix = "1" says the values of `<key>` are URL query-escaped (BuildKit's encodeOpts). */
export const ENCODED_SUFFIX = "-encoded";

/** The metadata keys that carry several values (one header field each on the wire). */
export const REPEATED_FILESYNC_HEADERS: readonly string[] = [
  INCLUDE_PATTERNS_HEADER,
  EXCLUDE_PATTERNS_HEADER,
  FOLLOW_PATHS_HEADER,
];

// Go's os.FileMode type and special bits (io/fs). Unsigned, so `>>> 0` after every bit operation.
export const GO_MODE_DIR = 0x80000000;
export const GO_MODE_APPEND = 1 << 30;
export const GO_MODE_EXCLUSIVE = 1 << 29;
export const GO_MODE_TEMPORARY = 1 << 28;
export const GO_MODE_SYMLINK = 1 << 27;
export const GO_MODE_DEVICE = 1 << 26;
export const GO_MODE_NAMED_PIPE = 1 << 25;
export const GO_MODE_SOCKET = 1 << 24;
export const GO_MODE_SETUID = 1 << 23;
export const GO_MODE_SETGID = 1 << 22;
export const GO_MODE_CHAR_DEVICE = 1 << 21;
export const GO_MODE_STICKY = 1 << 20;
export const GO_MODE_IRREGULAR = 1 << 19;
const GO_MODE_TYPE =
  (GO_MODE_DIR |
    GO_MODE_SYMLINK |
    GO_MODE_NAMED_PIPE |
    GO_MODE_SOCKET |
    GO_MODE_DEVICE |
    GO_MODE_CHAR_DEVICE |
    GO_MODE_IRREGULAR) >>>
  0;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFIFO = 0o010000;
const S_IFSOCK = 0o140000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;

/** A POSIX st_mode as Go's os.FileMode, which fsutil puts in Stat.mode. */
export function goModeFromPosix(mode: number): number {
  let m = mode & 0o777;
  if (mode & 0o4000) m |= GO_MODE_SETUID;
  if (mode & 0o2000) m |= GO_MODE_SETGID;
  if (mode & 0o1000) m |= GO_MODE_STICKY;
  switch (mode & S_IFMT) {
    case S_IFDIR:
      m |= GO_MODE_DIR;
      break;
    case S_IFLNK:
      m |= GO_MODE_SYMLINK;
      break;
    case S_IFIFO:
      m |= GO_MODE_NAMED_PIPE;
      break;
    case S_IFSOCK:
      m |= GO_MODE_SOCKET;
      break;
    case S_IFCHR:
      m |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE;
      break;
    case S_IFBLK:
      m |= GO_MODE_DEVICE;
      break;
  }
  return m >>> 0;
}

/** The kinds of entry a synced directory may hold. */
export type EntryKind = "dir" | "file" | "symlink" | "fifo" | "char" | "block" | "socket" | "irregular";

/** What a Go file mode is; `undefined` when its type bits make no sense together. */
export function goModeKind(mode: number): EntryKind | undefined {
  const t = (mode & GO_MODE_TYPE) >>> 0;
  switch (t) {
    case 0:
      return "file";
    case GO_MODE_DIR:
      return "dir";
    case GO_MODE_SYMLINK:
      return "symlink";
    case GO_MODE_NAMED_PIPE:
      return "fifo";
    case GO_MODE_SOCKET:
      return "socket";
    case GO_MODE_DEVICE:
      return "block";
    case (GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE) >>> 0:
      return "char";
    case GO_MODE_IRREGULAR:
      return "irregular";
    default:
      return undefined;
  }
}

/** The permission bits of a Go file mode as chmod(2) wants them (set-id and sticky included). */
export function posixPermFromGo(mode: number): number {
  let m = mode & 0o777;
  if (mode & GO_MODE_SETUID) m |= 0o4000;
  if (mode & GO_MODE_SETGID) m |= 0o2000;
  if (mode & GO_MODE_STICKY) m |= 0o1000;
  return m;
}

/**
 * Orders slash-separated relative paths the way fsutil walks and validates them: component by
 * component (so "a/b" comes before "a.b"), each in UTF-8 byte order, a directory before its contents.
 */
export function comparePaths(a: string, b: string): number {
  if (a === b) return 0;
  const pa = a.split("/");
  const pb = b.split("/");
  const n = Math.min(pa.length, pb.length);
  for (let i = 0; i < n; i++) {
    const c = compareNames(pa[i]!, pb[i]!);
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

const UNRESERVED = /[A-Za-z0-9\-_.~]/;

/** Go's url.QueryEscape (spaces become "+"), which BuildKit applies to metadata values. */
export function queryEscape(s: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(s)) {
    const ch = String.fromCharCode(byte);
    if (byte < 0x80 && UNRESERVED.test(ch)) out += ch;
    else if (byte === 0x20) out += "+";
    else out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** Go's url.QueryUnescape; throws on a malformed escape. */
export function queryUnescape(s: string): string {
  const bytes: number[] = [];
  const utf8 = new TextEncoder();
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch === "+") bytes.push(0x20);
    else if (ch === "%") {
      const hex = s.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex))
        throw new Error(`invalid escape ${JSON.stringify(s.slice(i, i + 3))}`);
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else bytes.push(...utf8.encode(ch));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/**
 * Request metadata for a DiffCopy call. Values are escaped, with `<key>-encoded: 1`, when one of
 * them is not printable ASCII (as BuildKit does) or holds a comma: Node joins repeated header
 * fields with ", ", so an escaped list can always be split again.
 */
export function encodeFileSyncHeaders(opts: {
  name: string;
  include?: readonly string[];
  exclude?: readonly string[];
  followPaths?: readonly string[];
}): Headers {
  const h = new Headers();
  const put = (key: string, values: readonly string[] | undefined) => {
    if (values === undefined || values.length === 0) return;
    const escaped = values.some((v) => /[^\x20-\x7e]|,/.test(v) || v !== v.trim() || v === "");
    for (const v of values) h.append(key, escaped ? queryEscape(v) : v);
    if (escaped) h.set(key + ENCODED_SUFFIX, "1");
  };
  put(DIR_NAME_HEADER, [opts.name]);
  put(INCLUDE_PATTERNS_HEADER, opts.include);
  put(EXCLUDE_PATTERNS_HEADER, opts.exclude);
  put(FOLLOW_PATHS_HEADER, opts.followPaths);
  return h;
}

/** What a DiffCopy request asks for, decoded from its metadata. */
export interface FileSyncRequest {
  name: string;
  include: string[];
  exclude: string[];
  followPaths: string[];
}

/**
 * Reads DiffCopy request metadata. Repeated fields reach Node joined with ", ", so lists are split
 * there; a BuildKit daemon sending a pattern that itself holds ", " unescaped is misread (rare:
 * grpc-go gives no way to tell the two apart once joined).
 */
export function decodeFileSyncHeaders(h: Headers): FileSyncRequest {
  const values = (key: string, list: boolean): string[] => {
    const raw = h.get(key);
    if (raw === null) return [];
    const parts = list ? raw.split(", ") : [raw];
    const flag = h
      .get(key + ENCODED_SUFFIX)
      ?.split(", ")[0]
      ?.trim()
      .toLowerCase();
    const encoded = flag === "1" || flag === "t" || flag === "true";
    return parts.map((p) => {
      if (!encoded) return p;
      try {
        return queryUnescape(p);
      } catch (err) {
        throw new Error(`reading file sync metadata ${key}: ${(err as Error).message}`);
      }
    });
  };
  return {
    name: values(DIR_NAME_HEADER, false)[0] ?? "",
    include: values(INCLUDE_PATTERNS_HEADER, true),
    exclude: values(EXCLUDE_PATTERNS_HEADER, true),
    followPaths: values(FOLLOW_PATHS_HEADER, true),
  };
}

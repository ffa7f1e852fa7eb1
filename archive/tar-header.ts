// Writing tar headers, deterministically: the same entry always gives the same bytes. The layout
// is what Go's archive/tar writes in its PAX format (so layers look like BuildKit's): a ustar
// header, preceded by a PAX extended header only when ustar cannot hold a value (long or
// non-ASCII names, big ids or sizes, xattrs). User and group names stay empty: layers carry ids.

/** What a header describes; "link" is a hard link to an earlier entry. */
export type TarWriteType = "file" | "dir" | "symlink" | "link" | "char" | "block" | "fifo";

/** One entry to write. Names are relative ("etc/passwd"), without a trailing slash. */
export type TarWriteEntry = {
  name: string;
  type: TarWriteType;
  /** Permission bits with setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of content; regular files only. */
  size: number;
  /** Whole seconds since the epoch. */
  mtime: number;
  /** Symlink target, or the earlier entry a hard link names. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, written as SCHILY.xattr.* PAX records in name order. */
  xattrs?: Map<string, Buffer>;
};

/** Size of a tar block. */
export const TAR_BLOCK = 512;
/** The end of an archive: two zero blocks. */
export const TAR_END = Buffer.alloc(2 * TAR_BLOCK);

const TYPE_FLAGS: Record<TarWriteType, string> = {
  file: "0",
  link: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
};

const NAME_SIZE = 100;
const PREFIX_SIZE = 155;
const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;

/** Zero bytes that pad `size` bytes of content to a whole block. */
export function tarPadding(size: number): Buffer {
  const pad = (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
  return pad === 0 ? EMPTY : Buffer.alloc(pad);
}
const EMPTY = Buffer.alloc(0);

/** The header block(s) of an entry: a PAX header and its records when needed, then the ustar header. */
export function encodeTarHeader(e: TarWriteEntry): Buffer {
  const pax = new Map<string, Buffer>();
  const name = e.type === "dir" ? `${e.name}/` : e.name;
  let ustarName = name;
  let prefix = "";
  if (!isASCII(name) || name.length > NAME_SIZE) {
    const split = splitUstarPath(name);
    if (split) [prefix, ustarName] = split;
    else {
      pax.set("path", Buffer.from(name, "utf8"));
      ustarName = asciiPrefix(name, NAME_SIZE);
    }
  }
  let linkname = e.linkname ?? "";
  if (!isASCII(linkname) || linkname.length > NAME_SIZE) {
    pax.set("linkpath", Buffer.from(linkname, "utf8"));
    linkname = asciiPrefix(linkname, NAME_SIZE);
  }
  const size = e.type === "file" ? e.size : 0;
  if (size > MAX_OCTAL_11) pax.set("size", Buffer.from(String(size)));
  if (e.uid > MAX_OCTAL_7) pax.set("uid", Buffer.from(String(e.uid)));
  if (e.gid > MAX_OCTAL_7) pax.set("gid", Buffer.from(String(e.gid)));
  const mtime = Math.max(0, Math.floor(e.mtime));
  if (mtime > MAX_OCTAL_11) pax.set("mtime", Buffer.from(String(mtime)));
  for (const [k, v] of [...(e.xattrs ?? new Map<string, Buffer>())].sort(([a], [b]) => cmp(a, b))) {
    pax.set(`SCHILY.xattr.${k}`, v);
  }
  const header = ustarHeader({
    name: ustarName,
    prefix,
    mode: e.mode & 0o7777,
    uid: Math.min(e.uid, MAX_OCTAL_7),
    gid: Math.min(e.gid, MAX_OCTAL_7),
    size: Math.min(size, MAX_OCTAL_11),
    mtime: Math.min(mtime, MAX_OCTAL_11),
    typeflag: TYPE_FLAGS[e.type],
    linkname,
    devmajor: e.devmajor ?? 0,
    devminor: e.devminor ?? 0,
  });
  if (pax.size === 0) return header;
  const records = paxRecords(pax);
  const slash = name.replace(/\/$/, "").lastIndexOf("/");
  const dir = slash < 0 ? "" : `${name.slice(0, slash)}/`;
  const base = name.slice(slash + 1).replace(/\/$/, "");
  const paxHeader = ustarHeader({
    name: asciiPrefix(`${dir}PaxHeaders.0/${base}`, NAME_SIZE),
    prefix: "",
    mode: 0,
    uid: 0,
    gid: 0,
    size: records.length,
    mtime: 0,
    typeflag: "x",
    linkname: "",
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([paxHeader, records, tarPadding(records.length), header]);
}

type UstarFields = {
  name: string;
  prefix: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
  devmajor: number;
  devminor: number;
};

function ustarHeader(f: UstarFields): Buffer {
  const b = Buffer.alloc(TAR_BLOCK);
  b.write(f.name, 0, NAME_SIZE, "latin1");
  octal(b, 100, 8, f.mode);
  octal(b, 108, 8, f.uid);
  octal(b, 116, 8, f.gid);
  octal(b, 124, 12, f.size);
  octal(b, 136, 12, f.mtime);
  b.write(f.typeflag, 156, 1, "latin1");
  b.write(f.linkname, 157, NAME_SIZE, "latin1");
  b.write("ustar\u000000", 257, 8, "latin1");
  octal(b, 329, 8, f.devmajor);
  octal(b, 337, 8, f.devminor);
  b.write(f.prefix, 345, PREFIX_SIZE, "latin1");
  // The checksum is computed with its own field as spaces, then written as 6 digits, NUL, space.
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += b[i]!;
  b.write(`${sum.toString(8).padStart(6, "0")}\u0000 `, 148, 8, "latin1");
  return b;
}

/** Octal digits padded with zeros, then a NUL, filling the field (Go's formatOctal). */
function octal(b: Buffer, offset: number, length: number, n: number): void {
  b.write(`${n.toString(8).padStart(length - 1, "0")}\u0000`, offset, length, "latin1");
}

/** "LEN key=value\n" records, LEN counting the whole record including its own digits. */
function paxRecords(records: Map<string, Buffer>): Buffer {
  const out: Buffer[] = [];
  for (const [k, v] of [...records].sort(([a], [b]) => cmp(a, b))) {
    const body = Buffer.byteLength(k) + v.length + 3; // space, "=", newline
    let len = body + String(body).length;
    if (String(len).length !== String(body).length) len = body + String(len).length;
    out.push(Buffer.from(`${len} ${k}=`, "utf8"), v, Buffer.from("\n"));
  }
  return Buffer.concat(out);
}

/** Go's splitUSTARPath: a prefix and name that ustar can hold, when there is one. */
function splitUstarPath(name: string): [string, string] | undefined {
  if (name.length <= NAME_SIZE || !isASCII(name)) return undefined;
  let length = name.length;
  if (length > PREFIX_SIZE + 1) length = PREFIX_SIZE + 1;
  else if (name[length - 1] === "/") length--;
  const i = name.lastIndexOf("/", length - 1);
  const nlen = name.length - i - 1;
  if (i <= 0 || nlen > NAME_SIZE || nlen === 0 || i > PREFIX_SIZE) return undefined;
  return [name.slice(0, i), name.slice(i + 1)];
}

function isASCII(s: string): boolean {
  return /^[\x01-\x7f]*$/.test(s);
}

/** The best ustar field for a value PAX carries in full: ASCII characters only, truncated. */
function asciiPrefix(s: string, max: number): string {
  return s.replace(/[^\x01-\x7f]/g, "").slice(0, max);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// A streaming tar reader for image layers: ustar, GNU long names and PAX headers, with PAX
// values kept as bytes (xattrs such as security.capability are binary) and a precise error when
// the stream ends in the middle of an entry. tar-stream decodes PAX values as UTF-8 and ignores
// PAX uid/gid/mtime, so layers are read here instead.
import { ByteReader } from "./bytes.ts";

/** What an entry is; "contiguous" (type 7) and old-style "file/" names are folded into file and dir. */
export type TarEntryType = "file" | "dir" | "symlink" | "link" | "char" | "block" | "fifo";

/** One entry's header after PAX and GNU extensions are applied. */
export type TarHeader = {
  /** The name as written (not cleaned: callers decide what `..` and `/` mean). */
  name: string;
  type: TarEntryType;
  /** Symlink target or hard link target. */
  linkname: string;
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch, fractional when a PAX header gives sub-second precision. */
  mtime: number;
  atime?: number;
  devmajor: number;
  devminor: number;
  /** Extended attributes from `SCHILY.xattr.<name>` PAX records, values as raw bytes. */
  xattrs: Map<string, Buffer>;
};

/** One entry; `body` yields exactly `header.size` bytes and must be read (or left) before the next entry. */
export type TarEntry = { header: TarHeader; body: AsyncIterable<Buffer> };

/** A malformed or truncated tar; the message names the entry when there is one. */
export class TarFormatError extends Error {
  readonly entry: string | undefined;

  constructor(message: string, entry?: string) {
    super(message);
    this.name = "TarFormatError";
    this.entry = entry;
  }
}

const BLOCK = 512;
/** PAX and GNU long-name records larger than this are refused: no real name or xattr set needs it. */
const MAX_META_BYTES = 16 * 1024 * 1024;
const XATTR_PREFIX = "SCHILY.xattr.";

/**
 * Reads entries from an uncompressed tar. Every byte of `source` is consumed (the zero blocks
 * and any padding after them too), so a caller hashing the source sees the whole tar.
 */
export async function* readTar(source: AsyncIterable<Uint8Array>): AsyncGenerator<TarEntry> {
  const input = new ByteReader(source);
  let pax = new Map<string, Buffer>();
  let longName: string | undefined;
  let longLink: string | undefined;
  let lastName: string | undefined;
  for (;;) {
    const block = await input.readUpTo(BLOCK);
    if (block.length === 0) {
      // A tar without end-of-archive blocks ends cleanly at an entry boundary (as Go reads it).
      if (pax.size > 0 || longName !== undefined || longLink !== undefined) {
        throw new TarFormatError("the tar stream ended after an extended header, before its entry");
      }
      return;
    }
    if (block.length < BLOCK) {
      throw new TarFormatError(
        `the tar stream ended in the middle of a header (${block.length} of ${BLOCK} bytes)${after(lastName)}`,
      );
    }
    if (isZeroBlock(block)) {
      // End of archive: drain whatever follows (the second zero block, padding to the record size).
      await input.drain();
      return;
    }
    const raw = parseHeader(block, lastName);
    const typeflag = raw.typeflag;
    if (typeflag === "x" || typeflag === "g" || typeflag === "L" || typeflag === "K") {
      if (raw.size > MAX_META_BYTES) {
        throw new TarFormatError(
          `an extended header of ${raw.size} bytes is larger than allowed${after(lastName)}`,
        );
      }
      const data = await readExactly(input, raw.size, "extended header");
      await skipPadding(input, raw.size, "extended header");
      if (typeflag === "x") pax = parsePax(data, lastName);
      else if (typeflag === "L") longName = cString(data);
      else if (typeflag === "K") longLink = cString(data);
      // Global headers ("g") only carry defaults that image layers never rely on; containerd ignores them too.
      continue;
    }
    const header = buildHeader(raw, pax, longName, longLink);
    pax = new Map();
    longName = undefined;
    longLink = undefined;
    lastName = header.name;
    // Only regular files have data: like Go's reader, other types are header-only whatever their size field says.
    let remaining = header.size;
    const size = remaining;
    let consumed = false;
    const body: AsyncIterable<Buffer> = {
      [Symbol.asyncIterator]: async function* () {
        if (consumed)
          throw new Error(`the body of tar entry ${JSON.stringify(header.name)} was already read`);
        consumed = true;
        while (remaining > 0) {
          const chunk = await input.readSome(remaining);
          if (chunk.length === 0) throw truncated(header.name, size - remaining, size);
          remaining -= chunk.length;
          yield chunk;
        }
      },
    };
    yield { header, body };
    if (remaining > 0) {
      consumed = true;
      await skipExactly(input, remaining, header.name, size - remaining, size);
      remaining = 0;
    }
    if (header.type === "file") await skipPadding(input, size, header.name);
  }
}

type RawHeader = {
  name: string;
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

function parseHeader(block: Buffer, lastName: string | undefined): RawHeader {
  const stored = parseNumber(block, 148, 8, "checksum", lastName);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new TarFormatError(
      `a tar header has a bad checksum; the data is not a tar or is corrupt${after(lastName)}`,
    );
  }
  const magic = block.toString("latin1", 257, 263);
  let name = cString(block.subarray(0, 100));
  if (magic === "ustar\0") {
    const prefix = cString(block.subarray(345, 500));
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  const typeflag = block[156] === 0 ? "0" : String.fromCharCode(block[156]!);
  return {
    name,
    mode: parseNumber(block, 100, 8, "mode", lastName),
    uid: parseNumber(block, 108, 8, "uid", lastName),
    gid: parseNumber(block, 116, 8, "gid", lastName),
    size: parseNumber(block, 124, 12, "size", lastName),
    mtime: parseNumber(block, 136, 12, "mtime", lastName),
    typeflag,
    linkname: cString(block.subarray(157, 257)),
    devmajor: parseNumber(block, 329, 8, "devmajor", lastName),
    devminor: parseNumber(block, 337, 8, "devminor", lastName),
  };
}

function buildHeader(
  raw: RawHeader,
  pax: Map<string, Buffer>,
  longName: string | undefined,
  longLink: string | undefined,
): TarHeader {
  let name = longName ?? raw.name;
  let linkname = longLink ?? raw.linkname;
  const header: TarHeader = {
    name,
    type: "file",
    linkname,
    mode: raw.mode & 0o7777,
    uid: raw.uid,
    gid: raw.gid,
    size: raw.size,
    mtime: raw.mtime,
    devmajor: raw.devmajor,
    devminor: raw.devminor,
    xattrs: new Map(),
  };
  for (const [key, value] of pax) {
    const text = () => value.toString("utf8");
    const int = () => paxInt(key, text(), name);
    if (key === "path") name = text();
    else if (key === "linkpath") linkname = text();
    else if (key === "size") header.size = int();
    else if (key === "uid") header.uid = int();
    else if (key === "gid") header.gid = int();
    else if (key === "mtime") header.mtime = paxTime(key, text(), name);
    else if (key === "atime") header.atime = paxTime(key, text(), name);
    else if (key.startsWith(XATTR_PREFIX)) header.xattrs.set(key.slice(XATTR_PREFIX.length), value);
    else if (key.startsWith("GNU.sparse.")) {
      throw new TarFormatError(
        `entry ${JSON.stringify(name)} is a GNU sparse file, which image layers do not use`,
        name,
      );
    }
  }
  header.name = name;
  header.linkname = linkname;
  switch (raw.typeflag) {
    case "0":
    case "7":
      // Old tars mark directories only by the trailing slash.
      header.type = name.endsWith("/") ? "dir" : "file";
      break;
    case "1":
      header.type = "link";
      break;
    case "2":
      header.type = "symlink";
      break;
    case "3":
      header.type = "char";
      break;
    case "4":
      header.type = "block";
      break;
    case "5":
      header.type = "dir";
      break;
    case "6":
      header.type = "fifo";
      break;
    default:
      throw new TarFormatError(
        `entry ${JSON.stringify(name)} has tar type ${JSON.stringify(raw.typeflag)}, which is not supported in image layers`,
        name,
      );
  }
  if (header.type !== "file") header.size = 0;
  return header;
}

/** Parses "LEN key=value\n" records; values stay bytes. */
function parsePax(data: Buffer, lastName: string | undefined): Map<string, Buffer> {
  const records = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    const space = data.indexOf(0x20, pos);
    const len = space < 0 ? Number.NaN : Number(data.toString("latin1", pos, space));
    if (
      !Number.isSafeInteger(len) ||
      len <= space - pos + 1 ||
      pos + len > data.length ||
      data[pos + len - 1] !== 0x0a
    ) {
      throw new TarFormatError(`a PAX header is malformed at byte ${pos}${after(lastName)}`);
    }
    const record = data.subarray(space + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq <= 0) throw new TarFormatError(`a PAX record has no key${after(lastName)}`);
    records.set(record.toString("utf8", 0, eq), Buffer.from(record.subarray(eq + 1)));
    pos += len;
  }
  return records;
}

/** Octal (NUL/space padded) or GNU base-256 numbers. */
function parseNumber(
  block: Buffer,
  offset: number,
  length: number,
  field: string,
  lastName?: string,
): number {
  const bytes = block.subarray(offset, offset + length);
  if (bytes[0]! & 0x80) {
    if (bytes[0]! & 0x40) throw new TarFormatError(`a tar header has a negative ${field}${after(lastName)}`);
    let n = bytes[0]! & 0x3f;
    for (let i = 1; i < bytes.length; i++) n = n * 256 + bytes[i]!;
    if (!Number.isSafeInteger(n))
      throw new TarFormatError(`a tar header's ${field} is too large${after(lastName)}`);
    return n;
  }
  const text = bytes
    .toString("latin1")
    .replace(/[\0 ]+$/, "")
    .replace(/^[ \0]+/, "");
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) {
    throw new TarFormatError(
      `a tar header has an invalid ${field} ${JSON.stringify(text)}${after(lastName)}`,
    );
  }
  return Number.parseInt(text, 8);
}

function paxInt(key: string, text: string, name: string): number {
  if (!/^\d{1,15}$/.test(text)) {
    throw new TarFormatError(
      `entry ${JSON.stringify(name)} has an invalid PAX ${key} ${JSON.stringify(text)}`,
      name,
    );
  }
  return Number(text);
}

function paxTime(key: string, text: string, name: string): number {
  if (!/^-?\d{1,15}(\.\d+)?$/.test(text)) {
    throw new TarFormatError(
      `entry ${JSON.stringify(name)} has an invalid PAX ${key} ${JSON.stringify(text)}`,
      name,
    );
  }
  return Number(text);
}

function cString(bytes: Buffer): string {
  const nul = bytes.indexOf(0);
  return bytes.toString("utf8", 0, nul < 0 ? bytes.length : nul);
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

async function readExactly(input: ByteReader, n: number, what: string): Promise<Buffer> {
  const data = await input.readUpTo(n);
  if (data.length < n) throw new TarFormatError(`the tar stream ended in the middle of an ${what}`);
  return data;
}

async function skipPadding(input: ByteReader, size: number, name: string): Promise<void> {
  const pad = padding(size);
  if (pad > 0 && (await input.skip(pad)) < pad) {
    throw new TarFormatError(`the tar stream ended in the padding after ${JSON.stringify(name)}`, name);
  }
}

async function skipExactly(input: ByteReader, n: number, name: string, done = 0, size = n): Promise<void> {
  const skipped = await input.skip(n);
  if (skipped < n) throw truncated(name, done + skipped, size);
}

function truncated(name: string, got: number, size: number): TarFormatError {
  return new TarFormatError(
    `the tar stream ended in the middle of entry ${JSON.stringify(name)} (${got} of ${size} bytes); the layer is truncated`,
    name,
  );
}

function after(name: string | undefined): string {
  return name === undefined ? "" : ` (after entry ${JSON.stringify(name)})`;
}

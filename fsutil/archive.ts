// ADD's archive auto-extraction (BuildKit's attemptUnpackDockerCompatibility): a local tar, plain or
// compressed, is unpacked into the destination instead of copied. Archives are hostile: no entry may
// land outside the destination, through "..", an absolute name, a symlink or a hard link.
import { type ChildProcess, spawn } from "node:child_process";
import { constants, createReadStream } from "node:fs";
import { chmod, lchown, link, lstat, lutimes, mkdir, open, rm, symlink } from "node:fs/promises";
import { posix } from "node:path";
import type { Readable } from "node:stream";
import { createGunzip, createZstdDecompress } from "node:zlib";
import { extract as tarExtract } from "tar-stream";
import { fsError, mkdirAllInRoot, resolveInRoot } from "./resolve.ts";
import { makeSpecialFile } from "./special.ts";

/** How an archive is compressed. */
export type ArchiveCompression = "none" | "gzip" | "bzip2" | "xz" | "zstd";

/** Options of {@link extractArchive}. */
export interface ExtractOptions {
  /** Owner of every extracted entry; the archive's own uid/gid when unset. */
  owner?: { uid: number; gid: number };
  signal?: AbortSignal;
}

function compressionOf(magic: Buffer): ArchiveCompression {
  if (magic[0] === 0x1f && magic[1] === 0x8b) return "gzip";
  if (magic.subarray(0, 3).toString("latin1") === "BZh") return "bzip2";
  if (magic.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return "xz";
  if (magic.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return "zstd";
  return "none";
}

/** True when a 512-byte block is a tar header: not all zeros and with a valid checksum. */
export function isTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  const field = block
    .subarray(148, 156)
    .toString("latin1")
    .replace(/[\0 ]+$/, "")
    .trim();
  if (!/^[0-7]+$/.test(field)) return false;
  const want = Number.parseInt(field, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return want === unsigned || want === signed;
}

interface Decompressed {
  stream: Readable;
  /** Rejects when an external decompressor failed; resolves once it exited cleanly. */
  done: Promise<void>;
  stop(): void;
}

function decompress(path: string, kind: ArchiveCompression): Decompressed {
  const file = createReadStream(path);
  if (kind === "none") return { stream: file, done: Promise.resolve(), stop: () => file.destroy() };
  if (kind === "gzip" || kind === "zstd") {
    const z = kind === "gzip" ? createGunzip() : createZstdDecompress();
    file.on("error", (err) => z.destroy(err));
    file.pipe(z);
    return {
      stream: z,
      done: Promise.resolve(),
      stop: () => {
        file.destroy();
        z.destroy();
      },
    };
  }
  // bzip2 and xz have no decoder in Node; the standard tools do it in a child process.
  const tool = kind === "bzip2" ? "bzip2" : "xz";
  const child: ChildProcess = spawn(tool, ["-dc"], { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  let stopped = false;
  const done = new Promise<void>((resolve, reject) => {
    child.on("error", (err: NodeJS.ErrnoException) => {
      reject(
        err.code === "ENOENT"
          ? new Error(`cannot decompress ${kind} archive ${path}: the ${tool} program is not installed`)
          : err,
      );
    });
    child.on("close", (code, sig) => {
      if (code === 0 || stopped) resolve();
      else reject(new Error(`${tool} failed decompressing ${path} (exit ${code ?? sig}): ${stderr.trim()}`));
    });
  });
  file.on("error", (err) => child.stdout!.destroy(err));
  // A stopped child closes its stdin early; that is not an error worth reporting.
  child.stdin!.on("error", () => {});
  file.pipe(child.stdin!);
  return {
    stream: child.stdout!,
    done,
    stop: () => {
      stopped = true;
      file.destroy();
      child.kill("SIGKILL");
    },
  };
}

async function readPrefix(d: Decompressed, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of d.stream) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= n) break;
    }
  } catch {
    // A stream that is not really compressed data is simply not an archive.
  } finally {
    d.stop();
  }
  await d.done;
  return Buffer.concat(chunks).subarray(0, n);
}

/**
 * Whether `path` is a regular file holding a tar archive (plain, gzip, bzip2, xz or zstd), as BuildKit
 * decides: the compression from magic bytes, then a valid first tar header. Returns its compression,
 * or undefined for anything else (which ADD then copies as a file).
 */
export async function detectArchive(path: string): Promise<ArchiveCompression | undefined> {
  const st = await lstat(path);
  if (!st.isFile()) return undefined;
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  let head: Buffer;
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, 512, 0);
    head = buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  const kind = compressionOf(head);
  const block = kind === "none" ? head : await readPrefix(decompress(path, kind), 512);
  return isTarHeader(block) ? kind : undefined;
}

/** The clean destination-relative path of an archive entry; "" for the root; throws when it escapes. */
function entryPath(name: string, what: string): string {
  // A leading "/" is relative to the destination; a leading ".." would climb out of it.
  const rel = posix.normalize(name.startsWith("/") ? name : `./${name}`).replace(/^\/+/, "");
  const clean = rel.replace(/\/+$/, "");
  if (clean === ".." || clean.startsWith("../")) {
    throw fsError("EPERM", `archive ${what} ${JSON.stringify(name)} points outside of the destination`);
  }
  return clean === "." ? "" : clean;
}

/** Unix seconds with a fraction, the form lutimes takes. */
function toSeconds(t: Date): number {
  return t.getTime() / 1000;
}

/**
 * Extracts the tar archive `archivePath` (any {@link ArchiveCompression}) into the directory
 * `destDir`, which is treated as a root: entries are resolved inside it as in a chroot, an entry
 * named with ".." above it or a hard link to outside it fails the whole extraction. Existing
 * entries are replaced except directories, which merge, as Docker does.
 */
export async function extractArchive(
  archivePath: string,
  destDir: string,
  opts: ExtractOptions = {},
): Promise<void> {
  const kind = await detectArchive(archivePath);
  if (kind === undefined) throw new Error(`${archivePath} is not a tar archive`);
  const source = decompress(archivePath, kind);
  // Old (v7) tars have no "ustar" magic; the header checksum was checked by detectArchive.
  const extract = tarExtract({ allowUnknownFormat: true } as Parameters<typeof tarExtract>[0]);
  // The parser's own error says what is wrong ("Unexpected end of data"); its entries only say
  // that they were destroyed.
  let parseError: unknown;
  extract.on("error", (err: unknown) => {
    parseError ??= err;
  });
  source.stream.on("error", (err) => extract.destroy(err));
  source.stream.pipe(extract);
  const dirs: Array<{ path: string; mode: number; uid: number; gid: number; mtime: Date }> = [];
  try {
    for await (const entry of extract) {
      opts.signal?.throwIfAborted();
      const h = entry.header;
      const rel = entryPath(h.name, "entry");
      const type = h.type ?? "file";
      if (
        rel === "" ||
        ![
          "file",
          "contiguous-file",
          "directory",
          "symlink",
          "link",
          "character-device",
          "block-device",
          "fifo",
        ].includes(type)
      ) {
        // The root entry ("./") is skipped as Docker does; unknown entry types are ignored.
        entry.resume();
        continue;
      }
      const uid = opts.owner?.uid ?? h.uid ?? 0;
      const gid = opts.owner?.gid ?? h.gid ?? 0;
      const mode = (h.mode ?? 0o644) & 0o7777;
      const mtime = h.mtime ?? new Date(0);
      const parent = await mkdirAllInRoot(destDir, posix.dirname(rel), { mode: 0o755, owner: opts.owner });
      const target = `${parent.path}/${posix.basename(rel)}`;
      const existing = await lstat(target).catch(() => undefined);
      if (existing && !(type === "directory" && existing.isDirectory()))
        await rm(target, { recursive: true, force: true });
      switch (type) {
        case "directory":
          if (!existing?.isDirectory()) await mkdir(target, 0o700);
          dirs.push({ path: target, mode, uid, gid, mtime });
          entry.resume();
          continue;
        case "file":
        case "contiguous-file": {
          const fh = await open(
            target,
            constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
            0o600,
          );
          try {
            for await (const chunk of entry) await fh.write(chunk as Buffer);
          } finally {
            await fh.close();
          }
          break;
        }
        case "symlink":
          await symlink(h.linkname ?? "", target);
          break;
        case "link": {
          const linkRel = entryPath(h.linkname ?? "", "hard link target");
          if (linkRel === "")
            throw fsError(
              "EPERM",
              `archive hard link ${JSON.stringify(h.name)} points at the destination itself`,
            );
          const from = await resolveInRoot(destDir, linkRel, { followFinal: false });
          const st = await lstat(from).catch(() => undefined);
          if (!st || st.isDirectory()) {
            throw fsError(
              "ENOENT",
              `archive hard link ${JSON.stringify(h.name)} names ${JSON.stringify(h.linkname)}, which is not a file extracted before it`,
            );
          }
          await link(from, target);
          entry.resume();
          continue;
        }
        default:
          await makeSpecialFile(
            target,
            type === "fifo" ? "fifo" : type === "block-device" ? "block" : "char",
            h.devmajor ?? 0,
            h.devminor ?? 0,
          );
      }
      entry.resume();
      await lchown(target, uid, gid);
      if (type !== "symlink") await chmod(target, mode);
      await lutimes(target, toSeconds(mtime), toSeconds(mtime));
    }
    // Directory metadata last: extracting into a directory changes its mtime.
    for (const d of dirs) {
      await lchown(d.path, d.uid, d.gid);
      await chmod(d.path, d.mode);
      await lutimes(d.path, toSeconds(d.mtime), toSeconds(d.mtime));
    }
  } catch (err) {
    source.stop();
    extract.destroy();
    const decompressorError = await source.done.then(
      () => undefined,
      (e: unknown) => e,
    );
    const cause = (parseError ?? decompressorError ?? err) as NodeJS.ErrnoException;
    const wrapped: NodeJS.ErrnoException = new Error(
      `extracting ${archivePath}: ${cause?.message ?? cause}`,
      { cause },
    );
    if (cause?.code) wrapped.code = cause.code;
    throw wrapped;
  }
  await source.done;
}

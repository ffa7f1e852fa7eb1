// Image layers built in code from a file list or a directory: tests control every tar header
// (including hostile ones), and the same inputs always give the same digest.
import { lstat, readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzip, zstdCompress } from "node:zlib";
import { type Header, pack } from "tar-stream";
import { type Digest, digestOf } from "../util/digest.ts";

export type Compression = "gzip" | "zstd" | "none";

/** OCI layer media types by compression; docker manifests translate them (see oci-image.ts). */
export const LAYER_MEDIA_TYPES = {
  none: "application/vnd.oci.image.layer.v1.tar",
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
} as const;

/**
 * One tar entry. Exactly one of content (regular file, the default), dir, symlink, hardlink or
 * device; `path` is written as given, so `../x` and `/x` are possible for negative tests.
 */
export type LayerEntry = {
  path: string;
  content?: string | Buffer;
  dir?: boolean;
  symlink?: string;
  hardlink?: string;
  device?: { type: "char" | "block" | "fifo"; major?: number; minor?: number };
  mode?: number;
  uid?: number;
  gid?: number;
  /** Defaults to the epoch, so layers are reproducible. */
  mtime?: Date;
};

/** A built layer: the blob as pushed and the identities an image needs. */
export type Layer = {
  blob: Buffer;
  /** Digest of the (compressed) blob. */
  digest: Digest;
  /** Digest of the uncompressed tar, for the config's rootfs.diff_ids. */
  diffID: Digest;
  size: number;
  mediaType: string;
  compression: Compression;
};

/** Builds a layer from entries, or from a directory tree (`mtime` clamps every time, for reproducibility). */
export async function buildLayer(
  source: LayerEntry[] | { fromDir: string; mtime?: Date },
  opts: { compression: Compression } = { compression: "gzip" },
): Promise<Layer> {
  const entries = Array.isArray(source) ? source : await entriesFromDir(source.fromDir, source.mtime);
  const tar = await packTar(entries);
  return layerFromTar(tar, opts.compression);
}

/** Compresses an already made tar into a layer, for tars no LayerEntry can describe. */
export async function layerFromTar(tar: Buffer, compression: Compression): Promise<Layer> {
  const blob =
    compression === "gzip"
      ? await promisify(gzip)(tar)
      : compression === "zstd"
        ? await promisify(zstdCompress)(tar)
        : tar;
  return {
    blob,
    digest: digestOf(blob),
    diffID: digestOf(tar),
    size: blob.length,
    mediaType: LAYER_MEDIA_TYPES[compression],
    compression,
  };
}

/** Writes entries into an uncompressed tar in the order given. */
export async function packTar(entries: LayerEntry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of p) chunks.push(chunk as Buffer);
  })();
  for (const e of entries) {
    const header = tarHeader(e);
    const body = header.type === "file" ? Buffer.from(e.content ?? "") : undefined;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      // Non-file entries have no body and complete on their own.
      if (body) p.entry({ ...header, size: body.length }, body, done);
      else p.entry(header, done);
    });
  }
  p.finalize();
  await collected;
  return Buffer.concat(chunks);
}

function tarHeader(e: LayerEntry): Partial<Header> & { name: string } {
  const common = { name: e.path, uid: e.uid ?? 0, gid: e.gid ?? 0, mtime: e.mtime ?? new Date(0) };
  // Directory names end in "/" as docker and BuildKit write them (tar-stream does not add it).
  if (e.dir)
    return { ...common, name: e.path.replace(/\/?$/, "/"), type: "directory", mode: e.mode ?? 0o755 };
  if (e.symlink !== undefined)
    return { ...common, type: "symlink", linkname: e.symlink, mode: e.mode ?? 0o777 };
  if (e.hardlink !== undefined)
    return { ...common, type: "link", linkname: e.hardlink, mode: e.mode ?? 0o644 };
  if (e.device) {
    const type = ({ char: "character-device", block: "block-device", fifo: "fifo" } as const)[e.device.type];
    return {
      ...common,
      type,
      mode: e.mode ?? 0o644,
      devmajor: e.device.major ?? 0,
      devminor: e.device.minor ?? 0,
    };
  }
  return { ...common, type: "file", mode: e.mode ?? 0o644 };
}

/** Walks a tree in sorted order; files sharing an inode after the first become hard links. */
async function entriesFromDir(root: string, mtime?: Date): Promise<LayerEntry[]> {
  const entries: LayerEntry[] = [];
  const seen = new Map<string, string>();
  const walk = async (rel: string) => {
    const names = (await readdir(join(root, rel))).sort();
    for (const name of names) {
      const path = rel === "" ? name : `${rel}/${name}`;
      const full = join(root, path);
      const st = await lstat(full);
      const meta = { path, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: mtime ?? st.mtime };
      if (st.isDirectory()) {
        entries.push({ ...meta, dir: true });
        await walk(path);
      } else if (st.isSymbolicLink()) {
        entries.push({ ...meta, symlink: await readlink(full) });
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? seen.get(key) : undefined;
        if (first !== undefined) entries.push({ ...meta, hardlink: first });
        else entries.push({ ...meta, content: await readFile(full) });
        if (st.nlink > 1 && first === undefined) seen.set(key, path);
      } else if (st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO()) {
        const type = st.isCharacterDevice() ? "char" : st.isBlockDevice() ? "block" : "fifo";
        // Linux dev_t: major in bits 8-19, minor in bits 0-7 and 20-31.
        const major = Math.floor(st.rdev / 256) & 0xfff;
        const minor = (st.rdev & 0xff) | (Math.floor(st.rdev / 4096) & 0xfff00);
        entries.push({ ...meta, device: { type, major, minor } });
      }
      // Sockets cannot be in a tar; skip them like docker does.
    }
  };
  await walk("");
  return entries;
}

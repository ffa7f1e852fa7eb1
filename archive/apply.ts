// Unpacking an image layer (a tar changeset, OCI image-spec "layer.md") into a snapshot
// directory, as root, from hostile input.
//
// Formats: "plain" applies onto a directory holding the merged content of the layers below
// (`.wh.NAME` deletes NAME, `.wh..wh..opq` deletes what lower layers put in the directory);
// "overlay" writes into an empty upper directory, turning whiteouts into 0:0 character devices
// and opaque markers into trusted.overlay.opaque=y, so that overlayfs stacking it on the parent
// layers shows the same tree "plain" would give.
//
// Safety: names are cleaned and refused when they climb out (names.ts); parents are resolved by
// hand inside the root (view.ts); the final component is removed first and then created with
// O_EXCL/mknod/symlink/link, none of which follow a symlink there. Hard link targets are
// resolved like names. Layers may not set overlay's own xattrs. On error the target holds a
// partial layer: the caller discards the snapshot (the error names layer and entry).
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { chmod, lchown, link, lutimes, mkdir, open, readdir, rm, symlink } from "node:fs/promises";
import { isAbsolute, join, resolve } from "node:path";
import type { Digest } from "../util/digest.ts";
import { logger } from "../util/log.ts";
import { decompressLayer, type LayerCompression } from "./decompress.ts";
import { entryComponents, UnsafeNameError } from "./names.ts";
import { SyscallError, SyscallHelper } from "./syscalls.ts";
import { readTar, type TarEntry, TarFormatError, type TarHeader } from "./tar.ts";
import {
  type LayerView,
  lstatOrUndefined,
  OPAQUE_XATTR,
  overlayView,
  plainView,
  resolveDir,
} from "./view.ts";

/** Where a layer is unpacked: onto merged lower content ("plain") or into an overlay upper dir. */
export type LayerFormat = "overlay" | "plain";

/** Options of {@link applyLayer}. */
export type ApplyLayerOptions = {
  format: LayerFormat;
  /** Names the layer in errors and warnings, e.g. "layer sha256:ab… of 127.0.0.1:5000/app:1". */
  layer?: string;
  /** Overlay only: the lower layers' directories, top-most first, for implicit parent dirs and hard links to files below. */
  lowers?: string[];
  signal?: AbortSignal;
  /** Called for what is skipped rather than failed (an xattr the filesystem refuses). */
  onWarning?: (message: string) => void;
};

/** What was unpacked. */
export type ApplyLayerStats = {
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  hardlinks: number;
  devices: number;
  whiteouts: number;
  /** Bytes of regular file content written. */
  bytes: number;
  /** sha256 of the uncompressed tar, to check against the image config's rootfs.diff_ids. */
  diffID: Digest;
  warnings: string[];
};

/** A layer that could not be applied; names the layer and, when it is one entry's fault, the entry. */
export class LayerApplyError extends Error {
  readonly layer: string;
  readonly entry: string | undefined;

  constructor(layer: string, entry: string | undefined, why: string, options?: ErrorOptions) {
    super(
      `applying ${layer}: ${entry === undefined ? "" : `entry ${JSON.stringify(entry)}: `}${why}`,
      options,
    );
    this.name = "LayerApplyError";
    this.layer = layer;
    this.entry = entry;
  }
}

const WHITEOUT_PREFIX = ".wh.";
const WHITEOUT_META_PREFIX = ".wh..wh.";
const OPAQUE_MARKER = ".wh..wh..opq";
const XATTR_SKIPPABLE = new Set(["ENOTSUP", "EOPNOTSUPP", "EPERM", "EACCES", "EINVAL", "ERANGE", "E2BIG"]);
const log = logger({ component: "archive" });

/** Unpacks a layer blob that may be gzip'd, zstd'd or plain; the first bytes decide. */
export async function applyLayerBlob(
  blob: AsyncIterable<Uint8Array>,
  target: string,
  opts: ApplyLayerOptions,
): Promise<ApplyLayerStats & { compression: LayerCompression }> {
  const { compression, stream } = await decompressLayer(blob);
  try {
    return { ...(await applyLayer(stream, target, opts)), compression };
  } finally {
    stream.destroy();
  }
}

/** Unpacks an uncompressed layer tar into `target` (an existing directory). */
export async function applyLayer(
  tar: AsyncIterable<Uint8Array>,
  target: string,
  opts: ApplyLayerOptions,
): Promise<ApplyLayerStats> {
  const layer = opts.layer ?? "layer";
  if (!isAbsolute(target))
    throw new LayerApplyError(layer, undefined, `target ${target} is not an absolute path`);
  const root = resolve(target);
  const st = await lstatOrUndefined(root);
  if (!st?.isDirectory()) {
    throw new LayerApplyError(
      layer,
      undefined,
      `target ${root} is not a directory (a symlink is not accepted)`,
    );
  }
  const hash = createHash("sha256");
  const hashed = (async function* () {
    for await (const chunk of tar) {
      hash.update(chunk);
      yield chunk;
    }
  })();
  const helper = new SyscallHelper();
  const dirTimes: DirTimes[] = [];
  const view =
    opts.format === "overlay"
      ? overlayView(root, opts.lowers ?? [], helper, (rel, atime, mtime) =>
          dirTimes.push({ rel, atime, mtime }),
        )
      : plainView(root);
  const unpacker = new Unpacker(view, helper, dirTimes, layer, opts.onWarning);
  let current: string | undefined;
  try {
    for await (const entry of readTar(hashed)) {
      opts.signal?.throwIfAborted();
      current = entry.header.name;
      await unpacker.apply(entry, opts.signal);
      current = undefined;
    }
    await unpacker.finish();
  } catch (e) {
    if (e instanceof LayerApplyError || (e as Error)?.name === "AbortError") throw e;
    if (e instanceof TarFormatError) throw new LayerApplyError(layer, e.entry, e.message, { cause: e });
    if (e instanceof UnsafeNameError) throw new LayerApplyError(layer, current, e.message, { cause: e });
    const code = String((e as NodeJS.ErrnoException).code ?? "");
    if (code.startsWith("Z_") || code.startsWith("ZSTD_")) {
      const why = `decompressing failed (${(e as Error).message}); the layer blob is truncated or corrupt`;
      throw new LayerApplyError(layer, undefined, why, { cause: e });
    }
    throw new LayerApplyError(layer, current, (e as Error).message, { cause: e });
  } finally {
    await helper.close();
  }
  return { ...unpacker.stats, diffID: `sha256:${hash.digest("hex")}` };
}

type DirTimes = { rel: string[]; atime: number | Date; mtime: number | Date };

/** The state of one layer being applied. */
class Unpacker {
  readonly stats: Omit<ApplyLayerStats, "diffID"> = {
    entries: 0,
    files: 0,
    dirs: 0,
    symlinks: 0,
    hardlinks: 0,
    devices: 0,
    whiteouts: 0,
    bytes: 0,
    warnings: [],
  };
  #view: LayerView;
  #helper: SyscallHelper;
  #layer: string;
  #onWarning: ((message: string) => void) | undefined;
  /** Resolved paths this layer created, which an opaque marker must keep. */
  #unpacked = new Set<string>();
  /** Directory times are set last: creating entries inside would change them. */
  #dirTimes: DirTimes[];

  constructor(
    view: LayerView,
    helper: SyscallHelper,
    dirTimes: DirTimes[],
    layer: string,
    onWarning?: (message: string) => void,
  ) {
    this.#view = view;
    this.#helper = helper;
    this.#dirTimes = dirTimes;
    this.#layer = layer;
    this.#onWarning = onWarning;
  }

  async apply(entry: TarEntry, signal: AbortSignal | undefined): Promise<void> {
    const h = entry.header;
    this.stats.entries++;
    const components = entryComponents(h.name);
    // The root itself belongs to the snapshotter (containerd skips it too).
    if (components.length === 0) return;
    const base = components.at(-1)!;
    const parentComponents = components.slice(0, -1);
    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (base === OPAQUE_MARKER) return this.#opaque(parentComponents);
      // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs) has no meaning here.
      if (base.startsWith(WHITEOUT_META_PREFIX)) return;
      return this.#whiteout(parentComponents, base.slice(WHITEOUT_PREFIX.length));
    }
    const parent = (await resolveDir(this.#view, parentComponents, true))!;
    const rel = [...parent, base];
    const path = join(this.#view.root, ...rel);
    const existing = await lstatOrUndefined(path);
    if (h.type === "dir") {
      if (!existing?.isDirectory()) {
        if (existing) await rm(path, { recursive: true, force: true });
        await mkdir(path, { mode: 0o700 });
        // A directory in place of one this layer whited out hides everything below it.
        if (this.#view.format === "overlay" && existing?.isCharacterDevice() && existing.rdev === 0) {
          await this.#helper.setXattr(path, OPAQUE_XATTR, Buffer.from("y"));
        }
      }
      this.stats.dirs++;
    } else {
      if (existing) await rm(path, { recursive: true, force: true });
      await this.#create(h, entry.body, path, signal);
    }
    await this.#setMetadata(h, path);
    if (h.type === "dir") this.#dirTimes.push({ rel, atime: h.atime ?? h.mtime, mtime: h.mtime });
    this.#unpacked.add(rel.join("/"));
  }

  /** Sets the directories' times, now that nothing more is created in them. */
  async finish(): Promise<void> {
    for (const d of this.#dirTimes) {
      try {
        await lutimes(join(this.#view.root, ...d.rel), d.atime, d.mtime);
      } catch (e) {
        // Deleted again later in the same layer.
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    }
  }

  async #create(
    h: TarHeader,
    body: AsyncIterable<Buffer>,
    path: string,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    switch (h.type) {
      case "file": {
        const fh = await open(
          path,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o600,
        );
        try {
          for await (const chunk of body) {
            signal?.throwIfAborted();
            let written = 0;
            while (written < chunk.length) {
              written += (await fh.write(chunk, written, chunk.length - written)).bytesWritten;
            }
            this.stats.bytes += chunk.length;
          }
        } finally {
          await fh.close();
        }
        this.stats.files++;
        return;
      }
      case "symlink":
        // Any target may be stored; it is never followed while unpacking.
        await symlink(h.linkname, path);
        this.stats.symlinks++;
        return;
      case "link":
        await link(await this.#hardlinkTarget(h.linkname), path);
        this.stats.hardlinks++;
        return;
      case "char":
      case "block":
      case "fifo":
        await this.#helper.mknod(path, h.type, 0o600, h.devmajor, h.devminor);
        this.stats.devices++;
        return;
      case "dir":
        throw new Error("unreachable: directories are handled by the caller");
    }
  }

  /** The absolute path of a hard link's target: inside the root, not a directory, copied up from below in overlay. */
  async #hardlinkTarget(linkname: string): Promise<string> {
    let components: string[];
    try {
      components = entryComponents(linkname);
    } catch (e) {
      throw new UnsafeNameError(`hard link target ${JSON.stringify(linkname)}: ${(e as Error).message}`);
    }
    if (components.length === 0) throw new UnsafeNameError("a hard link to the layer root");
    const missing = () =>
      new UnsafeNameError(
        `hard link target ${JSON.stringify(linkname)} does not exist in this layer or below it`,
      );
    const parent = await resolveDir(this.#view, components.slice(0, -1), false);
    if (parent === undefined) throw missing();
    const rel = [...parent, components.at(-1)!];
    const found = await this.#view.lookup(rel);
    if (found.kind === "missing") throw missing();
    if (found.kind === "dir")
      throw new UnsafeNameError(`hard link target ${JSON.stringify(linkname)} is a directory`);
    if (found.where === "lower") await this.#view.copyUp(rel, found);
    return join(this.#view.root, ...rel);
  }

  async #setMetadata(h: TarHeader, path: string): Promise<void> {
    // chown first: it clears setuid bits and file capabilities, which come after.
    await lchown(path, h.uid, h.gid);
    for (const [name, value] of h.xattrs) {
      if (name.startsWith("trusted.overlay.")) {
        this.#warn(
          `${JSON.stringify(h.name)}: ignored xattr ${name}: layers may not set overlayfs's own attributes`,
        );
        continue;
      }
      try {
        await this.#helper.setXattr(path, name, value);
      } catch (e) {
        if (!(e instanceof SyscallError) || !XATTR_SKIPPABLE.has(e.code)) throw e;
        this.#warn(`${JSON.stringify(h.name)}: ignored xattr ${name}: the filesystem refused it (${e.code})`);
      }
    }
    if (h.type === "symlink") {
      await lutimes(path, h.atime ?? h.mtime, h.mtime);
      return;
    }
    await chmod(path, h.mode);
    if (h.type !== "dir") await lutimes(path, h.atime ?? h.mtime, h.mtime);
  }

  async #whiteout(parentComponents: string[], name: string): Promise<void> {
    if (name === "" || name === "." || name === "..") {
      throw new UnsafeNameError(`invalid whiteout name ${JSON.stringify(WHITEOUT_PREFIX + name)}`);
    }
    this.stats.whiteouts++;
    if (this.#view.format === "plain") {
      const parent = await resolveDir(this.#view, parentComponents, false);
      if (parent !== undefined)
        await rm(join(this.#view.root, ...parent, name), { recursive: true, force: true });
      return;
    }
    // Nothing to hide when the directory exists in no layer.
    const parent = await resolveDir(this.#view, parentComponents, false);
    if (parent === undefined) return;
    const path = join(this.#view.root, ...parent, name);
    await rm(path, { recursive: true, force: true });
    await this.#helper.mknod(path, "char", 0, 0, 0);
  }

  async #opaque(dirComponents: string[]): Promise<void> {
    if (this.#view.format === "overlay") {
      const dir = (await resolveDir(this.#view, dirComponents, true))!;
      await this.#helper.setXattr(join(this.#view.root, ...dir), OPAQUE_XATTR, Buffer.from("y"));
      return;
    }
    const dir = await resolveDir(this.#view, dirComponents, false);
    if (dir !== undefined) await this.#removeLower(dir);
  }

  /** Deletes what is in `dir` but was not unpacked by this layer (an opaque marker may come after some entries). */
  async #removeLower(dir: string[]): Promise<void> {
    const path = join(this.#view.root, ...dir);
    for (const name of await readdir(path)) {
      const rel = [...dir, name];
      if (!this.#unpacked.has(rel.join("/"))) {
        await rm(join(path, name), { recursive: true, force: true });
      } else if ((await lstatOrUndefined(join(path, name)))?.isDirectory()) {
        await this.#removeLower(rel);
      }
    }
  }

  #warn(message: string): void {
    const full = `${this.#layer}: ${message}`;
    this.stats.warnings.push(full);
    log.warn("layer entry skipped", { layer: this.#layer, detail: message });
    this.#onWarning?.(full);
  }
}

// The daemon's side of file sync: calls the client's FileSync/DiffCopy for one named directory
// and makes a target directory equal to it, transferring only the files whose content may have
// changed since the last sync into that target. Everything the client sends is hostile until
// checked: paths (no "..", no absolute paths, nothing below a non-directory, in fsutil's order),
// types (no devices or sockets), sizes, hard-link targets and data for files never requested.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import type { Stat } from "../../proto/gen/fsutil/types/stat_pb.ts";
import { type PacketSchema, Packet_PacketType } from "../../proto/gen/fsutil/types/wire_pb.ts";
import { FileSync } from "../../proto/gen/moby/filesync/v1/filesync_pb.ts";
import type { Digest } from "../../util/digest.ts";
import type { SessionCaller } from "../manager.ts";
import { DirMirror, type IncomingEntry, type IncomingFile, type SyncManifest } from "./mirror.ts";
import { PacketQueue } from "./queue.ts";
import {
  comparePaths,
  DIFF_COPY_METHOD,
  encodeFileSyncHeaders,
  goModeKind,
  posixPermFromGo,
} from "./wire.ts";

export type { SyncManifest } from "./mirror.ts";
export { readManifest } from "./mirror.ts";

type PacketInit = MessageInitShape<typeof PacketSchema>;

export interface SyncDirOptions {
  /** The name the client shares the directory under (`--local NAME=...`). */
  name: string;
  /** Only paths matching these are transferred (.dockerignore syntax, evaluated by the client). */
  include?: string[];
  exclude?: string[];
  followPaths?: string[];
  /** The directory made equal to the client's. It must exist, and nobody else may write to it meanwhile. */
  target: string;
  /** The manifest the last sync into `target` returned: what still matches it is not transferred. */
  previous?: SyncManifest;
  signal?: AbortSignal;
  /** Called as entries and bytes arrive; cheap, but callers should throttle what they display. */
  onProgress?: (p: SyncProgress) => void;
  /** The largest file accepted (default 1 TiB): a bigger announced size fails the sync. */
  maxFileSize?: number;
}

export interface SyncProgress {
  /** Bytes received: file data plus (estimated) entry metadata, like BuildKit's transfer counter. */
  bytes: number;
  /** Files whose content arrived. */
  files: number;
  /** Entries announced so far. */
  entries: number;
}

export interface SyncResult {
  /**
   * Content checksum of the result as selected: the same value as the worker's content checksum
   * of "/" over the target, computed as the files arrived (unchanged files reuse their hashes).
   */
  checksum: Digest;
  /** Files whose content was requested from the client. */
  filesRequested: number;
  /** File bytes received. */
  bytesReceived: number;
  /** Entries in the result (directories, files, links). */
  entries: number;
  /** Give it back as `previous` next time. */
  manifest: SyncManifest;
}

/** Buffered file data beyond which the packet loop waits for the disk. */
const MAX_UNWRITTEN = 32 << 20;
const DEFAULT_MAX_FILE_SIZE = 2 ** 40;

/**
 * Syncs the client's directory `opts.name` into `opts.target` over `caller`'s session. Rejects
 * with an error naming the directory and the session when the client lacks it, fails, goes away
 * or breaks the protocol; the target is then partly updated and the next sync repairs it.
 */
export async function syncDir(caller: SessionCaller, opts: SyncDirOptions): Promise<SyncResult> {
  const what = `syncing local directory ${JSON.stringify(opts.name)} from session ${caller.id}`;
  if (!caller.supports(DIFF_COPY_METHOD)) {
    throw new Error(
      `${what}: the client shares no local directories (it does not serve ${DIFF_COPY_METHOD}); run the build with --local ${opts.name}=DIR`,
    );
  }
  const abort = new AbortController();
  const onAbort = () => abort.abort(opts.signal?.reason);
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  if (opts.signal?.aborted) onAbort();
  const receiver = new Receiver(opts, abort);
  // Reading the target runs while the client walks its directory.
  const opening = DirMirror.open(opts.target, opts.previous, abort.signal);
  opening.catch(() => {});
  try {
    return await receiver.run(caller, opening);
  } catch (err) {
    const reason = receiver.failure ?? err;
    await opening.then(
      (m) => m.abandon(),
      () => {},
    );
    throw new Error(`${what}: ${describe(reason)}`, { cause: reason });
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    abort.abort(new Error("file sync ended"));
  }
}

function describe(err: unknown): string {
  if (err instanceof ConnectError) return err.rawMessage;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** One DiffCopy call: the packet loop, the validation of what arrives, and the finishing steps. */
class Receiver {
  readonly #opts: SyncDirOptions;
  readonly #abort: AbortController;
  readonly #validator: StatValidator;
  readonly #out = new PacketQueue<PacketInit>(Number.POSITIVE_INFINITY);
  readonly #pending = new Map<number, IncomingFile>();
  readonly #completions: Promise<void>[] = [];
  #failure: { error: unknown } | undefined;
  #index = 0;
  #requested = 0;
  #bytes = 0;
  #metaBytes = 0;
  #filesDone = 0;
  #statsDone = false;
  #allArrived: (() => void) | undefined;
  #result: { checksum: Digest; manifest: SyncManifest; entries: number } | undefined;

  constructor(opts: SyncDirOptions, abort: AbortController) {
    this.#opts = opts;
    this.#abort = abort;
    this.#validator = new StatValidator(opts.maxFileSize ?? DEFAULT_MAX_FILE_SIZE);
  }

  /** The first error, from whichever task hit it. */
  get failure(): unknown {
    return this.#failure?.error;
  }

  #fail(err: unknown): void {
    this.#failure ??= { error: err };
    this.#abort.abort(err);
    this.#out.close();
  }

  async run(caller: SessionCaller, opening: Promise<DirMirror>): Promise<SyncResult> {
    const call = caller.callerFor(FileSync).diffCopy(this.#out, {
      headers: encodeFileSyncHeaders(this.#opts),
      signal: this.#abort.signal,
    });
    let finReceived = false;
    let mirror: DirMirror | undefined;
    try {
      for await (const p of call) {
        mirror ??= await opening;
        if (finReceived) throw new Error(`the client sent a packet (type ${p.type}) after FIN`);
        switch (p.type) {
          case Packet_PacketType.PACKET_STAT:
            await this.#onStat(p.stat, mirror);
            break;
          case Packet_PacketType.PACKET_DATA:
            await this.#onData(p.ID, p.data, mirror);
            break;
          case Packet_PacketType.PACKET_FIN:
            if (!this.#result) throw new Error("the client ended the transfer (FIN) before it was complete");
            finReceived = true;
            this.#out.close();
            break;
          case Packet_PacketType.PACKET_ERR:
            throw new Error(`the client failed to send it: ${new TextDecoder().decode(p.data)}`);
          default:
            throw new Error(`the client sent an unexpected packet of type ${p.type}`);
        }
      }
    } catch (err) {
      this.#fail(err);
    }
    if (this.#failure) throw this.#failure.error;
    if (!this.#result || !finReceived)
      throw new Error("the client ended the transfer before it was complete");
    return {
      checksum: this.#result.checksum,
      filesRequested: this.#requested,
      bytesReceived: this.#bytes,
      entries: this.#result.entries,
      manifest: this.#result.manifest,
    };
  }

  async #onStat(stat: Stat | undefined, mirror: DirMirror): Promise<void> {
    if (this.#statsDone) throw new Error("the client sent an entry after the end of the list");
    if (!stat || stat.path === "") {
      this.#statsDone = true;
      this.#finish(mirror).catch((err: unknown) => this.#fail(err));
      return;
    }
    const e = this.#validator.check(stat);
    const id = this.#index++;
    this.#metaBytes += stat.path.length + stat.linkname.length + 32;
    if ((await mirror.add(e)) === "data") {
      this.#pending.set(id, mirror.receive(e));
      this.#requested++;
      await this.#out.push({ type: Packet_PacketType.PACKET_REQ, ID: id });
    }
    if (this.#index % 256 === 0) this.#progress();
  }

  async #onData(id: number, data: Uint8Array, mirror: DirMirror): Promise<void> {
    const f = this.#pending.get(id);
    if (!f) throw new Error(`the client sent data for file id ${id}, which was not requested or is complete`);
    if (data.length === 0) {
      this.#pending.delete(id);
      const done = f.end().then(() => {
        this.#filesDone++;
      });
      done.catch((err: unknown) => this.#fail(err));
      this.#completions.push(done);
      if (this.#statsDone && this.#pending.size === 0) this.#allArrived?.();
      this.#progress();
      return;
    }
    f.write(data);
    this.#bytes += data.length;
    this.#progress();
    if (mirror.unwritten > MAX_UNWRITTEN) await mirror.waitForRoom(MAX_UNWRITTEN / 2, this.#abort.signal);
  }

  /** After the last entry: waits for the files, finishes the target, then says FIN. */
  async #finish(mirror: DirMirror): Promise<void> {
    if (this.#pending.size > 0) {
      await new Promise<void>((resolve, reject) => {
        this.#allArrived = resolve;
        this.#abort.signal.addEventListener("abort", () => reject(this.#abort.signal.reason), { once: true });
      });
    }
    await Promise.all(this.#completions);
    this.#result = await mirror.finish(this.#abort.signal);
    this.#progress();
    await this.#out.push({ type: Packet_PacketType.PACKET_FIN });
  }

  #progress(): void {
    this.#opts.onProgress?.({
      bytes: this.#bytes + this.#metaBytes,
      files: this.#filesDone,
      entries: this.#index,
    });
  }
}

/** Longest path and component Linux accepts. */
const MAX_PATH_BYTES = 4095;
const MAX_NAME_BYTES = 255;

/** Checks each announced entry against the ones before it, as fsutil's validators do, and more. */
class StatValidator {
  readonly #maxFileSize: number;
  #previous: string | undefined;
  /** Paths announced as directories: the only places where later entries may go. */
  readonly #dirs = new Set<string>();
  /** Regular files that are not links themselves: what a hard link may point to. */
  readonly #files = new Set<string>();

  constructor(maxFileSize: number) {
    this.#maxFileSize = maxFileSize;
  }

  check(stat: Stat): IncomingEntry {
    const path = stat.path;
    const bad = (why: string) =>
      new Error(`the client sent an invalid entry ${JSON.stringify(path)}: ${why}`);
    const pathProblem = checkRelativePath(path);
    if (pathProblem) throw bad(pathProblem);
    if (this.#previous !== undefined && comparePaths(this.#previous, path) >= 0) {
      throw bad(`it comes after ${JSON.stringify(this.#previous)}, out of order or twice`);
    }
    const slash = path.lastIndexOf("/");
    const parent = slash < 0 ? "" : path.slice(0, slash);
    if (parent !== "" && !this.#dirs.has(parent)) {
      throw bad(
        `its parent ${JSON.stringify(parent)} was not sent as a directory (paths through symlinks are refused)`,
      );
    }
    this.#previous = path;
    const kind = goModeKind(stat.mode);
    const entry: IncomingEntry = {
      path,
      kind: "file",
      perm: posixPermFromGo(stat.mode),
      uid: stat.uid,
      gid: stat.gid,
      size: 0,
      mtimeNs: stat.modTime,
      link: "",
    };
    switch (kind) {
      case "dir":
        entry.kind = "dir";
        this.#dirs.add(path);
        return entry;
      case "symlink": {
        const target = stat.linkname;
        if (target === "" || target.includes("\0") || Buffer.byteLength(target) > MAX_PATH_BYTES) {
          throw bad(`its symlink target ${JSON.stringify(target)} is empty, too long or holds a NUL`);
        }
        entry.kind = "symlink";
        entry.link = target;
        return entry;
      }
      case "fifo":
        entry.kind = "fifo";
        return entry;
      case "file":
        if (stat.linkname !== "") {
          if (!this.#files.has(stat.linkname)) {
            throw bad(
              `it is a hard link to ${JSON.stringify(stat.linkname)}, which is no regular file sent before it`,
            );
          }
          entry.kind = "hardlink";
          entry.link = stat.linkname;
          return entry;
        }
        if (stat.size < 0n || stat.size > BigInt(this.#maxFileSize)) {
          throw bad(
            `its size ${stat.size} is out of range (at most ${this.#maxFileSize} bytes are accepted)`,
          );
        }
        entry.size = Number(stat.size);
        this.#files.add(path);
        return entry;
      case "char":
      case "block":
        throw bad("device files are not accepted in a local directory");
      case "socket":
        throw bad("sockets are not accepted in a local directory");
      default:
        throw bad(
          `its mode 0x${stat.mode.toString(16)} has no file type that can be stored${kind === undefined ? "" : ` (${kind})`}`,
        );
    }
  }
}

/** Why a relative path from a client cannot be used, or undefined when it can. */
function checkRelativePath(path: string): string | undefined {
  if (path.startsWith("/")) return "absolute paths are not allowed";
  if (path.includes("\0")) return "it holds a NUL byte";
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return "it is too long";
  for (const c of path.split("/")) {
    if (c === "") return "it has an empty component";
    if (c === "." || c === "..") return `"${c}" components are not allowed`;
    if (Buffer.byteLength(c) > MAX_NAME_BYTES) return "a component is too long";
  }
  return undefined;
}

// The client's side of file sync (`buildctl build --local name=path`): serves FileSync/DiffCopy
// for the directories it shares. The daemon names a directory and its filters in the request
// metadata; we walk it in fsutil's order and send one STAT per entry (an empty STAT ends the
// list), then send the files it asks for (REQ by index into that list) as DATA chunks, an empty
// DATA ending each, until it says FIN and we answer FIN.
import { closeSync, constants, fstatSync, openSync, read, readSync } from "node:fs";
import { realpath } from "node:fs/promises";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { splitDevice } from "../../fsutil/special.ts";
import { walk } from "../../fsutil/walk.ts";
import type { StatSchema } from "../../proto/gen/fsutil/types/stat_pb.ts";
import { type Packet, type PacketSchema, Packet_PacketType } from "../../proto/gen/fsutil/types/wire_pb.ts";
import { FileSync } from "../../proto/gen/moby/filesync/v1/filesync_pb.ts";
import { TaskPool } from "../../fsutil/pool.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { PacketQueue } from "./queue.ts";
import { decodeFileSyncHeaders, type FileSyncRequest, goModeFromPosix } from "./wire.ts";

type PacketInit = MessageInitShape<typeof PacketSchema>;
type StatInit = MessageInitShape<typeof StatSchema>;

/** One directory the client shares under a name. */
export interface SharedDir {
  /** The directory on this machine (a symlink to one is resolved once, here). */
  path: string;
  /**
   * Send the files' real owners. By default they are sent as 0:0, as BuildKit's client does:
   * the build sees a context owned by root whoever owns it here.
   */
  keepOwnership?: boolean;
}

/** Progress of one transfer, for a client's display. */
export interface SendProgress {
  /** The shared name the daemon asked for. */
  name: string;
  /** File bytes sent so far. */
  bytes: number;
  /** Files sent so far. */
  files: number;
  done: boolean;
}

export interface FileSyncRoutesOptions {
  onProgress?: (p: SendProgress) => void;
}

/** File data per DATA packet: big enough to keep the packet count low, far below grpc-go's 4 MiB limit. */
const CHUNK_BYTES = 256 << 10;
/** Packets waiting for the stream; with full chunks, about 8 MiB held at most. */
const QUEUE_PACKETS = 32;
/** Files read at once: most are small, and each costs a few round trips to the thread pool. */
const FILE_SENDERS = 16;

/** A regular file the receiver may ask for, and the inode the walk found at its path. */
interface Sendable {
  path: string;
  size: number;
  dev: bigint;
  ino: bigint;
}

/**
 * Registers FileSync/DiffCopy for `dirs` (name → directory) on a session's router:
 * `new Session({ routes: fileSyncRoutes({ context: "." }) })`. Only DiffCopy is announced, so
 * the daemon knows to use it. An unknown name fails the call with NotFound, naming it.
 */
export function fileSyncRoutes(
  dirs: Record<string, SharedDir | string>,
  opts: FileSyncRoutesOptions = {},
): (router: ConnectRouter) => void {
  const shared = new Map<string, SharedDir>();
  for (const [name, d] of Object.entries(dirs)) shared.set(name, typeof d === "string" ? { path: d } : d);
  return (router) => {
    router.rpc(FileSync.method.diffCopy, (requests, ctx) => serveDiffCopy(shared, requests, ctx, opts));
  };
}

async function* serveDiffCopy(
  dirs: Map<string, SharedDir>,
  requests: AsyncIterable<Packet>,
  ctx: HandlerContext,
  opts: FileSyncRoutesOptions,
): AsyncGenerator<PacketInit> {
  let req: FileSyncRequest;
  try {
    req = decodeFileSyncHeaders(ctx.requestHeader);
  } catch (err) {
    throw new ConnectError((err as Error).message, Code.InvalidArgument);
  }
  const dir = dirs.get(req.name);
  if (!dir) {
    const names = [...dirs.keys()].map((n) => JSON.stringify(n)).join(", ") || "none";
    throw new ConnectError(
      `no access allowed to dir ${JSON.stringify(req.name)}: this client shares ${names} (share it with --local ${req.name}=PATH)`,
      Code.NotFound,
    );
  }
  let root: string;
  try {
    root = await realpath(dir.path);
  } catch (err) {
    throw new ConnectError(
      `local dir ${JSON.stringify(req.name)} (${dir.path}) cannot be read: ${(err as Error).message}`,
      Code.NotFound,
    );
  }
  yield* new DirSender(req, root, dir, ctx.signal, opts).run(requests);
}

/** One DiffCopy call: the walk, the file readers and the packet loop share its queue. */
class DirSender {
  readonly #req: FileSyncRequest;
  readonly #root: string;
  readonly #dir: SharedDir;
  readonly #stop = new AbortController();
  readonly #out = new PacketQueue<PacketInit>(QUEUE_PACKETS);
  /** Regular files the receiver may still ask for, by their index in the stat list. */
  readonly #files = new Map<number, Sendable>();
  readonly #onProgress: ((p: SendProgress) => void) | undefined;
  #bytes = 0;
  #sentFiles = 0;

  constructor(
    req: FileSyncRequest,
    root: string,
    dir: SharedDir,
    signal: AbortSignal,
    opts: FileSyncRoutesOptions,
  ) {
    this.#req = req;
    this.#root = root;
    this.#dir = dir;
    this.#onProgress = opts.onProgress;
    if (signal.aborted) this.#stop.abort(signal.reason);
    else signal.addEventListener("abort", () => this.#stop.abort(signal.reason), { once: true });
  }

  /** Ends the call with `err`: the packets already queued go first. */
  #fail(err: unknown): void {
    // connect turns any other error into a bare "internal error"; the daemon should see why.
    const ce =
      err instanceof ConnectError
        ? err
        : new ConnectError(err instanceof Error ? err.message : String(err), Code.Unknown);
    this.#out.fail(ce);
    this.#stop.abort(ce);
  }

  async *run(requests: AsyncIterable<Packet>): AsyncGenerator<PacketInit> {
    const fail = (err: unknown) => this.#fail(err);
    const walking = this.#walk().catch(async (err: unknown) => {
      // Told to the receiver in-band first, as fsutil does, so it can say what went wrong.
      await this.#out
        .push({ type: Packet_PacketType.PACKET_ERR, data: new TextEncoder().encode((err as Error).message) })
        .catch(() => {});
      fail(err);
    });
    this.#serveRequests(requests, walking).catch(fail);
    try {
      yield* this.#out;
    } finally {
      this.#stop.abort(new Error("the file sync stream ended"));
      this.#onProgress?.({ name: this.#req.name, bytes: this.#bytes, files: this.#sentFiles, done: true });
    }
  }

  async #walk(): Promise<void> {
    const keepOwner = this.#dir.keepOwnership === true;
    // The first path of each multiply-linked inode: later ones are sent as hard links to it.
    const inodes = new Map<string, string>();
    let index = 0;
    for await (const e of walk(this.#root, {
      include: this.#req.include,
      exclude: this.#req.exclude,
      followPaths: this.#req.followPaths,
      signal: this.#stop.signal,
    })) {
      const st = e.stat;
      // Sockets mean nothing outside their process; fsutil turns them into empty files, we skip them.
      if (st.isSocket()) continue;
      const stat: StatInit = {
        path: e.path,
        mode: goModeFromPosix(Number(st.mode)),
        uid: keepOwner ? Number(st.uid) : 0,
        gid: keepOwner ? Number(st.gid) : 0,
        size: st.isDirectory() ? 0n : st.size,
        modTime: st.mtimeNs,
      };
      if (st.isSymbolicLink()) stat.linkname = e.linkTarget ?? "";
      if (st.isCharacterDevice() || st.isBlockDevice()) {
        const { major, minor } = splitDevice(st.rdev);
        stat.devmajor = BigInt(major);
        stat.devminor = BigInt(minor);
      }
      if (st.isFile()) {
        if (st.nlink > 1n) {
          const key = `${st.dev}:${st.ino}`;
          const first = inodes.get(key);
          if (first !== undefined) {
            stat.linkname = first;
            stat.size = 0n;
          } else inodes.set(key, e.path);
        }
        this.#files.set(index, { path: e.path, size: Number(stat.size), dev: st.dev, ino: st.ino });
      }
      index++;
      await this.#out.push({ type: Packet_PacketType.PACKET_STAT, stat });
    }
    // A STAT without a stat ends the list (fsutil's receiver checks for a nil Stat).
    await this.#out.push({ type: Packet_PacketType.PACKET_STAT });
  }

  async #serveRequests(requests: AsyncIterable<Packet>, walking: Promise<void>): Promise<void> {
    const pool = new TaskPool(FILE_SENDERS);
    for await (const p of requests) {
      switch (p.type) {
        case Packet_PacketType.PACKET_REQ: {
          const f = this.#files.get(p.ID);
          if (!f)
            throw new Error(
              `the daemon asked for file id ${p.ID}: no regular file has it, or it was sent already`,
            );
          this.#files.delete(p.ID);
          await pool.add(() =>
            this.#sendFile(p.ID, f).catch((err: unknown) => {
              // At once: the receiver would otherwise wait for the rest of this file forever.
              this.#fail(err);
              throw err;
            }),
          );
          break;
        }
        case Packet_PacketType.PACKET_FIN:
          await walking;
          await pool.drain();
          await this.#out.push({ type: Packet_PacketType.PACKET_FIN });
          this.#out.close();
          return;
        case Packet_PacketType.PACKET_ERR:
          throw new Error(`error from receiver: ${new TextDecoder().decode(p.data)}`);
        default:
          throw new Error(`the daemon sent an unexpected packet of type ${p.type} during a file sync`);
      }
    }
    throw new Error("the daemon ended the file sync without finishing it");
  }

  /** Sends up to the stat'ed size of one file, then the empty DATA that ends it. */
  async #sendFile(id: number, f: Sendable): Promise<void> {
    const fd = this.#openFile(f);
    if (fd !== undefined) {
      try {
        let left = f.size;
        while (left > 0) {
          this.#stop.signal.throwIfAborted();
          const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, left));
          // A small read of a file the walk just stat'ed costs less done at once than the round
          // trip through the thread pool; large files keep reading there, a chunk at a time.
          const bytesRead =
            f.size <= SYNC_READ_BYTES ? readSync(fd, buf, 0, buf.length, null) : await readAsync(fd, buf);
          if (bytesRead === 0) break;
          left -= bytesRead;
          await this.#out.push({
            type: Packet_PacketType.PACKET_DATA,
            ID: id,
            data: buf.subarray(0, bytesRead),
          });
          this.#bytes += bytesRead;
          this.#onProgress?.({
            name: this.#req.name,
            bytes: this.#bytes,
            files: this.#sentFiles,
            done: false,
          });
        }
      } finally {
        closeSync(fd);
      }
    }
    this.#sentFiles++;
    await this.#out.push({ type: Packet_PacketType.PACKET_DATA, ID: id });
  }

  /**
   * Opens a walked file without following a symlink: O_NOFOLLOW for the last component, and the
   * inode must be the one the walk found inside the directory (a directory on the way swapped for
   * a link since then leads elsewhere). A file that is gone or replaced is sent empty, as fsutil
   * sends a file it cannot open. Synchronous: open and fstat of an entry the walk has just
   * stat'ed hit cached metadata, and cost less than two trips through the thread pool each.
   */
  #openFile(f: Sendable): number | undefined {
    let fd: number;
    try {
      fd = openSync(
        `${this.#root}/${f.path}`,
        constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      );
    } catch {
      return undefined;
    }
    try {
      const st = fstatSync(fd, { bigint: true });
      if (st.isFile() && st.dev === f.dev && st.ino === f.ino) return fd;
    } catch {
      // Reported as an empty file below.
    }
    closeSync(fd);
    return undefined;
  }
}

/** Files up to this size are read synchronously (see #sendFile). */
const SYNC_READ_BYTES = 64 << 10;

function readAsync(fd: number, buf: Buffer): Promise<number> {
  return new Promise((resolve, reject) =>
    read(fd, buf, 0, buf.length, null, (err, n) => (err ? reject(err) : resolve(n))),
  );
}

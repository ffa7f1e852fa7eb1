// The client's end of FileSend: one DiffCopy handler for all outputs of a build, which hands
// each call to the target registered for its exporter id. Targets see raw message bytes, so a
// target that speaks BuildKit's BytesMessage (files, stdout) and one that speaks fsutil packets
// (a local directory) share the one method.
import { randomBytes } from "node:crypto";
import { accessSync, constants, statSync } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Empty, EmptySchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { BytesMessageSchema, FileSend } from "../../proto/gen/moby/filesync/v1/filesync_pb.ts";
import { decodeMetadata, EXPORTER_ID_HEADER } from "./protocol.ts";

/** What a target knows about its call. */
export type FileSendCall = { exporterId: number; metadata: Record<string, string>; signal: AbortSignal };

/**
 * Receives one output: `messages` are the raw protobuf messages the daemon sent; whatever it
 * yields goes back as raw messages. It returns (or ends) once the output is stored.
 */
export type FileSendTarget = (
  messages: AsyncIterable<Uint8Array>,
  call: FileSendCall,
) => AsyncIterable<Uint8Array>;

/**
 * The method with every message kept as raw bytes: an Empty message keeps all fields as unknown
 * fields and writes them back unchanged, whatever message type the two ends agreed on.
 */
const RAW_DIFF_COPY = {
  ...FileSend.method.diffCopy,
  input: EmptySchema,
  output: EmptySchema,
} as unknown as typeof FileSend.method.diffCopy;

/** Serves FileSend/DiffCopy, routing each call to `targets` by its exporter id. */
export function serveFileSend(router: ConnectRouter, targets: ReadonlyMap<number, FileSendTarget>): void {
  const handler = async function* (requests: AsyncIterable<Empty>, ctx: HandlerContext) {
    const raw = ctx.requestHeader.get(EXPORTER_ID_HEADER);
    const exporterId = raw === null ? 0 : Number.parseInt(raw, 10);
    const target = targets.get(exporterId);
    if (!target) {
      throw new ConnectError(
        `the daemon sent output ${raw ?? "0"}, but this client has no such output (it has ${[...targets.keys()].join(", ") || "none"})`,
        Code.NotFound,
      );
    }
    const messages = (async function* () {
      for await (const m of requests) yield toBinary(EmptySchema, m);
    })();
    const call = { exporterId, metadata: decodeMetadata(ctx.requestHeader), signal: ctx.signal };
    for await (const out of target(messages, call)) yield fromBinary(EmptySchema, out);
  };
  router.rpc(RAW_DIFF_COPY, handler as never);
}

/** A target that takes BuildKit's BytesMessage stream and gives its data to `write`. */
export function bytesTarget(
  receive: (data: AsyncIterable<Uint8Array>, call: FileSendCall) => Promise<void>,
): FileSendTarget {
  return (messages, call) => {
    const data = (async function* () {
      for await (const m of messages) {
        const chunk = fromBinary(BytesMessageSchema, m).data;
        if (chunk.length > 0) yield chunk;
      }
    })();
    // Nothing goes back: the call ends (answered with no messages) once the data is stored.
    return (async function* (): AsyncGenerator<Uint8Array> {
      await receive(data, call);
      yield* [];
    })();
  };
}

/**
 * Writes the output to `dest` atomically: into a temporary file beside it, renamed over `dest`
 * only when the whole stream arrived. A failed or cancelled export leaves `dest` as it was.
 */
export function fileTarget(dest: string): FileSendTarget {
  const path = resolve(dest);
  return bytesTarget(async (data) => {
    const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(tmp, "wx", 0o666);
    } catch (e) {
      throw new ConnectError(`writing the output to ${path}: ${(e as Error).message}`, Code.PermissionDenied);
    }
    try {
      for await (const chunk of data) await fh.write(chunk);
      await fh.sync();
      await fh.close();
      await rename(tmp, path);
    } catch (e) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw new ConnectError(`writing the output to ${path}: ${(e as Error).message}`, Code.Internal);
    }
  });
}

/** Writes the output to a stream (buildctl's stdout for `dest=-`), waiting for it to drain. */
export function streamTarget(out: NodeJS.WritableStream): FileSendTarget {
  return bytesTarget(async (data) => {
    for await (const chunk of data) {
      if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
    }
  });
}

/**
 * Fails early (before the build runs) when `dest` cannot be written: its directory is missing
 * or not writable, or `dest` is a directory.
 */
export function checkDestination(dest: string, what: string): void {
  const path = resolve(dest);
  const st = statSync(path, { throwIfNoEntry: false });
  if (st?.isDirectory()) throw new Error(`${what}: dest=${dest} is a directory; name a file`);
  const dir = dirname(path);
  const dst = statSync(dir, { throwIfNoEntry: false });
  if (!dst?.isDirectory()) throw new Error(`${what}: dest=${dest}: directory ${dir} does not exist`);
  try {
    accessSync(dir, constants.W_OK);
    if (st) accessSync(path, constants.W_OK);
  } catch {
    throw new Error(`${what}: dest=${dest} is not writable`);
  }
}

/** A BytesMessage as raw bytes (for targets that answer, and for tests). */
export function bytesMessage(data: Uint8Array): Uint8Array {
  return toBinary(BytesMessageSchema, create(BytesMessageSchema, { data }));
}

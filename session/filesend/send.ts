// The daemon's end of FileSend: stream one output (a tarball, a tar of the result) to the
// client over the build's session, in BytesMessage chunks, as fast as the client takes them
// (HTTP/2 flow control inside the session tunnel is the backpressure).
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type BytesMessage,
  BytesMessageSchema,
  FileSend,
} from "../../proto/gen/moby/filesync/v1/filesync_pb.ts";
import type { SessionCaller } from "../manager.ts";
import { EXPORTER_ID_HEADER, encodeMetadata, FILE_SEND_METHOD, MAX_CHUNK } from "./protocol.ts";

/** Options of {@link sendToClient}. */
export type SendOptions = {
  /** The output's index among the solve request's exporters: the client routes by it. */
  exporterId: number;
  /** The exporter's response, for the client (BuildKit sends it as `exporter-md-*`). */
  metadata?: Record<string, string>;
  signal: AbortSignal;
  /** Bytes sent so far, after each chunk. */
  onProgress?: (bytes: number) => void;
};

/** Streams `source` to the client; resolves when the client has stored all of it. Returns the bytes sent. */
export async function sendToClient(
  caller: SessionCaller | undefined,
  source: AsyncIterable<Uint8Array>,
  opts: SendOptions,
): Promise<number> {
  if (!caller) {
    throw new Error(
      "this output is written by the client, but the build has no client session (build with buildctl, which opens one)",
    );
  }
  if (!caller.supports(FILE_SEND_METHOD)) {
    throw new Error(
      `the client does not receive outputs (it does not serve ${FILE_SEND_METHOD}); use an output it supports`,
    );
  }
  const headers = encodeMetadata(opts.metadata ?? {});
  headers.set(EXPORTER_ID_HEADER, String(opts.exporterId));
  let sent = 0;
  // A source that fails must cancel the call (so the client throws its partial file away), not end it.
  const cancel = new AbortController();
  const signal = AbortSignal.any([opts.signal, cancel.signal]);
  let sourceError: unknown;
  const requests = async function* (): AsyncGenerator<BytesMessage> {
    try {
      for await (const chunk of source) {
        for (let off = 0; off < chunk.length; off += MAX_CHUNK) {
          const data = chunk.subarray(off, Math.min(chunk.length, off + MAX_CHUNK));
          yield create(BytesMessageSchema, { data });
          sent += data.length;
          opts.onProgress?.(sent);
        }
      }
    } catch (e) {
      sourceError = e;
      cancel.abort(e);
      throw e;
    }
  };
  try {
    // The client answers nothing; the response stream ends when it has written the output.
    for await (const _ of caller.callerFor(FileSend).diffCopy(requests(), { headers, signal })) {
      // ignored: BuildKit clients send no messages back on this method
    }
  } catch (e) {
    if (sourceError !== undefined) throw sourceError;
    if (opts.signal.aborted) throw e;
    const ce = ConnectError.from(e);
    throw new ConnectError(
      `sending the output to the client: ${ce.rawMessage}`,
      ce.code === Code.Unknown ? Code.Unavailable : ce.code,
    );
  }
  return sent;
}

// A byte stream carried by a stream of BytesMessages: the session's HTTP/2 connection travels
// inside Control.Session this way, on both ends. Backpressure crosses in both directions:
// incoming messages are pulled only as fast as the socket is read, and once a few MiB wait for
// the RPC, a write completes only when its message has been taken.
import { Duplex } from "node:stream";

/** The largest message sent; grpc-go peers refuse messages above 4 MiB by default. */
const MAX_MESSAGE_BYTES = 1 << 20;
/**
 * Bytes that may wait for the RPC while writes still complete at once. node:http2 sends nothing
 * more until its last write completes, so completing each write only when the RPC took it made
 * every inner message wait for a full trip through the outer stream (a stall per file).
 */
const QUEUED_BYTES = 4 << 20;

/** A socket-like Duplex plus the messages it writes, to be sent on the RPC. */
export interface MessageChannel {
  /** Hand this to node:http2 (createConnection on the daemon, a server's "connection" event on the client). */
  readonly socket: Duplex;
  /** What the socket writes, as BytesMessage init shapes; ends when the socket is ended or destroyed. */
  readonly outgoing: AsyncIterable<{ data: Uint8Array }>;
  /** Starts feeding the socket from the RPC's incoming messages (once). */
  attach(incoming: AsyncIterable<{ data: Uint8Array }>): void;
  /** How the incoming side stands: still open, ended by the peer, or failed (with the RPC's error). */
  incoming(): { state: "open" | "ended" | "failed"; error?: Error };
}

/** Creates a channel; call attach() with the incoming side once the RPC exists. */
export function messageChannel(): MessageChannel {
  // Writes waiting to be taken by `outgoing`, each with the callback that completes it.
  const pending: { data: Uint8Array; done: (err?: Error | null) => void }[] = [];
  let queuedBytes = 0;
  let ended = false;
  let wakeReader: (() => void) | undefined;
  let wakePump: (() => void) | undefined;
  const wake = () => {
    const w = wakeReader;
    wakeReader = undefined;
    w?.();
  };

  const socket = new Duplex({
    allowHalfOpen: true,
    read() {
      const w = wakePump;
      wakePump = undefined;
      w?.();
    },
    writev(chunks, callback) {
      // node:http2 writes frame by frame; one message per batch keeps the message count low.
      const joined =
        chunks.length === 1
          ? (chunks[0]!.chunk as Buffer)
          : Buffer.concat(chunks.map((c) => c.chunk as Buffer));
      queuedBytes += joined.length;
      const waitForRpc = queuedBytes > QUEUED_BYTES;
      for (let off = 0; off < joined.length; off += MAX_MESSAGE_BYTES) {
        const last = off + MAX_MESSAGE_BYTES >= joined.length;
        pending.push({
          data: joined.subarray(off, off + MAX_MESSAGE_BYTES),
          done: last && waitForRpc ? callback : () => {},
        });
      }
      wake();
      if (!waitForRpc) callback();
    },
    final(callback) {
      ended = true;
      wake();
      callback();
    },
    destroy(err, callback) {
      ended = true;
      const cancelled = err ?? new Error("the session channel was closed");
      for (const p of pending.splice(0)) p.done(cancelled);
      wake();
      const w = wakePump;
      wakePump = undefined;
      w?.();
      callback(err);
    },
  });

  async function* outgoing(): AsyncGenerator<{ data: Uint8Array }> {
    let finished = false;
    try {
      for (;;) {
        const next = pending.shift();
        if (next) {
          // What piled up while the RPC sent the previous message goes as one: each message
          // costs both ends a trip through two gRPC layers, and an unchanged context is
          // thousands of stat packets of a few dozen bytes.
          const batch = [next];
          let size = next.data.length;
          while (pending.length > 0 && size + pending[0]!.data.length <= MAX_MESSAGE_BYTES) {
            const more = pending.shift()!;
            batch.push(more);
            size += more.data.length;
          }
          const data = batch.length === 1 ? next.data : Buffer.concat(batch.map((b) => b.data));
          queuedBytes -= size;
          yield { data };
          // Taken by the RPC (connect awaits the previous write before pulling again).
          for (const b of batch) b.done();
          continue;
        }
        if (ended) {
          finished = true;
          return;
        }
        await new Promise<void>((resolve) => {
          wakeReader = resolve;
        });
      }
    } finally {
      // The RPC stopped taking messages before the socket ended: nothing more can be sent.
      if (!finished && !socket.destroyed) socket.destroy();
    }
  }

  let attached = false;
  let incomingState: { state: "open" | "ended" | "failed"; error?: Error } = { state: "open" };
  return {
    incoming: () => incomingState,
    socket,
    outgoing: outgoing(),
    attach(incoming) {
      if (attached) throw new Error("message channel: attach() called twice");
      attached = true;
      void (async () => {
        try {
          for await (const m of incoming) {
            if (socket.destroyed) return;
            if (m.data.length === 0) continue;
            if (!socket.push(m.data)) {
              await new Promise<void>((resolve) => {
                wakePump = resolve;
              });
            }
          }
          incomingState = { state: "ended" };
          if (!socket.destroyed) socket.push(null);
        } catch (err) {
          incomingState = { state: "failed", error: err as Error };
          if (!socket.destroyed) socket.destroy(err as Error);
        }
      })();
    },
  };
}

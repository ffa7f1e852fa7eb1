// Delivers an HTTP/2 byte stream to node:http2 one frame per macrotask. node:http2 over a
// JavaScript stream (not a native socket) handles every frame of a chunk in one synchronous
// pass; when a whole response (HEADERS, DATA, trailers) arrives in one chunk, the stream closes
// before connect's reader, which attaches in a microtask after the response event, is there,
// and the call fails with "Premature close". Yielding between frames lets it attach.
import { Duplex } from "node:stream";

const FRAME_HEADER_BYTES = 9;

/** `inner` with its incoming bytes re-chunked at frame boundaries, one frame per tick (server to client: no preface). */
export function frameByFrame(inner: Duplex): Duplex {
  let pending: Buffer = Buffer.alloc(0);
  let delivering = false;
  let ended = false;
  let wanted = true;
  const outer = new Duplex({
    read() {
      wanted = true;
      void deliver();
    },
    write(chunk, encoding, callback) {
      inner.write(chunk, encoding, callback);
    },
    final(callback) {
      inner.end();
      callback();
    },
    destroy(err, callback) {
      inner.destroy(err ?? undefined);
      callback(err);
    },
  });
  const deliver = async () => {
    if (delivering) return;
    delivering = true;
    try {
      while (wanted && !outer.destroyed) {
        if (pending.length >= FRAME_HEADER_BYTES) {
          const size = FRAME_HEADER_BYTES + pending.readUIntBE(0, 3);
          if (pending.length >= size) {
            const frame = pending.subarray(0, size);
            pending = pending.subarray(size);
            wanted = outer.push(frame);
            await new Promise((r) => setImmediate(r));
            continue;
          }
        }
        if (ended) {
          if (pending.length > 0) outer.push(pending);
          pending = Buffer.alloc(0);
          outer.push(null);
          wanted = false;
        }
        break;
      }
    } finally {
      delivering = false;
    }
  };
  inner.on("data", (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    void deliver();
  });
  inner.on("end", () => {
    ended = true;
    void deliver();
  });
  inner.on("error", (e) => outer.destroy(e));
  inner.on("close", () => {
    if (!ended) outer.destroy();
  });
  return outer;
}

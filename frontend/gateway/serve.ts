// Serving gRPC on one byte stream (a frontend container's stdout in, its stdin out): an HTTP/2
// server that is handed the stream as its only connection, as the session tunnel does on the
// client side. The frontend is the HTTP/2 client.
import * as http2 from "node:http2";
import type { Duplex } from "node:stream";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { respondUnimplemented } from "../../session/grpc.ts";

// As on the daemon's listeners: solves can carry large definitions.
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 16 << 20;

export interface StreamServer {
  /** Resolves when the connection ends: undefined when it closed cleanly, else what broke it. */
  readonly closed: Promise<Error | undefined>;
  /** Tears the connection down; calls in flight fail. */
  close(): void;
}

/** Serves `routes` over `stream` until either side ends it. */
export function serveOnStream(stream: Duplex, routes: (r: ConnectRouter) => void): StreamServer {
  const server = http2.createServer(
    { settings: { initialWindowSize: STREAM_WINDOW } },
    connectNodeAdapter({
      routes,
      grpc: true,
      connect: false,
      grpcWeb: false,
      fallback: respondUnimplemented,
    }),
  );
  let failure: Error | undefined;
  let session: http2.ServerHttp2Session | undefined;
  const closed = new Promise<Error | undefined>((resolve) => {
    // The stream closes before the session reports why (a bad preface): wait for the session.
    stream.once("close", () => setImmediate(() => resolve(failure)));
    server.on("session", (s: http2.ServerHttp2Session) => {
      session = s;
      s.setLocalWindowSize(CONNECTION_WINDOW);
      s.on("error", (e) => {
        failure ??= e;
      });
      s.on("close", () => {
        if (!stream.destroyed) stream.destroy();
        resolve(failure);
      });
    });
  });
  stream.on("error", (e) => {
    failure ??= e;
  });
  server.emit("connection", stream);
  return {
    closed,
    close: () => {
      session?.destroy();
      stream.destroy();
      server.close();
    },
  };
}

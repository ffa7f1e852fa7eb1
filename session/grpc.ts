// gRPC-over-HTTP/2 details that connect-node leaves to the application, shared by the daemon's
// server and the session's in-tunnel server.
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";

/** gRPC status codes used on the wire here (grpc-status values). */
export const GRPC_UNIMPLEMENTED = 12;

/**
 * Percent-encodes a grpc-message value as the gRPC spec requires (bytes outside printable
 * ASCII, and "%" itself), so that any error text survives the header.
 */
export function encodeGrpcMessage(message: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(message)) {
    if (byte >= 0x20 && byte <= 0x7e && byte !== 0x25) out += String.fromCharCode(byte);
    else out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * Answers a request for a method nobody serves with a trailers-only gRPC response (status 12
 * in the one HEADERS frame that ends the stream). grpc-go clients reject both a plain 404 and
 * headers followed by an empty DATA frame ("server closed the stream without sending
 * trailers"); this is the form they accept. Use it as connectNodeAdapter's `fallback`.
 */
export const respondUnimplemented: NonNullable<ConnectNodeAdapterOptions["fallback"]> = (req, res) => {
  const message = encodeGrpcMessage(`unknown method ${req.url ?? ""}`);
  if ("stream" in res) {
    const stream = res.stream;
    if (stream.destroyed || stream.headersSent) return;
    stream.respond(
      {
        ":status": 200,
        "content-type": "application/grpc",
        "grpc-status": String(GRPC_UNIMPLEMENTED),
        "grpc-message": message,
      },
      { endStream: true },
    );
    return;
  }
  // HTTP/1.1 cannot carry gRPC; answer like any unknown path.
  res.writeHead(404, { "content-type": "text/plain" });
  res.end(`unknown path ${req.url ?? ""}\n`);
};

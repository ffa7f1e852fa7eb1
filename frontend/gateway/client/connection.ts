// The frontend's end of the gateway connection: an HTTP/2 client over one byte stream (its own
// stdin and stdout in a frontend container), and the LLBBridge client on it.
import * as http2 from "node:http2";
import { Duplex } from "node:stream";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { LLBBridge } from "../../../proto/gen/moby/buildkit/v1/frontend/gateway_pb.ts";
import { frameByFrame } from "./frames.ts";

const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 16 << 20;

/** An LLBBridge client over a stream, and how to end it. */
export interface BridgeConnection {
  readonly bridge: Client<typeof LLBBridge>;
  close(): void;
}

/**
 * The frontend container's stdio as one stream: what we write goes to the daemon, what it
 * writes we read. (Duplex.from over process.stdin/stdout reports "Premature close" to calls in
 * flight when one side's handle emits close early; this keeps the two sides independent.)
 */
export function stdioStream(): Duplex {
  const input = process.stdin;
  const output = process.stdout;
  const stream = new Duplex({
    read() {
      input.resume();
    },
    write(chunk, _encoding, callback) {
      output.write(chunk, callback);
    },
    final(callback) {
      callback();
    },
    destroy(err, callback) {
      input.pause();
      callback(err);
    },
  });
  input.on("data", (chunk: Buffer) => {
    if (!stream.push(chunk)) input.pause();
  });
  input.on("end", () => stream.push(null));
  input.on("error", (e) => stream.destroy(e));
  output.on("error", (e) => stream.destroy(e));
  return stream;
}

/** Connects the LLBBridge client over `stream` (the daemon serves HTTP/2 on it). */
export function connectBridge(stream: Duplex): BridgeConnection {
  // The authority is a label: the stream decides where calls go.
  const h2 = http2.connect("http://gateway", {
    createConnection: () => frameByFrame(stream),
    settings: { initialWindowSize: STREAM_WINDOW },
  });
  h2.on("connect", () => {
    if (!h2.destroyed) h2.setLocalWindowSize(CONNECTION_WINDOW);
  });
  h2.on("error", () => {}); // surfaced by the calls that fail
  const transport = createGrpcTransport({
    baseUrl: "http://gateway",
    sessionManager: {
      authority: "http://gateway",
      request: async (method, path, headers, options) => {
        if (h2.destroyed || h2.closed) throw new Error("the connection to the daemon is closed");
        return h2.request({ ...headers, ":method": method, ":path": path }, options);
      },
      notifyResponseByteRead: () => {},
    },
  });
  return {
    bridge: createClient(LLBBridge, transport),
    close: () => {
      h2.close();
      stream.end();
    },
  };
}

// A client connection to buildd (or buildkitd): one HTTP/2 connection over a unix socket or
// TCP (optionally TLS), and typed gRPC clients on it. Kept to the imports a CLI command
// needs; node:http2 itself is the largest part of its start-up cost.
import * as net from "node:net";
import type { DescService } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Control } from "../proto/gen/moby/buildkit/v1/control_pb.ts";
import { type Address, formatAddress, parseAddress } from "./address.ts";
import { SESSION_METHOD_HEADER } from "../session/headers.ts";

/** TLS for tcp:// addresses: the CA that signed the daemon's certificate, and our own for mutual TLS. */
export interface ClientTLS {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Name to verify the daemon's certificate against (default: the address's host). */
  serverName?: string;
}

export interface ConnectOptions {
  tls?: ClientTLS;
  /** Fail a call that cannot connect within this time (default 20 s). */
  connectTimeoutMs?: number;
  interceptors?: Interceptor[];
}

/** An open connection; nothing is dialled until the first call. */
export interface Connection {
  readonly address: Address;
  readonly transport: Transport;
  /** The daemon's Control service. */
  readonly control: Client<typeof Control>;
  /** A client for any other service served on the same connection. */
  client<T extends DescService>(service: T): Client<T>;
  /** Closes the HTTP/2 connection; calls in flight fail with Code.Canceled. */
  close(): void;
}

// Same as the daemon's: the session tunnel streams whole build contexts to the daemon.
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 16 << 20;

/** Opens a connection to `addr` (`unix:///run/buildd/buildd.sock`, `tcp://host:port`). */
export function connect(addr: string, opts: ConnectOptions = {}): Connection {
  const address = parseAddress(addr);
  if (opts.tls && address.kind !== "tcp") {
    throw new Error(`connecting to ${addr}: TLS options apply to tcp:// addresses only`);
  }
  const nodeOptions: import("node:http2").SecureClientSessionOptions = {
    settings: { initialWindowSize: STREAM_WINDOW },
  };
  let baseUrl: string;
  if (address.kind === "unix") {
    // The authority is only a label here: the socket path decides where we connect.
    baseUrl = "http://localhost";
    nodeOptions.createConnection = () => net.connect(address.path);
  } else {
    const host = address.host.includes(":") ? `[${address.host}]` : address.host;
    baseUrl = `${opts.tls ? "https" : "http"}://${host}:${address.port}`;
    if (opts.tls) {
      Object.assign(nodeOptions, {
        ca: opts.tls.ca,
        cert: opts.tls.cert,
        key: opts.tls.key,
        servername: opts.tls.serverName,
      });
    }
  }
  // HTTP/2 sessions whose connection window has been widened (the manager may reconnect).
  const widened = new WeakSet<import("node:http2").Http2Session>();
  const manager = new Http2SessionManager(
    baseUrl,
    { connectTimeoutMs: opts.connectTimeoutMs ?? 20_000 },
    nodeOptions,
  );
  const transport = createGrpcTransport({
    baseUrl,
    sessionManager: {
      authority: manager.authority,
      async request(method, path, headers, options) {
        const stream = await manager.request(method, path, splitSessionMethods(headers), options);
        const session = stream.session;
        if (session && !widened.has(session) && !session.destroyed) {
          widened.add(session);
          session.setLocalWindowSize(CONNECTION_WINDOW);
        }
        return stream;
      },
      notifyResponseByteRead: (stream) => manager.notifyResponseByteRead(stream),
    },
    interceptors: [explainConnectFailure(formatAddress(address)), ...(opts.interceptors ?? [])],
  });
  return {
    address,
    transport,
    control: createClient(Control, transport),
    client: (service) => createClient(service, transport),
    close: () => manager.abort(),
  };
}

/**
 * BuildKit lists a session's methods as repeated header fields, one per method, and its daemon
 * reads them that way; fetch-style headers join repeated values with ", ", so split them back
 * into an array, which node:http2 sends as separate fields.
 */
function splitSessionMethods(
  headers: import("node:http2").OutgoingHttpHeaders,
): import("node:http2").OutgoingHttpHeaders {
  const value = headers[SESSION_METHOD_HEADER];
  if (typeof value !== "string" || !value.includes(",")) return headers;
  return { ...headers, [SESSION_METHOD_HEADER]: value.split(",").map((m) => m.trim()) };
}

/** Turns "connect ENOENT" and friends into an error that says which daemon was unreachable. */
function explainConnectFailure(addr: string): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const cause = findSystemError(err);
      if (cause && ["ENOENT", "ECONNREFUSED", "EACCES", "EHOSTUNREACH", "ETIMEDOUT"].includes(cause.code!)) {
        throw new ConnectError(
          `cannot reach buildd at ${addr}: ${cause.code} (is the daemon running, and is BUILDKIT_HOST or --addr right?)`,
          cause.code === "EACCES" ? Code.PermissionDenied : Code.Unavailable,
          undefined,
          undefined,
          err,
        );
      }
      throw err;
    }
  };
}

function findSystemError(err: unknown): NodeJS.ErrnoException | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && code.startsWith("E") && code !== "ERR_STREAM_DESTROYED") return e;
  }
  return undefined;
}

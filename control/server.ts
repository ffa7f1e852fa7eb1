// The daemon's gRPC listeners: HTTP/2 on unix sockets and TCP (optionally mutual TLS), serving
// connect routes with the gRPC protocol that BuildKit clients speak.
import { chmod, chown, lstat, mkdir, unlink } from "node:fs/promises";
import * as http2 from "node:http2";
import * as net from "node:net";
import { dirname } from "node:path";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { type Address, formatAddress, parseAddress } from "../client/address.ts";
import { respondUnimplemented } from "../session/grpc.ts";

/** PEM material for TCP listeners; with `ca`, clients must present a certificate it signed. */
export interface ServerTLS {
  cert: string | Buffer;
  key: string | Buffer;
  ca?: string | Buffer;
}

export interface StartServerOptions {
  /** BUILDKIT_HOST-style addresses: `unix:///run/buildd/buildd.sock`, `tcp://0.0.0.0:1234` (port 0 picks one). */
  addresses: string[];
  /** Registers the services, e.g. `(r) => r.service(Control, impl)`. */
  routes: (router: ConnectRouter) => void;
  /** Applies to tcp:// listeners only; unix sockets are protected by file permissions. */
  tls?: ServerTLS;
  /** Permission bits of unix sockets (default 0o660: owner and group may connect). */
  socketMode?: number;
  /** Group that owns unix sockets, so that its members may connect (default: unchanged). */
  socketGid?: number;
  interceptors?: Interceptor[];
  /** Called for connection-level errors (TLS handshakes, resets); default: ignored. */
  onError?: (err: Error, where: string) => void;
}

/** One address the server listens on, with the port resolved when 0 was asked for. */
export interface ListenerInfo {
  address: string;
  parsed: Address;
  secure: boolean;
}

/** A running server. */
export interface Server {
  readonly listeners: readonly ListenerInfo[];
  /** Aborted when close() begins, so that long-lived handlers (Status, Session) can wind down. */
  readonly shutdownSignal: AbortSignal;
  /** Streams (RPCs) in flight right now. */
  activeStreams(): number;
  /**
   * Stops accepting connections, sends GOAWAY so clients open no new streams, waits for the
   * streams in flight for up to `graceMs` (default 10 s), then destroys whatever remains and
   * removes the unix socket files.
   */
  close(opts?: { graceMs?: number }): Promise<void>;
}

// Larger windows than HTTP/2's 64 KiB default: session tunnels carry whole build contexts
// through one stream, and a small window caps them at one window per round trip.
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 16 << 20;
const SESSION_MEMORY_MB = 64;
/**
 * Lets clients send large DATA frames (Node honours it; grpc-go keeps 16 KiB): a session tunnel
 * message of 1 MiB then arrives in one piece instead of 64, each a buffer and a decoder step.
 */
const MAX_FRAME = (1 << 20) - 1;

/** Starts listening on every address, or on none: a failure closes what was already opened. */
export async function startServer(opts: StartServerOptions): Promise<Server> {
  if (opts.addresses.length === 0) throw new Error("starting the gRPC server: no listen address given");
  const parsed = opts.addresses.map(parseAddress);
  const onError = opts.onError ?? (() => {});
  const handler = connectNodeAdapter({
    routes: opts.routes,
    grpc: true,
    connect: false,
    grpcWeb: false,
    interceptors: opts.interceptors,
    fallback: respondUnimplemented,
  });
  const shutdown = new AbortController();
  const sessions = new Set<http2.ServerHttp2Session>();
  let streams = 0;
  const servers: Listening[] = [];

  const track = (server: http2.Http2Server | http2.Http2SecureServer) => {
    server.on("session", (session: http2.ServerHttp2Session) => {
      if (shutdown.signal.aborted) {
        session.destroy();
        return;
      }
      sessions.add(session);
      session.on("close", () => sessions.delete(session));
      session.on("error", (err: Error & { code?: string }) => {
        // A client that hangs up with CANCEL (buildctl does, once its build is over) is no fault.
        if (err.code === "ERR_HTTP2_SESSION_ERROR" && /error code 8$/.test(err.message)) return;
        onError(err, "http2 session");
      });
      session.setLocalWindowSize(CONNECTION_WINDOW);
    });
    server.on("stream", (stream: http2.ServerHttp2Stream) => {
      streams++;
      stream.once("close", () => streams--);
    });
    server.on("sessionError", (err) => onError(err, "http2 session"));
    server.on("tlsClientError", (err) => onError(err, "tls handshake"));
    server.on("request", handler);
  };
  const settings = { initialWindowSize: STREAM_WINDOW, maxFrameSize: MAX_FRAME };

  try {
    for (const addr of parsed) {
      if (addr.kind === "unix") {
        await removeStaleSocket(addr.path);
        await mkdir(dirname(addr.path), { recursive: true, mode: 0o755 });
        const server = http2.createServer({ settings, maxSessionMemory: SESSION_MEMORY_MB });
        track(server);
        const entry: Listening = {
          server,
          info: { address: formatAddress(addr), parsed: addr, secure: false },
          ownsSocket: false,
        };
        servers.push(entry);
        await listen(server, { path: addr.path }, formatAddress(addr));
        entry.ownsSocket = true;
        await chmod(addr.path, opts.socketMode ?? 0o660);
        if (opts.socketGid !== undefined) await chown(addr.path, -1, opts.socketGid);
      } else {
        const tls = opts.tls;
        const server = tls
          ? http2.createSecureServer({
              settings,
              maxSessionMemory: SESSION_MEMORY_MB,
              cert: tls.cert,
              key: tls.key,
              ca: tls.ca,
              requestCert: tls.ca !== undefined,
              rejectUnauthorized: tls.ca !== undefined,
              minVersion: "TLSv1.2",
            })
          : http2.createServer({ settings, maxSessionMemory: SESSION_MEMORY_MB });
        track(server);
        const entry: Listening = {
          server,
          info: { address: formatAddress(addr), parsed: addr, secure: !!tls },
          ownsSocket: false,
        };
        servers.push(entry);
        await listen(server, { host: addr.host, port: addr.port }, formatAddress(addr));
        const bound = server.address() as net.AddressInfo;
        const resolved: Address = { kind: "tcp", host: addr.host, port: bound.port };
        entry.info = { address: formatAddress(resolved), parsed: resolved, secure: !!tls };
      }
    }
  } catch (err) {
    await closeAll(servers, sessions, 0);
    throw err;
  }

  let closing: Promise<void> | undefined;
  return {
    listeners: servers.map((s) => s.info),
    shutdownSignal: shutdown.signal,
    activeStreams: () => streams,
    close(closeOpts) {
      if (!closing) {
        shutdown.abort(new Error("the server is shutting down"));
        closing = closeAll(servers, sessions, closeOpts?.graceMs ?? 10_000);
      }
      return closing;
    },
  };
}

interface Listening {
  server: http2.Http2Server | http2.Http2SecureServer;
  info: ListenerInfo;
  /** Set once listen() succeeded: only then is the socket file ours to remove. */
  ownsSocket: boolean;
}

function listen(server: net.Server, where: net.ListenOptions, label: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error) => reject(new Error(`listening on ${label}: ${err.message}`, { cause: err }));
    server.once("error", fail);
    server.listen(where, () => {
      server.off("error", fail);
      resolve();
    });
  });
}

/**
 * Removes a socket file left by a daemon that died, but only when it is a socket and nobody
 * answers on it: a live daemon keeps its socket, and a regular file is never deleted.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new Error(
      `listening on unix://${path}: the path exists and is not a socket; remove it or choose another address`,
    );
  }
  const answered = await new Promise<boolean>((resolve, reject) => {
    const probe = net.connect(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNREFUSED" || err.code === "ENOENT") resolve(false);
      else
        reject(
          new Error(`listening on unix://${path}: probing the existing socket: ${err.message}`, {
            cause: err,
          }),
        );
    });
  });
  if (answered) {
    throw new Error(
      `listening on unix://${path}: another process is serving on this socket; stop it or choose another address`,
    );
  }
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
}

async function closeAll(
  servers: Listening[],
  sessions: Set<http2.ServerHttp2Session>,
  graceMs: number,
): Promise<void> {
  const stopped = servers.map(
    ({ server }) =>
      new Promise<void>((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
      }),
  );
  const drained = [...sessions].map(
    (session) =>
      new Promise<void>((resolve) => {
        if (session.destroyed) return resolve();
        session.once("close", () => resolve());
        // Closing the listener may already have closed (GOAWAY) the session; its streams
        // are still running until "close".
        if (!session.closed) session.close();
      }),
  );
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, graceMs);
  });
  await Promise.race([Promise.all(drained), deadline]);
  clearTimeout(timer);
  for (const session of sessions) session.destroy();
  await Promise.all(stopped);
  // libuv unlinks the socket files of closed listeners; this covers any it left, and touches
  // only sockets this server created.
  for (const { info, ownsSocket } of servers) {
    if (info.parsed.kind !== "unix" || !ownsSocket) continue;
    const st = await lstat(info.parsed.path).catch(() => undefined);
    if (st?.isSocket()) await unlink(info.parsed.path).catch(() => {});
  }
}

// The client's end of a BuildKit session: it opens Control.Session and serves its own gRPC
// services (file sync, secrets, ...) to the daemon over the HTTP/2 connection tunnelled
// through that stream; here we are the HTTP/2 *server*.
import { randomBytes } from "node:crypto";
import * as http2 from "node:http2";
import { type Client, ConnectError, type ConnectRouter, createConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../proto/gen/grpc/health/v1/health_pb.ts";
import type { Control } from "../proto/gen/moby/buildkit/v1/control_pb.ts";
import { messageChannel } from "./channel.ts";
import { respondUnimplemented } from "./grpc.ts";
import { sessionHeaders } from "./headers.ts";

export interface SessionOptions {
  /** Default: a random id like BuildKit's (25 base-32 characters). */
  id?: string;
  /** Shown by the daemon; BuildKit uses the base name of the working directory. */
  name?: string;
  /** Sessions with the same key may share the daemon's file-sync caches. */
  sharedKey?: string;
  /**
   * The services this client offers the daemon, e.g. `(r) => r.service(Secrets, impl)`. Every
   * method registered is announced (an omitted method of a registered service is announced
   * and answers "unimplemented"), so register single methods with `r.rpc()` where that
   * matters. grpc.health.v1.Health/Check is always served (SERVING unless routes registers its own).
   */
  routes?: (router: ConnectRouter) => void;
}

// Matches the daemon's side of the tunnel.
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 16 << 20;

/** A client session. Create it, pass its id in SolveRequest.Session, and run() it alongside the solve. */
export class Session {
  readonly id: string;
  readonly name: string;
  readonly sharedKey: string;
  /** Full paths of the methods announced to the daemon. */
  readonly methods: readonly string[];
  readonly #routes: (router: ConnectRouter) => void;
  #running: AbortController | undefined;

  constructor(opts: SessionOptions = {}) {
    this.id = opts.id ?? newSessionId();
    this.name = opts.name ?? "";
    this.sharedKey = opts.sharedKey ?? "";
    const user = opts.routes ?? (() => {});
    this.#routes = (router) => {
      // Registered first so that a caller's own Health/Check (registered later) wins.
      router.rpc(Health.method.check, () => ({ status: HealthCheckResponse_ServingStatus.SERVING }));
      user(router);
    };
    const probe = createConnectRouter();
    this.#routes(probe);
    this.methods = Object.freeze([...new Set(probe.handlers.map((h) => h.requestPath))]);
  }

  /**
   * Opens the session on the daemon and serves it until it ends: resolves when the daemon ends
   * the stream or close() (or `signal`) stops it, rejects when the stream fails (the daemon
   * is unreachable, refuses the session, or the connection breaks).
   */
  async run(control: Client<typeof Control>, opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (this.#running) throw new Error(`session ${this.id}: run() is already in progress`);
    const stop = new AbortController();
    this.#running = stop;
    const onOuterAbort = () => stop.abort(opts.signal?.reason);
    opts.signal?.addEventListener("abort", onOuterAbort, { once: true });
    if (opts.signal?.aborted) stop.abort(opts.signal.reason);

    const channel = messageChannel();
    const server = http2.createServer(
      { settings: { initialWindowSize: STREAM_WINDOW } },
      connectNodeAdapter({
        routes: this.#routes,
        grpc: true,
        connect: false,
        grpcWeb: false,
        fallback: respondUnimplemented,
      }),
    );
    server.on("session", (s: http2.ServerHttp2Session) => {
      s.setLocalWindowSize(CONNECTION_WINDOW);
      s.on("error", () => {}); // the tunnel's failure is reported by the RPC
    });
    try {
      const responses = control.session(channel.outgoing, {
        headers: sessionHeaders(this),
        signal: stop.signal,
      });
      let failure: Error | undefined;
      channel.socket.on("error", (err) => {
        failure ??= err;
      });
      const closed = new Promise<void>((resolve) => channel.socket.once("close", () => resolve()));
      channel.attach(responses);
      server.emit("connection", channel.socket);
      await closed;
      if (failure && !stop.signal.aborted) {
        const ce = ConnectError.from(failure);
        throw new ConnectError(
          `session ${this.id}: ${ce.rawMessage}`,
          ce.code,
          ce.metadata,
          undefined,
          failure,
        );
      }
    } finally {
      opts.signal?.removeEventListener("abort", onOuterAbort);
      stop.abort();
      this.#running = undefined;
    }
  }

  /** Ends a running session: the stream is cancelled and the daemon tears its end down. */
  close(): void {
    this.#running?.abort(new Error(`session ${this.id} closed by the client`));
  }
}

/** A random id in BuildKit's format (identity.NewID: 25 characters of base-32). */
export function newSessionId(): string {
  const alphabet = "0123456789abcdefghijklmnopqrstuv";
  let id = "";
  for (const b of randomBytes(25)) id += alphabet[b & 31];
  return id;
}

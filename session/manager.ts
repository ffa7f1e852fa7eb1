// The daemon's end of BuildKit sessions. A client opens Control.Session and tunnels an HTTP/2
// connection through it; here we are the HTTP/2 *client* of that connection and call back the
// services the client offers (file sync, secrets, ssh, auth, export targets).
import * as http2 from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type HandlerContext,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../proto/gen/grpc/health/v1/health_pb.ts";
import { type MessageChannel, messageChannel } from "./channel.ts";
import { REPEATED_FILESYNC_HEADERS } from "./filesync/wire.ts";
import { parseSessionHeaders, type SessionInfo } from "./headers.ts";

/** The full path of the health method every BuildKit client serves. */
export const HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check";

/** A live session as builds see it: who it is, what it offers, and clients to call it. */
export interface SessionCaller {
  readonly id: string;
  readonly name: string;
  readonly sharedKey: string;
  /** Full method paths the client announced ("/moby.filesync.v1.FileSync/DiffCopy"). */
  readonly methods: readonly string[];
  /** True when the client announced this method (full path). */
  supports(method: string): boolean;
  /** A typed client for one of the client's services; calls fail with Code.Unavailable once the session is gone. */
  callerFor<T extends DescService>(service: T): Client<T>;
  /** The raw transport, for callers that build their own clients. */
  readonly transport: Transport;
  /** Aborted, with a ConnectError as reason, when the session ends. */
  readonly signal: AbortSignal;
  /** Ends the session: the tunnel is torn down and calls in flight fail. */
  close(reason?: string): void;
}

export interface SessionManagerOptions {
  /** How often to call the client's Health/Check (default 5000 ms; 0 turns monitoring off). */
  healthIntervalMs?: number;
  /** Deadline of one health check (default 10000 ms). */
  healthTimeoutMs?: number;
  /** Consecutive failed checks after which the session is closed (default 3). */
  healthFailures?: number;
  /** Session lifecycle events, for the daemon's log. */
  onEvent?: (event: "open" | "close", session: SessionInfo, detail?: string) => void;
}

export interface GetSessionOptions {
  signal?: AbortSignal;
  /** How long to wait for a session that has not connected yet (default 5000 ms). */
  timeoutMs?: number;
}

// Matches the daemon's listeners: the tunnel carries whole build contexts.
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 16 << 20;

/**
 * Keeps the live sessions by id. Register `handleSession` as Control.Session, then let builds
 * `get()` the session named by SolveRequest.Session: the client opens Session and Solve
 * concurrently, so get() waits for a session that has not arrived yet.
 */
export class SessionManager {
  readonly #sessions = new Map<string, LiveSession>();
  readonly #waiters = new Map<string, Set<(s: LiveSession) => void>>();
  readonly #opts: Required<Omit<SessionManagerOptions, "onEvent">> & Pick<SessionManagerOptions, "onEvent">;

  constructor(opts: SessionManagerOptions = {}) {
    this.#opts = {
      healthIntervalMs: opts.healthIntervalMs ?? 5000,
      healthTimeoutMs: opts.healthTimeoutMs ?? 10_000,
      healthFailures: opts.healthFailures ?? 3,
      onEvent: opts.onEvent,
    };
  }

  /** The Control.Session implementation: `router.service(Control, { session: manager.handleSession })`. */
  readonly handleSession = (
    requests: AsyncIterable<{ data: Uint8Array }>,
    ctx: HandlerContext,
  ): AsyncIterable<{ data: Uint8Array }> => this.#serve(requests, ctx);

  /** The live session with this id, waiting for it to connect if needed. */
  async get(id: string, opts: GetSessionOptions = {}): Promise<SessionCaller> {
    if (id === "")
      throw new ConnectError("looking up a session: the session id is empty", Code.InvalidArgument);
    const live = this.#sessions.get(id);
    if (live) return live;
    const timeoutMs = opts.timeoutMs ?? 5000;
    const signal = opts.signal;
    if (signal?.aborted) throw canceled(id, signal.reason);
    return new Promise<SessionCaller>((resolve, reject) => {
      const waiters = this.#waiters.get(id) ?? new Set();
      this.#waiters.set(id, waiters);
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        waiters.delete(onOpen);
        if (waiters.size === 0 && this.#waiters.get(id) === waiters) this.#waiters.delete(id);
      };
      const onOpen = (s: LiveSession) => {
        cleanup();
        resolve(s);
      };
      const onAbort = () => {
        cleanup();
        reject(canceled(id, signal?.reason));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new ConnectError(
            `waiting for session ${id}: no client opened it within ${timeoutMs} ms (did the client start its session?)`,
            Code.DeadlineExceeded,
          ),
        );
      }, timeoutMs);
      waiters.add(onOpen);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** The sessions connected right now. */
  list(): SessionCaller[] {
    return [...this.#sessions.values()];
  }

  /** Closes every session (daemon shutdown). */
  closeAll(reason = "the daemon is shutting down"): void {
    for (const s of this.#sessions.values()) s.close(reason);
  }

  async *#serve(
    requests: AsyncIterable<{ data: Uint8Array }>,
    ctx: HandlerContext,
  ): AsyncGenerator<{ data: Uint8Array }> {
    let info: SessionInfo;
    try {
      info = parseSessionHeaders(ctx.requestHeader);
    } catch (err) {
      throw new ConnectError((err as Error).message, Code.InvalidArgument);
    }
    if (this.#sessions.has(info.id)) {
      throw new ConnectError(
        `opening session ${info.id}: a session with this id is already open`,
        Code.AlreadyExists,
      );
    }
    const channel = messageChannel();
    channel.attach(requests);
    const live = new LiveSession(
      info,
      channel,
      this.#opts,
      () => endReason(channel, ctx.signal),
      () => {
        if (this.#sessions.get(info.id) === live) this.#sessions.delete(info.id);
      },
    );
    this.#sessions.set(info.id, live);
    this.#opts.onEvent?.("open", info);
    live.signal.addEventListener(
      "abort",
      () => this.#opts.onEvent?.("close", info, (live.signal.reason as Error).message),
      { once: true },
    );
    for (const w of this.#waiters.get(info.id) ?? []) w(live);

    const onAbort = () => live.close(endReason(channel, ctx.signal));
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      yield* channel.outgoing;
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      live.close(endReason(channel, ctx.signal));
    }
  }
}

function endReason(channel: MessageChannel, rpc: AbortSignal): string {
  // A cancelled RPC (RST_STREAM) can look like a clean end of the request stream.
  if (rpc.aborted && rpc.reason instanceof ConnectError)
    return `the client went away (${rpc.reason.message})`;
  const { state, error } = channel.incoming();
  if (state === "ended") return "the client ended the session";
  if (state === "failed") return `the client went away (${error?.message ?? "stream failed"})`;
  return "the session stream was cut off";
}

/**
 * grpc-go reads a metadata key with several values as one header field per value, but fetch-style
 * Headers join them with ", " before node:http2 sees them: split the keys known to repeat (file
 * sync's patterns, whose values never hold a comma) back into separate fields.
 */
function splitRepeatedMetadata(headers: http2.OutgoingHttpHeaders): http2.OutgoingHttpHeaders {
  let out = headers;
  for (const key of REPEATED_FILESYNC_HEADERS) {
    const v = headers[key];
    if (typeof v !== "string" || !v.includes(", ")) continue;
    if (out === headers) out = { ...headers };
    out[key] = v.split(", ");
  }
  return out;
}

function canceled(id: string, reason: unknown): ConnectError {
  const why = reason instanceof Error ? reason.message : "aborted";
  return new ConnectError(`waiting for session ${id}: ${why}`, Code.Canceled);
}

/** One connected session: the HTTP/2 client over the tunnel, and its health monitor. */
class LiveSession implements SessionCaller {
  readonly id: string;
  readonly name: string;
  readonly sharedKey: string;
  readonly methods: readonly string[];
  readonly transport: Transport;
  readonly #methodSet: Set<string>;
  readonly #channel: MessageChannel;
  readonly #h2: http2.ClientHttp2Session;
  readonly #abort = new AbortController();
  readonly #onClosed: () => void;
  /** Why the tunnel ended, from the RPC's point of view. */
  readonly #describeEnd: () => string;
  #healthTimer: NodeJS.Timeout | undefined;

  constructor(
    info: SessionInfo,
    channel: MessageChannel,
    opts: Required<Omit<SessionManagerOptions, "onEvent">>,
    describeEnd: () => string,
    onClosed: () => void,
  ) {
    this.id = info.id;
    this.name = info.name;
    this.sharedKey = info.sharedKey;
    this.methods = Object.freeze([...info.methods]);
    this.#methodSet = new Set(info.methods);
    this.#channel = channel;
    this.#onClosed = onClosed;
    this.#describeEnd = describeEnd;
    // The authority is a label; the connection is the tunnel.
    this.#h2 = http2.connect("http://session", {
      createConnection: () => channel.socket,
      // Large frames from the client: file sync data in 16 KiB frames costs about twice the CPU.
      settings: { initialWindowSize: STREAM_WINDOW, maxFrameSize: (1 << 20) - 1 },
    });
    this.#h2.on("connect", () => {
      if (!this.#h2.destroyed) this.#h2.setLocalWindowSize(CONNECTION_WINDOW);
    });
    this.#h2.on("error", () => {}); // surfaced through close() and the failing calls
    this.#h2.on("close", () => this.close(this.#describeEnd()));
    const h2 = this.#h2;
    this.transport = createGrpcTransport({
      baseUrl: "http://session",
      // Uncompressed, as grpc-go (BuildKit) does: the tunnel mostly carries file data, which
      // gzip in the client would slow to a crawl, and it crosses a local socket more often than not.
      acceptCompression: [],
      sessionManager: {
        authority: "http://session",
        request: async (method, path, headers, options) => {
          const closed = this.#closedError();
          if (closed) throw closed;
          return h2.request({ ...splitRepeatedMetadata(headers), ":method": method, ":path": path }, options);
        },
        notifyResponseByteRead: () => {},
      },
      interceptors: [this.#explainClosed],
    });
    if (opts.healthIntervalMs > 0 && this.supports(HEALTH_CHECK_METHOD)) this.#monitorHealth(opts);
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  supports(method: string): boolean {
    return this.#methodSet.has(method);
  }

  callerFor<T extends DescService>(service: T): Client<T> {
    return createClient(service, this.transport);
  }

  close(reason = "closed by the daemon"): void {
    if (this.#abort.signal.aborted) return;
    const err = new ConnectError(
      `session ${this.id} (${JSON.stringify(this.name)}) closed: ${reason}`,
      Code.Unavailable,
    );
    this.#abort.abort(err);
    clearInterval(this.#healthTimer);
    this.#h2.destroy(err);
    this.#channel.socket.destroy();
    this.#onClosed();
  }

  /** The reason calls fail: set once the session is closed or its connection is gone. */
  #closedError(): ConnectError | undefined {
    if (!this.#abort.signal.aborted && (this.#h2.destroyed || this.#h2.closed)) {
      this.close(this.#describeEnd());
    }
    return this.#abort.signal.aborted ? (this.#abort.signal.reason as ConnectError) : undefined;
  }

  /** Replaces the low-level stream errors of a call cut off by the session's end with the reason. */
  readonly #explainClosed: Interceptor = (next) => async (req) => {
    const explain = (err: unknown): unknown => {
      const closed = this.#closedError();
      if (!closed || err === closed) return err;
      return new ConnectError(
        `calling ${req.url.replace(/^http:\/\/session/, "")}: ${closed.rawMessage}`,
        closed.code,
        undefined,
        undefined,
        err,
      );
    };
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      throw explain(err);
    }
    if (!res.stream) return res;
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (err) {
          throw explain(err);
        }
      })(),
    };
  };

  #monitorHealth(opts: Required<Omit<SessionManagerOptions, "onEvent">>): void {
    const health = createClient(Health, this.transport);
    let failures = 0;
    let checking = false;
    this.#healthTimer = setInterval(async () => {
      if (checking || this.#abort.signal.aborted) return;
      checking = true;
      try {
        const res = await health.check({}, { timeoutMs: opts.healthTimeoutMs, signal: this.#abort.signal });
        failures = res.status === HealthCheckResponse_ServingStatus.SERVING ? 0 : failures + 1;
      } catch {
        failures++;
      } finally {
        checking = false;
      }
      if (failures >= opts.healthFailures) this.close(`${failures} health checks in a row failed`);
    }, opts.healthIntervalMs);
    this.#healthTimer.unref();
  }
}

// A gRPC connection to containerd on its unix socket: typed clients for the services the
// containerd worker uses, every call in one namespace (the `containerd-namespace` header), and
// errors that name the socket and the call. The HTTP/2 connection is made on first use and
// again after it breaks (containerd restarted), so one client lives as long as the worker.
import * as net from "node:net";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { Containers } from "../../proto/gen/containerd/services/containers/v1/containers_pb.ts";
import { Content } from "../../proto/gen/containerd/services/content/v1/content_pb.ts";
import { Images } from "../../proto/gen/containerd/services/images/v1/images_pb.ts";
import { Leases } from "../../proto/gen/containerd/services/leases/v1/leases_pb.ts";
import { Snapshots } from "../../proto/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Tasks } from "../../proto/gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Version } from "../../proto/gen/containerd/services/version/v1/version_pb.ts";

/** The header containerd reads the namespace of a call from. */
export const NAMESPACE_HEADER = "containerd-namespace";
/** The header that puts what a call creates under a lease. */
export const LEASE_HEADER = "containerd-lease";

const NAMESPACE_RE = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,74}[A-Za-z0-9])?$/;

/** Where containerd listens and which namespace buildd works in. */
export type ContainerdAddress = { address: string; namespace: string };

/** A failure talking to containerd, with the gRPC code when containerd answered. */
export class ContainerdError extends Error {
  override name = "ContainerdError";
  readonly code: Code;
  constructor(message: string, code: Code, cause?: unknown) {
    super(message, { cause });
    this.code = code;
  }
}

/** Whether `e` is containerd saying "no such thing". */
export function isNotFound(e: unknown): boolean {
  return e instanceof ContainerdError && e.code === Code.NotFound;
}

/** Whether `e` is containerd saying "that exists already". */
export function isAlreadyExists(e: unknown): boolean {
  return e instanceof ContainerdError && e.code === Code.AlreadyExists;
}

/** Whether `e` means containerd could not be reached or went away during the call. */
export function isUnavailable(e: unknown): boolean {
  return e instanceof ContainerdError && e.code === Code.Unavailable;
}

/** Call options that put what the call creates under `lease`. */
export function underLease(
  lease: string,
  signal?: AbortSignal,
): { headers: Record<string, string>; signal?: AbortSignal } {
  return { headers: { [LEASE_HEADER]: lease }, signal };
}

/** Typed clients on one connection to containerd. */
export class ContainerdClient {
  readonly address: string;
  readonly namespace: string;
  readonly version: Client<typeof Version>;
  readonly content: Client<typeof Content>;
  readonly snapshots: Client<typeof Snapshots>;
  readonly leases: Client<typeof Leases>;
  readonly containers: Client<typeof Containers>;
  readonly tasks: Client<typeof Tasks>;
  readonly images: Client<typeof Images>;
  private readonly manager: Http2SessionManager;
  private closed = false;

  constructor(opts: ContainerdAddress) {
    const address = opts.address.replace(/^unix:\/\//, "");
    if (!address.startsWith("/")) {
      throw new Error(
        `containerd address ${JSON.stringify(opts.address)}: want the absolute path of its unix socket`,
      );
    }
    if (!NAMESPACE_RE.test(opts.namespace)) {
      throw new Error(
        `containerd namespace ${JSON.stringify(opts.namespace)}: use letters, digits, '_', '.', '-' (at most 76)`,
      );
    }
    this.address = address;
    this.namespace = opts.namespace;
    // The authority is only a label: the socket decides where the connection goes.
    const baseUrl = "http://localhost";
    this.manager = new Http2SessionManager(
      baseUrl,
      { connectTimeoutMs: 10_000, idleConnectionTimeoutMs: 60_000 },
      { createConnection: () => net.connect(address) },
    );
    const transport = createGrpcTransport({
      baseUrl,
      sessionManager: this.manager,
      interceptors: [this.namespaced()],
    });
    const client = <T extends DescService>(s: T) => explained(createClient(s, transport), s, address);
    this.version = client(Version);
    this.content = client(Content);
    this.snapshots = client(Snapshots);
    this.leases = client(Leases);
    this.containers = client(Containers);
    this.tasks = client(Tasks);
    this.images = client(Images);
  }

  /** Proves containerd answers; returns its version. */
  async ping(signal?: AbortSignal): Promise<string> {
    const v = await this.version.version({}, { signal, timeoutMs: 10_000 });
    return v.version;
  }

  /** Drops the connection; calls in flight fail. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.manager.abort();
  }

  private namespaced(): Interceptor {
    return (next) => (req) => {
      req.header.set(NAMESPACE_HEADER, this.namespace);
      return next(req);
    };
  }
}

/**
 * Turns any failure of a call into a ContainerdError naming the socket and the call. A call
 * cancelled without its caller asking (`cancelledByCaller` false) lost its connection: containerd
 * went away (restarted or stopped).
 */
export function explainFailure(
  err: unknown,
  address: string,
  call: string,
  cancelledByCaller = false,
): unknown {
  if (err instanceof ContainerdError) return err;
  const sys = findSystemError(err);
  if (sys && ["ENOENT", "ECONNREFUSED", "EACCES", "ECONNRESET", "EPIPE"].includes(sys.code ?? "")) {
    const why =
      sys.code === "ENOENT" || sys.code === "ECONNREFUSED"
        ? "is containerd running, and is worker.containerd.address right?"
        : sys.code === "EACCES"
          ? "the daemon may not open the socket"
          : "containerd closed the connection (restarted?)";
    return new ContainerdError(
      `containerd at ${address}: ${call}: ${sys.code} (${why})`,
      sys.code === "EACCES" ? Code.PermissionDenied : Code.Unavailable,
      err,
    );
  }
  if (err instanceof ConnectError) {
    const lost =
      (err.code === Code.Canceled && !cancelledByCaller) ||
      (err.code === Code.Internal &&
        /http\/2|stream closed|GOAWAY|ECONNRESET|socket hang up/i.test(err.rawMessage));
    if (lost) {
      return new ContainerdError(
        `containerd at ${address}: ${call}: the connection broke (${err.rawMessage}); was containerd restarted or stopped?`,
        Code.Unavailable,
        err,
      );
    }
    return new ContainerdError(`containerd at ${address}: ${call}: ${err.rawMessage}`, err.code, err);
  }
  return err;
}

/**
 * The client of `service` with every failure explained (see explainFailure); server streams
 * are wrapped so that a failure while iterating is explained too.
 */
function explained<T extends DescService>(client: Client<T>, service: T, address: string): Client<T> {
  const wrapped: Record<string, unknown> = {};
  for (const m of service.methods) {
    const call = `${service.typeName.replace(/^containerd\.services\./, "")}/${m.name}`;
    const fn = (client as Record<string, (...a: unknown[]) => unknown>)[m.localName]!.bind(client);
    const byCaller = (args: unknown[]) =>
      (args[1] as { signal?: AbortSignal } | undefined)?.signal?.aborted === true;
    if (m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming") {
      wrapped[m.localName] = (...args: unknown[]) =>
        (async function* () {
          try {
            yield* fn(...args) as AsyncIterable<unknown>;
          } catch (e) {
            throw explainFailure(e, address, call, byCaller(args));
          }
        })();
    } else {
      wrapped[m.localName] = async (...args: unknown[]) => {
        try {
          return await fn(...args);
        } catch (e) {
          throw explainFailure(e, address, call, byCaller(args));
        }
      };
    }
  }
  return wrapped as Client<T>;
}

function findSystemError(e: unknown): NodeJS.ErrnoException | undefined {
  for (let cur = e, depth = 0; cur && depth < 8; depth++) {
    if (cur instanceof Error && typeof (cur as NodeJS.ErrnoException).code === "string") {
      return cur as NodeJS.ErrnoException;
    }
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

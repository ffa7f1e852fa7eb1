// The gateway client a frontend is written against: the build's options, and calls to the
// daemon (solve a definition or another frontend, read results, resolve image configs, warn).
// Refs are handles the daemon owns for the whole build; a frontend never releases them.
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import type { State } from "../../../llb/index.ts";
import type { Stat } from "../../../proto/gen/fsutil/types/stat_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  Ref,
  Result,
  SolveRequestSchema,
} from "../../../proto/gen/moby/buildkit/v1/frontend/gateway_pb.ts";
import { type Definition, DefinitionSchema } from "../../../proto/gen/pb/ops_pb.ts";
import {
  ENV_EXPORTED_PRODUCT,
  ENV_SESSION_ID,
  ENV_WORKERS,
  HEADER_VERTEX_DIGEST,
  HEADER_VERTEX_NAME,
  optionsFromEnv,
} from "../protocol.ts";
import type { BridgeConnection } from "./connection.ts";
import { stateFromDefinition } from "./state.ts";

/** A file's metadata as the daemon reports it (mode in Go's os.FileMode bits). */
export interface FileStat {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Milliseconds since the epoch. */
  modTime: number;
  linkname: string;
  isDir: boolean;
}

/** A result the daemon holds for this build. */
export interface Reference {
  readonly id: string;
  /** The definition it was solved from, when the daemon sent it. */
  readonly definition?: Uint8Array;
  readFile(path: string, range?: { offset?: number; length?: number }): Promise<Uint8Array>;
  readDir(path: string, opts?: { include?: string }): Promise<FileStat[]>;
  statFile(path: string): Promise<FileStat>;
  /** The result as a state to build on (needs its definition). */
  toState(): State;
}

/** What to solve: a definition (or a state), or another frontend with its options and inputs. */
export interface SolveRequest {
  definition?: Uint8Array | State;
  frontend?: string;
  frontendOpts?: Record<string, string>;
  frontendInputs?: Record<string, Uint8Array | State>;
}

export interface SolveResult {
  ref?: Reference;
  refs?: Record<string, Reference>;
  metadata: Record<string, Uint8Array>;
}

/** What a frontend returns: its result and metadata such as the image config. */
export interface BuildResult {
  ref?: Reference;
  refs?: Record<string, Reference>;
  metadata?: Record<string, Uint8Array | string>;
  /** The image config (`{config: {Env, Cmd, ...}, ...}`) for image exporters ("containerimage.config"). */
  imageConfig?: unknown;
}

export interface WorkerInfo {
  id: string;
  labels: Record<string, string>;
  platforms: { os: string; architecture: string; variant?: string }[];
}

/** A failed solve: which step failed, when the daemon said. */
export class GatewaySolveError extends Error {
  override name = "GatewaySolveError";
  readonly vertex: { digest: string; name: string } | undefined;
  constructor(message: string, vertex?: { digest: string; name: string }, cause?: unknown) {
    super(message, { cause });
    this.vertex = vertex;
  }
}

const toBytes = (d: Uint8Array | State): Uint8Array => (d instanceof Uint8Array ? d : d.marshal().bytes);

function fileStat(s: Stat | undefined): FileStat {
  const mode = s?.mode ?? 0;
  return {
    path: s?.path ?? "",
    mode,
    uid: s?.uid ?? 0,
    gid: s?.gid ?? 0,
    size: Number(s?.size ?? 0n),
    modTime: Number((s?.modTime ?? 0n) / 1_000_000n),
    linkname: s?.linkname ?? "",
    isDir: mode >= 2 ** 31,
  };
}

export class GatewayClient {
  /** The frontend options (`--opt key=value`, build args as `build-arg:NAME`). */
  readonly opts: Record<string, string>;
  /** The client's session, for local sources (`local("context", { sessionId })`). */
  readonly sessionId: string;
  readonly workers: WorkerInfo[];
  readonly product: string;
  readonly #conn: BridgeConnection;
  #caps = new Set<string>();

  constructor(conn: BridgeConnection, env: Record<string, string | undefined> = process.env) {
    this.#conn = conn;
    this.opts = optionsFromEnv(env);
    this.sessionId = env[ENV_SESSION_ID] ?? "";
    this.product = env[ENV_EXPORTED_PRODUCT] ?? "";
    this.workers = parseWorkers(env[ENV_WORKERS]);
  }

  /** Asks the daemon what it supports; `run()` does this first. */
  async ping(): Promise<Set<string>> {
    const pong = await this.#conn.bridge.ping({});
    this.#caps = new Set(pong.FrontendAPICaps.filter((c) => c.Enabled).map((c) => c.ID));
    return this.#caps;
  }

  /** True when the daemon announced the gateway capability (e.g. "readdir"). */
  supports(cap: string): boolean {
    return this.#caps.has(cap);
  }

  async solve(req: SolveRequest): Promise<SolveResult> {
    const pb: MessageInitShape<typeof SolveRequestSchema> = {
      Frontend: req.frontend ?? "",
      FrontendOpt: req.frontendOpts ?? {},
      FrontendInputs: Object.fromEntries(
        Object.entries(req.frontendInputs ?? {}).map(([k, v]) => [k, definitionOf(toBytes(v))]),
      ),
      allowResultReturn: true,
      allowResultArrayRef: true,
    };
    if (req.definition) pb.Definition = definitionOf(toBytes(req.definition));
    try {
      const res = await this.#conn.bridge.solve(pb);
      return this.#result(res.result, res.ref);
    } catch (e) {
      throw solveError(e);
    }
  }

  async readFile(ref: Reference | string, path: string, range?: { offset?: number; length?: number }) {
    const res = await this.#conn.bridge.readFile({
      Ref: typeof ref === "string" ? ref : ref.id,
      FilePath: path,
      Range:
        range === undefined
          ? undefined
          : { Offset: BigInt(range.offset ?? 0), Length: BigInt(range.length ?? 0) },
    });
    return res.Data;
  }

  async readDir(ref: Reference | string, path: string, opts: { include?: string } = {}): Promise<FileStat[]> {
    const res = await this.#conn.bridge.readDir({
      Ref: typeof ref === "string" ? ref : ref.id,
      DirPath: path,
      IncludePattern: opts.include ?? "",
    });
    return res.entries.map(fileStat);
  }

  async statFile(ref: Reference | string, path: string): Promise<FileStat> {
    const res = await this.#conn.bridge.statFile({ Ref: typeof ref === "string" ? ref : ref.id, Path: path });
    return fileStat(res.stat);
  }

  /** An image's config (parsed JSON) and the digest to pin it to. */
  async resolveImageConfig(
    ref: string,
    opts: { platform?: { os: string; architecture: string; variant?: string } } = {},
  ): Promise<{ ref: string; digest: string; config: Record<string, unknown> }> {
    const p = opts.platform;
    const res = await this.#conn.bridge.resolveImageConfig({
      Ref: ref,
      Platform: p ? { OS: p.os, Architecture: p.architecture, Variant: p.variant ?? "" } : undefined,
    });
    return {
      ref: res.Ref || ref,
      digest: res.Digest,
      config: JSON.parse(new TextDecoder().decode(res.Config)) as Record<string, unknown>,
    };
  }

  /** The definitions the client passed as frontend inputs, by name. */
  async inputs(): Promise<Record<string, Uint8Array>> {
    const res = await this.#conn.bridge.inputs({});
    return Object.fromEntries(
      Object.entries(res.Definitions).map(([k, d]) => [k, toBinary(DefinitionSchema, d)]),
    );
  }

  /** A warning in the build's progress (about a step when `vertex` is its digest). */
  async warn(
    short: string,
    opts: { detail?: string[]; url?: string; vertex?: string; level?: number } = {},
  ): Promise<void> {
    const enc = (s: string) => new TextEncoder().encode(s);
    await this.#conn.bridge.warn({
      digest: opts.vertex ?? "",
      level: BigInt(opts.level ?? 1),
      short: enc(short),
      detail: (opts.detail ?? []).map(enc),
      url: opts.url ?? "",
    });
  }

  /** Hands the result to the daemon; the build continues with it (exporters). */
  async return(result: BuildResult): Promise<void> {
    const metadata: Record<string, Uint8Array> = {};
    for (const [k, v] of Object.entries(result.metadata ?? {})) {
      metadata[k] = typeof v === "string" ? new TextEncoder().encode(v) : v;
    }
    if (result.imageConfig !== undefined) {
      metadata["containerimage.config"] = new TextEncoder().encode(JSON.stringify(result.imageConfig));
    }
    const pbRef = (r: Reference | undefined) => ({ id: r?.id ?? "" });
    await this.#conn.bridge.return({
      result: {
        metadata,
        result: result.refs
          ? {
              case: "refs",
              value: { refs: Object.fromEntries(Object.entries(result.refs).map(([k, v]) => [k, pbRef(v)])) },
            }
          : { case: "ref", value: pbRef(result.ref) },
      },
    });
  }

  /** Fails the build with this error (its message is what the user sees). */
  async returnError(error: unknown): Promise<void> {
    const message =
      error instanceof ConnectError
        ? error.rawMessage
        : error instanceof Error
          ? error.message
          : String(error);
    await this.#conn.bridge.return({ error: { code: 2, message } });
  }

  close(): void {
    this.#conn.close();
  }

  #reference(r: Ref | string | undefined): Reference | undefined {
    const id = typeof r === "string" ? r : (r?.id ?? "");
    if (id === "") return undefined;
    const def = typeof r === "string" || !r?.def ? undefined : toBinary(DefinitionSchema, r.def);
    return {
      id,
      definition: def,
      readFile: (path, range) => this.readFile(id, path, range),
      readDir: (path, opts) => this.readDir(id, path, opts),
      statFile: (path) => this.statFile(id, path),
      toState: () => {
        if (!def) throw new Error(`ref ${id} came without its definition: it cannot be built on`);
        return stateFromDefinition(def);
      },
    };
  }

  #result(r: Result | undefined, legacyRef: string): SolveResult {
    const metadata = { ...(r?.metadata ?? {}) };
    switch (r?.result.case) {
      case "ref":
        return { ref: this.#reference(r.result.value), metadata };
      case "refDeprecated":
        return { ref: this.#reference(r.result.value), metadata };
      case "refs":
        return {
          refs: Object.fromEntries(
            Object.entries(r.result.value.refs).flatMap(([k, v]) => {
              const ref = this.#reference(v);
              return ref ? [[k, ref]] : [];
            }),
          ),
          metadata,
        };
      case "refsDeprecated":
        return {
          refs: Object.fromEntries(
            Object.entries(r.result.value.refs).flatMap(([k, v]) => {
              const ref = this.#reference(v);
              return ref ? [[k, ref]] : [];
            }),
          ),
          metadata,
        };
      default:
        return { ref: this.#reference(legacyRef), metadata };
    }
  }
}

function definitionOf(bytes: Uint8Array): Definition {
  return fromBinary(DefinitionSchema, bytes);
}

function parseWorkers(json: string | undefined): WorkerInfo[] {
  if (!json) return [];
  try {
    const raw = JSON.parse(json) as { id?: string; labels?: Record<string, string>; platforms?: unknown[] }[];
    return raw.map((w) => ({
      id: w.id ?? "",
      labels: w.labels ?? {},
      platforms: (w.platforms ?? []) as WorkerInfo["platforms"],
    }));
  } catch {
    return [];
  }
}

function solveError(e: unknown): unknown {
  if (!(e instanceof ConnectError)) return e;
  const digest = e.metadata.get(HEADER_VERTEX_DIGEST);
  const name = e.metadata.get(HEADER_VERTEX_NAME);
  const vertex = digest && name !== null ? { digest, name: decodeURIComponent(name) } : undefined;
  return new GatewaySolveError(e.rawMessage, vertex, e);
}

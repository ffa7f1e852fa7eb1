// The daemon's Control service: Solve runs a build (a definition or a frontend, then the
// exporters), Status streams its progress, DiskUsage/Prune/ListWorkers/Info answer about the
// worker. Shapes follow BuildKit's moby.buildkit.v1 API.
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { toBinary } from "@bufbuild/protobuf";
import type { CacheManager } from "../cache/manager.ts";
import type { GcPolicy, UsageInfo } from "../cache/types.ts";
import { parseDuration } from "../cache/units.ts";
import type { Exporter } from "../exporter/types.ts";
import type { Frontend, FrontendBridge, FrontendResult } from "../frontend/types.ts";
import { LLBError } from "../llb/definition.ts";
import type {
  Control,
  PruneRequest,
  SolveRequest,
  StatusResponse,
} from "../proto/gen/moby/buildkit/v1/control_pb.ts";
import { DefinitionSchema } from "../proto/gen/pb/ops_pb.ts";
import type { SolveStatus } from "../progress/types.ts";
import { BuildCache, type CacheBackend, type CacheEntry } from "../remotecache/index.ts";
import type { SessionCaller, SessionManager } from "../session/manager.ts";
import type { Solver } from "../solver/solver.ts";
import { SolveError } from "../solver/solver.ts";
import { digestOf } from "../util/digest.ts";
import type { Logger } from "../util/log.ts";
import type { Worker } from "../worker/types.ts";
import type { OCIWorker } from "../worker/worker.ts";
import { parseWorkerFilters } from "./workers.ts";
import { VertexLog } from "../worker/vertex-log.ts";
import { JobRegistry } from "./jobs.ts";
import { readRefFile, sessionAccess } from "./session-access.ts";

/** Progress names of the export steps, as BuildKit words them. */
const EXPORT_NAMES: Record<string, string> = {
  image: "exporting to image",
  oci: "exporting to oci image format",
  docker: "exporting to docker image format",
  tar: "exporting to client tarball",
  local: "exporting to client directory",
};

export interface ControllerOptions {
  solver: Solver;
  /** The default worker. */
  worker: OCIWorker;
  /** The default worker's cache. */
  cache: CacheManager;
  /** Every worker with its cache and GC policies, when there are several (default: `worker` alone). */
  workers?: { worker: Worker; cache: CacheManager; gcPolicies: GcPolicy[] }[];
  sessions: SessionManager;
  frontends: Map<string, Frontend>;
  exporters: Map<string, Exporter>;
  /** Cache import/export backends by type (registry, local, inline). */
  cacheBackends?: Map<string, CacheBackend>;
  gcPolicies: GcPolicy[];
  log: Logger;
  /** Entitlements the daemon allows builds to ask for. */
  allowedEntitlements: string[];
  version: string;
  resolveImageConfig(
    ref: string,
    opts: { platform?: string; signal: AbortSignal },
  ): Promise<{ digest: string; config: unknown }>;
}

export class Controller {
  readonly jobs = new JobRegistry();
  private readonly o: ControllerOptions;
  private readonly running = new Set<Promise<unknown>>();
  private draining = false;

  constructor(o: ControllerOptions) {
    this.o = o;
  }

  /** Every worker with its cache, the default first. */
  private workers(): { worker: Worker; cache: CacheManager; gcPolicies: GcPolicy[] }[] {
    return this.o.workers ?? [{ worker: this.o.worker, cache: this.o.cache, gcPolicies: this.o.gcPolicies }];
  }

  /** Builds in flight; `drain` waits for them. */
  get active(): number {
    return this.running.size;
  }

  /** Stops accepting builds and waits (up to `deadlineMs`) for the running ones. */
  async drain(deadlineMs: number): Promise<boolean> {
    this.draining = true;
    const all = Promise.allSettled([...this.running]);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), deadlineMs)));
    const done = await Promise.race([all.then(() => true as const), timeout]);
    clearTimeout(timer);
    return done;
  }

  service(): Partial<ServiceImpl<typeof Control>> {
    return {
      session: this.o.sessions.handleSession,
      solve: (req, ctx) => this.track(this.solve(req, ctx)),
      status: (req, ctx) => this.status(req.Ref, ctx),
      diskUsage: async (req) => ({
        record: (await Promise.all(this.workers().map((w) => w.cache.du({ filters: req.filter }))))
          .flat()
          .map(usageRecord),
      }),
      prune: (req, ctx) => this.prune(req, ctx),
      listWorkers: async (req) => {
        let match: ReturnType<typeof parseWorkerFilters>;
        try {
          match = parseWorkerFilters(req.filter);
        } catch (e) {
          throw new ConnectError((e as Error).message, Code.InvalidArgument);
        }
        return {
          record: this.workers()
            .filter((w) => match(w.worker))
            .map(({ worker, gcPolicies }) => ({
              ID: worker.id,
              Labels: worker.labels,
              platforms: worker.platforms.map((p) => ({
                OS: p.os,
                Architecture: p.architecture,
                Variant: p.variant ?? "",
              })),
              GCPolicy: gcPolicies.map((p) => ({
                all: p.all ?? false,
                filters: p.filters ?? [],
                keepDuration: BigInt(
                  Math.round(p.keepDuration === undefined ? 0 : parseDuration(p.keepDuration) / 1000),
                ),
                reservedSpace: BigInt(Math.round(bytes(p.reservedSpace ?? p.keepBytes))),
                maxUsedSpace: BigInt(Math.round(bytes(p.maxUsedSpace))),
                minFreeSpace: BigInt(Math.round(bytes(p.minFreeSpace))),
              })),
            })),
        };
      },
      info: async () => ({
        buildkitVersion: { package: "github.com/buildd-dev/buildd", version: this.o.version, revision: "" },
      }),
    };
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.running.add(p);
    p.finally(() => this.running.delete(p)).catch(() => {});
    return p;
  }

  private async solve(
    req: SolveRequest,
    ctx: HandlerContext,
  ): Promise<{ ExporterResponse: Record<string, string> }> {
    if (this.draining)
      throw new ConnectError("the daemon is shutting down; retry on its next start", Code.Unavailable);
    const ref = req.Ref || `build-${Math.random().toString(36).slice(2)}`;
    for (const e of req.Entitlements) {
      if (!this.o.allowedEntitlements.includes(e)) {
        throw new ConnectError(
          `entitlement ${JSON.stringify(e)} is not allowed by this daemon: start buildd with --allow-insecure-entitlement ${e}`,
          Code.PermissionDenied,
        );
      }
    }
    const exporters = this.exportersOf(req);
    const caches = this.cachesOf(req);
    let caller: SessionCaller | undefined;
    if (req.Session) {
      caller = await this.o.sessions.get(req.Session, { signal: ctx.signal, timeoutMs: 10_000 });
    }
    const session = caller
      ? sessionAccess(caller, (id, signal) => this.o.sessions.get(id, { signal, timeoutMs: 10_000 }))
      : undefined;
    const attrs = req.FrontendAttrs;
    const noCache = attrs["no-cache"] !== undefined && attrs["no-cache"] === "";
    const job = this.o.solver.newJob({ id: ref, session, noCache, signal: ctx.signal });
    this.jobs.add(ref, job.progress);
    const buildCache = new BuildCache(this.o.cacheBackends ?? new Map(), job, { ...caches, session });
    const log = this.o.log.with({ ref });
    log.info("build started", { frontend: req.Frontend || "llb", session: req.Session });
    const started = Date.now();
    try {
      let result: FrontendResult;
      if (req.Frontend) {
        const fe = this.o.frontends.get(req.Frontend);
        if (!fe) {
          throw new ConnectError(
            `unknown frontend ${JSON.stringify(req.Frontend)}: this daemon has ${[...this.o.frontends.keys()].join(", ") || "none"}`,
            Code.InvalidArgument,
          );
        }
        const bridge: FrontendBridge = {
          solve: (def) => job.solve(def),
          readFile: (r, path, o) => readRefFile(r, path, o, this.o.worker.mountRoot),
          resolveImageConfig: (r, o) =>
            this.o.resolveImageConfig(r, { platform: o.platform, signal: job.signal }),
          warn: (message, detail = []) =>
            job.progress.write({ warnings: [{ vertex: "", level: 1, short: message, detail }] }),
          sessionId: req.Session || undefined,
          opts: attrs,
          inputs: Object.fromEntries(
            Object.entries(req.FrontendInputs).map(([k, d]) => [k, toBinary(DefinitionSchema, d)]),
          ),
          signal: job.signal,
          frontend: (name) => this.o.frontends.get(name),
          progress: job.sink,
        };
        result = await fe.solve(bridge);
      } else if (req.Definition && req.Definition.def.length > 0) {
        const r = await job.solve(toBinary(DefinitionSchema, req.Definition));
        result = { ref: r, metadata: {} };
      } else {
        result = { metadata: {} };
      }
      const response: Record<string, string> = {};
      for (const [i, { type, attrs: eattrs }] of exporters.entries()) {
        const exp = this.o.exporters.get(type)!;
        const vertex = digestOf(`export ${ref} ${i}`);
        const name = EXPORT_NAMES[type] ?? `exporting to ${type}`;
        const started = Date.now();
        const announce = (more: { completed?: number; error?: string }) =>
          job.progress.write({ vertexes: [{ digest: vertex, inputs: [], name, started, ...more }] });
        announce({});
        const vlog = new VertexLog(vertex, new Set([job.sink]));
        try {
          Object.assign(
            response,
            await exp.export(result, eattrs, {
              session,
              log: vlog,
              signal: job.signal,
              buildArgs: attrs,
              exporterId: i,
              inlineCache: buildCache.inlineHook(),
            }),
          );
          announce({ completed: Date.now() });
        } catch (e) {
          announce({ completed: Date.now(), error: (e as Error).message });
          throw e;
        }
      }
      await buildCache.exportAll(result, { session, signal: job.signal });
      log.info("build done", { ms: Date.now() - started });
      return { ExporterResponse: response };
    } catch (e) {
      log.info("build failed", { ms: Date.now() - started, error: e });
      throw toConnectError(e);
    } finally {
      await buildCache.release();
      job.discard();
      this.jobs.finish(ref);
      for (const { cache } of this.workers()) {
        void cache.gcAfterBuild().catch((e) => this.o.log.warn("gc after build failed", { error: e }));
      }
    }
  }

  /** Exporters named by the request, validated before anything runs. */
  private exportersOf(req: SolveRequest): { type: string; attrs: Record<string, string> }[] {
    const list = req.Exporters.map((e) => ({ type: e.Type, attrs: e.Attrs }));
    if (list.length === 0 && req.Exporter) list.push({ type: req.Exporter, attrs: req.ExporterAttrs });
    for (const e of list) {
      const exp = this.o.exporters.get(e.type);
      if (!exp) {
        throw new ConnectError(
          `unknown output type ${JSON.stringify(e.type)}: this daemon supports ${[...this.o.exporters.keys()].join(", ") || "none"}`,
          Code.InvalidArgument,
        );
      }
      try {
        exp.checkAttrs?.(e.attrs);
      } catch (err) {
        throw new ConnectError(`output type=${e.type}: ${(err as Error).message}`, Code.InvalidArgument);
      }
    }
    return list;
  }

  /** Cache exports and imports named by the request, validated before anything runs. */
  private cachesOf(req: SolveRequest): { exports: CacheEntry[]; imports: CacheEntry[] } {
    const entries = (list: { Type: string; Attrs: Record<string, string> }[] | undefined) =>
      (list ?? []).map((e) => ({ type: e.Type, attrs: { ...e.Attrs } }));
    const exports = entries(req.Cache?.Exports);
    const imports = entries(req.Cache?.Imports);
    // Pre-v0.4 clients name registry refs directly.
    if (req.Cache?.ExportRefDeprecated)
      exports.push({
        type: "registry",
        attrs: { ...req.Cache.ExportAttrsDeprecated, ref: req.Cache.ExportRefDeprecated },
      });
    for (const r of req.Cache?.ImportRefsDeprecated ?? [])
      imports.push({ type: "registry", attrs: { ref: r } });
    try {
      BuildCache.check(this.o.cacheBackends ?? new Map(), exports, imports);
    } catch (e) {
      throw new ConnectError((e as Error).message, Code.InvalidArgument);
    }
    return { exports, imports };
  }

  private async *status(ref: string, ctx: HandlerContext): AsyncGenerator<StatusResponse> {
    const bus = await this.jobs.get(ref, ctx.signal);
    if (!bus) throw new ConnectError(`no build with ref ${JSON.stringify(ref)}`, Code.NotFound);
    for await (const batch of bus.subscribe(ctx.signal)) yield statusResponse(batch);
  }

  private async *prune(
    req: PruneRequest,
    ctx: HandlerContext,
  ): AsyncGenerator<{ ID: string; Size: bigint; Description: string; RecordType: string }> {
    for (const { cache } of this.workers()) {
      const it = cache.prune({
        filters: req.filter,
        all: req.all,
        keepDuration: req.keepDuration > 0n ? Number(req.keepDuration) / 1e9 : undefined,
        keepStorage: req.reservedSpace > 0n ? Number(req.reservedSpace) : undefined,
        maxUsedSpace: req.maxUsedSpace > 0n ? Number(req.maxUsedSpace) : undefined,
        minFreeSpace: req.minFreeSpace > 0n ? Number(req.minFreeSpace) : undefined,
      });
      for await (const u of it) {
        if (ctx.signal.aborted) return;
        yield { ...usageRecord(u) };
      }
    }
  }
}

function usageRecord(u: UsageInfo) {
  return {
    ID: u.id,
    Mutable: u.mutable,
    InUse: u.inUse,
    Size: BigInt(u.size),
    CreatedAt: timestampFromMs(u.createdAt),
    LastUsedAt: u.lastUsedAt === undefined ? undefined : timestampFromMs(u.lastUsedAt),
    UsageCount: BigInt(u.usageCount),
    Description: u.description,
    RecordType: u.recordType,
    Shared: u.shared,
    Parents: u.parents,
  };
}

/** Our progress batch in BuildKit's StatusResponse shape. */
export function statusResponse(s: SolveStatus): StatusResponse {
  const ts = (ms: number | undefined) => (ms === undefined ? undefined : timestampFromMs(ms));
  return {
    $typeName: "moby.buildkit.v1.StatusResponse",
    vertexes: s.vertexes.map((v) => ({
      $typeName: "moby.buildkit.v1.Vertex",
      digest: v.digest,
      inputs: v.inputs,
      name: v.name,
      cached: v.cached ?? false,
      started: ts(v.started),
      completed: ts(v.completed),
      error: v.error ?? "",
      progressGroup: v.progressGroup ? { $typeName: "pb.ProgressGroup", ...v.progressGroup } : undefined,
    })),
    statuses: s.statuses.map((st) => ({
      $typeName: "moby.buildkit.v1.VertexStatus",
      ID: st.id,
      vertex: st.vertex,
      name: st.name,
      current: BigInt(Math.round(st.current)),
      total: BigInt(Math.round(st.total)),
      timestamp: ts(st.timestamp),
      started: ts(st.started),
      completed: ts(st.completed),
    })),
    logs: s.logs.map((l) => ({
      $typeName: "moby.buildkit.v1.VertexLog",
      vertex: l.vertex,
      timestamp: ts(l.timestamp),
      stream: BigInt(l.stream),
      msg: l.data,
    })),
    warnings: s.warnings.map((w) => ({
      $typeName: "moby.buildkit.v1.VertexWarning",
      vertex: w.vertex,
      level: BigInt(w.level),
      short: new TextEncoder().encode(w.short),
      detail: w.detail.map((d) => new TextEncoder().encode(d)),
      url: w.url ?? "",
      info: w.source
        ? {
            $typeName: "pb.SourceInfo",
            filename: w.source.filename,
            data: new Uint8Array(),
            language: "",
            definition: undefined,
          }
        : undefined,
      ranges: (w.source?.ranges ?? []).map((r) => ({
        $typeName: "pb.Range",
        start: { $typeName: "pb.Position", line: r.start, character: 0 },
        end: { $typeName: "pb.Position", line: r.end, character: 0 },
      })),
    })),
  };
}

/** Errors for the client: what failed, where, never a stack. */
function toConnectError(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  if (e instanceof LLBError) return new ConnectError(e.message, Code.InvalidArgument);
  if (e instanceof SolveError) return new ConnectError(`failed to solve: ${e.message}`, Code.Unknown);
  const msg = e instanceof Error ? e.message : String(e);
  if (e instanceof Error && (e.name === "AbortError" || /cancel/i.test(msg)))
    return new ConnectError(`build cancelled: ${msg}`, Code.Canceled);
  return new ConnectError(`failed to solve: ${msg}`, Code.Unknown);
}

function bytes(v: number | string | undefined): number {
  return typeof v === "number" ? v : 0;
}

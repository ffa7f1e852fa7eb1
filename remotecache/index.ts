// Cache import and export, for the daemon: the backends by type (registered through
// `registerPlugins({ cacheBackends })`), and `BuildCache`, the cache side of one build that the
// controller drives: check the request's entries up front, hand the solver the imports, add an
// inline cache to image configs, and write the exports after the build.
import { join } from "node:path";
import type { CacheManager } from "../cache/manager.ts";
import type { ImmutableRef } from "../cache/types.ts";
import type { ContentStore } from "../content/store.ts";
import type { RegistryConfig } from "../control/config.ts";
import { sessionCredentials } from "../exporter/push.ts";
import type { FrontendResult } from "../frontend/types.ts";
import type { ExportableVertex, Job } from "../solver/solver.ts";
import type { InlineCacheHook } from "../exporter/types.ts";
import type { RegistryClient } from "../source/registry/index.ts";
import { digestOf } from "../util/digest.ts";
import type { ImageSource } from "../worker/sources/image.ts";
import type { SessionAccess } from "../worker/types.ts";
import { VertexLog } from "../worker/vertex-log.ts";
import type { OCIWorker } from "../worker/worker.ts";
import { type CacheSource, inlineCacheConfig } from "./build.ts";
import { type CacheExportContext, exportCache, exportTarget } from "./export.ts";
import { type CacheLoader, ImportedCaches, localLoader, registryLoader, unpackerFor } from "./import.ts";
import { bool, checkImportOptions, parseExportOptions } from "./options.ts";
import { INLINE_CACHE_FIELD } from "./spec.ts";

export { type CacheSource, buildCache, inlineCacheConfig, underResults } from "./build.ts";
export { exportCache } from "./export.ts";
export { ImportedCaches, type ImportedCache, inlineRecords } from "./import.ts";
export { parseExportOptions, checkImportOptions, type CacheExportOptions } from "./options.ts";
export { CACHE_CONFIG_MEDIA_TYPE, INLINE_CACHE_FIELD, parseCacheConfig, type CacheConfig } from "./spec.ts";

/** One cache type: what it can do (export, import) and how. */
export interface CacheBackend {
  /** Checks export attributes before the build; absent when the type cannot be exported to. */
  checkExport?(attrs: Record<string, string>): void;
  /** Checks import attributes before the build; absent when the type cannot be imported from. */
  checkImport?(attrs: Record<string, string>): void;
  /** Writes the cache of a build (absent for inline, which rides in the image config). */
  export?(source: CacheSource, attrs: Record<string, string>, ctx: CacheExportContext): Promise<void>;
  /** Reads an import as far as its cache config, when the solver first needs it. */
  loader?(attrs: Record<string, string>, ctx: { session?: SessionAccess }): CacheLoader;
}

/** The parts of a daemon the cache backends use (a subset of control/daemon.ts DaemonParts). */
export type CacheHost = {
  config: { root: string; registry: Record<string, RegistryConfig> };
  content: ContentStore;
  cache: CacheManager;
  registry: RegistryClient;
  worker: OCIWorker;
  images: ImageSource;
};

/** Every cache type of this folder, for `registerPlugins({ cacheBackends })`. */
export const cacheBackendFactories: Record<string, (d: CacheHost) => CacheBackend> = {
  registry: (d) => ({
    checkExport: (attrs) => void parseExportOptions("registry", attrs),
    checkImport: (attrs) => checkImportOptions("registry", attrs),
    export: async (source, attrs, ctx) => {
      await exportCache(
        source,
        parseExportOptions("registry", attrs),
        exportTarget("registry", attrs),
        exportDeps(d),
        ctx,
      );
    },
    loader: (attrs, ctx) =>
      registryLoader(
        d.registry,
        attrs.ref!,
        { content: d.content, unpack: unpackerFor(d) },
        { credentials: sessionCredentials(ctx.session) },
      ),
  }),
  local: (d) => ({
    checkExport: (attrs) => void parseExportOptions("local", attrs),
    checkImport: (attrs) => checkImportOptions("local", attrs),
    export: async (source, attrs, ctx) => {
      await exportCache(
        source,
        parseExportOptions("local", attrs),
        exportTarget("local", attrs),
        exportDeps(d),
        ctx,
      );
    },
    loader: (attrs) =>
      localLoader(
        attrs.src!,
        { tag: attrs.tag, digest: attrs.digest },
        { content: d.content, unpack: unpackerFor(d) },
      ),
  }),
  inline: () => ({ checkExport: (attrs) => void parseExportOptions("inline", attrs) }),
};

function exportDeps(d: CacheHost) {
  return {
    cache: d.cache,
    content: d.content,
    registry: d.registry,
    registryHosts: d.config.registry,
    mountBase: join(d.config.root, "mnt"),
  };
}

/** One `--export-cache`/`--import-cache` entry. */
export type CacheEntry = { type: string; attrs: Record<string, string> };

/** Progress names of cache exports, as BuildKit words them. */
const EXPORT_NAMES: Record<string, string> = {
  registry: "exporting cache to registry",
  local: "exporting cache to local directory",
};

/** The cache side of one build. */
export class BuildCache {
  readonly exports: CacheEntry[];
  readonly imports: CacheEntry[];
  private readonly backends: Map<string, CacheBackend>;
  private vertices?: Promise<ExportableVertex[]>;
  private readonly job: Job;

  /** Checks every entry (throws naming the first bad one) before anything runs. */
  static check(backends: Map<string, CacheBackend>, exports: CacheEntry[], imports: CacheEntry[]): void {
    for (const [list, kind] of [
      [exports, "export"],
      [imports, "import"],
    ] as const) {
      for (const e of list) {
        const b = backends.get(e.type);
        const check = kind === "export" ? b?.checkExport : b?.checkImport;
        if (!b || !check) {
          const can = [...backends].filter(([, x]) => (kind === "export" ? x.checkExport : x.checkImport));
          throw new Error(
            `--${kind}-cache type=${e.type}: unknown cache type; this daemon can ${kind} ${can.map(([n]) => n).join(", ") || "none"}`,
          );
        }
        try {
          check(e.attrs);
        } catch (err) {
          throw new Error(`--${kind}-cache type=${e.type}: ${(err as Error).message}`);
        }
      }
    }
  }

  constructor(
    backends: Map<string, CacheBackend>,
    job: Job,
    entries: { exports: CacheEntry[]; imports: CacheEntry[]; session?: SessionAccess },
  ) {
    this.backends = backends;
    this.job = job;
    this.exports = entries.exports;
    this.imports = entries.imports;
    if (this.imports.length > 0) {
      const loaders = this.imports.map((i) =>
        this.backends.get(i.type)!.loader!(i.attrs, { session: entries.session }),
      );
      job.remoteCache = new ImportedCaches(loaders, {
        signal: job.signal,
        warn: (short) => job.progress.write({ warnings: [{ vertex: "", level: 1, short, detail: [] }] }),
      });
    }
  }

  /** The hook that puts an inline cache into image configs, when one was asked for. */
  inlineHook(): InlineCacheHook | undefined {
    if (!this.exports.some((e) => e.type === "inline")) return undefined;
    return async (ref, layers) => {
      const config = inlineCacheConfig(await this.exportable(), ref, layers);
      if (config.records.length === 0) return undefined;
      return { [INLINE_CACHE_FIELD]: Buffer.from(JSON.stringify(config)).toString("base64") };
    };
  }

  private exportable(): Promise<ExportableVertex[]> {
    this.vertices ??= this.job.exportable();
    return this.vertices;
  }

  /**
   * Writes every export but inline, each shown as a step; a failure fails the build unless the
   * entry says ignore-error=true (then it is a warning).
   */
  async exportAll(
    result: FrontendResult,
    ctx: { session?: SessionAccess; signal: AbortSignal },
  ): Promise<void> {
    const written = this.exports.filter((e) => e.type !== "inline");
    if (written.length === 0) return;
    const results = [
      ...(result.ref ? [result.ref] : []),
      ...Object.values(result.refs ?? {}).filter((r) => r !== undefined),
    ] as ImmutableRef[];
    const source: CacheSource = { vertices: await this.exportable(), results };
    for (const [i, e] of written.entries()) {
      const vertex = digestOf(`cache export ${this.job.id} ${i}`);
      const name = EXPORT_NAMES[e.type] ?? `exporting cache to ${e.type}`;
      const started = Date.now();
      const announce = (more: { completed?: number; error?: string }) =>
        this.job.progress.write({ vertexes: [{ digest: vertex, inputs: [], name, started, ...more }] });
      announce({});
      const log = new VertexLog(vertex, new Set([this.job.sink]));
      try {
        await this.backends.get(e.type)!.export!(source, e.attrs, {
          session: ctx.session,
          log,
          signal: ctx.signal,
        });
        announce({ completed: Date.now() });
      } catch (err) {
        const message = `exporting cache to ${e.type}: ${(err as Error).message}`;
        if (bool(e.attrs, "ignore-error", false) && !ctx.signal.aborted) {
          log.warn(`${message} (ignored: ignore-error=true)`);
          announce({ completed: Date.now() });
          continue;
        }
        announce({ completed: Date.now(), error: message });
        throw new Error(message, { cause: err });
      }
    }
  }

  /** Lets go of the results held for export. */
  async release(): Promise<void> {
    const vs = await this.vertices?.catch(() => []);
    for (const v of vs ?? []) for (const r of v.refs) await r.release().catch(() => {});
  }
}

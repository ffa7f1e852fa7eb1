// Assembling the daemon: one state root, one SQLite database, the worker stack (content store,
// snapshotter, cache manager, runc executor, sources), the solver, the frontends and exporters,
// the session manager, and the gRPC listeners. Every component is opened here and closed in
// reverse order; opening repairs whatever a crash left behind.
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { CacheManager } from "../cache/manager.ts";
import { defaultGcPolicies } from "../cache/prune.ts";
import type { GcPolicy } from "../cache/types.ts";
import { ContentStore } from "../content/store.ts";
import { RuncExecutor } from "../executor/runc.ts";
import type { Exporter } from "../exporter/types.ts";
import type { Frontend } from "../frontend/types.ts";
import type { CacheBackend } from "../remotecache/index.ts";
import { hostPlatform } from "../llb/vertex.ts";
import { Control } from "../proto/gen/moby/buildkit/v1/control_pb.ts";
import { SessionManager } from "../session/manager.ts";
import { openSnapshotter } from "../snapshot/index.ts";
import { CacheRecords } from "../solver/records.ts";
import { Solver } from "../solver/solver.ts";
import { GitFetcher } from "../source/git/index.ts";
import { HttpFetcher } from "../source/http/index.ts";
import { RegistryClient } from "../source/registry/index.ts";
import { type Logger, logger } from "../util/log.ts";
import { GitSource } from "../worker/sources/git.ts";
import { HttpSource } from "../worker/sources/http.ts";
import { ImageSource } from "../worker/sources/image.ts";
import { LocalSource } from "../worker/sources/local.ts";
import { OCILayoutSource } from "../worker/sources/oci-layout.ts";
import { SourceRegistry } from "../worker/sources/registry.ts";
import { OCIWorker } from "../worker/worker.ts";
import type { DaemonConfig } from "./config.ts";
import { Controller } from "./controller.ts";
import { type Server, startServer } from "./server.ts";

export const VERSION = "0.1.0-dev";

/** Extension points: what the daemon registers besides the built-in pieces. */
export interface Plugins {
  frontends?: Record<string, (d: DaemonParts) => Frontend>;
  exporters?: Record<string, (d: DaemonParts) => Exporter>;
  /** Cache import/export types (`--export-cache type=...`, `--import-cache type=...`). */
  cacheBackends?: Record<string, (d: DaemonParts) => CacheBackend>;
  sources?: (d: DaemonParts, registry: SourceRegistry) => void;
}

/** The opened components, for plugins and tests. */
export interface DaemonParts {
  config: DaemonConfig;
  db: DatabaseSync;
  content: ContentStore;
  cache: CacheManager;
  worker: OCIWorker;
  solver: Solver;
  registry: RegistryClient;
  /** docker-image sources; also unpacks imported cache layers (one chain-id table for both). */
  images: ImageSource;
  sessions: SessionManager;
  log: Logger;
}

export interface Daemon {
  parts: DaemonParts;
  controller: Controller;
  server: Server;
  /** Drains running builds (up to `deadlineMs`), then closes everything. */
  close(opts?: { deadlineMs?: number }): Promise<void>;
}

const plugins: Plugins[] = [];

/** Registers frontends, exporters or sources for every daemon started afterwards. */
export function registerPlugins(p: Plugins): void {
  plugins.push(p);
}

export async function startDaemon(config: DaemonConfig, opts: { log?: Logger } = {}): Promise<Daemon> {
  const log = opts.log ?? logger({ component: "buildd" });
  const root = config.root;
  await mkdir(root, { recursive: true, mode: 0o711 });
  const undo: (() => Promise<void> | void)[] = [];
  try {
    const db = new DatabaseSync(join(root, "metadata.db"));
    db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    undo.push(() => db.close());

    const content = await ContentStore.open({ root: join(root, "content"), db });
    const quiet = {
      info: (msg: string, f?: Record<string, unknown>) => log.info(msg, f),
      warn: (msg: string, f?: Record<string, unknown>) => log.warn(msg, f),
    };
    const snapshotter = await openSnapshotter({
      root: join(root, "snapshots"),
      db,
      driver: config.worker.oci.snapshotter,
      log: quiet,
    });
    undo.push(() => snapshotter.close());
    const gcPolicies = await resolveGcPolicies(config, root);
    const cache = await CacheManager.open({
      root: join(root, "cache"),
      db,
      snapshotter,
      gcPolicies,
      log: quiet,
    });
    undo.push(() => cache.close());
    const allowInsecure = config.insecureEntitlements.includes("security.insecure");
    const executor = await RuncExecutor.open({ root: join(root, "executor"), allowInsecure });
    undo.push(() => executor.close());
    const registry = new RegistryClient({ hosts: config.registry, store: content });
    undo.push(() => registry.close());
    const git = await GitFetcher.open(join(root, "git"));
    const http = new HttpFetcher({ store: content, db });
    await mkdir(join(root, "mnt"), { recursive: true });

    const images = new ImageSource(registry, db);
    const sources = new SourceRegistry()
      .register("docker-image", images)
      .register("oci-layout", new OCILayoutSource(images))
      .register("git", new GitSource(git))
      .register("http", new HttpSource(http))
      .register("https", new HttpSource(http))
      .register("local", new LocalSource());
    const platform = hostPlatform();
    const worker = new OCIWorker({
      id: `${hostname()}-oci`,
      cache,
      content,
      executor,
      sources,
      mountRoot: join(root, "mnt"),
      labels: {
        "org.mobyproject.buildkit.worker.executor": "oci",
        "org.mobyproject.buildkit.worker.snapshotter": snapshotter.driver,
        "org.mobyproject.buildkit.worker.hostname": hostname(),
        "org.mobyproject.buildkit.worker.network": config.worker.oci.networkMode,
        "org.mobyproject.buildkit.worker.oci.process-mode": "sandbox",
      },
      platforms: [platform],
      defaultNetwork: config.worker.oci.networkMode,
      allowInsecure,
      allowHostNetwork: true,
    });
    const solver = new Solver({
      worker,
      records: new CacheRecords(db),
      maxParallelism: config.worker.oci.maxParallelism,
    });
    cache.onRemove((id) => solver.records.deleteRef(id));
    const sessions = new SessionManager();
    undo.push(() => sessions.closeAll("the daemon is shutting down"));

    const parts: DaemonParts = {
      config,
      db,
      content,
      cache,
      worker,
      solver,
      registry,
      images,
      sessions,
      log,
    };
    const frontends = new Map<string, Frontend>();
    const exporters = new Map<string, Exporter>();
    const cacheBackends = new Map<string, CacheBackend>();
    for (const p of plugins) {
      for (const [name, make] of Object.entries(p.frontends ?? {})) frontends.set(name, make(parts));
      for (const [name, make] of Object.entries(p.exporters ?? {})) exporters.set(name, make(parts));
      for (const [name, make] of Object.entries(p.cacheBackends ?? {})) cacheBackends.set(name, make(parts));
      p.sources?.(parts, sources);
    }
    const controller = new Controller({
      solver,
      worker,
      cache,
      sessions,
      frontends,
      exporters,
      cacheBackends,
      gcPolicies,
      log,
      allowedEntitlements: config.insecureEntitlements,
      version: VERSION,
      resolveImageConfig: (ref, o) =>
        registry.resolveImageConfig(ref, { platform: o.platform, signal: o.signal }),
    });
    const server = await startServer({
      addresses: config.grpc.address,
      tls: config.grpc.tls && (await readTLS(config.grpc.tls)),
      routes: (r) => r.service(Control, controller.service()),
      onError: (e: unknown) => log.warn("request failed", { error: e }),
    });
    const stopGc = config.worker.oci.gc ? cache.startGcTimer(30 * 60_000) : () => {};
    log.info("buildd started", {
      version: VERSION,
      root,
      addresses: server.listeners.map((l) => l.address),
      snapshotter: snapshotter.driver,
      platform: `${platform.os}/${platform.architecture}`,
    });

    let closing: Promise<void> | undefined;
    return {
      parts,
      controller,
      server,
      close: (o = {}) => {
        closing ??= (async () => {
          const drained = await controller.drain(o.deadlineMs ?? 30_000);
          if (!drained) log.warn("builds still running at the shutdown deadline; cancelling them");
          stopGc();
          sessions.closeAll("the daemon is shutting down");
          await server.close({ graceMs: 2_000 });
          controller.jobs.close();
          for (const f of undo.reverse()) await f();
          log.info("buildd stopped");
        })();
        return closing;
      },
    };
  } catch (e) {
    for (const f of undo.reverse()) await Promise.resolve(f()).catch(() => {});
    throw e;
  }
}

/** The TLS files named by the config, read (a bad path is a start-up error naming the file). */
async function readTLS(t: {
  cert: string;
  key: string;
  ca?: string;
}): Promise<{ cert: Buffer; key: Buffer; ca?: Buffer }> {
  const { readFile } = await import("node:fs/promises");
  const read = (what: string, path: string) =>
    readFile(path).catch((e: Error) => {
      throw new Error(`reading the TLS ${what} ${path}: ${e.message}`);
    });
  return {
    cert: await read("certificate", t.cert),
    key: await read("key", t.key),
    ca: t.ca ? await read("CA certificate", t.ca) : undefined,
  };
}

/** The configured GC policies, or BuildKit's four defaults sized for the disk holding root. */
async function resolveGcPolicies(config: DaemonConfig, root: string): Promise<GcPolicy[]> {
  const configured = config.worker.oci.gcpolicy;
  if (configured && configured.length > 0) return configured;
  const { statfs } = await import("node:fs/promises");
  const st = await statfs(root);
  return defaultGcPolicies(st.blocks * st.bsize);
}

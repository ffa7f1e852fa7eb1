// Assembling the daemon: one state root, one SQLite database, the workers (the runc "oci" worker:
// local snapshotter, cache manager, runc executor; the containerd worker: containerd's snapshots
// and tasks, state under root/containerd/<namespace>), their sources, the solver, the frontends
// and exporters, the session manager, and the gRPC listeners. Every component is opened here and
// closed in reverse order; opening repairs whatever a crash left behind.
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { CacheManager } from "../cache/manager.ts";
import { defaultGcPolicies } from "../cache/prune.ts";
import type { GcPolicy } from "../cache/types.ts";
import type { GCPolicyConfig } from "./config.ts";
import { ContentStore } from "../content/store.ts";
import { RuncExecutor } from "../executor/runc.ts";
import type { Exporter } from "../exporter/types.ts";
import type { Frontend } from "../frontend/types.ts";
import { hostPlatform, parsePlatform } from "../llb/vertex.ts";
import type { CacheBackend } from "../remotecache/index.ts";
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
import type { ExportedImage } from "../worker/containerd/images.ts";
import { type ContainerdWorker, openContainerdWorker } from "../worker/containerd/worker.ts";
import { WorkerSet } from "./workers.ts";
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
  /** The default worker's cache. */
  cache: CacheManager;
  /** The default worker (the first of `workers`). */
  worker: OCIWorker;
  /** Every worker, the default first; builds pick others by LLB constraints. */
  workers: OCIWorker[];
  /** Every worker's cache, in the order of `workers`. */
  caches: CacheManager[];
  /** The containerd worker, when it runs. */
  containerd?: ContainerdWorker;
  /** Registers an image the image exporter stored by name (in containerd, when it runs). */
  onImageStored?: (name: string, image: ExportedImage, signal: AbortSignal) => Promise<void>;
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
    const allowInsecure = config.insecureEntitlements.includes("security.insecure");
    const registry = new RegistryClient({ hosts: config.registry, store: content });
    undo.push(() => registry.close());
    const git = await GitFetcher.open(join(root, "git"));
    const http = new HttpFetcher({ store: content, db });
    await mkdir(join(root, "mnt"), { recursive: true });
    // Each worker has sources of its own: the image source keeps its chain-id table of unpacked
    // layers in the worker's database, beside the snapshots it names.
    const registries: SourceRegistry[] = [];
    const imagesByDb = new Map<DatabaseSync, ImageSource>();
    const sourcesFor = (workerDb: DatabaseSync) => {
      const images = new ImageSource(registry, workerDb);
      imagesByDb.set(workerDb, images);
      const r = new SourceRegistry()
        .register("docker-image", images)
        .register("oci-layout", new OCILayoutSource(images))
        .register("git", new GitSource(git))
        .register("http", new HttpSource(http))
        .register("https", new HttpSource(http))
        .register("local", new LocalSource());
      registries.push(r);
      return r;
    };
    const platform = hostPlatform();
    const workers: OCIWorker[] = [];
    const gcByWorker = new Map<OCIWorker, { policies: GcPolicy[]; timer: boolean }>();

    // containerd first: when it is unreachable, the fallback decides whether the runc worker runs.
    let containerd: ContainerdWorker | undefined;
    const ctdConfig = config.worker.containerd;
    if (ctdConfig.enabled) {
      const gcPolicies = await resolveGcPolicies(ctdConfig.gcpolicy, root);
      try {
        containerd = await openContainerdWorker({
          id: `${hostname()}-containerd`,
          address: ctdConfig.address,
          namespace: ctdConfig.namespace,
          snapshotter: ctdConfig.snapshotter,
          root: join(root, "containerd", ctdConfig.namespace),
          content,
          sources: sourcesFor,
          gcPolicies,
          platforms: ctdConfig.platforms.length > 0 ? ctdConfig.platforms.map(parsePlatform) : [platform],
          defaultNetwork: ctdConfig.networkMode,
          runcRoot: ctdConfig.runcRoot,
          allowInsecure,
          allowHostNetwork: true,
          log: quiet,
        });
        undo.push(() => containerd?.close());
        gcByWorker.set(containerd.worker, { policies: gcPolicies, timer: ctdConfig.gc });
      } catch (e) {
        if (ctdConfig.fallback !== "oci") {
          throw new Error(
            `${(e as Error).message}; start containerd, correct worker.containerd.address, or set worker.containerd.fallback = "oci" to build with the runc worker when containerd is away`,
            { cause: e },
          );
        }
        log.warn(
          "containerd is not reachable; running the runc (oci) worker instead (worker.containerd.fallback)",
          {
            address: ctdConfig.address,
            error: (e as Error).message,
          },
        );
      }
    }
    if (config.worker.oci.enabled || (ctdConfig.enabled && !containerd)) {
      const snapshotter = await openSnapshotter({
        root: join(root, "snapshots"),
        db,
        driver: config.worker.oci.snapshotter,
        log: quiet,
      });
      undo.push(() => snapshotter.close());
      const gcPolicies = await resolveGcPolicies(config.worker.oci.gcpolicy, root);
      const cache = await CacheManager.open({
        root: join(root, "cache"),
        db,
        snapshotter,
        gcPolicies,
        log: quiet,
      });
      undo.push(() => cache.close());
      const executor = await RuncExecutor.open({ root: join(root, "executor"), allowInsecure });
      undo.push(() => executor.close());
      const oci = new OCIWorker({
        id: `${hostname()}-oci`,
        cache,
        content,
        executor,
        sources: sourcesFor(db),
        mountRoot: join(root, "mnt"),
        labels: {
          "org.mobyproject.buildkit.worker.executor": "oci",
          "org.mobyproject.buildkit.worker.snapshotter": snapshotter.driver,
          "org.mobyproject.buildkit.worker.hostname": hostname(),
          "org.mobyproject.buildkit.worker.network": config.worker.oci.networkMode,
          "org.mobyproject.buildkit.worker.oci.process-mode": "sandbox",
        },
        platforms:
          config.worker.oci.platforms.length > 0
            ? config.worker.oci.platforms.map(parsePlatform)
            : [platform],
        defaultNetwork: config.worker.oci.networkMode,
        allowInsecure,
        allowHostNetwork: true,
      });
      // The runc worker is the default when it runs, as BuildKit's oci worker is.
      workers.push(oci);
      gcByWorker.set(oci, { policies: gcPolicies, timer: config.worker.oci.gc });
    }
    if (containerd) workers.push(containerd.worker);
    if (workers.length === 0) {
      throw new Error("no worker is enabled: set worker.oci.enabled or worker.containerd.enabled to true");
    }
    const worker = workers[0]!;
    const defaultImages = imagesByDb.get(containerd && worker === containerd.worker ? containerd.db : db)!;
    const cache = worker.cache;
    const caches = workers.map((w) => w.cache);
    const solver = new Solver({
      worker: workers.length === 1 ? worker : new WorkerSet(workers),
      records: new CacheRecords(db),
      maxParallelism:
        worker === containerd?.worker
          ? (ctdConfig.maxParallelism ?? config.worker.oci.maxParallelism)
          : config.worker.oci.maxParallelism,
    });
    for (const c of caches) c.onRemove((id) => solver.records.deleteRef(id));
    const sessions = new SessionManager();
    undo.push(() => sessions.closeAll("the daemon is shutting down"));

    const ctdImages = containerd?.images;
    const parts: DaemonParts = {
      config,
      db,
      content,
      cache,
      worker,
      workers,
      caches,
      containerd,
      onImageStored: ctdImages ? (name, image, signal) => ctdImages.register(name, image, signal) : undefined,
      solver,
      registry,
      images: defaultImages,
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
      for (const r of registries) p.sources?.(parts, r);
    }
    const controller = new Controller({
      solver,
      worker,
      cache,
      workers: workers.map((w) => ({ worker: w, cache: w.cache, gcPolicies: gcByWorker.get(w)!.policies })),
      sessions,
      frontends,
      exporters,
      cacheBackends,
      gcPolicies: gcByWorker.get(worker)!.policies,
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
    const gcTimers = workers
      .filter((w) => gcByWorker.get(w)!.timer)
      .map((w) => w.cache.startGcTimer(30 * 60_000));
    const stopGc = () => {
      for (const stop of gcTimers) stop();
    };
    log.info("buildd started", {
      version: VERSION,
      root,
      addresses: server.listeners.map((l) => l.address),
      workers: workers.map(
        (w) =>
          `${w.id} (${w.labels["org.mobyproject.buildkit.worker.executor"]}, ${w.labels["org.mobyproject.buildkit.worker.snapshotter"]})`,
      ),
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
async function resolveGcPolicies(
  configured: GCPolicyConfig[] | undefined,
  root: string,
): Promise<GcPolicy[]> {
  if (configured && configured.length > 0) return configured;
  const { statfs } = await import("node:fs/promises");
  const st = await statfs(root);
  return defaultGcPolicies(st.blocks * st.bsize);
}

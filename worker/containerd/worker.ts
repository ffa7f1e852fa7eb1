// The containerd worker: the OCI worker's ops, cache manager and sources, on containerd's
// snapshots (ContainerdSnapshotter) and tasks (RuncExecutor with ContainerdRuntime). Everything
// of buildd's own (the SQLite record of snapshots and cache refs, the executor's tmpfs, scratch
// mounts) lives in one state dir per worker; layers and containers live in containerd, in one
// namespace, held by leases.
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { CacheManager } from "../../cache/manager.ts";
import type { GcPolicy } from "../../cache/types.ts";
import type { ContentStore } from "../../content/store.ts";
import { RuncExecutor } from "../../executor/runc.ts";
import type { Logger } from "../../snapshot/types.ts";
import type { SourceRegistry } from "../sources/registry.ts";
import { OCIWorker } from "../worker.ts";
import { ContainerdClient } from "./client.ts";
import { ContainerdImages } from "./images.ts";
import { ContainerdRuntime } from "./runtime.ts";
import { ContainerdSnapshotter } from "./snapshotter.ts";

/** BuildKit's worker label names. */
export const LABELS = {
  executor: "org.mobyproject.buildkit.worker.executor",
  snapshotter: "org.mobyproject.buildkit.worker.snapshotter",
  hostname: "org.mobyproject.buildkit.worker.hostname",
  network: "org.mobyproject.buildkit.worker.network",
  namespace: "org.mobyproject.buildkit.worker.containerd.namespace",
  uuid: "org.mobyproject.buildkit.worker.containerd.uuid",
} as const;

export interface ContainerdWorkerOptions {
  id: string;
  /** containerd's gRPC socket. */
  address: string;
  namespace: string;
  /** containerd's snapshotter plugin; default overlayfs. */
  snapshotter?: string;
  /** This worker's state dir. */
  root: string;
  /** The daemon's blob store (pulled layers, exported images). */
  content: ContentStore;
  /** The worker's sources, given its database (sources keep per-worker records there). */
  sources(db: DatabaseSync): SourceRegistry;
  gcPolicies?: GcPolicy[];
  platforms?: { os: string; architecture: string; variant?: string }[];
  defaultNetwork?: "host" | "none";
  allowInsecure?: boolean;
  allowHostNetwork?: boolean;
  /** runc's state dir for the shim (tests keep it out of /run/containerd); default: the shim's own. */
  runcRoot?: string;
  log?: Logger;
}

/** An opened containerd worker and the parts the daemon needs besides the Worker itself. */
export interface ContainerdWorker {
  worker: OCIWorker;
  cache: CacheManager;
  snapshotter: ContainerdSnapshotter;
  client: ContainerdClient;
  /** Registers exported images in containerd's image store. */
  images: ContainerdImages;
  /** The worker's own database (snapshot and cache records). */
  db: DatabaseSync;
  close(): Promise<void>;
}

/**
 * Opens the containerd worker. Fails with an error naming containerd's socket when containerd
 * does not answer, before anything is created.
 */
export async function openContainerdWorker(opts: ContainerdWorkerOptions): Promise<ContainerdWorker> {
  const log = opts.log ?? { info: () => {}, warn: () => {} };
  const client = new ContainerdClient({ address: opts.address, namespace: opts.namespace });
  const undo: (() => Promise<void> | void)[] = [() => client.close()];
  try {
    let version: string;
    try {
      version = await client.ping();
    } catch (e) {
      throw new Error(`opening the containerd worker: ${(e as Error).message}`, { cause: e });
    }
    await mkdir(opts.root, { recursive: true, mode: 0o711 });
    const db = new DatabaseSync(join(opts.root, "metadata.db"));
    db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    undo.push(() => db.close());
    const snapshotter = await ContainerdSnapshotter.open({
      client,
      snapshotter: opts.snapshotter,
      db,
      root: join(opts.root, "snapshots"),
      log,
    });
    undo.push(() => snapshotter.close());
    const cache = await CacheManager.open({
      root: join(opts.root, "cache"),
      db,
      snapshotter,
      gcPolicies: opts.gcPolicies,
      log,
    });
    undo.push(() => cache.close());
    const executor = await RuncExecutor.open({
      root: join(opts.root, "executor"),
      allowInsecure: opts.allowInsecure,
      runtime: new ContainerdRuntime({
        client,
        workerId: snapshotter.instance,
        runcRoot: opts.runcRoot,
        log,
      }),
    });
    undo.push(() => executor.close());
    await mkdir(join(opts.root, "mnt"), { recursive: true });
    const network = opts.defaultNetwork ?? "host";
    const worker = new OCIWorker({
      id: opts.id,
      cache,
      content: opts.content,
      executor,
      sources: opts.sources(db),
      mountRoot: join(opts.root, "mnt"),
      labels: {
        [LABELS.executor]: "containerd",
        [LABELS.snapshotter]: snapshotter.snapshotter,
        [LABELS.hostname]: hostname(),
        [LABELS.network]: network,
        [LABELS.namespace]: opts.namespace,
        [LABELS.uuid]: snapshotter.instance,
      },
      platforms: opts.platforms,
      defaultNetwork: network,
      allowInsecure: opts.allowInsecure,
      allowHostNetwork: opts.allowHostNetwork,
    });
    log.info("containerd worker opened", {
      address: client.address,
      namespace: opts.namespace,
      snapshotter: snapshotter.snapshotter,
      containerd: version,
    });
    let closing: Promise<void> | undefined;
    return {
      worker,
      cache,
      snapshotter,
      client,
      images: new ContainerdImages(client, opts.content),
      db,
      close: () => {
        closing ??= (async () => {
          for (const f of undo.reverse()) await f();
        })();
        return closing;
      },
    };
  } catch (e) {
    for (const f of undo.reverse()) await Promise.resolve(f()).catch(() => {});
    throw e;
  }
}

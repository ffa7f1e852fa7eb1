// A whole worker stack in a temporary dir for tests: database, content store, snapshotter, cache
// manager, executor, the OCI worker and a solver on top, of either kind: "oci" (local overlay
// snapshots, runc) or "containerd" (a private containerd's snapshots and tasks, see
// test/containerd.ts). Bases are made from real files (a busybox rootfs) and reach LLB through a
// `test-ref://ID` source. `forEachWorker` declares a suite once per kind, so the same tests run
// against both workers.
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, describe, type TestContext } from "node:test";
import { CacheManager } from "../cache/manager.ts";
import type { ImmutableRef } from "../cache/types.ts";
import { ContentStore } from "../content/store.ts";
import { RuncExecutor } from "../executor/runc.ts";
import "../llb/index.ts";
import type { State } from "../llb/index.ts";
import { State as LLBState } from "../llb/state.ts";
import { type MarshalContext, type OpOptions, Vertex } from "../llb/vertex.ts";
import type { Op } from "../proto/gen/pb/ops_pb.ts";
import { emptyStatus, type SolveStatus } from "../progress/types.ts";
import { openSnapshotter, withMounted } from "../snapshot/index.ts";
import type { SnapshotterDriver } from "../snapshot/types.ts";
import { CacheRecords } from "../solver/records.ts";
import { type Job, Solver } from "../solver/solver.ts";
import { makeBusyboxRootfs } from "../test/busybox.ts";
import { startContainerd, type TestContainerd } from "../test/containerd.ts";
import { digestOf } from "../util/digest.ts";
import { RegistryClient } from "../source/registry/index.ts";
import { GitFetcher } from "../source/git/index.ts";
import { HttpFetcher } from "../source/http/index.ts";
import { GitSource } from "./sources/git.ts";
import { HttpSource } from "./sources/http.ts";
import { ImageSource } from "./sources/image.ts";
import { LocalSource } from "./sources/local.ts";
import { SourceRegistry } from "./sources/registry.ts";
import type { WorkerRef } from "./types.ts";
import { OCIWorker } from "./worker.ts";
import { openContainerdWorker } from "./containerd/worker.ts";

const quiet = { info: () => {}, warn: () => {} };

/** Which worker a test stack is made of. */
export type WorkerKind = "oci" | "containerd";

/** Every kind, in the order suites run them. */
export const WORKER_KINDS: readonly WorkerKind[] = ["oci", "containerd"];

/** Options for a test worker. */
export type TestWorkerOptions = {
  kind?: WorkerKind;
  driver?: SnapshotterDriver;
  allowInsecure?: boolean;
  root?: string;
};

let sharedContainerd: Promise<TestContainerd> | undefined;

/**
 * The containerd test workers of this process use (started on first use; each test worker has a
 * namespace of its own). `stopTestContainerd` stops it; `forEachWorker` does that after its suite.
 */
export function testContainerd(): Promise<TestContainerd> {
  sharedContainerd ??= startContainerd();
  return sharedContainerd;
}

/** Stops the shared test containerd, if one was started. */
export async function stopTestContainerd(): Promise<void> {
  const c = sharedContainerd;
  sharedContainerd = undefined;
  if (c) await (await c.catch(() => undefined))?.stop();
}

/**
 * Declares `suite` once per worker kind, each in a `describe` named after it; the suite's tests
 * open their worker with `open(t, opts)`. The containerd suite stops its containerd afterwards.
 */
export function forEachWorker(
  suite: (
    open: (t: TestContext, opts?: Omit<TestWorkerOptions, "kind">) => Promise<TestWorker>,
    kind: WorkerKind,
  ) => void,
): void {
  for (const kind of WORKER_KINDS) {
    describe(`${kind} worker`, () => {
      if (kind === "containerd") after(() => stopTestContainerd());
      suite((t, opts = {}) => openTestWorker(t, { ...opts, kind }), kind);
    });
  }
}

export interface TestWorker {
  kind: WorkerKind;
  root: string;
  /** Directories whose data no mount may show once a build is over (scratch mounts, snapshots). */
  mountRoots: string[];
  worker: OCIWorker;
  solver: Solver;
  cache: CacheManager;
  sources: SourceRegistry;
  /** A ref holding a busybox rootfs, made once per test worker. */
  busybox(): Promise<ImmutableRef>;
  /** A committed ref whose content `fill` writes into an empty directory. */
  refFrom(fill: (dir: string) => Promise<void>): Promise<ImmutableRef>;
  /** An LLB state for an existing ref. */
  stateOf(ref: ImmutableRef): State;
  /** Runs a build; returns the result (call `read`/`release`) and the progress. */
  build(
    s: State,
    opts?: { noCache?: boolean; signal?: AbortSignal; session?: Job["session"] },
  ): Promise<BuildResult>;
  close(): Promise<void>;
}

export interface BuildResult {
  ref: ImmutableRef | undefined;
  progress: SolveStatus;
  /** Mounts the result read-only and runs `fn` on it. */
  read<T>(fn: (dir: string) => Promise<T>): Promise<T>;
}

export async function openTestWorker(t: TestContext, opts: TestWorkerOptions = {}): Promise<TestWorker> {
  const kind = opts.kind ?? "oci";
  const root = opts.root ?? (await mkdtemp(join(tmpdir(), "buildd-worker-")));
  const db = new DatabaseSync(join(root, "metadata.db"));
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
  const content = await ContentStore.open({ root: join(root, "content"), db });
  const registry = new RegistryClient({ store: content });
  const git = await GitFetcher.open(join(root, "git"));
  const sourcesFor = (workerDb: DatabaseSync) => {
    const http = new HttpFetcher({ store: content, db: workerDb });
    return new SourceRegistry()
      .register("docker-image", new ImageSource(registry, workerDb))
      .register("git", new GitSource(git))
      .register("http", new HttpSource(http))
      .register("https", new HttpSource(http))
      .register("local", new LocalSource())
      .register("test-ref", {
        resolve: (w, _v, src) => {
          const id = src.identifier.slice("test-ref://".length);
          return {
            cacheMap: async () => ({ digest: digestOf(`test-ref:${id}`), deps: [] }),
            exec: async () => [w.cache.get(id)],
          };
        },
      });
  };
  const closers: (() => Promise<void> | void)[] = [];
  let worker: OCIWorker;
  let mountRoots: string[];
  if (kind === "containerd") {
    const ctd = await testContainerd();
    const cw = await openContainerdWorker({
      id: "test-containerd",
      address: ctd.address,
      namespace: `test-${randomBytes(6).toString("hex")}`,
      root: join(root, "containerd"),
      content,
      sources: sourcesFor,
      runcRoot: ctd.runcRoot,
      defaultNetwork: "none",
      allowInsecure: opts.allowInsecure,
      log: quiet,
    });
    closers.push(() => cw.close());
    worker = cw.worker;
    mountRoots = [cw.worker.mountRoot, join(ctd.dir, "root")];
  } else {
    const sn = await openSnapshotter({
      root: join(root, "snapshots"),
      db,
      driver: opts.driver ?? "auto",
      log: quiet,
    });
    const cache = await CacheManager.open({ root: join(root, "cache"), db, snapshotter: sn, log: quiet });
    const executor = await RuncExecutor.open({
      root: join(root, "executor"),
      allowInsecure: opts.allowInsecure,
    });
    closers.push(
      () => executor.close(),
      () => cache.close(),
      () => sn.close(),
    );
    await mkdir(join(root, "mnt"), { recursive: true });
    worker = new OCIWorker({
      id: "test",
      cache,
      content,
      executor,
      sources: sourcesFor(db),
      mountRoot: join(root, "mnt"),
      allowInsecure: opts.allowInsecure,
      defaultNetwork: "none",
    });
    mountRoots = [join(root, "mnt"), join(root, "snapshots")];
  }
  const cache = worker.cache;
  const sources = worker.sources;
  const solver = new Solver({ worker, records: new CacheRecords(db) });
  const held: WorkerRef[] = [];
  let bb: Promise<ImmutableRef> | undefined;
  let closed = false;

  const refFrom = async (fill: (dir: string) => Promise<void>) => {
    const m = await cache.newMutable(undefined, { description: "test base" });
    await withMounted(await m.mount(), fill, { base: worker.mountRoot });
    const ref = await m.commit();
    held.push(ref);
    return ref;
  };

  const tw: TestWorker = {
    kind,
    root,
    mountRoots,
    worker,
    solver,
    cache,
    sources,
    busybox: () => (bb ??= refFrom((dir) => makeBusyboxRootfs(dir).then(() => {}))),
    refFrom,
    stateOf: (ref) => testRefState(ref.id),
    build: async (s, o = {}) => {
      const job = solver.newJob({ id: `test-${Math.random().toString(36).slice(2)}`, ...o });
      const progress = emptyStatus();
      const reading = (async () => {
        for await (const b of job.progress.subscribe()) {
          progress.vertexes.push(...b.vertexes);
          progress.logs.push(...b.logs);
          progress.statuses.push(...b.statuses);
          progress.warnings.push(...b.warnings);
        }
      })();
      try {
        const r = (await job.solve(s.marshal().bytes)) as ImmutableRef | undefined;
        const ref = r?.clone();
        if (ref) held.push(ref);
        return {
          ref,
          progress,
          read: <T>(fn: (dir: string) => Promise<T>) => {
            if (!ref) throw new Error("the build has an empty result");
            return ref
              .mount({ readonly: true })
              .then((ms) => withMounted(ms, fn, { readonly: true, base: worker.mountRoot }));
          },
        };
      } finally {
        job.discard();
        await reading;
      }
    },
    close: async () => {
      if (closed) return;
      closed = true;
      for (const r of held.splice(0)) await r.release().catch(() => {});
      registry.close();
      for (const c of closers) await c();
      db.close();
      if (!opts.root) await rm(root, { recursive: true, force: true });
    },
  };
  t.after(() => tw.close());
  return tw;
}

/** An LLB source naming an existing ref of the test worker. */
export function testRefState(id: string): State {
  return sourceState(`test-ref://${id}`);
}

class RawSource extends Vertex {
  readonly inputs = [];
  private readonly identifier: string;
  constructor(identifier: string, o?: OpOptions) {
    super(o);
    this.identifier = identifier;
  }
  protected build(_ctx: MarshalContext): { op: Pick<Op, "op">; caps: string[]; withPlatform: boolean } {
    return {
      op: {
        op: { case: "source", value: { $typeName: "pb.SourceOp", identifier: this.identifier, attrs: {} } },
      },
      caps: [],
      withPlatform: false,
    };
  }
}

function sourceState(identifier: string): State {
  return new LLBState({ vertex: new RawSource(identifier), index: 0 });
}

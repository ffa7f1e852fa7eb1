// A whole worker stack in a temporary dir for tests: database, content store, snapshotter, cache
// manager, runc executor, the OCI worker and a solver on top. Bases are made from real files
// (a busybox rootfs) and reach LLB through a `test-ref://ID` source.
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { TestContext } from "node:test";
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

const quiet = { info: () => {}, warn: () => {} };

export interface TestWorker {
  root: string;
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

export async function openTestWorker(
  t: TestContext,
  opts: { driver?: SnapshotterDriver; allowInsecure?: boolean; root?: string } = {},
): Promise<TestWorker> {
  const root = opts.root ?? (await mkdtemp(join(tmpdir(), "buildd-worker-")));
  const db = new DatabaseSync(join(root, "metadata.db"));
  db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
  const content = await ContentStore.open({ root: join(root, "content"), db });
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
  await mkdir(join(root, "mnt"), { recursive: true });
  const registry = new RegistryClient({ store: content });
  const git = await GitFetcher.open(join(root, "git"));
  const http = new HttpFetcher({ store: content, db });
  const sources = new SourceRegistry()
    .register("docker-image", new ImageSource(registry, db))
    .register("git", new GitSource(git))
    .register("http", new HttpSource(http))
    .register("https", new HttpSource(http))
    .register("local", new LocalSource())
    .register("test-ref", {
      resolve: (w, v, src) => {
        const id = src.identifier.slice("test-ref://".length);
        return {
          cacheMap: async () => ({ digest: digestOf(`test-ref:${id}`), deps: [] }),
          exec: async () => [w.cache.get(id)],
        };
      },
    });
  const worker = new OCIWorker({
    id: "test",
    cache,
    content,
    executor,
    sources,
    mountRoot: join(root, "mnt"),
    allowInsecure: opts.allowInsecure,
    defaultNetwork: "none",
  });
  const solver = new Solver({ worker, records: new CacheRecords(db) });
  const held: WorkerRef[] = [];
  let bb: Promise<ImmutableRef> | undefined;
  let closed = false;

  const refFrom = async (fill: (dir: string) => Promise<void>) => {
    const m = await cache.newMutable(undefined, { description: "test base" });
    await withMounted(await m.mount(), fill, { base: join(root, "mnt") });
    const ref = await m.commit();
    held.push(ref);
    return ref;
  };

  const tw: TestWorker = {
    root,
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
              .then((ms) => withMounted(ms, fn, { readonly: true, base: join(root, "mnt") }));
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
      await executor.close();
      await cache.close();
      sn.close();
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

// The OCI worker: binds LLB ops to the cache manager, the snapshotter, the runc executor and the
// sources of one machine. The solver asks it for an OpSolver per op and for content checksums.
import { withMounted } from "../snapshot/index.ts";
import type { CacheManager } from "../cache/manager.ts";
import { CacheError, type ImmutableRef } from "../cache/types.ts";
import { contentChecksum, FileHashCache } from "../cache/contenthash/checksum.ts";
import type { ContentStore } from "../content/store.ts";
import type { Executor } from "../executor/types.ts";
import type { Digest } from "../util/digest.ts";
import { digestOf } from "../util/digest.ts";
import { CacheMounts } from "./cachemounts.ts";
import { BuildOp } from "./ops/build.ts";
import { ExecOp } from "./ops/exec.ts";
import { FileOp } from "./ops/file.ts";
import { DiffOp, MergeOp } from "./ops/merge.ts";
import type { SourceRegistry } from "./sources/registry.ts";
import type { ContentSelector, OpSolver, VertexOp, Worker, WorkerRef } from "./types.ts";

export interface OCIWorkerOptions {
  id: string;
  cache: CacheManager;
  content: ContentStore;
  executor: Executor;
  sources: SourceRegistry;
  /** Where the worker mounts things it reads (file ops, checksums); created by the daemon. */
  mountRoot: string;
  labels?: Record<string, string>;
  platforms?: { os: string; architecture: string; variant?: string }[];
  /** Network of ops that do not ask for one. */
  defaultNetwork?: "host" | "none";
  /** Whether ops may run with security=insecure (the daemon's entitlement). */
  allowInsecure?: boolean;
  /** Whether ops may ask for the host network explicitly. */
  allowHostNetwork?: boolean;
}

export class OCIWorker implements Worker {
  readonly id: string;
  readonly labels: Record<string, string>;
  readonly platforms: { os: string; architecture: string; variant?: string }[];
  readonly cache: CacheManager;
  readonly content: ContentStore;
  readonly executor: Executor;
  readonly sources: SourceRegistry;
  readonly mountRoot: string;
  readonly cacheMounts: CacheMounts;
  readonly defaultNetwork: "host" | "none";
  readonly allowInsecure: boolean;
  readonly allowHostNetwork: boolean;
  private readonly hashes = new FileHashCache();

  constructor(opts: OCIWorkerOptions) {
    this.id = opts.id;
    this.labels = opts.labels ?? {};
    this.platforms = opts.platforms ?? [];
    this.cache = opts.cache;
    this.content = opts.content;
    this.executor = opts.executor;
    this.sources = opts.sources;
    this.mountRoot = opts.mountRoot;
    this.cacheMounts = new CacheMounts(opts.cache, opts.mountRoot);
    this.defaultNetwork = opts.defaultNetwork ?? "host";
    this.allowInsecure = opts.allowInsecure ?? false;
    this.allowHostNetwork = opts.allowHostNetwork ?? true;
  }

  resolveOp(v: VertexOp): OpSolver {
    const op = v.op.op;
    switch (op.case) {
      case "exec":
        return new ExecOp(this, v, op.value);
      case "file":
        return new FileOp(this, v, op.value);
      case "merge":
        return new MergeOp(this, v, op.value);
      case "diff":
        return new DiffOp(this, v, op.value);
      case "build":
        return new BuildOp(this, v, op.value);
      case "source":
        return this.sources.resolve(this, v, op.value);
      default:
        throw new Error(
          `${v.name}: this worker cannot run an op without a known body (${op.case ?? "none"})`,
        );
    }
  }

  async loadRef(id: string): Promise<WorkerRef | undefined> {
    try {
      return this.cache.get(id);
    } catch (e) {
      if (e instanceof CacheError && e.code === "not_found") return undefined;
      throw e;
    }
  }

  /** Memoized per result and selector in the record's metadata: a warm build reads no files. */
  async contentChecksum(ref: WorkerRef, selector: ContentSelector): Promise<Digest> {
    const r = ref as ImmutableRef;
    const key = `contenthash:${digestOf(JSON.stringify(selector))}`;
    const known = r.getMeta<Digest>(key);
    if (known) return known;
    const sum = await withMounted(
      await r.mount({ readonly: true }),
      (dir) => contentChecksum(dir, selector, this.hashes),
      {
        readonly: true,
        inPlace: true,
        base: this.mountRoot,
      },
    );
    r.setMeta(key, sum);
    return sum;
  }
}

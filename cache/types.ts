// The cache manager's contract: counted refs over snapshots, their records, disk usage and GC.
import type { LayerInfo, Mount } from "../snapshot/types.ts";
import type { DiskSpace, Duration } from "./units.ts";

/** What a record holds, as BuildKit names it; prune without `all` keeps internal and frontend ones. */
export type RecordType =
  | "regular"
  | "internal"
  | "frontend"
  | "source.local"
  | "source.git.checkout"
  | "exec.cachemount";

/** How a record's snapshot was made: a layer on its parent, a merge of its parents, or a diff. */
export type RecordOp = "layer" | "merge" | "diff";

/** A record's persistent facts. */
export type RecordInfo = {
  id: string;
  mutable: boolean;
  op: RecordOp;
  /** Direct parents: the layer's parent, a merge's inputs in order, a diff's [lower?, upper]. */
  parents: string[];
  recordType: RecordType;
  description: string;
  createdAt: number;
  lastUsedAt: number | undefined;
  usageCount: number;
  /** Bytes of the record's own data when known (measured at commit). */
  size: number | undefined;
  /** The name of a persistent mutable ref (getMutableByKey). */
  key: string | undefined;
};

/** One line of disk usage, like BuildKit's UsageInfo. */
export type UsageInfo = {
  id: string;
  /** Bytes of its own data on disk; 0 for a mutable ref in use (it is changing). */
  size: number;
  mutable: boolean;
  /** Held by a ref handle, or the ancestor of something that is. */
  inUse: boolean;
  lastUsedAt: number | undefined;
  usageCount: number;
  createdAt: number;
  description: string;
  recordType: RecordType;
  /** Its layers are also shown by a merge or diff record (it is an input, or an ancestor of one). */
  shared: boolean;
  parents: string[];
};

/** Options for creating a record. */
export type RecordOptions = { description?: string; recordType?: RecordType };

/** A counted handle on an immutable record; release it when done. */
export interface ImmutableRef {
  readonly id: string;
  /** The record this one is a layer on, if any. */
  readonly parent: string | undefined;
  readonly parents: string[];
  /** Read-only mounts of the record's tree (the `readonly` option is accepted for symmetry). */
  mount(opts?: { readonly?: boolean }): Promise<Mount[]>;
  /** Its layers, bottom first, for exporters (see snapshot `LayerInfo`). */
  layers(): LayerInfo[];
  /** overlayfs: the directory holding exactly this record's own layer, when it is one layer. */
  diffDir(): string | undefined;
  size(): Promise<number>;
  info(): RecordInfo;
  /** Small persistent values kept with the record (JSON): checksums, blob digests. */
  getMeta<T = unknown>(key: string): T | undefined;
  setMeta(key: string, value: unknown): void;
  /** Another handle on the same record, released separately. */
  clone(): ImmutableRef;
  release(): Promise<void>;
}

/** A counted handle on a writable record. */
export interface MutableRef {
  readonly id: string;
  /** The persistent name, for refs from getMutableByKey. */
  readonly key: string | undefined;
  /** Writable mounts. */
  mount(): Promise<Mount[]>;
  /** Turns it into an immutable record (not for keyed refs); this handle is used up. */
  commit(): Promise<ImmutableRef>;
  size(): Promise<number>;
  info(): RecordInfo;
  getMeta<T = unknown>(key: string): T | undefined;
  setMeta(key: string, value: unknown): void;
  /** Releasing the last handle of an unkeyed mutable ref removes it. */
  release(): Promise<void>;
}

/** What prune removes; without space options, everything that matches. */
export type PruneOptions = {
  /** containerd-style filters: items are ORed, comma-separated selectors in one item ANDed. */
  filters?: string[];
  /** Include internal, frontend and shared records. */
  all?: boolean;
  /** Keep what was used within this long. */
  keepDuration?: Duration;
  /** Older name of reservedSpace (buildctl prune --keep-storage). */
  keepStorage?: DiskSpace;
  /** Never prune the cache below this size. */
  reservedSpace?: DiskSpace;
  /** Prune until the cache is at most this size. */
  maxUsedSpace?: DiskSpace;
  /** Prune until the disk has this much free space. */
  minFreeSpace?: DiskSpace;
};

/** One GC rule, shaped like buildkitd.toml's [[worker.oci.gcpolicy]]. */
export type GcPolicy = {
  all?: boolean;
  filters?: string[];
  keepDuration?: Duration;
  reservedSpace?: DiskSpace;
  maxUsedSpace?: DiskSpace;
  minFreeSpace?: DiskSpace;
  /** Older name of reservedSpace, as BuildKit migrates it. */
  keepBytes?: DiskSpace;
};

/** Why a cache operation was refused, for callers that branch on it. */
export type CacheErrorCode = "not_found" | "failed_precondition" | "invalid_argument" | "already_exists";

/** A refused cache operation, with a code callers can test. */
export class CacheError extends Error {
  readonly code: CacheErrorCode;
  constructor(code: CacheErrorCode, message: string) {
    super(message);
    this.name = "CacheError";
    this.code = code;
  }
}

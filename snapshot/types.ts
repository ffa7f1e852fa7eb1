// The snapshotter's contract: filesystem layers that can be prepared (writable), viewed (read-only),
// committed (immutable), stacked (merge) and compared (diff), and described as mounts.

/**
 * One filesystem mount, shaped like containerd's so a list can go to mount(8) (see `mountAll`) or
 * into an OCI runtime spec. Paths are absolute; bind options are like ["rbind", "ro"].
 */
export type Mount = { type: "bind" | "overlay" | "tmpfs"; source: string; options: string[] };

/** Which implementation stores the layers: kernel overlayfs, or full copies. */
export type SnapshotterDriver = "overlayfs" | "native";

/** active: writable, owned by one user; view: read-only; committed: immutable, can be a parent. */
export type SnapshotKind = "active" | "view" | "committed";

/** What a snapshot is made of: its own layer on a parent, a stack of other chains, or a difference. */
export type SnapshotOp = "layer" | "merge" | "diff";

/** Public facts about one snapshot. */
export type SnapshotInfo = {
  key: string;
  kind: SnapshotKind;
  op: SnapshotOp;
  /** The committed snapshot this one was prepared on, for layers. */
  parent?: string;
  /** The committed snapshots a merge or diff keeps alive. */
  inputs: string[];
  createdAt: number;
  updatedAt: number;
  labels: Record<string, string>;
};

/** Disk usage: bytes of allocated blocks (hard links counted once) and the number of inodes. */
export type Usage = { size: number; inodes: number };

/**
 * One layer of a committed snapshot, bottom first in `layers()`. On overlayfs `diffDir` holds exactly
 * this layer's changes with overlay whiteouts (0:0 char devices, `trusted.overlay.opaque` dirs). On
 * native there is none: the layer is what changed between the `lower` tree (absent: empty) and the
 * `upper` tree, both committed snapshot keys whose `mounts()` show them.
 */
export type LayerInfo = { key: string; diffDir?: string; lower?: string; upper: string };

/** Options for snapshot creation. */
export type CreateOptions = { labels?: Record<string, string> };

/** Filesystem layers, addressed by caller-chosen keys. Every method checks its arguments. */
export interface Snapshotter {
  readonly driver: SnapshotterDriver;
  readonly root: string;
  /** A writable snapshot on `parent` (a committed key); returns the mounts that show it. */
  prepare(key: string, parent?: string, opts?: CreateOptions): Promise<Mount[]>;
  /** A read-only snapshot of `parent`; cheap (no copy) on both drivers. */
  view(key: string, parent?: string, opts?: CreateOptions): Promise<Mount[]>;
  /** Mounts of any snapshot: writable for active ones, read-only otherwise. */
  mounts(key: string): Promise<Mount[]>;
  /** Turns active `key` into committed `name`; it must not be mounted any more. */
  commit(name: string, key: string, opts?: CreateOptions): Promise<Usage>;
  /** Removes a snapshot no other snapshot depends on. */
  remove(key: string): Promise<void>;
  /** Real disk usage of the snapshot's own data (its layer, or its copy on native). */
  usage(key: string): Promise<Usage>;
  stat(key: string): SnapshotInfo;
  list(): SnapshotInfo[];
  /** A committed snapshot showing the parents' layers stacked in order (first at the bottom). */
  merge(name: string, parents: string[], opts?: CreateOptions): Promise<Usage>;
  /** A committed snapshot holding `upper`'s changes relative to `lower` (absent: empty). */
  diff(name: string, lower: string | undefined, upper: string, opts?: CreateOptions): Promise<Usage>;
  /** The layers a committed snapshot is made of, bottom first, for exporters. */
  layers(key: string): LayerInfo[];
  /** Overlayfs: the directory holding exactly this layer's changes (committed layers only). */
  diffDir(key: string): string | undefined;
  /** Removes directories and mounts its metadata does not know; returns what it removed. */
  cleanup(): Promise<string[]>;
  close(): void;
}

/** Why a snapshot operation was refused, for callers that branch on it. */
export type SnapshotErrorCode = "not_found" | "already_exists" | "failed_precondition" | "invalid_argument";

/** A refused snapshot operation, with a code callers can test. */
export class SnapshotError extends Error {
  readonly code: SnapshotErrorCode;
  constructor(code: SnapshotErrorCode, message: string) {
    super(message);
    this.name = "SnapshotError";
    this.code = code;
  }
}

/** Named points where a test can stop the process (SIGKILL) to check crash recovery. */
export type Hooks = { at?: (point: string) => Promise<void> | void };

/** Structured log sink; components log what they decided and why. */
export type Logger = {
  info: (msg: string, fields?: Record<string, unknown>) => void;
  warn: (msg: string, fields?: Record<string, unknown>) => void;
};

/** Drops info, prints warnings as JSON lines on stderr. */
export const defaultLogger: Logger = {
  info: () => {},
  warn: (msg, fields) => {
    process.stderr.write(`${JSON.stringify({ level: "warn", msg, ...fields })}\n`);
  },
};

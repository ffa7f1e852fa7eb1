// The containerd snapshotter's local record of its snapshots: what the Snapshotter contract's
// synchronous questions (stat, list, layers) are answered from, kept in the worker's SQLite
// database (the `snapshot_*` tables the local drivers use, plus `containerd_snapshot_dirs`: the
// directory containerd writes a layer's changes to). containerd is asked nothing here.
import { randomBytes } from "node:crypto";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { type NewSnapshot, type SnapshotRow, SnapshotStore, transaction } from "../../snapshot/store.ts";
import { type LayerInfo, type Mount, SnapshotError, type SnapshotInfo } from "../../snapshot/types.ts";
import type { Mount as CtdMount } from "../../proto/gen/containerd/types/mount_pb.ts";

/** (lower, upper) snapshot ids whose changes, applied in order, make a snapshot (as native's). */
export type Pair = [number | null, number];

/** Local snapshot rows, with the layer directories containerd reported. */
export class SnapshotIndex {
  readonly db: DatabaseSync;
  private readonly store: SnapshotStore;
  private readonly getDir: StatementSync;
  private readonly putDir: StatementSync;
  private readonly delDir: StatementSync;

  constructor(db: DatabaseSync) {
    this.db = db;
    this.store = new SnapshotStore(db);
    db.exec(
      "CREATE TABLE IF NOT EXISTS containerd_snapshot_dirs (id INTEGER PRIMARY KEY, upper TEXT NOT NULL)",
    );
    this.getDir = db.prepare("SELECT upper FROM containerd_snapshot_dirs WHERE id = ?");
    this.putDir = db.prepare("INSERT OR REPLACE INTO containerd_snapshot_dirs (id, upper) VALUES (?, ?)");
    this.delDir = db.prepare("DELETE FROM containerd_snapshot_dirs WHERE id = ?");
  }

  /** This state's random id (made on first use): it names its snapshots and leases in containerd. */
  instance(): string {
    let id = this.store.config("containerd.instance");
    if (!id) {
      id = randomBytes(8).toString("hex");
      this.store.setConfig("containerd.instance", id);
    }
    return id;
  }

  /** Records which containerd snapshotter holds the snapshots; refuses another one while any exist. */
  bindSnapshotter(name: string, doing: string): void {
    const had = this.store.config("containerd.snapshotter");
    if (had && had !== name && this.store.all().length > 0) {
      throw new Error(
        `${doing}: its snapshots are in containerd's ${had} snapshotter, not ${name}; configure ${had} or start from an empty state dir`,
      );
    }
    this.store.setConfig("containerd.snapshotter", name);
  }

  byKey(key: string): SnapshotRow | undefined {
    return this.store.byKey(key);
  }

  byId(id: number): SnapshotRow | undefined {
    return this.store.byId(id);
  }

  all(): SnapshotRow[] {
    return this.store.all();
  }

  mustGet(key: string, doing: string): SnapshotRow {
    return this.store.mustGet(key, doing);
  }

  /** The committed row of `key`, or an error saying what was being done. */
  committed(key: string, doing: string): SnapshotRow {
    const row = this.store.mustGet(key, doing);
    if (row.kind !== "committed") {
      throw new SnapshotError(
        "failed_precondition",
        `${doing}: snapshot ${JSON.stringify(key)} is ${row.kind}, not committed`,
      );
    }
    return row;
  }

  /** Records a snapshot; the snapshots it is made from are rechecked in the same transaction. */
  insert(s: NewSnapshot, deps: number[], upper: string | undefined, doing: string): SnapshotRow {
    return transaction(this.db, () => {
      for (const id of [...(s.parentId === null ? [] : [s.parentId]), ...deps]) {
        if (!this.store.byId(id)) {
          throw new SnapshotError("not_found", `${doing}: a snapshot it is made from was removed meanwhile`);
        }
      }
      const row = this.store.insert(s, deps);
      if (upper) this.putDir.run(row.id, upper);
      return row;
    });
  }

  markCommitted(
    row: SnapshotRow,
    name: string,
    usage: { size: number; inodes: number },
    labels: Record<string, string>,
  ): void {
    transaction(this.db, () => this.store.markCommitted(row, name, { ...usage, whiteoutDirs: [] }, labels));
  }

  /** Removes a row no other row depends on (checked in the same transaction). */
  deleteUnused(row: SnapshotRow, doing: string): void {
    transaction(this.db, () => {
      const deps = this.store.dependents(row.id);
      if (deps.length > 0) {
        throw new SnapshotError(
          "failed_precondition",
          `${doing}: snapshots ${deps.map((d) => JSON.stringify(d)).join(", ")} depend on it; remove them first`,
        );
      }
      this.delete(row.id);
    });
  }

  delete(id: number): void {
    transaction(this.db, () => {
      this.store.delete(id);
      this.delDir.run(id);
    });
  }

  /** `ids` and every row that depends on one of them, transitively. */
  withDependents(ids: Iterable<number>): Set<number> {
    const out = new Set(ids);
    const queue = [...out];
    while (queue.length > 0) {
      const id = queue.pop()!;
      for (const key of this.store.dependents(id)) {
        const dep = this.store.byKey(key)!;
        if (!out.has(dep.id)) {
          out.add(dep.id);
          queue.push(dep.id);
        }
      }
    }
    return out;
  }

  /** The directory containerd writes this snapshot's own changes to, when known. */
  upperDir(id: number): string | undefined {
    return (this.getDir.get(id) as { upper: string } | undefined)?.upper;
  }

  /** The (lower, upper) pairs whose changes, applied in order, make the snapshot. */
  changesOf(row: SnapshotRow): Pair[] {
    if (row.changes !== null) return row.changes;
    const out: Pair[] = [];
    let cur = row;
    while (cur.parentId !== null) {
      const parent = this.store.byId(cur.parentId)!;
      out.unshift([parent.id, cur.id]);
      if (parent.changes !== null) return [...parent.changes, ...out];
      cur = parent;
    }
    out.unshift([null, cur.id]);
    return out;
  }

  info(row: SnapshotRow): SnapshotInfo {
    const keyOf = (id: number) => this.store.byId(id)?.key ?? `#${id}`;
    return {
      key: row.key,
      kind: row.kind,
      op: row.op,
      parent: row.parentId === null ? undefined : keyOf(row.parentId),
      inputs: this.store.deps(row.id).map(keyOf),
      createdAt: row.createdAt,
      updatedAt: row.updatedAt,
      labels: row.labels,
    };
  }

  /**
   * The layers of a committed snapshot, bottom first: its change pairs. A pair that is a layer on
   * its own parent gets `ownDiffDir` of it (overlayfs: exactly that layer's changes).
   */
  layers(row: SnapshotRow, ownDiffDir: (row: SnapshotRow) => string | undefined): LayerInfo[] {
    return this.changesOf(row).map(([l, u]) => {
      const urow = this.store.byId(u)!;
      const info: LayerInfo = {
        key: urow.key,
        lower: l === null ? undefined : this.store.byId(l)!.key,
        upper: urow.key,
      };
      const own = ownDiffDir(urow);
      if (own && urow.parentId === l) info.diffDir = own;
      return info;
    });
  }
}

/** containerd's mounts as ours; anything but bind, overlay and tmpfs is refused. */
export function toMounts(ms: CtdMount[], doing: string): Mount[] {
  return ms.map((m) => {
    if (m.type !== "bind" && m.type !== "overlay" && m.type !== "tmpfs") {
      throw new Error(
        `${doing}: containerd answered with a ${JSON.stringify(m.type)} mount, which buildd cannot use`,
      );
    }
    return { type: m.type, source: m.source, options: [...m.options] };
  });
}

/** The writable directory of an active snapshot's mounts: an overlay's upperdir, or a bind source. */
export function upperDirOf(mounts: Mount[]): string | undefined {
  if (mounts.length !== 1) return undefined;
  const m = mounts[0]!;
  if (m.type === "overlay")
    return m.options.find((o) => o.startsWith("upperdir="))?.slice("upperdir=".length);
  if (m.type === "bind" && !m.options.includes("ro")) return m.source;
  return undefined;
}

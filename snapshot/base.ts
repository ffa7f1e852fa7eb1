// What both drivers share: the directory layout, crash-safe creation, commit and removal, and the
// cleanup that makes the directories agree with the metadata again after a crash.
//
// Layout under root: s/<id>/ per snapshot (fs/ its data, work/ and skel/ for overlayfs), tmp/ for
// snapshots being built, trash/ for ones being deleted, mnt/ for temporary mount points.
//
// Crash safety (process death; power loss is not covered: nothing is fsync'ed): a snapshot is built
// in tmp/, then its row is inserted, then tmp/ is renamed to s/<id>. A removal deletes the row first
// and the directory after. So after a crash a directory without a row, or a row of an unfinished
// creation without a directory, can exist; `cleanup()` removes both.
import type { DatabaseSync } from "node:sqlite";
import { mkdir, mkdtemp, readdir, rename } from "node:fs/promises";
import { join } from "node:path";
import { lstatOrUndefined, removeEmptyDirs, removePath, removeViaTrash } from "./copy.ts";
import { mountsUsing, unmountAll } from "./mount.ts";
import { type NewSnapshot, type SnapshotRow, SnapshotStore, transaction } from "./store.ts";
import {
  type CreateOptions,
  defaultLogger,
  type Hooks,
  type LayerInfo,
  type Logger,
  type Mount,
  SnapshotError,
  type SnapshotInfo,
  type Snapshotter,
  type SnapshotterDriver,
  type Usage,
} from "./types.ts";
import { type TreeUsage, treeUsage } from "./usage.ts";

/** What every driver is constructed with. */
export type SnapshotterOptions = {
  root: string;
  db: DatabaseSync;
  /** Close `db` on close() (when the snapshotter opened it itself). */
  ownsDb?: boolean;
  log?: Logger;
  hooks?: Hooks;
};

/** What a staging step made besides the data: fields of the new row and the snapshots it uses. */
export type Staged = Partial<Pick<NewSnapshot, "stack" | "changes" | "whiteoutDirs">> & { deps?: number[] };

const KEY_MAX = 512;

/** Usage of a snapshot's data: its fs/ plus the overlay skeleton, if any. */
async function dataUsage(dir: string): Promise<Usage> {
  const [fs, skel] = await Promise.all([treeUsage(join(dir, "fs")), treeUsage(join(dir, "skel"))]);
  return { size: fs.size + skel.size, inodes: fs.inodes + skel.inodes };
}

function checkKey(key: string, doing: string): void {
  if (typeof key !== "string" || key === "" || key.length > KEY_MAX) {
    throw new SnapshotError("invalid_argument", `${doing}: snapshot key must be 1-${KEY_MAX} characters`);
  }
}

/** The state and operations common to the overlayfs and native drivers. */
export abstract class BaseSnapshotter implements Snapshotter {
  abstract readonly driver: SnapshotterDriver;
  readonly root: string;
  protected readonly store: SnapshotStore;
  protected readonly log: Logger;
  private readonly hooks: Hooks;
  private readonly ownsDb: boolean;
  /** Snapshot ids an operation in progress reads: they cannot be removed meanwhile. */
  private readonly busy = new Map<number, number>();
  /** Staging dirs and mount points of operations in progress, which cleanup() must not touch. */
  protected readonly inProgress = new Set<string>();
  /** Rows inserted whose directory is not in place yet. */
  private readonly arriving = new Set<number>();
  private closed = false;

  constructor(opts: SnapshotterOptions) {
    this.root = opts.root;
    this.store = new SnapshotStore(opts.db);
    this.log = opts.log ?? defaultLogger;
    this.hooks = opts.hooks ?? {};
    this.ownsDb = opts.ownsDb ?? false;
  }

  // Driver specifics.
  protected abstract stageActive(tmp: string, parent: SnapshotRow | undefined): Promise<Staged>;
  protected abstract mountsOf(row: SnapshotRow): Mount[];
  protected abstract beforeCommit(row: SnapshotRow, usage: TreeUsage): Promise<void>;
  protected abstract afterCommit(row: SnapshotRow): Promise<void>;
  abstract merge(name: string, parents: string[], opts?: CreateOptions): Promise<Usage>;
  abstract diff(name: string, lower: string | undefined, upper: string, opts?: CreateOptions): Promise<Usage>;
  abstract layers(key: string): LayerInfo[];
  abstract diffDir(key: string): string | undefined;

  protected dir(id: number): string {
    return join(this.root, "s", String(id));
  }

  protected fsDir(id: number): string {
    return join(this.dir(id), "fs");
  }

  /** A directory under mnt/ for temporary mount points, protected from cleanup until `fn` returns. */
  protected async scratchMounts<T>(fn: (base: string) => Promise<T>): Promise<T> {
    const base = await mkdtemp(join(this.root, "mnt", "m-"));
    this.inProgress.add(base);
    try {
      return await fn(base);
    } finally {
      this.inProgress.delete(base);
      await removeEmptyDirs(base);
    }
  }

  protected async hook(point: string): Promise<void> {
    await this.hooks.at?.(point);
  }

  protected checkOpen(): void {
    if (this.closed) throw new Error(`snapshotter at ${this.root} is closed`);
  }

  /** The committed row of `key`, or an error saying what was being done. */
  protected committed(key: string, doing: string): SnapshotRow {
    const row = this.store.mustGet(key, doing);
    if (row.kind !== "committed") {
      throw new SnapshotError(
        "failed_precondition",
        `${doing}: snapshot ${JSON.stringify(key)} is ${row.kind}, not committed`,
      );
    }
    return row;
  }

  /** Refuses to go on while something is mounted from the snapshot's directory. */
  private async checkNotMounted(row: SnapshotRow, doing: string): Promise<void> {
    const mounted = await mountsUsing(this.dir(row.id));
    if (mounted.length > 0) {
      throw new SnapshotError(
        "failed_precondition",
        `${doing}: it is mounted at ${mounted.join(", ")}; unmount it first`,
      );
    }
  }

  /** Runs `fn` while the given snapshots cannot be removed. */
  protected async holding<T>(ids: number[], fn: () => Promise<T>): Promise<T> {
    for (const id of ids) this.busy.set(id, (this.busy.get(id) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      for (const id of ids) {
        const n = (this.busy.get(id) ?? 1) - 1;
        if (n === 0) this.busy.delete(id);
        else this.busy.set(id, n);
      }
    }
  }

  /** A fresh staging directory under tmp/, protected from cleanup until `fn` returns. */
  protected async staging<T>(fn: (tmp: string) => Promise<T>): Promise<T> {
    const tmp = await mkdtemp(join(this.root, "tmp", "c-"));
    this.inProgress.add(tmp);
    try {
      return await fn(tmp);
    } finally {
      this.inProgress.delete(tmp);
      await removePath(tmp);
    }
  }

  /**
   * Creates snapshot `key`: `stage` fills a staging dir (fs/ and what else the driver needs), then
   * the row is inserted and the dir moved into place. Parents and deps are rechecked in the same
   * transaction, so a concurrent removal cannot leave the new snapshot dangling.
   */
  protected async create(
    key: string,
    fields: Pick<NewSnapshot, "kind" | "op"> & { parent?: SnapshotRow; labels?: Record<string, string> },
    stage: (tmp: string) => Promise<Staged>,
    doing: string,
  ): Promise<SnapshotRow> {
    this.checkOpen();
    checkKey(key, doing);
    if (this.store.byKey(key)) {
      throw new SnapshotError("already_exists", `${doing}: snapshot ${JSON.stringify(key)} already exists`);
    }
    const parent = fields.parent;
    return this.staging(async (tmp) => {
      const staged = await stage(tmp);
      const usage = fields.kind === "committed" ? await dataUsage(tmp) : undefined;
      await this.hook("snapshot:staged");
      const row = transaction(this.store.db, () => {
        if (this.store.byKey(key)) {
          throw new SnapshotError(
            "already_exists",
            `${doing}: snapshot ${JSON.stringify(key)} already exists`,
          );
        }
        for (const id of [...(parent ? [parent.id] : []), ...(staged.deps ?? [])]) {
          if (!this.store.byId(id)) {
            throw new SnapshotError(
              "not_found",
              `${doing}: a snapshot it is made from was removed meanwhile`,
            );
          }
        }
        return this.store.insert(
          {
            key,
            kind: fields.kind,
            op: fields.op,
            parentId: parent?.id ?? null,
            stack: staged.stack ?? null,
            changes: staged.changes ?? null,
            whiteoutDirs: staged.whiteoutDirs ?? [],
            size: usage?.size ?? null,
            inodes: usage?.inodes ?? null,
            labels: fields.labels ?? {},
          },
          staged.deps,
        );
      });
      this.arriving.add(row.id);
      try {
        await this.hook("snapshot:recorded");
        await rename(tmp, this.dir(row.id));
      } catch (e) {
        transaction(this.store.db, () => this.store.delete(row.id));
        throw new Error(`${doing}: moving the new snapshot into place: ${(e as Error).message}`);
      } finally {
        this.arriving.delete(row.id);
      }
      return row;
    });
  }

  async prepare(key: string, parent?: string, opts: CreateOptions = {}): Promise<Mount[]> {
    const doing = `preparing snapshot ${JSON.stringify(key)}`;
    const prow = parent === undefined ? undefined : this.committed(parent, doing);
    const row = await this.holding(prow ? [prow.id] : [], () =>
      this.create(
        key,
        { kind: "active", op: "layer", parent: prow, labels: opts.labels },
        (tmp) => this.stageActive(tmp, prow),
        doing,
      ),
    );
    return this.mountsOf(row);
  }

  async view(key: string, parent?: string, opts: CreateOptions = {}): Promise<Mount[]> {
    const doing = `creating view ${JSON.stringify(key)}`;
    const prow = parent === undefined ? undefined : this.committed(parent, doing);
    const row = await this.holding(prow ? [prow.id] : [], () =>
      this.create(
        key,
        { kind: "view", op: "layer", parent: prow, labels: opts.labels },
        async (tmp) => {
          await mkdir(join(tmp, "fs"));
          return {};
        },
        doing,
      ),
    );
    return this.mountsOf(row);
  }

  async mounts(key: string): Promise<Mount[]> {
    this.checkOpen();
    return this.mountsOf(this.store.mustGet(key, "getting mounts"));
  }

  async commit(name: string, key: string, opts: CreateOptions = {}): Promise<Usage> {
    this.checkOpen();
    const doing = `committing snapshot ${JSON.stringify(key)} as ${JSON.stringify(name)}`;
    checkKey(name, doing);
    const row = this.store.mustGet(key, doing);
    if (row.kind !== "active") {
      throw new SnapshotError(
        "failed_precondition",
        `${doing}: it is ${row.kind}, only active snapshots can be committed`,
      );
    }
    if (name !== key && this.store.byKey(name)) {
      throw new SnapshotError("already_exists", `${doing}: ${JSON.stringify(name)} already exists`);
    }
    return this.holding([row.id], async () => {
      await this.checkNotMounted(row, doing);
      const fsUsage = await treeUsage(this.fsDir(row.id));
      await this.beforeCommit(row, fsUsage);
      const skel = await treeUsage(join(this.dir(row.id), "skel"));
      const usage = { ...fsUsage, size: fsUsage.size + skel.size, inodes: fsUsage.inodes + skel.inodes };
      await this.hook("snapshot:measured");
      transaction(this.store.db, () => {
        const now = this.store.byId(row.id);
        if (now?.kind !== "active" || now.key !== key) {
          throw new SnapshotError("failed_precondition", `${doing}: it changed while being committed`);
        }
        if (name !== key && this.store.byKey(name)) {
          throw new SnapshotError("already_exists", `${doing}: ${JSON.stringify(name)} already exists`);
        }
        this.store.markCommitted(row, name, usage, { ...row.labels, ...opts.labels });
      });
      await this.afterCommit(row);
      return { size: usage.size, inodes: usage.inodes };
    });
  }

  async remove(key: string): Promise<void> {
    this.checkOpen();
    const doing = `removing snapshot ${JSON.stringify(key)}`;
    const row = this.store.mustGet(key, doing);
    if (this.busy.has(row.id)) {
      throw new SnapshotError(
        "failed_precondition",
        `${doing}: an operation in progress is using it; retry later`,
      );
    }
    await this.checkNotMounted(row, doing);
    transaction(this.store.db, () => {
      const deps = this.store.dependents(row.id);
      if (deps.length > 0) {
        throw new SnapshotError(
          "failed_precondition",
          `${doing}: snapshots ${deps.map((d) => JSON.stringify(d)).join(", ")} depend on it; remove them first`,
        );
      }
      this.store.delete(row.id);
    });
    await this.hook("snapshot:unrecorded");
    await removeViaTrash(this.dir(row.id), join(this.root, "trash"));
  }

  async usage(key: string): Promise<Usage> {
    this.checkOpen();
    const row = this.store.mustGet(key, "measuring usage");
    if (row.kind === "committed" && row.size !== null && row.inodes !== null) {
      return { size: row.size, inodes: row.inodes };
    }
    return dataUsage(this.dir(row.id));
  }

  protected info(row: SnapshotRow): SnapshotInfo {
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

  stat(key: string): SnapshotInfo {
    this.checkOpen();
    return this.info(this.store.mustGet(key, "stat"));
  }

  list(): SnapshotInfo[] {
    this.checkOpen();
    return this.store.all().map((r) => this.info(r));
  }

  /** Driver-specific leftovers of committed snapshots (overlay work dirs), removed by cleanup(). */
  protected async cleanupRow(_row: SnapshotRow): Promise<string[]> {
    return [];
  }

  async cleanup(): Promise<string[]> {
    this.checkOpen();
    const removed: string[] = [];
    for (const mp of await mountsUsing(this.root)) {
      if ([...this.inProgress].some((p) => mp.startsWith(p))) continue;
      await unmountAll(mp);
      removed.push(mp);
    }
    for (const sub of ["tmp", "trash", "mnt"]) {
      const dir = join(this.root, sub);
      for (const name of await readdir(dir)) {
        const path = join(dir, name);
        if (this.inProgress.has(path)) continue;
        // Mount points are only ever removed empty: a recursive removal would reach into a mount.
        if (sub === "mnt") await removeEmptyDirs(path);
        else await removePath(path);
        removed.push(path);
      }
    }
    // Rows whose directory never arrived (or vanished), and everything that depends on them.
    const lost = new Set<number>();
    for (const row of this.store.all()) {
      if (this.arriving.has(row.id)) continue;
      if (!(await lstatOrUndefined(this.dir(row.id)))?.isDirectory()) lost.add(row.id);
    }
    const queue = [...lost];
    while (queue.length > 0) {
      const id = queue.pop()!;
      for (const key of this.store.dependents(id)) {
        const dep = this.store.byKey(key)!;
        if (!lost.has(dep.id)) {
          lost.add(dep.id);
          queue.push(dep.id);
        }
      }
    }
    for (const id of lost) {
      const row = this.store.byId(id)!;
      if (row.kind === "committed")
        this.log.warn("dropping committed snapshot whose data is missing", { key: row.key });
      transaction(this.store.db, () => this.store.delete(id));
      removed.push(`row:${row.key}`);
    }
    const known = new Set(this.store.all().map((r) => String(r.id)));
    for (const name of await readdir(join(this.root, "s"))) {
      if (known.has(name)) continue;
      await removeViaTrash(join(this.root, "s", name), join(this.root, "trash"));
      removed.push(join(this.root, "s", name));
    }
    for (const row of this.store.all()) removed.push(...(await this.cleanupRow(row)));
    if (removed.length > 0) this.log.info("snapshotter cleanup", { root: this.root, removed });
    return removed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ownsDb) this.store.db.close();
  }
}

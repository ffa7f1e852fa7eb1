// A Snapshotter on containerd's snapshots service, so the cache manager (and every op on top of
// it) works unchanged on containerd's layers, which the runtime that later runs the image shares.
//
// Each snapshot is a containerd snapshot named `buildd/<instance>/s/<key>` in the configured
// snapshotter, made under a lease of its own (`buildd.<hash>`, labelled with the instance and
// the key) so containerd's garbage collector never takes what buildd holds; removing the
// snapshot deletes the lease. The instance is a random id kept in this worker's database: two
// daemons sharing a containerd namespace never touch each other's snapshots.
//
// containerd answers `Mounts` only for active snapshots and views: a committed snapshot is shown
// through a view `buildd/<instance>/v/<key>` made on first use and kept until the snapshot goes.
//
// The Snapshotter contract has synchronous questions (stat, list, layers); they are answered
// from a local record of every snapshot (snapshot-index.ts), which `cleanup()` makes agree with
// containerd again after a crash: rows whose snapshot is gone are dropped, snapshots and leases
// no row owns are removed. Creation goes lease, snapshot, row; removal goes row, snapshot, lease.
//
// What containerd's snapshotters cannot do, stacking arbitrary layers, is done as the native
// driver does it: a merge is a snapshot prepared on the first input with the other inputs'
// layer changes applied on top, a diff is a snapshot with the changes applied to an empty
// tree. Both copy data (overlay merges and prefix diffs on the local driver copy nothing).
// Their `layers()` are the original layers, so exporters still see every layer.
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import { Code } from "@connectrpc/connect";
import { Kind } from "../../proto/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import type { Mount as CtdMount } from "../../proto/gen/containerd/types/mount_pb.ts";
import { applyChanges } from "../../snapshot/changes.ts";
import { copyDirContents, removeEmptyDirs } from "../../snapshot/copy.ts";
import { mountAll, mountsUsing, unmountAll } from "../../snapshot/mount.ts";
import type { SnapshotRow } from "../../snapshot/store.ts";
import {
  type CreateOptions,
  defaultLogger,
  type LayerInfo,
  type Logger,
  type Mount,
  SnapshotError,
  type SnapshotInfo,
  type Snapshotter,
  type SnapshotterDriver,
  type Usage,
} from "../../snapshot/types.ts";
import { type ContainerdClient, ContainerdError, isAlreadyExists, isNotFound, underLease } from "./client.ts";
import { type Pair, SnapshotIndex, toMounts, upperDirOf } from "./snapshot-index.ts";

/** Lease label: which buildd state (instance) the lease belongs to. */
export const LEASE_INSTANCE_LABEL = "buildd.instance";
/** Lease label: the snapshot key the lease holds. */
export const LEASE_SNAPSHOT_LABEL = "buildd.snapshot";

const KEY_MAX = 512;

export interface ContainerdSnapshotterOptions {
  client: ContainerdClient;
  /** containerd's snapshotter plugin name: "overlayfs" (default), "native", ... */
  snapshotter?: string;
  /** A database of this worker's own: the local record of its snapshots. */
  db: DatabaseSync;
  /** A directory of its own, for temporary mount points (merges and diffs). */
  root: string;
  log?: Logger;
}

/** Snapshots as containerd snapshots; see the module comment. */
export class ContainerdSnapshotter implements Snapshotter {
  readonly driver: SnapshotterDriver;
  readonly root: string;
  /** containerd's snapshotter plugin these snapshots live in. */
  readonly snapshotter: string;
  /** This state's id in containerd's names and lease labels. */
  readonly instance: string;
  private readonly client: ContainerdClient;
  private readonly index: SnapshotIndex;
  private readonly log: Logger;
  /** Mounts of active snapshots and of committed snapshots' views, by local key. */
  private readonly mountCache = new Map<string, Mount[]>();
  private readonly viewing = new Map<string, Promise<Mount[]>>();
  private readonly busy = new Map<number, number>();
  /** Keys being created: cleanup() leaves their containerd side alone. */
  private readonly arriving = new Set<string>();
  private closed = false;

  private constructor(opts: ContainerdSnapshotterOptions & { index: SnapshotIndex }) {
    this.client = opts.client;
    this.snapshotter = opts.snapshotter ?? "overlayfs";
    this.driver = this.snapshotter === "overlayfs" ? "overlayfs" : "native";
    this.root = opts.root;
    this.index = opts.index;
    this.instance = opts.index.instance();
    this.log = opts.log ?? defaultLogger;
  }

  /**
   * Opens the snapshotter: checks that containerd answers and has the snapshotter, then runs
   * `cleanup()`. Fails with an error naming containerd's socket when it cannot be reached.
   */
  static async open(opts: ContainerdSnapshotterOptions): Promise<ContainerdSnapshotter> {
    await mkdir(join(opts.root, "mnt"), { recursive: true, mode: 0o700 });
    const index = new SnapshotIndex(opts.db);
    const sn = new ContainerdSnapshotter({ ...opts, index });
    index.bindSnapshotter(sn.snapshotter, `opening the containerd snapshotter in ${opts.root}`);
    await sn.cleanup();
    return sn;
  }

  // Names in containerd. A fixed segment after the prefix keeps the three kinds apart whatever
  // the key holds.
  private get prefix(): string {
    return `buildd/${this.instance}/`;
  }
  private remote(key: string): string {
    return `${this.prefix}s/${key}`;
  }
  private viewName(key: string): string {
    return `${this.prefix}v/${key}`;
  }
  private buildName(key: string): string {
    return `${this.prefix}b/${key}`;
  }
  private leaseId(key: string): string {
    return `buildd.${createHash("sha256").update(`${this.instance}\0${key}`).digest("hex").slice(0, 40)}`;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`containerd snapshotter at ${this.root} is closed`);
  }

  private checkKey(key: string, doing: string): void {
    if (typeof key !== "string" || key === "" || key.length > KEY_MAX) {
      throw new SnapshotError("invalid_argument", `${doing}: snapshot key must be 1-${KEY_MAX} characters`);
    }
  }

  private async holding<T>(ids: number[], fn: () => Promise<T>): Promise<T> {
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

  /** A containerd failure as a SnapshotError where callers branch on it. */
  private explain(e: unknown, doing: string): Error {
    if (!(e instanceof ContainerdError)) return e as Error;
    const code =
      e.code === Code.NotFound
        ? "not_found"
        : e.code === Code.AlreadyExists
          ? "already_exists"
          : e.code === Code.FailedPrecondition
            ? "failed_precondition"
            : e.code === Code.InvalidArgument
              ? "invalid_argument"
              : undefined;
    return code
      ? new SnapshotError(code, `${doing}: ${e.message}`)
      : new Error(`${doing}: ${e.message}`, { cause: e });
  }

  private async createLease(key: string): Promise<string> {
    const id = this.leaseId(key);
    try {
      await this.client.leases.create({
        id,
        labels: { [LEASE_INSTANCE_LABEL]: this.instance, [LEASE_SNAPSHOT_LABEL]: key.slice(0, 4000) },
      });
    } catch (e) {
      // Left by a crash between lease and snapshot: it holds nothing we know, reuse it.
      if (!isAlreadyExists(e)) throw e;
    }
    return id;
  }

  private async deleteLease(key: string): Promise<void> {
    try {
      await this.client.leases.delete({ id: this.leaseId(key) });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  private async removeRemote(name: string): Promise<void> {
    try {
      await this.client.snapshots.remove({ snapshotter: this.snapshotter, key: name });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }

  /** Makes snapshot `key` in containerd with `make` under its lease, then records it. */
  private async create(
    key: string,
    fields: {
      kind: "active" | "view" | "committed";
      op: "layer" | "merge" | "diff";
      parent?: SnapshotRow;
      changes?: Pair[];
      deps?: number[];
      labels?: Record<string, string>;
    },
    make: (lease: string) => Promise<{ mounts?: Mount[]; usage?: Usage }>,
    doing: string,
  ): Promise<{ row: SnapshotRow; mounts?: Mount[] }> {
    this.checkOpen();
    this.checkKey(key, doing);
    if (this.index.byKey(key) || this.arriving.has(key)) {
      throw new SnapshotError("already_exists", `${doing}: snapshot ${JSON.stringify(key)} already exists`);
    }
    this.arriving.add(key);
    try {
      const lease = await this.createLease(key);
      let made: { mounts?: Mount[]; usage?: Usage };
      try {
        made = await make(lease);
      } catch (e) {
        await this.deleteLease(key).catch(() => {});
        throw this.explain(e, doing);
      }
      try {
        const row = this.index.insert(
          {
            key,
            kind: fields.kind,
            op: fields.op,
            parentId: fields.parent?.id ?? null,
            stack: null,
            changes: fields.changes ?? null,
            whiteoutDirs: [],
            size: made.usage?.size ?? null,
            inodes: made.usage?.inodes ?? null,
            labels: fields.labels ?? {},
          },
          fields.deps ?? [],
          made.mounts && upperDirOf(made.mounts),
          doing,
        );
        if (made.mounts) this.mountCache.set(key, made.mounts);
        return { row, mounts: made.mounts };
      } catch (e) {
        await this.removeRemote(this.remote(key)).catch(() => {});
        await this.deleteLease(key).catch(() => {});
        throw e;
      }
    } finally {
      this.arriving.delete(key);
    }
  }

  async prepare(key: string, parent?: string, opts: CreateOptions = {}): Promise<Mount[]> {
    const doing = `preparing snapshot ${JSON.stringify(key)}`;
    const prow = parent === undefined ? undefined : this.index.committed(parent, doing);
    const { mounts } = await this.holding(prow ? [prow.id] : [], () =>
      this.create(
        key,
        { kind: "active", op: "layer", parent: prow, labels: opts.labels },
        async (lease) => {
          const r = await this.client.snapshots.prepare(
            {
              snapshotter: this.snapshotter,
              key: this.remote(key),
              parent: prow ? this.remote(prow.key) : "",
            },
            underLease(lease),
          );
          return { mounts: toMounts(r.mounts, doing) };
        },
        doing,
      ),
    );
    return mounts!;
  }

  async view(key: string, parent?: string, opts: CreateOptions = {}): Promise<Mount[]> {
    const doing = `creating view ${JSON.stringify(key)}`;
    const prow = parent === undefined ? undefined : this.index.committed(parent, doing);
    const { mounts } = await this.holding(prow ? [prow.id] : [], () =>
      this.create(
        key,
        { kind: "view", op: "layer", parent: prow, labels: opts.labels },
        async (lease) => {
          const r = await this.client.snapshots.view(
            {
              snapshotter: this.snapshotter,
              key: this.remote(key),
              parent: prow ? this.remote(prow.key) : "",
            },
            underLease(lease),
          );
          return { mounts: toMounts(r.mounts, doing) };
        },
        doing,
      ),
    );
    return mounts!;
  }

  async mounts(key: string): Promise<Mount[]> {
    this.checkOpen();
    const doing = `getting mounts of snapshot ${JSON.stringify(key)}`;
    const row = this.index.mustGet(key, doing);
    const known = this.mountCache.get(key);
    if (known) return known;
    if (row.kind === "committed") return this.committedView(row, doing);
    try {
      const r = await this.client.snapshots.mounts({ snapshotter: this.snapshotter, key: this.remote(key) });
      const mounts = toMounts(r.mounts, doing);
      this.mountCache.set(key, mounts);
      return mounts;
    } catch (e) {
      throw this.explain(e, doing);
    }
  }

  /** The read-only view of a committed snapshot, made once and kept with it. */
  private committedView(row: SnapshotRow, doing: string): Promise<Mount[]> {
    let p = this.viewing.get(row.key);
    if (!p) {
      p = (async () => {
        const name = this.viewName(row.key);
        let mounts: CtdMount[];
        try {
          mounts = (await this.client.snapshots.mounts({ snapshotter: this.snapshotter, key: name })).mounts;
        } catch (e) {
          if (!isNotFound(e)) throw e;
          try {
            mounts = (
              await this.client.snapshots.view(
                { snapshotter: this.snapshotter, key: name, parent: this.remote(row.key) },
                underLease(this.leaseId(row.key)),
              )
            ).mounts;
          } catch (e2) {
            if (!isAlreadyExists(e2)) throw e2;
            mounts = (await this.client.snapshots.mounts({ snapshotter: this.snapshotter, key: name }))
              .mounts;
          }
        }
        const out = toMounts(mounts, doing);
        if (this.index.byId(row.id)?.key === row.key) this.mountCache.set(row.key, out);
        return out;
      })();
      this.viewing.set(row.key, p);
      void p.finally(() => this.viewing.delete(row.key)).catch(() => {});
    }
    return p.catch((e) => {
      throw this.explain(e, doing);
    });
  }

  /** Refuses to go on while something on this host is mounted from the snapshot's directory. */
  private async checkNotMounted(row: SnapshotRow, doing: string): Promise<void> {
    const upper = this.index.upperDir(row.id);
    if (!upper) return;
    const mounted = await mountsUsing(upper);
    if (mounted.length > 0) {
      throw new SnapshotError(
        "failed_precondition",
        `${doing}: it is mounted at ${mounted.join(", ")}; unmount it first`,
      );
    }
  }

  async commit(name: string, key: string, opts: CreateOptions = {}): Promise<Usage> {
    this.checkOpen();
    const doing = `committing snapshot ${JSON.stringify(key)} as ${JSON.stringify(name)}`;
    this.checkKey(name, doing);
    const row = this.index.mustGet(key, doing);
    if (row.kind !== "active") {
      throw new SnapshotError(
        "failed_precondition",
        `${doing}: it is ${row.kind}, only active snapshots can be committed`,
      );
    }
    if (name === key) {
      throw new SnapshotError("invalid_argument", `${doing}: containerd commits under a new name only`);
    }
    if (this.index.byKey(name) || this.arriving.has(name)) {
      throw new SnapshotError("already_exists", `${doing}: ${JSON.stringify(name)} already exists`);
    }
    return this.holding([row.id], async () => {
      await this.checkNotMounted(row, doing);
      this.arriving.add(name);
      try {
        const labels = { ...row.labels, ...opts.labels };
        let usage: Usage;
        try {
          const lease = await this.createLease(name);
          await this.client.snapshots.commit(
            { snapshotter: this.snapshotter, name: this.remote(name), key: this.remote(key) },
            underLease(lease),
          );
          const u = await this.client.snapshots.usage({
            snapshotter: this.snapshotter,
            key: this.remote(name),
          });
          usage = { size: Number(u.size), inodes: Number(u.inodes) };
        } catch (e) {
          await this.deleteLease(name).catch(() => {});
          throw this.explain(e, doing);
        }
        this.index.markCommitted(row, name, usage, labels);
        this.mountCache.delete(key);
        await this.deleteLease(key).catch((e) =>
          this.log.warn("deleting the lease of a committed snapshot failed; cleanup removes it", {
            key,
            error: (e as Error).message,
          }),
        );
        return usage;
      } finally {
        this.arriving.delete(name);
      }
    });
  }

  async remove(key: string): Promise<void> {
    this.checkOpen();
    const doing = `removing snapshot ${JSON.stringify(key)}`;
    const row = this.index.mustGet(key, doing);
    if (this.busy.has(row.id)) {
      throw new SnapshotError(
        "failed_precondition",
        `${doing}: an operation in progress is using it; retry later`,
      );
    }
    await this.checkNotMounted(row, doing);
    this.index.deleteUnused(row, doing);
    this.mountCache.delete(key);
    try {
      await this.removeRemote(this.viewName(key));
      await this.removeRemote(this.remote(key));
      await this.deleteLease(key);
    } catch (e) {
      // The row is gone: the next cleanup() removes what is left in containerd.
      this.log.warn("removing a snapshot from containerd failed; cleanup removes it later", {
        key,
        error: (e as Error).message,
      });
    }
  }

  async usage(key: string): Promise<Usage> {
    this.checkOpen();
    const doing = `measuring snapshot ${JSON.stringify(key)}`;
    const row = this.index.mustGet(key, doing);
    if (row.kind === "committed" && row.size !== null && row.inodes !== null) {
      return { size: row.size, inodes: row.inodes };
    }
    try {
      const u = await this.client.snapshots.usage({ snapshotter: this.snapshotter, key: this.remote(key) });
      return { size: Number(u.size), inodes: Number(u.inodes) };
    } catch (e) {
      throw this.explain(e, doing);
    }
  }

  stat(key: string): SnapshotInfo {
    this.checkOpen();
    return this.index.info(this.index.mustGet(key, "stat"));
  }

  list(): SnapshotInfo[] {
    this.checkOpen();
    return this.index.all().map((r) => this.index.info(r));
  }

  /** Runs `fn` with the committed snapshot `id` mounted read-only in a scratch dir. */
  private async withView<T>(
    id: number | null,
    base: string,
    fn: (dir: string | undefined) => Promise<T>,
  ): Promise<T> {
    if (id === null) return fn(undefined);
    const row = this.index.byId(id)!;
    const mounts = await this.mounts(row.key);
    const dir = await mkdtemp(join(base, "v-"));
    await mountAll(mounts, dir);
    try {
      return await fn(dir);
    } finally {
      await unmountAll(dir);
    }
  }

  /**
   * Makes committed snapshot `name`: a snapshot prepared (under its lease) on `parent`, filled by
   * `fill` while mounted, committed. The temporary active snapshot has a name of its own.
   */
  private async materialize(
    name: string,
    parent: SnapshotRow | undefined,
    lease: string,
    fill: (target: string, base: string) => Promise<void>,
    doing: string,
  ): Promise<Usage> {
    const building = this.buildName(name);
    await this.removeRemote(building);
    const prepared = await this.client.snapshots.prepare(
      { snapshotter: this.snapshotter, key: building, parent: parent ? this.remote(parent.key) : "" },
      underLease(lease),
    );
    try {
      const base = await mkdtemp(join(this.root, "mnt", "m-"));
      try {
        const target = join(base, "target");
        await mkdir(target);
        await mountAll(toMounts(prepared.mounts, doing), target);
        try {
          await fill(target, base);
        } finally {
          await unmountAll(target);
        }
      } finally {
        await removeEmptyDirs(base);
      }
      await this.client.snapshots.commit(
        { snapshotter: this.snapshotter, name: this.remote(name), key: building },
        underLease(lease),
      );
    } catch (e) {
      await this.removeRemote(building).catch(() => {});
      throw e;
    }
    const u = await this.client.snapshots.usage({ snapshotter: this.snapshotter, key: this.remote(name) });
    return { size: Number(u.size), inodes: Number(u.inodes) };
  }

  async merge(name: string, parents: string[], opts: CreateOptions = {}): Promise<Usage> {
    const doing = `merging ${parents.map((p) => JSON.stringify(p)).join(", ")} into ${JSON.stringify(name)}`;
    if (parents.length === 0) throw new SnapshotError("invalid_argument", `${doing}: nothing to merge`);
    const rows = parents.map((p) => this.index.committed(p, doing));
    const pairs = rows.flatMap((r) => this.index.changesOf(r));
    const ids = [
      ...new Set([...rows.map((r) => r.id), ...pairs.flat().filter((i): i is number => i !== null)]),
    ];
    const { row } = await this.holding(ids, () =>
      this.create(
        name,
        { kind: "committed", op: "merge", parent: rows[0], changes: pairs, deps: ids, labels: opts.labels },
        async (lease) => ({
          // The first input's tree already is its changes applied: build on it, apply the others.
          usage: await this.materialize(
            name,
            rows[0],
            lease,
            async (target, base) => {
              for (const r of rows.slice(1)) {
                for (const [lower, upper] of this.index.changesOf(r)) {
                  await this.withView(upper, base, (u) =>
                    this.withView(lower, base, (l) => applyChanges(target, l, u!)),
                  );
                }
              }
            },
            doing,
          ),
        }),
        doing,
      ),
    );
    return { size: row.size ?? 0, inodes: row.inodes ?? 0 };
  }

  async diff(
    name: string,
    lower: string | undefined,
    upper: string,
    opts: CreateOptions = {},
  ): Promise<Usage> {
    const doing = `diffing ${JSON.stringify(lower ?? "(empty)")} to ${JSON.stringify(upper)} into ${JSON.stringify(name)}`;
    const lrow = lower === undefined ? undefined : this.index.committed(lower, doing);
    const urow = this.index.committed(upper, doing);
    const lc = lrow ? this.index.changesOf(lrow) : [];
    const uc = this.index.changesOf(urow);
    const prefix = lc.length <= uc.length && lc.every((p, i) => uc[i]![0] === p[0] && uc[i]![1] === p[1]);
    const pairs: Pair[] = prefix ? uc.slice(lc.length) : [[lrow!.id, urow.id]];
    const ids = [
      ...new Set([
        ...(lrow ? [lrow.id] : []),
        urow.id,
        ...pairs.flat().filter((i): i is number => i !== null),
      ]),
    ];
    const { row } = await this.holding(ids, () =>
      this.create(
        name,
        { kind: "committed", op: "diff", changes: pairs, deps: ids, labels: opts.labels },
        async (lease) => ({
          // Deletions have nothing to act on in an empty tree: a diff alone shows what it adds.
          usage: await this.materialize(
            name,
            undefined,
            lease,
            async (target, base) => {
              for (const [i, [l, u]] of pairs.entries()) {
                await this.withView(u, base, async (ud) => {
                  if (i === 0 && l === null) await copyDirContents(ud!, target);
                  else await this.withView(l, base, (ld) => applyChanges(target, ld, ud!));
                });
              }
            },
            doing,
          ),
        }),
        doing,
      ),
    );
    return { size: row.size ?? 0, inodes: row.inodes ?? 0 };
  }

  layers(key: string): LayerInfo[] {
    this.checkOpen();
    // An overlay layer's own directory holds exactly its changes (with overlay whiteouts).
    return this.index.layers(this.index.committed(key, "listing layers"), (r) => this.ownDiffDir(r));
  }

  private ownDiffDir(row: SnapshotRow): string | undefined {
    if (this.snapshotter !== "overlayfs" || row.kind !== "committed" || row.changes !== null)
      return undefined;
    return this.index.upperDir(row.id);
  }

  diffDir(key: string): string | undefined {
    this.checkOpen();
    return this.ownDiffDir(this.index.mustGet(key, "finding the diff dir"));
  }

  /**
   * Makes the local record and containerd agree: unmounts leftover scratch mounts, drops rows
   * whose snapshot containerd does not have (and what depends on them), removes this instance's
   * snapshots no row owns and leases no snapshot needs. Returns what it removed.
   */
  async cleanup(): Promise<string[]> {
    this.checkOpen();
    const removed: string[] = [];
    const mnt = join(this.root, "mnt");
    for (const mp of await mountsUsing(mnt)) {
      await unmountAll(mp);
      removed.push(mp);
    }
    for (const name of await readdir(mnt)) {
      await removeEmptyDirs(join(mnt, name));
    }
    const remote = new Map<string, Kind>();
    for await (const r of this.client.snapshots.list({ snapshotter: this.snapshotter })) {
      for (const i of r.info) if (i.name.startsWith(this.prefix)) remote.set(i.name, i.kind);
    }
    const want: Record<SnapshotRow["kind"], Kind> = {
      active: Kind.ACTIVE,
      view: Kind.VIEW,
      committed: Kind.COMMITTED,
    };
    const lost = new Set<number>();
    for (const row of this.index.all()) {
      if (this.arriving.has(row.key)) continue;
      if (remote.get(this.remote(row.key)) !== want[row.kind]) lost.add(row.id);
    }
    for (const id of this.index.withDependents(lost)) {
      const row = this.index.byId(id)!;
      if (row.kind === "committed")
        this.log.warn("dropping a snapshot containerd no longer has", {
          key: row.key,
          snapshotter: this.snapshotter,
        });
      this.index.delete(id);
      this.mountCache.delete(row.key);
      removed.push(`row:${row.key}`);
    }
    const keys = new Set(this.index.all().map((r) => r.key));
    const owned = (name: string): boolean => {
      const rest = name.slice(this.prefix.length);
      const key = rest.slice(2);
      if (this.arriving.has(key)) return true;
      if (rest.startsWith("s/")) return keys.has(key);
      if (rest.startsWith("v/")) return this.index.byKey(key)?.kind === "committed";
      return false;
    };
    let orphans = [...remote.keys()].filter((n) => !owned(n));
    // Children before parents: retry what containerd refused while something else went.
    while (orphans.length > 0) {
      const left: string[] = [];
      for (const name of orphans) {
        try {
          await this.removeRemote(name);
          removed.push(name);
        } catch {
          left.push(name);
        }
      }
      if (left.length === orphans.length) {
        this.log.warn("containerd snapshots no row owns could not be removed", { names: left });
        break;
      }
      orphans = left;
    }
    const { leases } = await this.client.leases.list({
      filters: [`labels."${LEASE_INSTANCE_LABEL}"==${this.instance}`],
    });
    for (const l of leases) {
      const key = l.labels[LEASE_SNAPSHOT_LABEL];
      if (key !== undefined && (keys.has(key) || this.arriving.has(key))) continue;
      await this.client.leases.delete({ id: l.id }).catch(() => {});
      removed.push(`lease:${l.id}`);
    }
    if (removed.length > 0) this.log.info("containerd snapshotter cleanup", { removed });
    return removed;
  }

  close(): void {
    this.closed = true;
  }
}

// The cache manager: counted refs over snapshots, records in SQLite, disk usage, prune and GC.
//
// Counts live in memory: a record is in use while a handle on it is unreleased, and cannot be
// removed while another record names it as a parent (a layer on it, a merge or diff of it).
// Every change that spans the database and the snapshotter is ordered so that recovery on open
// can finish or undo it after a SIGKILL at any point (see recovery.ts):
// - new ref: record row, then snapshot;
// - commit: a "creating" row naming the mutable it consumes, then the snapshot commit, then the
//   row is marked ready and the mutable's row deleted in one transaction;
// - merge/diff: "creating" row, snapshot, ready;
// - removal: the row is deleted, then the snapshot.
import { randomBytes } from "node:crypto";
import { mkdir, statfs } from "node:fs/promises";
import type { DatabaseSync } from "node:sqlite";
import { defaultLogger, type Hooks, type Logger, type Snapshotter } from "../snapshot/types.ts";
import { CacheDb, type RecordRow, transaction } from "./db.ts";
import { usageOf } from "./du.ts";
import { parseFilters } from "./filters.ts";
import { type DiskStat, defaultGcPolicies, policyPruneOptions, pruneRecords } from "./prune.ts";
import { recoverRecords } from "./recovery.ts";
import { ImmutableHandle, MutableHandle, type RefOwner } from "./refs.ts";
import {
  CacheError,
  type GcPolicy,
  type ImmutableRef,
  type MutableRef,
  type PruneOptions,
  type RecordOptions,
  type UsageInfo,
} from "./types.ts";

/** How to open a cache manager. */
export type CacheManagerOptions = {
  /** A directory of the cache's own (GC measures the disk holding it). */
  root: string;
  /** The daemon's database; the manager adds `cache_*` tables. */
  db: DatabaseSync;
  /** An opened snapshotter the manager owns the contents of. */
  snapshotter: Snapshotter;
  /** Policies for gc() without arguments, the timer and gcAfterBuild(); default: BuildKit's four. */
  gcPolicies?: GcPolicy[];
  /** Clock in ms (tests age records with it). */
  now?: () => number;
  log?: Logger;
  hooks?: Hooks;
};

const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

/** A random 26-character id, like BuildKit's identity.NewID. */
export function newId(): string {
  const bytes = randomBytes(17);
  let out = "";
  for (let i = 0; i < 26; i++) out += ID_ALPHABET[bytes[i % 17]! % 32];
  return out;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Counted refs over snapshots; see the module comment for the rules it keeps. */
export class CacheManager implements RefOwner {
  readonly root: string;
  readonly snapshotter: Snapshotter;
  readonly records: CacheDb;
  private readonly log: Logger;
  private readonly hooks: Hooks;
  private readonly now: () => number;
  private readonly gcPolicies: GcPolicy[] | undefined;
  private readonly counts = new Map<string, number>();
  private readonly removing = new Set<string>();
  private readonly preparing = new Map<string, Promise<void>>();
  private readonly removeListeners = new Set<(id: string) => void>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private lockChain: Promise<void> = Promise.resolve();
  private pendingGc: Promise<void> | undefined;
  private readonly running = new Set<Promise<unknown>>();
  private closed = false;

  private constructor(opts: CacheManagerOptions) {
    this.root = opts.root;
    this.snapshotter = opts.snapshotter;
    this.records = new CacheDb(opts.db);
    this.log = opts.log ?? defaultLogger;
    this.hooks = opts.hooks ?? {};
    this.now = opts.now ?? Date.now;
    this.gcPolicies = opts.gcPolicies;
  }

  /** Opens the manager and repairs what a crash left behind before anything can use it. */
  static async open(opts: CacheManagerOptions): Promise<CacheManager> {
    await mkdir(opts.root, { recursive: true });
    const cm = new CacheManager(opts);
    await recoverRecords(cm.records, cm.snapshotter, cm.log);
    return cm;
  }

  private async hook(point: string): Promise<void> {
    await this.hooks.at?.(point);
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`cache manager at ${this.root} is closed`);
  }

  /** The ready row of `id` (used by ref handles; callers use get() and info()). */
  row(id: string, doing: string): RecordRow {
    const r = this.records.get(id);
    if (r?.state !== "ready" || this.removing.has(id)) {
      throw new CacheError("not_found", `${doing}: cache record ${JSON.stringify(id)} does not exist`);
    }
    return r;
  }

  /** One more count on `id` (used by ref handles). */
  retain(id: string): void {
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
  }

  /** One count less; true when it was the last. */
  private drop(id: string): boolean {
    const n = (this.counts.get(id) ?? 1) - 1;
    if (n > 0) {
      this.counts.set(id, n);
      return false;
    }
    this.counts.delete(id);
    return true;
  }

  /** Whether record `id` exists and can be used. */
  exists(id: string): boolean {
    const r = this.records.get(id);
    return r !== undefined && r.state === "ready" && !this.removing.has(id);
  }

  /** A new handle on immutable record `id`; counts as a use unless `noUpdateLastUsed`. */
  get(id: string, opts: { noUpdateLastUsed?: boolean } = {}): ImmutableRef {
    this.checkOpen();
    const r = this.row(id, "getting a cache ref");
    if (r.mutable) {
      throw new CacheError(
        "failed_precondition",
        `getting cache ref ${JSON.stringify(id)}: it is mutable (getMutableByKey)`,
      );
    }
    this.retain(id);
    if (!opts.noUpdateLastUsed) this.records.touch(id, this.now(), true);
    return new ImmutableHandle(this, r);
  }

  /** ImmutableRef.release(): the last release records the time of use. */
  async releaseImmutable(id: string): Promise<void> {
    if (this.drop(id) && this.records.get(id)) this.records.touch(id, this.now(), false);
  }

  private newRow(
    id: string,
    fields: Partial<RecordRow> & Pick<RecordRow, "mutable" | "op" | "parents">,
  ): RecordRow {
    const now = this.now();
    return {
      id,
      state: "ready",
      mutableKey: null,
      persistent: false,
      size: null,
      recordType: "regular",
      description: "",
      createdAt: now,
      lastUsedAt: now,
      usageCount: 1,
      pendingFrom: null,
      ...fields,
    };
  }

  /** The ready, immutable row of a live handle, for using it as a parent or input. */
  private inputRow(ref: ImmutableRef, doing: string): RecordRow {
    ref.info(); // throws when the handle was released
    const r = this.row(ref.id, doing);
    if (r.mutable) throw new CacheError("invalid_argument", `${doing}: ${ref.id} is mutable`);
    return r;
  }

  /** Inserts `row`, counts it, and makes its snapshot with `make`; undone when `make` fails. */
  private async createRecord(
    row: RecordRow,
    point: string,
    make: () => Promise<unknown>,
    doing: string,
  ): Promise<void> {
    transaction(this.records.db, () => {
      if (this.records.get(row.id))
        throw new CacheError("already_exists", `${doing}: record ${row.id} already exists`);
      if (row.mutableKey !== null && this.records.byMutableKey(row.mutableKey)) {
        throw new CacheError(
          "already_exists",
          `${doing}: key ${JSON.stringify(row.mutableKey)} already exists`,
        );
      }
      this.records.insert(row);
    });
    this.retain(row.id);
    try {
      await this.hook(point);
      await make();
    } catch (e) {
      this.counts.delete(row.id);
      transaction(this.records.db, () => this.records.delete(row.id));
      throw e;
    }
  }

  /** A writable ref on `parent` (or empty); releasing it without commit() removes it. */
  async newMutable(parent?: ImmutableRef, opts: RecordOptions & { id?: string } = {}): Promise<MutableRef> {
    this.checkOpen();
    const id = opts.id ?? newId();
    const doing = `creating mutable cache ref ${id}`;
    if (!ID_RE.test(id))
      throw new CacheError("invalid_argument", `${doing}: ids are 1-128 of [A-Za-z0-9._-]`);
    const prow = parent && this.inputRow(parent, doing);
    const row = this.newRow(id, {
      mutable: true,
      op: "layer",
      parents: prow ? [prow.id] : [],
      recordType: opts.recordType ?? "regular",
      description: opts.description ?? "",
    });
    await this.createRecord(row, "mutable:recorded", () => this.snapshotter.prepare(id, prow?.id), doing);
    return new MutableHandle(this, this.row(id, doing));
  }

  /**
   * The persistent mutable ref named `key` (cache mounts, local source dirs), created on first use
   * and kept across restarts until pruned. Every call returns a new counted handle; sharing modes
   * (shared, private, locked) are the caller's business.
   */
  async getMutableByKey(
    key: string,
    opts: RecordOptions & { parent?: ImmutableRef } = {},
  ): Promise<MutableRef> {
    this.checkOpen();
    const doing = `getting mutable cache ref ${JSON.stringify(key)}`;
    if (key === "" || key.length > 1024)
      throw new CacheError("invalid_argument", `${doing}: keys are 1-1024 characters`);
    const existing = this.records.byMutableKey(key);
    if (existing) {
      await this.preparing.get(existing.id);
      const r = this.row(existing.id, doing);
      this.retain(r.id);
      this.records.touch(r.id, this.now(), true);
      this.records.setSize(r.id, null);
      return new MutableHandle(this, r);
    }
    const prow = opts.parent && this.inputRow(opts.parent, doing);
    const id = newId();
    const row = this.newRow(id, {
      mutable: true,
      op: "layer",
      parents: prow ? [prow.id] : [],
      mutableKey: key,
      persistent: true,
      recordType: opts.recordType ?? "regular",
      description: opts.description ?? "",
    });
    const made = this.createRecord(
      row,
      "mutable:recorded",
      () => this.snapshotter.prepare(id, prow?.id),
      doing,
    );
    this.preparing.set(
      id,
      made.catch(() => {}),
    );
    try {
      await made;
    } finally {
      this.preparing.delete(id);
    }
    return new MutableHandle(this, this.row(id, doing));
  }

  /** MutableRef.release(): the last release of an unkeyed ref removes it. */
  async releaseMutable(id: string): Promise<void> {
    if (!this.drop(id)) return;
    const r = this.records.get(id);
    if (!r) return;
    if (r.persistent) {
      this.records.touch(id, this.now(), false);
      this.records.setSize(id, null);
      return;
    }
    await this.removeRecord(id);
  }

  /** MutableRef.commit(), ordered for crash recovery (see the module comment). */
  async commitMutable(id: string): Promise<ImmutableRef> {
    this.checkOpen();
    const doing = `committing cache ref ${id}`;
    const m = this.row(id, doing);
    if (!m.mutable) throw new CacheError("failed_precondition", `${doing}: it is not mutable`);
    if (m.persistent) {
      throw new CacheError(
        "failed_precondition",
        `${doing}: refs from getMutableByKey stay mutable; copy it into newMutable()`,
      );
    }
    if ((this.counts.get(id) ?? 0) > 1)
      throw new CacheError("failed_precondition", `${doing}: other handles hold it`);
    const n = newId();
    const row = this.newRow(n, {
      mutable: false,
      state: "creating",
      op: "layer",
      parents: m.parents,
      recordType: m.recordType,
      description: m.description,
      pendingFrom: id,
    });
    transaction(this.records.db, () => {
      this.records.insert(row);
      this.records.copyMeta(id, n);
    });
    let size: number;
    try {
      await this.hook("commit:recorded");
      size = (await this.snapshotter.commit(n, id)).size;
    } catch (e) {
      transaction(this.records.db, () => this.records.delete(n));
      throw e;
    }
    await this.hook("commit:snapshotted");
    transaction(this.records.db, () => {
      this.records.markReady(n, size);
      this.records.delete(id);
    });
    this.counts.delete(id);
    this.retain(n);
    return new ImmutableHandle(this, this.row(n, doing));
  }

  /** Makes a committed record with `make` under a "creating" row; returns a handle on it. */
  private async derive(
    parents: string[],
    op: "merge" | "diff",
    opts: RecordOptions,
    make: (id: string) => Promise<{ size: number }>,
    doing: string,
  ): Promise<ImmutableRef> {
    const n = newId();
    const row = this.newRow(n, {
      mutable: false,
      state: "creating",
      op,
      parents,
      recordType: opts.recordType ?? "regular",
      description: opts.description ?? "",
    });
    let size = 0;
    await this.createRecord(
      row,
      `${op}:recorded`,
      async () => {
        size = (await make(n)).size;
      },
      doing,
    );
    this.records.markReady(n, size);
    return new ImmutableHandle(this, this.row(n, doing));
  }

  /** A ref showing the refs' layers stacked in order (no copying on overlayfs). */
  async merge(refs: ImmutableRef[], opts: RecordOptions = {}): Promise<ImmutableRef> {
    this.checkOpen();
    const doing = `merging cache refs ${refs.map((r) => r.id).join(", ")}`;
    if (refs.length === 0) throw new CacheError("invalid_argument", `${doing}: nothing to merge`);
    const ids = refs.map((r) => this.inputRow(r, doing).id);
    if (ids.length === 1) return refs[0]!.clone();
    return this.derive(ids, "merge", opts, (n) => this.snapshotter.merge(n, ids), doing);
  }

  /** A ref holding `upper`'s changes from `lower` (absent: empty); merging it applies them. */
  async diff(
    lower: ImmutableRef | undefined,
    upper: ImmutableRef,
    opts: RecordOptions = {},
  ): Promise<ImmutableRef> {
    this.checkOpen();
    const doing = `diffing cache refs ${lower?.id ?? "(empty)"} and ${upper.id}`;
    const parents = [...(lower ? [this.inputRow(lower, doing).id] : []), this.inputRow(upper, doing).id];
    return this.derive(parents, "diff", opts, (n) => this.snapshotter.diff(n, lower?.id, upper.id), doing);
  }

  /** Bytes of a record's own data, measured once and kept (except for a mutable ref in use). */
  async sizeOf(id: string): Promise<number> {
    const r = this.row(id, "measuring a cache ref");
    if (r.size !== null) return r.size;
    const size = (await this.snapshotter.usage(id)).size;
    // A mutable ref in use is still changing: measure it again next time.
    if (!r.mutable || !this.counts.has(id)) this.records.setSize(id, size);
    return size;
  }

  /** Called with the id of every record removed (by prune, GC or releasing an unkeyed mutable). */
  onRemove(listener: (id: string) => void): () => void {
    this.removeListeners.add(listener);
    return () => this.removeListeners.delete(listener);
  }

  /** Whether `id` can be removed now: no handles, nothing depending on it, not being made. */
  removable(id: string): boolean {
    const r = this.records.get(id);
    return (
      r !== undefined &&
      r.state === "ready" &&
      !this.removing.has(id) &&
      !this.counts.has(id) &&
      this.records.children(id).length === 0
    );
  }

  private async removeRecord(id: string): Promise<boolean> {
    if (!this.removable(id)) return false;
    this.removing.add(id);
    try {
      transaction(this.records.db, () => this.records.delete(id));
      await this.hook("record:removed");
      try {
        await this.snapshotter.remove(id);
      } catch (e) {
        this.log.warn("removing the snapshot of a removed cache record failed; the next open removes it", {
          id,
          error: (e as Error).message,
        });
      }
    } finally {
      this.removing.delete(id);
    }
    for (const l of this.removeListeners) l(id);
    return true;
  }

  /** Disk usage per record; filters as for prune. */
  async du(opts: { filters?: string[] } = {}): Promise<UsageInfo[]> {
    this.checkOpen();
    const match = parseFilters(opts.filters);
    const rows = this.records.all().filter((r) => r.state === "ready" && !this.removing.has(r.id));
    const all = await usageOf(
      rows,
      (id) => this.counts.has(id),
      (id) => this.sizeOf(id),
    );
    return all.filter(match);
  }

  private async lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => {
      release = r;
    });
    const prev = this.lockChain;
    this.lockChain = prev.then(() => next);
    await prev;
    return release;
  }

  /** Size and free space of the disk holding the cache root. */
  async diskStat(): Promise<DiskStat> {
    const s = await statfs(this.root);
    return { total: s.blocks * s.bsize, free: s.bavail * s.bsize };
  }

  private pruneContext() {
    return {
      du: () => this.du(),
      removable: (id: string) => this.removable(id),
      remove: (id: string) => this.removeRecord(id),
      diskStat: () => this.diskStat(),
      now: () => this.now(),
    };
  }

  /** Removes unused records `opts` selects, yielding each; never one a handle or record depends on. */
  async *prune(opts: PruneOptions = {}): AsyncGenerator<UsageInfo> {
    this.checkOpen();
    const release = await this.lock();
    try {
      yield* pruneRecords(this.pruneContext(), opts);
    } finally {
      release();
    }
  }

  /** Applies GC policies in order (default: the configured ones, else BuildKit's four). */
  async gc(policies?: GcPolicy[]): Promise<UsageInfo[]> {
    this.checkOpen();
    const ps = policies ?? this.gcPolicies ?? defaultGcPolicies((await this.diskStat()).total);
    const removed: UsageInfo[] = [];
    const release = await this.lock();
    try {
      for (const p of ps) {
        for await (const u of pruneRecords(this.pruneContext(), policyPruneOptions(p))) removed.push(u);
      }
    } finally {
      release();
    }
    if (removed.length > 0) {
      this.log.info("cache gc", { removed: removed.length, bytes: removed.reduce((n, u) => n + u.size, 0) });
    }
    return removed;
  }

  /** Runs GC soon (calls while one is waiting to start share it); resolves when it has run. */
  gcAfterBuild(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.pendingGc) return this.pendingGc;
    const run = (async () => {
      await new Promise((r) => setImmediate(r));
      this.pendingGc = undefined;
      if (this.closed) return;
      await this.gc();
    })().catch((e) => this.log.warn("cache gc failed", { error: (e as Error).message }));
    this.pendingGc = run;
    this.running.add(run);
    void run.finally(() => this.running.delete(run));
    return run;
  }

  /** Runs GC every `intervalMs`; returns a function that stops it. */
  startGcTimer(intervalMs: number): () => void {
    const t = setInterval(() => void this.gcAfterBuild(), intervalMs);
    t.unref();
    this.timers.add(t);
    return () => {
      clearInterval(t);
      this.timers.delete(t);
    };
  }

  /** Stops timers and waits for a running GC; the database and snapshotter stay open (not ours). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.timers.clear();
    await Promise.all([...this.running]);
    await this.lock().then((release) => release());
  }
}

// Ref handles: each is one count on its record; using a released handle is an error.
import type { LayerInfo, Mount, Snapshotter } from "../snapshot/types.ts";
import { type CacheDb, type RecordRow, recordInfo } from "./db.ts";
import { CacheError, type ImmutableRef, type MutableRef, type RecordInfo } from "./types.ts";

/** What handles need from the manager that counts them. */
export interface RefOwner {
  readonly snapshotter: Snapshotter;
  readonly records: CacheDb;
  /** The ready row of `id`, or a not_found error. */
  row(id: string, doing: string): RecordRow;
  /** One more count on `id`. */
  retain(id: string): void;
  releaseImmutable(id: string): Promise<void>;
  releaseMutable(id: string): Promise<void>;
  commitMutable(id: string): Promise<ImmutableRef>;
  sizeOf(id: string): Promise<number>;
}

function metaGet<T>(records: CacheDb, id: string, key: string): T | undefined {
  const v = records.getMeta(id, key);
  return v === undefined ? undefined : (JSON.parse(v) as T);
}

function metaSet(records: CacheDb, id: string, key: string, value: unknown): void {
  records.setMeta(id, key, value === undefined ? undefined : JSON.stringify(value));
}

/** A counted handle on an immutable record. */
export class ImmutableHandle implements ImmutableRef {
  readonly id: string;
  readonly parent: string | undefined;
  readonly parents: string[];
  private readonly owner: RefOwner;
  private released = false;

  constructor(owner: RefOwner, row: RecordRow) {
    this.owner = owner;
    this.id = row.id;
    this.parents = row.parents;
    this.parent = row.op === "layer" ? row.parents[0] : undefined;
  }

  private live(doing: string): void {
    if (this.released)
      throw new CacheError("failed_precondition", `${doing} ref ${this.id}: the handle was released`);
  }

  async mount(): Promise<Mount[]> {
    this.live("mounting");
    return this.owner.snapshotter.mounts(this.id);
  }

  layers(): LayerInfo[] {
    this.live("listing layers of");
    return this.owner.snapshotter.layers(this.id);
  }

  diffDir(): string | undefined {
    this.live("finding the diff dir of");
    return this.owner.snapshotter.diffDir(this.id);
  }

  size(): Promise<number> {
    this.live("measuring");
    return this.owner.sizeOf(this.id);
  }

  info(): RecordInfo {
    this.live("describing");
    return recordInfo(this.owner.row(this.id, "describing"));
  }

  getMeta<T = unknown>(key: string): T | undefined {
    this.live("reading metadata of");
    return metaGet<T>(this.owner.records, this.id, key);
  }

  setMeta(key: string, value: unknown): void {
    this.live("writing metadata of");
    metaSet(this.owner.records, this.id, key, value);
  }

  clone(): ImmutableRef {
    this.live("cloning");
    this.owner.retain(this.id);
    return new ImmutableHandle(this.owner, this.owner.row(this.id, "cloning"));
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.owner.releaseImmutable(this.id);
  }
}

/** A counted handle on a mutable record. */
export class MutableHandle implements MutableRef {
  readonly id: string;
  readonly key: string | undefined;
  private readonly owner: RefOwner;
  private released = false;

  constructor(owner: RefOwner, row: RecordRow) {
    this.owner = owner;
    this.id = row.id;
    this.key = row.mutableKey ?? undefined;
  }

  private live(doing: string): void {
    if (this.released)
      throw new CacheError("failed_precondition", `${doing} ref ${this.id}: the handle was released`);
  }

  async mount(): Promise<Mount[]> {
    this.live("mounting");
    return this.owner.snapshotter.mounts(this.id);
  }

  async commit(): Promise<ImmutableRef> {
    this.live("committing");
    const ref = await this.owner.commitMutable(this.id);
    this.released = true;
    return ref;
  }

  size(): Promise<number> {
    this.live("measuring");
    return this.owner.sizeOf(this.id);
  }

  info(): RecordInfo {
    this.live("describing");
    return recordInfo(this.owner.row(this.id, "describing"));
  }

  getMeta<T = unknown>(key: string): T | undefined {
    this.live("reading metadata of");
    return metaGet<T>(this.owner.records, this.id, key);
  }

  setMeta(key: string, value: unknown): void {
    this.live("writing metadata of");
    metaSet(this.owner.records, this.id, key, value);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.owner.releaseMutable(this.id);
  }
}

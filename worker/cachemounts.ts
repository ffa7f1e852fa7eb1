// Cache mounts (RUN --mount=type=cache): persistent writable dirs keyed by id that outlive builds.
// Sharing modes as in BuildKit: "shared" lets concurrent users write the same dir, "private" gives
// a concurrent user a fresh dir of its own, "locked" makes it wait for the current user. A shared
// dir is mounted once and bind-mounted into each container, so two containers never mount the
// same overlay upper dir at once (the kernel forbids it).
import { mkdir, mkdtemp, rmdir } from "node:fs/promises";
import { join } from "node:path";
import type { CacheManager } from "../cache/manager.ts";
import type { ImmutableRef, MutableRef } from "../cache/types.ts";
import { mountAll, unmountAll } from "../snapshot/index.ts";
import type { Mount } from "../snapshot/types.ts";
import { raceAbort } from "../util/abort.ts";

export type Sharing = "shared" | "private" | "locked";

/** A cache mount handed to one exec; `release` when the exec is done. */
export interface CacheMountLease {
  mounts: Mount[];
  release(): Promise<void>;
}

interface Active {
  ref: MutableRef;
  dir: string;
  users: number;
  /** Resolves when the current locked user is done. */
  lock: Promise<void>;
}

export class CacheMounts {
  private readonly cache: CacheManager;
  private readonly mountRoot: string;
  private readonly active = new Map<string, Active>();
  private readonly opening = new Map<string, Promise<Active>>();

  constructor(cache: CacheManager, mountRoot: string) {
    this.cache = cache;
    this.mountRoot = mountRoot;
  }

  /** The persistent key: the id, and the base it was seeded from (another base is another cache). */
  static key(id: string, base: ImmutableRef | undefined): string {
    return `cachemount:${id}${base ? `@${base.id}` : ""}`;
  }

  async acquire(
    id: string,
    sharing: Sharing,
    base: ImmutableRef | undefined,
    signal: AbortSignal,
  ): Promise<CacheMountLease> {
    const key = CacheMounts.key(id, base);
    if (sharing === "private" && this.active.has(key)) return this.privateCopy(id, base);
    const a = await this.open(key, id, base);
    a.users++;
    if (sharing === "locked") {
      const prev = a.lock;
      let done!: () => void;
      a.lock = new Promise((r) => (done = r));
      try {
        await raceAbort(prev, signal);
      } catch (e) {
        done();
        await this.drop(key, a);
        throw e;
      }
      return {
        mounts: bindOf(a.dir),
        release: async () => {
          done();
          await this.drop(key, a);
        },
      };
    }
    return { mounts: bindOf(a.dir), release: () => this.drop(key, a) };
  }

  private async open(key: string, id: string, base: ImmutableRef | undefined): Promise<Active> {
    const existing = this.active.get(key);
    if (existing) return existing;
    let p = this.opening.get(key);
    if (!p) {
      p = (async () => {
        const ref = await this.cache.getMutableByKey(key, {
          parent: base,
          recordType: "exec.cachemount",
          description: `cached mount ${id}`,
        });
        const dir = await mkdtemp(join(this.mountRoot, "cachemount-"));
        try {
          await mountAll(await ref.mount(), dir);
        } catch (e) {
          await rmdir(dir).catch(() => {});
          await ref.release();
          throw e;
        }
        const a: Active = { ref, dir, users: 0, lock: Promise.resolve() };
        this.active.set(key, a);
        return a;
      })();
      this.opening.set(key, p);
      p.finally(() => this.opening.delete(key)).catch(() => {});
    }
    return p;
  }

  private async drop(key: string, a: Active): Promise<void> {
    a.users--;
    if (a.users > 0) return;
    this.active.delete(key);
    await unmountAll(a.dir);
    await rmdir(a.dir).catch(() => {});
    await a.ref.release();
  }

  /** A fresh, temporary cache dir for a concurrent private user; thrown away afterwards. */
  private async privateCopy(id: string, base: ImmutableRef | undefined): Promise<CacheMountLease> {
    const ref = await this.cache.newMutable(base, {
      recordType: "exec.cachemount",
      description: `private cached mount ${id}`,
    });
    const dir = await mkdtemp(join(this.mountRoot, "cachemount-"));
    await mkdir(dir, { recursive: true });
    await mountAll(await ref.mount(), dir);
    return {
      mounts: bindOf(dir),
      release: async () => {
        await unmountAll(dir);
        await rmdir(dir).catch(() => {});
        await ref.release();
      },
    };
  }
}

function bindOf(dir: string): Mount[] {
  return [{ type: "bind", source: dir, options: ["rbind", "rw"] }];
}

// local://NAME sources: a directory of the client, pulled through its session (file sync) into a
// persistent copy kept per (shared key, name), so a rebuild transfers only what changed. The key
// is the content checksum of what was synced: touching or changing an excluded file keeps it.
// The result is an immutable snapshot copied from that persistent copy (reused while the content
// is the same), because the copy itself changes with the next sync.
import type { MutableRef } from "../../cache/types.ts";
import { rememberFileHash } from "../../cache/contenthash/checksum.ts";
import { copy } from "../../fsutil/copy.ts";
import { walk } from "../../fsutil/walk.ts";
import type { SourceOp } from "../../proto/gen/pb/ops_pb.ts";
import { readManifest, syncDir, type SyncManifest } from "../../session/filesync/receive.ts";
import type { SessionCaller } from "../../session/manager.ts";
import { withMounted } from "../../snapshot/index.ts";
import { type Digest, digestOf } from "../../util/digest.ts";
import type { CacheMap, OpContext, OpSolver, VertexOp, WorkerRef } from "../types.ts";
import type { OCIWorker } from "../worker.ts";
import { raceAbort } from "../../util/abort.ts";
import type { SourceHandler } from "./registry.ts";
import { snapshotFromDir } from "./snapshot-dir.ts";

/** What an LLB local source asks for (its attributes, as llb.local() and BuildKit's client write them). */
export interface LocalSpec {
  name: string;
  include?: string[];
  exclude?: string[];
  followPaths?: string[];
  /** The session to sync from, when not the build's own. */
  sessionId?: string;
  sharedKeyHint?: string;
  /** "none" transfers everything, trusting nothing kept from earlier syncs. */
  differ?: string;
}

/** Metadata on the persistent copy. */
const MANIFEST_META = "local.manifest";
/** The checksum of the copy; absent while a sync is running or after one failed. */
const CHECKSUM_META = "local.checksum";
/** The immutable ref made from the copy last time, and the checksum it has. */
const LAST_REF_META = "local.lastref";

/** How often the transfer counter is sent to the build's progress. */
const PROGRESS_INTERVAL_MS = 100;

interface Synced {
  key: string;
  checksum: Digest;
  caller: SessionCaller;
}

export class LocalSource implements SourceHandler {
  /** One sync or copy at a time per persistent copy: they all read or write the same directory. */
  private readonly locks = new Map<string, Promise<void>>();

  resolve(w: OCIWorker, v: VertexOp, src: SourceOp): OpSolver {
    const spec = parseLocalSource(src.identifier, src.attrs, v.name);
    let synced: Promise<Synced> | undefined;
    const sync = (ctx: OpContext) => {
      synced ??= this.sync(w, spec, ctx);
      return synced;
    };
    return {
      cacheMap: async (ctx): Promise<CacheMap> => {
        const s = await sync(ctx);
        return { digest: digestOf(JSON.stringify(["local", s.checksum])), deps: [] };
      },
      exec: async (ctx): Promise<WorkerRef[]> => [await this.snapshot(w, spec, await sync(ctx), ctx)],
    };
  }

  private async sync(w: OCIWorker, spec: LocalSpec, ctx: OpContext): Promise<Synced> {
    const caller = await sessionFor(spec, ctx);
    const shared = spec.sharedKeyHint ? `${caller.sharedKey}:${spec.sharedKeyHint}` : caller.sharedKey;
    const key = `local:${shared}:${spec.name}`;
    return this.locked(key, ctx.signal, () =>
      this.withCopy(w, key, spec, async (ref, dir) => ({
        key,
        caller,
        checksum: await this.syncInto(ref, dir, caller, spec, ctx),
      })),
    );
  }

  /** Brings the persistent copy up to date; its checksum is recorded only once the sync succeeded. */
  private async syncInto(
    ref: MutableRef,
    dir: string,
    caller: SessionCaller,
    spec: LocalSpec,
    ctx: OpContext,
  ): Promise<Digest> {
    const previous = spec.differ === "none" ? undefined : ref.getMeta<SyncManifest>(MANIFEST_META);
    ref.setMeta(CHECKSUM_META, undefined);
    const started = Date.now();
    const status = { id: `transferring ${spec.name}`, name: `transferring ${spec.name}:`, total: 0, started };
    let lastShown = 0;
    const res = await syncDir(caller, {
      name: spec.name,
      include: spec.include,
      exclude: spec.exclude,
      followPaths: spec.followPaths,
      target: dir,
      previous,
      signal: ctx.signal,
      onProgress: (p) => {
        const now = Date.now();
        if (now - lastShown < PROGRESS_INTERVAL_MS) return;
        lastShown = now;
        ctx.log.status({ ...status, current: p.bytes });
      },
    });
    ref.setMeta(MANIFEST_META, res.manifest);
    ref.setMeta(CHECKSUM_META, res.checksum);
    ctx.log.status({ ...status, current: res.bytesReceived, completed: Date.now() });
    return res.checksum;
  }

  /** The synced content as an immutable ref: the one made last time when the content is the same. */
  private snapshot(w: OCIWorker, spec: LocalSpec, s: Synced, ctx: OpContext): Promise<WorkerRef> {
    return this.locked(s.key, ctx.signal, () =>
      this.withCopy(w, s.key, spec, async (ref, dir) => {
        const last = ref.getMeta<{ checksum: Digest; id: string }>(LAST_REF_META);
        if (last?.checksum === s.checksum && w.cache.exists(last.id)) return w.cache.get(last.id);
        if (ref.getMeta(CHECKSUM_META) !== s.checksum) {
          // Another build synced other content into the copy since this one computed its key.
          const again = await this.syncInto(ref, dir, s.caller, spec, ctx);
          if (again !== s.checksum) {
            throw new Error(
              `local directory ${JSON.stringify(spec.name)} changed while the build was running; run the build again`,
            );
          }
        }
        const manifest = ref.getMeta<SyncManifest>(MANIFEST_META);
        const out = await snapshotFromDir(w, { description: `local://${spec.name}` }, async (dst) => {
          await copy(dir, "/", dst, "/", { dirCopyContents: true, signal: ctx.signal });
          if (manifest) await rememberSyncedHashes(dst, manifest, ctx.signal);
        });
        ref.setMeta(LAST_REF_META, { checksum: s.checksum, id: out.id });
        return out;
      }),
    );
  }

  /** Runs `fn` on the persistent copy for `key`, its directory at hand. */
  private async withCopy<T>(
    w: OCIWorker,
    key: string,
    spec: LocalSpec,
    fn: (ref: MutableRef, dir: string) => Promise<T>,
  ): Promise<T> {
    const ref = await w.cache.getMutableByKey(key, {
      recordType: "source.local",
      description: `local source for ${spec.name}`,
    });
    try {
      const mounts = await ref.mount();
      const only = mounts.length === 1 ? mounts[0] : undefined;
      // A parentless snapshot is a plain directory: work in it without mounting.
      if (only?.type === "bind") return await fn(ref, only.source);
      return await withMounted(mounts, (dir) => fn(ref, dir), { base: w.mountRoot });
    } finally {
      await ref.release();
    }
  }

  private async locked<T>(key: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    const before = this.locks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const queued = before.then(() => mine);
    this.locks.set(key, queued);
    try {
      await raceAbort(before, signal);
      return await fn();
    } finally {
      release();
      if (this.locks.get(key) === queued) this.locks.delete(key);
    }
  }
}

/**
 * The sync hashed every file as it arrived; the snapshot's copies get those hashes, so the first
 * step to read the context (a COPY's content checksum) does not read 200 MB again. A file counts
 * as the one synced only when its size and mtime are the ones the sync recorded (the copy was
 * made from the synced dir just now, under the lock; this only guards against surprises).
 */
async function rememberSyncedHashes(dir: string, manifest: SyncManifest, signal: AbortSignal): Promise<void> {
  const synced = readManifest(manifest);
  for await (const e of walk(dir, { signal })) {
    if (!e.stat.isFile()) continue;
    const s = synced.get(e.path);
    if (
      s?.kind === "file" &&
      s.digest.startsWith("sha256:") &&
      BigInt(s.size) === e.stat.size &&
      nearlySameTime(BigInt(s.mtimeNs), e.stat.mtimeNs)
    ) {
      rememberFileHash(e.stat, s.digest as Digest);
    }
  }
}

/** Times set through utimes(2) as seconds in a double come back up to a few hundred ns off. */
function nearlySameTime(a: bigint, b: bigint): boolean {
  const d = a - b;
  return d < 1000n && d > -1000n;
}

/** The session a local source syncs from: the build's own, or the one its `local.session` names. */
async function sessionFor(spec: LocalSpec, ctx: OpContext): Promise<SessionCaller> {
  const s = ctx.session;
  if (spec.sessionId && spec.sessionId !== s?.id) {
    if (!s?.getSession) {
      throw new Error(
        `local source ${JSON.stringify(spec.name)} names session ${spec.sessionId}, which this build cannot reach`,
      );
    }
    return s.getSession(spec.sessionId, ctx.signal);
  }
  if (!s?.caller) {
    throw new Error(
      `local source ${JSON.stringify(spec.name)} needs the client's session, and this build has none (start it with --local ${spec.name}=DIR)`,
    );
  }
  return s.caller;
}

/** Reads a `local://NAME` identifier and its attributes; throws a clear error for malformed ones. */
export function parseLocalSource(identifier: string, attrs: Record<string, string>, what: string): LocalSpec {
  const name = identifier.slice("local://".length);
  if (!identifier.startsWith("local://") || name === "") {
    throw new Error(`${what}: ${JSON.stringify(identifier)} is not a local source (local://NAME)`);
  }
  const list = (key: string): string[] | undefined => {
    const raw = attrs[key];
    if (raw === undefined || raw === "") return undefined;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      v = undefined;
    }
    if (v === null) return undefined;
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
      throw new Error(`${what}: attribute ${key} must be a JSON list of strings, got ${JSON.stringify(raw)}`);
    }
    return v;
  };
  return {
    name,
    include: list("local.includepattern"),
    exclude: list("local.excludepatterns"),
    followPaths: list("local.followpaths"),
    sessionId: attrs["local.session"] || undefined,
    sharedKeyHint: attrs["local.sharedkeyhint"] || undefined,
    differ: attrs["local.differ"] || undefined,
  };
}

// FileOp: mkdir/mkfile/rm/copy/symlink chains applied to snapshots. Each action's result is a
// writable snapshot over its base; a chain of actions on one base reuses one snapshot in place.
import { mkdtemp, rmdir } from "node:fs/promises";
import { join } from "node:path";
import type { ImmutableRef, MutableRef } from "../../cache/types.ts";
import { copy } from "../../fsutil/copy.ts";
import { hasWildcards } from "../../fsutil/glob.ts";
import type { FileOp as PbFileOp } from "../../proto/gen/pb/ops_pb.ts";
import { mountAll, readonlyDir, readonlyMounts, unmountAll } from "../../snapshot/index.ts";
import { applyFileActions, type FileActionBase } from "../fileop/apply.ts";
import type {
  CacheMap,
  ContentSelector,
  InputDependency,
  OpContext,
  OpSolver,
  VertexOp,
  WorkerRef,
} from "../types.ts";
import type { OCIWorker } from "../worker.ts";
import { opCacheDigest } from "./identity.ts";

export class FileOp implements OpSolver {
  private readonly w: OCIWorker;
  private readonly v: VertexOp;
  private readonly f: PbFileOp;

  constructor(w: OCIWorker, v: VertexOp, f: PbFileOp) {
    this.w = w;
    this.v = v;
    this.f = f;
    if (f.actions.length === 0) throw new Error(`${v.name}: file op has no actions`);
  }

  async cacheMap(): Promise<CacheMap> {
    return { digest: opCacheDigest(this.v.op), deps: this.v.op.inputs.map((_, i) => this.dependency(i)) };
  }

  /** An input only copied from (or only read for owner names) counts by the paths read. */
  private dependency(i: number): InputDependency {
    const selectors: ContentSelector[] = [];
    for (const a of this.f.actions) {
      if (Number(a.input) === i) return { kind: "definition" };
      const act = a.action;
      if (act.case === "copy" && Number(a.secondaryInput) === i) {
        const c = act.value;
        selectors.push({
          path: c.src,
          wildcard: c.allowWildcard && hasWildcards(c.src),
          followLinks: c.followSymlink,
          include: c.includePatterns.length ? c.includePatterns : undefined,
          exclude: c.excludePatterns.length ? c.excludePatterns : undefined,
        });
      }
      const owner =
        act.case === "copy" || act.case === "mkdir" || act.case === "mkfile" || act.case === "symlink"
          ? act.value.owner
          : undefined;
      for (const u of [owner?.user, owner?.group]) {
        if (u?.user.case === "byName" && Number(u.user.value.input) === i) {
          selectors.push({ path: "/etc/passwd" }, { path: "/etc/group" });
        }
      }
    }
    return selectors.length > 0 ? { kind: "content", selectors } : { kind: "definition" };
  }

  async exec(ctx: OpContext, inputs: WorkerRef[]): Promise<WorkerRef[]> {
    const refs = inputs as ImmutableRef[];
    const mounted: string[] = [];
    const inputDirs = new Map<number, Promise<string>>();
    // Writable snapshot per action result; an exclusive successor takes it over.
    const targets = new Map<number, { ref: MutableRef; dir: string }>();
    const owned = new Set<MutableRef>();
    const mountAt = async (mounts: Parameters<typeof mountAll>[0]) => {
      const dir = await mkdtemp(join(this.w.mountRoot, "fileop-"));
      mounted.push(dir);
      await mountAll(mounts, dir);
      return dir;
    };
    const fresh = async (parent: ImmutableRef | undefined) => {
      const ref = await this.w.cache.newMutable(parent, { description: this.v.name });
      owned.add(ref);
      return { ref, dir: await mountAt(await ref.mount()) };
    };
    try {
      const result = await applyFileActions(this.f.actions, {
        numInputs: refs.length,
        signal: ctx.signal,
        inputDir: (i) => {
          let p = inputDirs.get(i);
          if (!p) {
            const ref = refs[i];
            if (!ref) throw new Error(`${this.v.name}: file op names input ${i}, which does not exist`);
            // A one-layer input is a plain directory: read it in place, without a mount.
            p = ref.mount({ readonly: true }).then((ms) => readonlyDir(ms) ?? mountAt(readonlyMounts(ms)));
            inputDirs.set(i, p);
          }
          return p;
        },
        prepareTarget: async (i, base: FileActionBase) => {
          let t: { ref: MutableRef; dir: string };
          if (base.kind === "action" && base.exclusive) {
            t = targets.get(base.index)!;
          } else if (base.kind === "action") {
            // Another action still reads the base: work on a copy.
            t = await fresh(undefined);
            await copy(base.dir, "/", t.dir, "/", {
              dirCopyContents: true,
              createDestPath: true,
              signal: ctx.signal,
            });
          } else {
            t = await fresh(base.kind === "input" ? refs[base.index] : undefined);
          }
          targets.set(i, t);
          return t.dir;
        },
      });
      // Commit each output; unmount first so the snapshot is at rest.
      const byDir = new Map([...targets.values()].map((t) => [t.dir, t.ref]));
      for (const dir of mounted.splice(0).reverse()) {
        await unmountAll(dir);
        await rmdir(dir).catch(() => {});
      }
      const outputs: ImmutableRef[] = [];
      const order = [...result.outputs.keys()].sort((a, b) => a - b);
      try {
        for (const idx of order) {
          const ref = byDir.get(result.outputs.get(idx)!);
          if (!ref) throw new Error(`${this.v.name}: output ${idx} has no snapshot`);
          if (!owned.delete(ref))
            throw new Error(`${this.v.name}: output ${idx} reuses another output's snapshot`);
          outputs.push(await ref.commit());
        }
      } catch (e) {
        for (const r of outputs) await r.release();
        throw e;
      }
      if (outputs.length !== order.length || order.some((o, i) => o !== i)) {
        for (const r of outputs) await r.release();
        throw new Error(`${this.v.name}: file op outputs must be numbered from 0 without gaps`);
      }
      return outputs;
    } finally {
      for (const dir of mounted.reverse()) {
        await unmountAll(dir).catch(() => {});
        await rmdir(dir).catch(() => {});
      }
      for (const ref of owned) await ref.release().catch(() => {});
    }
  }
}

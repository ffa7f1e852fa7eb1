// The native driver, for when overlayfs cannot be mounted: every snapshot is a full copy, shown by
// a bind mount. A merge or diff is materialized by applying, in order, the changes of the layers it
// is made of; those layers are kept (as deps) because their changes are what exporters read.
//
// A snapshot's changes are (lower, upper) pairs of committed snapshots: a layer prepared on P adds
// (P, itself) to P's changes, a merge concatenates its parents' changes, and a diff is either the
// rest of the upper's changes (when the lower's are a prefix of them) or the single pair itself.
// Known limits: hard links between files copied by separate steps become copies, and xattrs are
// kept by full copies (cp -a) but not by applied changes (Node has no xattr API).
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { BaseSnapshotter, type Staged } from "./base.ts";
import { applyChanges } from "./changes.ts";
import { copyDirContents } from "./copy.ts";
import type { SnapshotRow } from "./store.ts";
import { type CreateOptions, type LayerInfo, type Mount, SnapshotError, type Usage } from "./types.ts";

type Pair = [number | null, number];

/** Snapshots as full directory copies. */
export class NativeSnapshotter extends BaseSnapshotter {
  readonly driver = "native" as const;

  private changesOf(row: SnapshotRow): Pair[] {
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

  protected mountsOf(row: SnapshotRow): Mount[] {
    if (row.kind === "active")
      return [{ type: "bind", source: this.fsDir(row.id), options: ["rbind", "rw"] }];
    const shown = row.kind === "view" && row.parentId !== null ? row.parentId : row.id;
    return [{ type: "bind", source: this.fsDir(shown), options: ["rbind", "ro"] }];
  }

  protected async stageActive(tmp: string, parent: SnapshotRow | undefined): Promise<Staged> {
    await mkdir(join(tmp, "fs"));
    if (parent) await copyDirContents(this.fsDir(parent.id), join(tmp, "fs"));
    return {};
  }

  protected async beforeCommit(): Promise<void> {}

  protected async afterCommit(): Promise<void> {}

  /** Builds fs/ in `tmp` by applying `pairs` in order (the first full tree is copied when it can be). */
  private async materialize(tmp: string, pairs: Pair[]): Promise<Staged> {
    const fs = join(tmp, "fs");
    await mkdir(fs);
    let rest = pairs;
    if (pairs.length > 0 && pairs[0]![0] === null) {
      await copyDirContents(this.fsDir(pairs[0]![1]), fs);
      rest = pairs.slice(1);
    }
    for (const [lower, upper] of rest) {
      await applyChanges(fs, lower === null ? undefined : this.fsDir(lower), this.fsDir(upper));
    }
    const deps = [...new Set(pairs.flatMap(([l, u]) => (l === null ? [u] : [l, u])))];
    return { changes: pairs, deps };
  }

  async merge(name: string, parents: string[], opts: CreateOptions = {}): Promise<Usage> {
    const doing = `merging ${parents.map((p) => JSON.stringify(p)).join(", ")} into ${JSON.stringify(name)}`;
    if (parents.length === 0) throw new SnapshotError("invalid_argument", `${doing}: nothing to merge`);
    const rows = parents.map((p) => this.committed(p, doing));
    const pairs = rows.flatMap((r) => this.changesOf(r));
    const ids = [...new Set(pairs.flat().filter((i): i is number => i !== null))];
    const row = await this.holding(ids, () =>
      this.create(
        name,
        { kind: "committed", op: "merge", labels: opts.labels },
        async (tmp) => {
          // The first parent's tree already is its changes applied: copy it, apply the others.
          const fs = join(tmp, "fs");
          await mkdir(fs);
          await copyDirContents(this.fsDir(rows[0]!.id), fs);
          for (const r of rows.slice(1)) {
            for (const [lower, upper] of this.changesOf(r)) {
              await applyChanges(fs, lower === null ? undefined : this.fsDir(lower), this.fsDir(upper));
            }
          }
          return { changes: pairs, deps: ids };
        },
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
    const lrow = lower === undefined ? undefined : this.committed(lower, doing);
    const urow = this.committed(upper, doing);
    const lc = lrow ? this.changesOf(lrow) : [];
    const uc = this.changesOf(urow);
    const prefix = lc.length <= uc.length && lc.every((p, i) => uc[i]![0] === p[0] && uc[i]![1] === p[1]);
    const pairs: Pair[] = prefix ? uc.slice(lc.length) : [[lrow!.id, urow.id]];
    const ids = [...new Set(pairs.flat().filter((i): i is number => i !== null))];
    const row = await this.holding(ids, () =>
      this.create(
        name,
        { kind: "committed", op: "diff", labels: opts.labels },
        // Deletions have nothing to act on in an empty tree: a diff alone shows what it adds.
        (tmp) => this.materialize(tmp, pairs),
        doing,
      ),
    );
    return { size: row.size ?? 0, inodes: row.inodes ?? 0 };
  }

  layers(key: string): LayerInfo[] {
    this.checkOpen();
    const row = this.committed(key, "listing layers");
    const keyOf = (id: number) => this.store.byId(id)!.key;
    return this.changesOf(row).map(([l, u]) => ({
      key: keyOf(u),
      lower: l === null ? undefined : keyOf(l),
      upper: keyOf(u),
    }));
  }

  diffDir(): string | undefined {
    return undefined;
  }
}

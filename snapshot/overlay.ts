// The overlayfs driver: each committed snapshot is one diff directory; a snapshot is shown by
// stacking its chain of layers as lowerdirs, with a fresh upper dir when it is writable.
//
// Merges and diffs are stacks of existing layers (no copying) unless a diff's lower chain is not a
// prefix of its upper chain; then the differences are written as a new layer.
//
// Whiteouts in a layer are only hidden by overlayfs when the directory holding them is merged with
// a lower layer (a directory seen in a single layer is read as is, whiteouts listed). That is always
// so in a plain chain, but not when a layer is stacked without its parents (merge, diff). Such
// stacks get a "skeleton" bottom layer: empty copies of every directory holding whiteouts.
//
// Depth: overlayfs takes at most 500 lower dirs. Mount options are limited to one page (4 KiB):
// `Mount` lists carry absolute paths (root/s/<id>/fs), and `mountAll` retries a too-long list with
// paths relative to root/s (about 9 bytes per layer), so chains of up to ~400 layers mount there;
// handing a list to an OCI runtime directly works up to ~4000/(len(root)+12) layers.
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { BaseSnapshotter, type Staged } from "./base.ts";
import { writeLayer } from "./changes.ts";
import { removePath } from "./copy.ts";
import { OVERLAY_MAX_LOWERS, withMounted } from "./mount.ts";
import type { SnapshotRow } from "./store.ts";
import { type CreateOptions, type LayerInfo, type Mount, SnapshotError, type Usage } from "./types.ts";
import { type TreeUsage, treeUsage } from "./usage.ts";

type Chain = { layers: SnapshotRow[]; skeletons: string[] };

function checkRelDir(d: string): void {
  if (d.startsWith("/") || d.split("/").some((p) => p === ".." || p === ".")) {
    throw new Error(`invalid whiteout directory ${JSON.stringify(d)} in snapshot metadata`);
  }
}

async function makeSkeleton(dir: string, dirs: string[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const d of dirs) {
    if (d === "") continue;
    checkRelDir(d);
    await mkdir(join(dir, d), { recursive: true });
  }
}

/** Snapshots as overlayfs layers. */
export class OverlaySnapshotter extends BaseSnapshotter {
  readonly driver = "overlayfs" as const;
  /** containerd passes index=off when the kernel knows the option, so lower dirs can be shared freely. */
  private readonly indexOff = existsSync("/sys/module/overlay/parameters/index");

  private skelDir(id: number): string {
    return join(this.dir(id), "skel");
  }

  /** Layers of a committed snapshot, bottom first, and the skeletons that go below them. */
  private chain(row: SnapshotRow): Chain {
    const own = (r: SnapshotRow) => (r.whiteoutDirs.length > 0 ? [this.skelDir(r.id)] : []);
    if (row.stack !== null) {
      return { layers: row.stack.map((id) => this.store.byId(id)!), skeletons: own(row) };
    }
    const layers: SnapshotRow[] = [];
    let cur: SnapshotRow | undefined = row;
    for (;;) {
      layers.push(cur);
      if (cur.parentId === null) break;
      const parent: SnapshotRow = this.store.byId(cur.parentId)!;
      if (parent.stack !== null) {
        const c = this.chain(parent);
        return { layers: [...c.layers, ...layers.reverse()], skeletons: c.skeletons };
      }
      cur = parent;
    }
    return { layers: layers.reverse(), skeletons: own(cur) };
  }

  /** lowerdir entries for a chain: top layer first, skeletons last. */
  private lowerDirs(c: Chain): string[] {
    return [...c.layers.map((l) => this.fsDir(l.id)).reverse(), ...c.skeletons];
  }

  private checkDepth(n: number, doing: string): void {
    if (n > OVERLAY_MAX_LOWERS) {
      throw new SnapshotError(
        "invalid_argument",
        `${doing}: ${n} layers exceed overlayfs' limit of ${OVERLAY_MAX_LOWERS}; squash the chain (diff it into one layer)`,
      );
    }
  }

  private overlayOptions(): string[] {
    return this.indexOff ? ["index=off"] : [];
  }

  /** Read-only mounts showing the chain of `of`, or `own`'s empty fs when there is nothing to show. */
  private viewMounts(own: SnapshotRow, of: SnapshotRow | undefined): Mount[] {
    const lowers = of ? this.lowerDirs(this.chain(of)) : [];
    if (lowers.length === 0) return [{ type: "bind", source: this.fsDir(own.id), options: ["rbind", "ro"] }];
    if (lowers.length === 1) return [{ type: "bind", source: lowers[0]!, options: ["rbind", "ro"] }];
    return [
      {
        type: "overlay",
        source: "overlay",
        options: [...this.overlayOptions(), `lowerdir=${lowers.join(":")}`],
      },
    ];
  }

  protected mountsOf(row: SnapshotRow): Mount[] {
    if (row.kind === "committed") return this.viewMounts(row, row);
    const parent = row.parentId === null ? undefined : this.store.byId(row.parentId)!;
    if (row.kind === "view") return this.viewMounts(row, parent);
    const lowers = parent ? this.lowerDirs(this.chain(parent)) : [];
    if (lowers.length === 0) return [{ type: "bind", source: this.fsDir(row.id), options: ["rbind", "rw"] }];
    return [
      {
        type: "overlay",
        source: "overlay",
        options: [
          ...this.overlayOptions(),
          `lowerdir=${lowers.join(":")}`,
          `upperdir=${this.fsDir(row.id)}`,
          `workdir=${join(this.dir(row.id), "work")}`,
        ],
      },
    ];
  }

  protected async stageActive(tmp: string, parent: SnapshotRow | undefined): Promise<Staged> {
    if (parent) this.checkDepth(this.lowerDirs(this.chain(parent)).length, "preparing a snapshot");
    await mkdir(join(tmp, "fs"));
    await mkdir(join(tmp, "work"));
    return {};
  }

  protected async beforeCommit(row: SnapshotRow, usage: TreeUsage): Promise<void> {
    // A parentless layer with whiteouts (a written diff, an unpacked layer) is shown over a skeleton.
    await removePath(this.skelDir(row.id));
    if (row.parentId === null && usage.whiteoutDirs.length > 0) {
      await makeSkeleton(this.skelDir(row.id), usage.whiteoutDirs);
    }
  }

  protected async afterCommit(row: SnapshotRow): Promise<void> {
    await removePath(join(this.dir(row.id), "work"));
  }

  protected override async cleanupRow(row: SnapshotRow): Promise<string[]> {
    const work = join(this.dir(row.id), "work");
    if (row.kind !== "committed" || !existsSync(work)) return [];
    await removePath(work);
    return [work];
  }

  /** Stages a stack of layers: an empty fs/ and the skeleton their whiteouts need. */
  private async stageStack(tmp: string, layers: SnapshotRow[]): Promise<Staged> {
    // A layer listed twice counts once, at its last place: applying it again gives the same result.
    const ids: number[] = [];
    for (let i = layers.length - 1; i >= 0; i--) if (!ids.includes(layers[i]!.id)) ids.unshift(layers[i]!.id);
    const rows = ids.map((id) => this.store.byId(id)!);
    const whiteoutDirs = [...new Set(rows.flatMap((r) => r.whiteoutDirs))].sort();
    this.checkDepth(ids.length + (whiteoutDirs.length > 0 ? 1 : 0), "stacking layers");
    await mkdir(join(tmp, "fs"));
    if (whiteoutDirs.length > 0) await makeSkeleton(join(tmp, "skel"), whiteoutDirs);
    return { stack: ids, whiteoutDirs, deps: ids };
  }

  async merge(name: string, parents: string[], opts: CreateOptions = {}): Promise<Usage> {
    const doing = `merging ${parents.map((p) => JSON.stringify(p)).join(", ")} into ${JSON.stringify(name)}`;
    if (parents.length === 0) throw new SnapshotError("invalid_argument", `${doing}: nothing to merge`);
    const rows = parents.map((p) => this.committed(p, doing));
    const layers = rows.flatMap((r) => this.chain(r).layers);
    const row = await this.holding(
      layers.map((l) => l.id),
      () =>
        this.create(
          name,
          { kind: "committed", op: "merge", labels: opts.labels },
          (tmp) => this.stageStack(tmp, layers),
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
    const ul = this.chain(urow).layers;
    const ll = lrow ? this.chain(lrow).layers : [];
    const prefix = ll.length <= ul.length && ll.every((l, i) => ul[i]!.id === l.id);
    const held = [...(lrow ? [lrow.id] : []), urow.id, ...ul.map((l) => l.id)];
    const row = await this.holding(held, () =>
      this.create(
        name,
        { kind: "committed", op: "diff", labels: opts.labels },
        async (tmp) => {
          if (prefix) return this.stageStack(tmp, ul.slice(ll.length));
          return this.stageComputedDiff(tmp, lrow, urow);
        },
        doing,
      ),
    );
    return { size: row.size ?? 0, inodes: row.inodes ?? 0 };
  }

  /** Writes the differences of two mounted trees as one new parentless layer. */
  private async stageComputedDiff(
    tmp: string,
    lrow: SnapshotRow | undefined,
    urow: SnapshotRow,
  ): Promise<Staged> {
    const out = join(tmp, "fs");
    await mkdir(out);
    await this.scratchMounts(async (base) => {
      await withMounted(
        this.viewMounts(urow, urow),
        async (upperDir) => {
          if (!lrow) return writeLayer(out, undefined, upperDir);
          await withMounted(this.viewMounts(lrow, lrow), (lowerDir) => writeLayer(out, lowerDir, upperDir), {
            readonly: true,
            base,
          });
        },
        { readonly: true, base },
      );
    });
    const { whiteoutDirs } = await treeUsage(out);
    if (whiteoutDirs.length > 0) await makeSkeleton(join(tmp, "skel"), whiteoutDirs);
    return { whiteoutDirs };
  }

  layers(key: string): LayerInfo[] {
    this.checkOpen();
    const row = this.committed(key, "listing layers");
    return this.chain(row).layers.map((l) => ({
      key: l.key,
      diffDir: this.fsDir(l.id),
      lower: l.parentId === null ? undefined : this.store.byId(l.parentId)?.key,
      upper: l.key,
    }));
  }

  diffDir(key: string): string | undefined {
    this.checkOpen();
    const row = this.store.mustGet(key, "finding the diff dir");
    return row.stack === null && row.kind !== "view" ? this.fsDir(row.id) : undefined;
  }
}

// docker-image:// sources: resolve the reference to a manifest for the op's platform (the cache
// key), then pull each layer into the content store and unpack the chain into snapshots, one
// committed ref per layer, found again by chain id so an image (or a shared base) is unpacked once.
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { applyLayerBlob } from "../../archive/apply.ts";
import type { ImmutableRef } from "../../cache/types.ts";
import { CacheError } from "../../cache/types.ts";
import type { SourceOp } from "../../proto/gen/pb/ops_pb.ts";
import type { Descriptor, RegistryClient, ResolvedImage } from "../../source/registry/index.ts";
import { type Digest, digestOf } from "../../util/digest.ts";
import { Semaphore } from "../../util/semaphore.ts";
import type { CacheMap, OpContext, OpSolver, VertexOp, WorkerRef } from "../types.ts";
import type { VertexLog } from "../vertex-log.ts";
import type { OCIWorker } from "../worker.ts";
import type { SourceHandler } from "./registry.ts";

/** Metadata kept on each layer's ref, for exporters that can reuse the compressed blob. */
export interface LayerMeta {
  diffID: Digest;
  blob: Digest;
  mediaType: string;
  size: number;
}

/** One layer of a chain to unpack: its blob and the digest of its uncompressed tar. */
export type ChainLayer = { desc: Descriptor; diffID: Digest };

/** How {@link ImageSource.unpackChain} gets blobs and reports. */
export type UnpackOptions = {
  /** Where the layers come from, for descriptions and errors ("127.0.0.1:5000/app:1"). */
  what: string;
  /** Puts the blob into the worker's content store (verified by digest). */
  fetch(desc: Descriptor, onProgress: (current: number, total: number) => void): Promise<unknown>;
  signal: AbortSignal;
  log: Pick<VertexLog, "status" | "warn">;
};

/** Blob downloads of one chain at once (docker's max-concurrent-downloads default). */
const PARALLEL_DOWNLOADS = 3;

export class ImageSource implements SourceHandler {
  readonly registry: RegistryClient;
  private readonly getLayer: StatementSync;
  private readonly putLayer: StatementSync;
  private readonly getTag: StatementSync;
  private readonly putTag: StatementSync;
  private readonly unpacking = new Map<string, Promise<string>>();

  constructor(registry: RegistryClient, db: DatabaseSync) {
    this.registry = registry;
    db.exec(`CREATE TABLE IF NOT EXISTS source_image_layers (chain_id TEXT PRIMARY KEY, ref_id TEXT NOT NULL) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS source_image_tags (ref TEXT NOT NULL, platform TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (ref, platform)) WITHOUT ROWID;`);
    this.getLayer = db.prepare("SELECT ref_id FROM source_image_layers WHERE chain_id = ?");
    this.putLayer = db.prepare("INSERT OR REPLACE INTO source_image_layers (chain_id, ref_id) VALUES (?, ?)");
    this.getTag = db.prepare("SELECT digest FROM source_image_tags WHERE ref = ? AND platform = ?");
    this.putTag = db.prepare(
      "INSERT OR REPLACE INTO source_image_tags (ref, platform, digest) VALUES (?, ?, ?)",
    );
  }

  resolve(w: OCIWorker, v: VertexOp, src: SourceOp): OpSolver {
    const ref = src.identifier.slice("docker-image://".length);
    const p = v.op.platform;
    const platform = p?.OS ? `${p.OS}/${p.Architecture}${p.Variant ? `/${p.Variant}` : ""}` : undefined;
    const mode = src.attrs["image.resolvemode"] ?? "default";
    let resolved: Promise<ResolvedImage> | undefined;
    const resolveImage = (ctx: OpContext) => {
      resolved ??= (async () => {
        // "local" prefers the digest this daemon resolved the tag to before, without the network.
        const pinned =
          mode === "local" && !ref.includes("@")
            ? (this.getTag.get(ref, platform ?? "") as { digest: string } | undefined)
            : undefined;
        const target = pinned ? `${ref.replace(/:[^/:]*$/, "")}@${pinned.digest}` : ref;
        const img = await this.registry.resolve(target, { platform, signal: ctx.signal });
        this.putTag.run(ref, platform ?? "", img.rootDigest);
        return img;
      })();
      return resolved;
    };
    return {
      cacheMap: async (ctx): Promise<CacheMap> => {
        const img = await resolveImage(ctx);
        return { digest: digestOf(JSON.stringify(["docker-image", img.digest])), deps: [] };
      },
      exec: async (ctx): Promise<WorkerRef[]> => [await this.pull(w, await resolveImage(ctx), ctx)],
    };
  }

  private pull(w: OCIWorker, img: ResolvedImage, ctx: OpContext): Promise<ImmutableRef> {
    const diffIDs = img.config.rootfs?.diff_ids ?? [];
    if (diffIDs.length !== img.layers.length) {
      throw new Error(
        `image ${img.ref}: its config lists ${diffIDs.length} layers but its manifest ${img.layers.length}`,
      );
    }
    const layers = img.layers.map((desc, i) => ({ desc, diffID: diffIDs[i] as Digest }));
    return this.unpackChain(w, layers, {
      what: img.ref,
      fetch: (layer, onProgress) =>
        this.registry.fetchBlob(img.ref, layer, { store: w.content, signal: ctx.signal, onProgress }),
      signal: ctx.signal,
      log: ctx.log,
    });
  }

  /**
   * A ref for a chain of layers, bottom first: each layer is found again by its chain id, or
   * fetched into the content store (`fetch`) and unpacked onto its parent. Image pulls and
   * cache imports share it, so a layer both know is unpacked once.
   */
  async unpackChain(w: OCIWorker, layers: ChainLayer[], how: UnpackOptions): Promise<ImmutableRef> {
    const chains: string[] = [];
    for (const layer of layers) {
      const below = chains.at(-1);
      chains.push(below === undefined ? layer.diffID : digestOf(`${below} ${layer.diffID}`));
    }
    // Layers unpack one after another (each onto its parent), but their blobs need not wait:
    // the ones this worker lacks download a few at a time while the layers below unpack.
    const downloads = new Map<string, Promise<unknown>>();
    const limit = new Semaphore(PARALLEL_DOWNLOADS);
    layers.forEach((layer, i) => {
      if (this.knownLayer(w, chains[i]!) !== undefined || downloads.has(layer.desc.digest)) return;
      const p = limit.run(() => this.download(layer.desc, how), how.signal);
      p.catch(() => {}); // awaited (and reported) by the layer's unpack, if it gets that far
      downloads.set(layer.desc.digest, p);
    });
    const fetching: UnpackOptions = {
      ...how,
      fetch: (desc) => downloads.get(desc.digest) ?? this.download(desc, how),
    };
    let parent: ImmutableRef | undefined;
    try {
      for (const [i, layer] of layers.entries()) {
        const id = await this.layerRef(w, layer, chains[i]!, parent, fetching);
        const next = w.cache.get(id);
        await parent?.release();
        parent = next;
      }
    } catch (e) {
      await parent?.release();
      throw e;
    }
    if (!parent) {
      const empty = await w.cache.newMutable(undefined, { description: `${how.what} (no layers)` });
      return empty.commit();
    }
    return parent;
  }

  /** The ref of an unpacked layer at `chain`, if this worker still has it. */
  private knownLayer(w: OCIWorker, chain: string): string | undefined {
    const known = this.getLayer.get(chain) as { ref_id: string } | undefined;
    return known && w.cache.exists(known.ref_id) ? known.ref_id : undefined;
  }

  /** Fetches a layer blob into the content store, reporting its bytes as a status. */
  private async download(layer: Descriptor, how: UnpackOptions): Promise<void> {
    const short = layer.digest.slice(0, 19);
    const started = Date.now();
    await how.fetch(layer, (current, total) =>
      how.log.status({ id: layer.digest, name: short, current, total, started }),
    );
    how.log.status({
      id: layer.digest,
      name: short,
      current: layer.size,
      total: layer.size,
      started,
      completed: Date.now(),
    });
  }

  /** The ref id of the layer at `chain`, unpacking it unless a ref for that chain exists. */
  private layerRef(
    w: OCIWorker,
    layer: ChainLayer,
    chain: string,
    parent: ImmutableRef | undefined,
    how: UnpackOptions,
  ): Promise<string> {
    const known = this.knownLayer(w, chain);
    if (known !== undefined) return Promise.resolve(known);
    let p = this.unpacking.get(chain);
    if (!p) {
      p = this.unpack(w, layer, chain, parent, how);
      this.unpacking.set(chain, p);
      p.finally(() => this.unpacking.delete(chain)).catch(() => {});
    }
    return p;
  }

  private async unpack(
    w: OCIWorker,
    { desc: layer, diffID }: ChainLayer,
    chain: string,
    parent: ImmutableRef | undefined,
    how: UnpackOptions,
  ): Promise<string> {
    await how.fetch(layer, () => {});
    const name = `layer ${layer.digest} of ${how.what}`;
    const m = await w.cache.newMutable(parent, { description: `pulled from ${how.what}` });
    try {
      const mounts = await m.mount();
      const first = mounts[0];
      const upper =
        first?.type === "overlay"
          ? option(first.options, "upperdir")
          : first?.type === "bind"
            ? first.source
            : undefined;
      if (!upper || mounts.length !== 1)
        throw new Error(`${name}: cannot unpack into a snapshot mounted as ${JSON.stringify(mounts)}`);
      const lowers = first!.type === "overlay" ? (option(first!.options, "lowerdir")?.split(":") ?? []) : [];
      const stats = await applyLayerBlob(await w.content.readStream(layer.digest), upper, {
        format: first!.type === "overlay" ? "overlay" : "plain",
        lowers,
        layer: name,
        signal: how.signal,
        onWarning: (msg: string) => how.log.warn(msg),
      });
      if (stats.diffID !== diffID) {
        throw new Error(
          `${name}: its content does not match the image config (diff id ${stats.diffID}, want ${diffID})`,
        );
      }
      const ref = await m.commit();
      ref.setMeta("layer", {
        diffID,
        blob: layer.digest,
        mediaType: layer.mediaType,
        size: layer.size,
      } satisfies LayerMeta);
      this.putLayer.run(chain, ref.id);
      const id = ref.id;
      await ref.release();
      return id;
    } catch (e) {
      await m.release().catch(() => {});
      if (e instanceof CacheError) throw new Error(`${name}: ${e.message}`);
      throw e;
    }
  }
}

function option(options: string[], key: string): string | undefined {
  const o = options.find((x) => x.startsWith(`${key}=`));
  return o?.slice(key.length + 1);
}

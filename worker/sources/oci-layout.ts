// oci-layout:// sources: an image from an OCI image layout, either the client's (buildctl
// --oci-layout NAME=DIR, synced through the session like a local dir, so a rebuild transfers only
// new blobs) or, without a session store, the daemon's own content store (images it exported).
// The key is the manifest digest for the op's platform; layers are unpacked like pulled images.
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { SourceOp } from "../../proto/gen/pb/ops_pb.ts";
import { syncDir, type SyncManifest } from "../../session/filesync/receive.ts";
import { withMounted } from "../../snapshot/index.ts";
import { isDigest } from "../../util/digest.ts";
import {
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  parsePlatform,
} from "../../source/registry/index.ts";
import { parseImageConfig, parseManifest } from "../../source/registry/manifest.ts";
import { bestPlatformMatch, hostPlatform } from "../../source/registry/platform.ts";
import { type Digest, digestHex, digestOf } from "../../util/digest.ts";
import type { CacheMap, OpContext, OpSolver, VertexOp, WorkerRef } from "../types.ts";
import type { OCIWorker } from "../worker.ts";
import type { ImageSource } from "./image.ts";
import type { SourceHandler } from "./registry.ts";

/** The session dir name under which buildctl shares an OCI layout named NAME. */
export const layoutDirName = (name: string) => `oci-layout:${name}`;

const MAX_JSON = 16 << 20;

interface Layout {
  /** Reads a small blob (index, manifest, config). */
  json(digest: string): Promise<Buffer>;
  /** Puts a blob into the worker's content store, verified. */
  ingest(desc: Descriptor): Promise<void>;
  /** The layout's index.json. */
  index(): Promise<ImageIndex>;
  what: string;
}

export class OCILayoutSource implements SourceHandler {
  private readonly images: ImageSource;

  constructor(images: ImageSource) {
    this.images = images;
  }

  resolve(w: OCIWorker, v: VertexOp, src: SourceOp): OpSolver {
    const ref = src.identifier.slice("oci-layout://".length);
    const m = /^([^@:]+)(?::([^@]+))?(?:@(sha256:[0-9a-f]{64}))?$/.exec(ref);
    if (!m)
      throw new Error(
        `${v.name}: invalid OCI layout reference ${JSON.stringify(ref)}: want NAME[:TAG][@sha256:...]`,
      );
    const [, name, tag, pinned] = m as unknown as [string, string, string | undefined, string | undefined];
    const store = src.attrs["oci.store"] || name;
    const p = v.op.platform;
    const platform = p?.OS
      ? parsePlatform(`${p.OS}/${p.Architecture}${p.Variant ? `/${p.Variant}` : ""}`)
      : hostPlatform();
    let resolved: Promise<{ layout: Layout; manifestDigest: Digest; manifest: ImageManifest }> | undefined;
    const resolveImage = (ctx: OpContext) => {
      resolved ??= (async () => {
        const layout = await this.open(w, store, src.attrs["oci.session"], ctx);
        let digest = pinned;
        if (!digest) {
          const idx = await layout.index();
          const want = tag ?? "latest";
          const hit = idx.manifests.find(
            (d) => d.annotations?.["org.opencontainers.image.ref.name"] === want,
          );
          if (!hit) throw new Error(`${layout.what}: no image tagged ${JSON.stringify(want)} in index.json`);
          digest = hit.digest;
        }
        const what = `${layout.what}@${digest}`;
        let parsed = parseManifest(await layout.json(digest), undefined, what);
        let manifestDigest = digest as Digest;
        if (parsed.kind === "index") {
          const i = bestPlatformMatch(
            platform,
            parsed.index.manifests.map((d) => d.platform),
          );
          if (i === undefined)
            throw new Error(
              `${what}: no image for ${p?.OS ?? "this"}/${p?.Architecture ?? "platform"} in its index`,
            );
          manifestDigest = parsed.index.manifests[i]!.digest as Digest;
          parsed = parseManifest(await layout.json(manifestDigest), undefined, what);
        }
        if (parsed.kind !== "manifest") throw new Error(`${what}: an index inside an index is not supported`);
        return { layout, manifestDigest, manifest: parsed.manifest };
      })();
      return resolved;
    };
    return {
      cacheMap: async (ctx): Promise<CacheMap> => {
        const r = await resolveImage(ctx);
        return { digest: digestOf(JSON.stringify(["oci-layout", r.manifestDigest])), deps: [] };
      },
      exec: async (ctx): Promise<WorkerRef[]> => {
        const { layout, manifest, manifestDigest } = await resolveImage(ctx);
        const what = `${layout.what}@${manifestDigest}`;
        const config = parseImageConfig(await layout.json(manifest.config.digest), what);
        const diffIDs = config.rootfs?.diff_ids ?? [];
        if (diffIDs.length !== manifest.layers.length) {
          throw new Error(
            `${what}: its config lists ${diffIDs.length} layers but its manifest ${manifest.layers.length}`,
          );
        }
        const layers = manifest.layers.map((desc, i) => ({ desc, diffID: diffIDs[i] as Digest }));
        return [
          await this.images.unpackChain(w, layers, {
            what,
            fetch: (desc) => layout.ingest(desc),
            signal: ctx.signal,
            log: ctx.log,
          }),
        ];
      },
    };
  }

  /** The client's layout through the session, else the daemon's content store. */
  private async open(
    w: OCIWorker,
    store: string,
    sessionId: string | undefined,
    ctx: OpContext,
  ): Promise<Layout> {
    const session = ctx.session;
    let caller = session?.caller;
    if (sessionId && session?.getSession && sessionId !== session.id)
      caller = await session.getSession(sessionId, ctx.signal);
    const dirName = layoutDirName(store);
    if (caller) {
      // Synced into a persistent copy per (client, store): a rebuild transfers only new blobs.
      const key = `oci-layout:${caller.sharedKey}:${store}`;
      const ref = await w.cache.getMutableByKey(key, {
        recordType: "source.local",
        description: `OCI layout ${store} from the client`,
      });
      try {
        const mounts = await ref.mount();
        let synced = false;
        await withMounted(
          mounts,
          async (dir) => {
            try {
              const res = await syncDir(caller, {
                name: dirName,
                target: dir,
                previous: ref.getMeta<SyncManifest>("local.manifest"),
                signal: ctx.signal,
              });
              ref.setMeta("local.manifest", res.manifest);
              synced = true;
            } catch (e) {
              if (!/no access allowed to dir|shares no local directories/.test((e as Error).message)) throw e;
            }
          },
          { base: w.mountRoot },
        );
        if (synced) return this.fromDir(w, key, `OCI layout ${store} (client)`);
      } finally {
        await ref.release();
      }
    }
    return {
      what: `OCI layout ${store} (daemon content store)`,
      json: async (digest) => {
        if (!(await w.content.has(digest)))
          throw new Error(
            `OCI layout ${store}: blob ${digest} is not in the daemon's content store (share a layout with buildctl --oci-layout ${store}=DIR)`,
          );
        return w.content.readAll(digest, { maxBytes: MAX_JSON });
      },
      ingest: async (desc) => {
        if (!(await w.content.has(desc.digest)))
          throw new Error(`OCI layout ${store}: layer ${desc.digest} is not in the daemon's content store`);
      },
      index: async () => {
        throw new Error(
          `OCI layout ${store}: the daemon's content store has no index.json; pin the image by digest (oci-layout://${store}@sha256:...)`,
        );
      },
    };
  }

  /** Blobs read from a synced layout copy (the persistent ref `key`), verified as they are used. */
  private fromDir(w: OCIWorker, key: string, what: string): Layout {
    const inCopy = async <T>(fn: (dir: string) => Promise<T>): Promise<T> => {
      const ref = await w.cache.getMutableByKey(key, { recordType: "source.local" });
      try {
        return await withMounted(await ref.mount(), fn, { readonly: true, inPlace: true, base: w.mountRoot });
      } finally {
        await ref.release();
      }
    };
    const read = (rel: string) =>
      inCopy(async (dir) => {
        const data = await readFile(join(dir, rel));
        if (data.length > MAX_JSON) throw new Error(`${what}: ${rel} is larger than ${MAX_JSON} bytes`);
        return data;
      });
    const blobPath = (digest: string) => {
      if (!isDigest(digest)) throw new Error(`${what}: invalid digest ${JSON.stringify(digest)}`);
      return `blobs/sha256/${digestHex(digest)}`;
    };
    return {
      what,
      json: async (digest) => {
        const data = await read(blobPath(digest));
        if (digestOf(data) !== digest) throw new Error(`${what}: blob ${digest} does not match its digest`);
        // Kept in the daemon's store too: the image can then be named by digest alone.
        if (!(await w.content.has(digest))) await w.content.writeBlob(data, { expectedDigest: digest });
        return data;
      },
      ingest: async (desc) => {
        if (await w.content.has(desc.digest)) return;
        await inCopy(async (dir) => {
          await w.content.writeBlob(createReadStream(join(dir, blobPath(desc.digest))), {
            expectedDigest: desc.digest,
            expectedSize: desc.size,
          });
        });
      },
      index: async () => JSON.parse((await read("index.json")).toString("utf8")) as ImageIndex,
    };
  }
}

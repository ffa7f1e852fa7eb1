// Registering an image buildd exported in containerd's image store, so that `ctr -n <ns> images
// ls` shows it and containerd (or Kubernetes on the same node) can run it without a registry.
//
// The blobs are copied from buildd's content store into containerd's under a short lease; the
// manifest and index blobs get containerd's `containerd.io/gc.ref.content.*` labels naming their
// children, so once the image record exists it keeps every blob of the image from containerd's
// garbage collector, and deleting the image (ctr images rm) frees them.
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ContentStore } from "../../content/store.ts";
import { DescriptorSchema } from "../../proto/gen/containerd/types/descriptor_pb.ts";
import type { Descriptor } from "../../source/registry/index.ts";
import type { Digest } from "../../util/digest.ts";
import { type ContainerdClient, isAlreadyExists, isNotFound, underLease } from "./client.ts";
import { WriteAction } from "../../proto/gen/containerd/services/content/v1/content_pb.ts";

/** Bytes per Write message: well under containerd's 16 MiB message limit. */
const CHUNK = 1 << 20;
/** How long the copy's lease holds blobs if buildd dies before the image record exists. */
const COPY_LEASE_MS = 60 * 60 * 1000;
/** Largest manifest or index read to find its children. */
const MANIFEST_MAX = 4 << 20;

/** An image as the exporter built it: its root descriptor and every blob (root last). */
export type ExportedImage = { root: Descriptor; blobs: Descriptor[] };

/** The gc.ref labels of a manifest or index: which blobs it keeps alive. */
function childLabels(mediaType: string, json: unknown): Record<string, string> {
  const labels: Record<string, string> = {};
  const doc = json as {
    config?: { digest?: string };
    layers?: { digest?: string }[];
    manifests?: { digest?: string }[];
  };
  if (/manifest\.v1\+json|manifest\.v2\+json/.test(mediaType) || doc.config) {
    if (doc.config?.digest) labels["containerd.io/gc.ref.content.config"] = doc.config.digest;
    for (const [i, l] of (doc.layers ?? []).entries()) {
      if (l.digest) labels[`containerd.io/gc.ref.content.l.${i}`] = l.digest;
    }
  }
  for (const [i, m] of (doc.manifests ?? []).entries()) {
    if (m.digest) labels[`containerd.io/gc.ref.content.m.${i}`] = m.digest;
  }
  return labels;
}

function isManifestOrIndex(mediaType: string): boolean {
  return /manifest|image\.index|manifest\.list/.test(mediaType);
}

/** Puts exported images into one containerd namespace. */
export class ContainerdImages {
  private readonly client: ContainerdClient;
  private readonly content: ContentStore;

  constructor(client: ContainerdClient, content: ContentStore) {
    this.client = client;
    this.content = content;
  }

  /** Copies the image's blobs into containerd and points `name` at its root (created or updated). */
  async register(name: string, image: ExportedImage, signal?: AbortSignal): Promise<void> {
    const doing = `registering image ${name} in containerd (namespace ${this.client.namespace})`;
    try {
      const { lease } = await this.client.leases.create({
        labels: { "containerd.io/gc.expire": new Date(Date.now() + COPY_LEASE_MS).toISOString() },
      });
      const leaseId = lease!.id;
      try {
        for (const blob of image.blobs) await this.copyBlob(blob, leaseId, signal);
        const target = create(DescriptorSchema, {
          mediaType: image.root.mediaType,
          digest: image.root.digest,
          size: BigInt(image.root.size),
        });
        const now = timestampFromMs(Date.now());
        try {
          await this.client.images.create(
            { image: { name, target, createdAt: now, updatedAt: now } },
            { signal },
          );
        } catch (e) {
          if (!isAlreadyExists(e)) throw e;
          await this.client.images.update(
            { image: { name, target, updatedAt: now }, updateMask: { paths: ["target"] } },
            { signal },
          );
        }
      } finally {
        await this.client.leases.delete({ id: leaseId }).catch(() => {});
      }
    } catch (e) {
      throw new Error(`${doing}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** One blob into containerd's content store (unless there), with its gc.ref labels. */
  private async copyBlob(d: Descriptor, lease: string, signal?: AbortSignal): Promise<void> {
    let labels: Record<string, string> = {};
    if (isManifestOrIndex(d.mediaType)) {
      const bytes = await this.content.readAll(d.digest, { maxBytes: MANIFEST_MAX });
      labels = childLabels(d.mediaType, JSON.parse(bytes.toString("utf8")));
    }
    const c = this.client.content;
    try {
      const { info } = await c.info({ digest: d.digest }, underLease(lease, signal));
      // Present already (pulled or exported before): hold it, and make sure it keeps its children.
      await this.client.leases.addResource({ id: lease, resource: { id: d.digest, type: "content" } });
      const missing = Object.entries(labels).filter(([k, v]) => info?.labels[k] !== v);
      if (missing.length > 0) {
        await c.update(
          { info: { digest: d.digest, labels }, updateMask: { paths: missing.map(([k]) => `labels.${k}`) } },
          underLease(lease, signal),
        );
      }
      return;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    await this.write(d.digest, d.size, labels, lease, signal);
  }

  private async write(
    digest: Digest,
    size: number,
    labels: Record<string, string>,
    lease: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const content = this.content;
    const ref = `buildd-export-${digest}`;
    async function* requests() {
      let offset = 0;
      const stream = await content.readStream(digest);
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flush = function* () {
        if (pendingBytes === 0) return;
        const data = Buffer.concat(pending);
        pending = [];
        pendingBytes = 0;
        yield {
          action: WriteAction.WRITE,
          ref,
          total: BigInt(size),
          expected: digest,
          offset: BigInt(offset),
          data,
        };
        offset += data.byteLength;
      };
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        pending.push(chunk);
        pendingBytes += chunk.byteLength;
        if (pendingBytes >= CHUNK) yield* flush();
      }
      yield* flush();
      yield {
        action: WriteAction.COMMIT,
        ref,
        total: BigInt(size),
        expected: digest,
        offset: BigInt(offset),
        labels,
      };
    }
    try {
      for await (const _ of this.client.content.write(requests(), underLease(lease, signal))) {
        // Each WRITE is acknowledged; the stream ends after the commit.
      }
    } catch (e) {
      // Committed meanwhile by someone else: the blob is there, which is all we need.
      if (!isAlreadyExists(e)) throw e;
      await this.client.leases.addResource({ id: lease, resource: { id: digest, type: "content" } });
    }
  }
}

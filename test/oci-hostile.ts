// Layers and images that lie or attack, for the negative tests of every unpacker and puller:
// the daemon runs as root, so each of these must be refused or contained, never followed.
import type { Image } from "./oci-image.ts";
import { buildLayer, type Compression, type Layer, type LayerEntry } from "./oci-layer.ts";

/** Entry lists that try to leave the root or confuse an unpacker; compose them with buildLayer. */
export const hostileEntries = {
  /** Names that climb out of the root with `..`, plus an absolute name. */
  pathEscape: [
    { path: "a", dir: true },
    { path: "../escape", content: "escaped via ..\n" },
    { path: "a/../../escape2", content: "escaped via a/../..\n" },
    { path: "/abs-escape", content: "absolute name\n" },
  ],
  /** An absolute symlink to "/" and files written through it (must land inside the root, or fail). */
  absoluteSymlink: [
    { path: "etc", dir: true },
    { path: "etc/root-link", symlink: "/" },
    { path: "etc/root-link/tmp/pwned", content: "written through an absolute symlink\n" },
    { path: "up", symlink: "../../../../.." },
    { path: "up/pwned-too", content: "written through a relative symlink that climbs out\n" },
  ],
  /** Hard links whose targets are outside the layer (relative and absolute). */
  hardlinkEscape: [
    { path: "passwd-link", hardlink: "../../../../etc/passwd" },
    { path: "shadow-link", hardlink: "/etc/shadow" },
  ],
  /** Ordinary hard links inside the layer, which must come out as one inode. */
  hardlinks: [
    { path: "data", content: "shared inode\n" },
    { path: "data-link", hardlink: "data" },
    { path: "sub", dir: true },
    { path: "sub/data-link2", hardlink: "data" },
  ],
  /** Device nodes, which an unprivileged build must not be able to smuggle in. */
  devices: [
    { path: "dev-null", device: { type: "char", major: 1, minor: 3 } },
    { path: "dev-sda", device: { type: "block", major: 8, minor: 0 } },
    { path: "fifo", device: { type: "fifo" } },
  ],
} satisfies Record<string, LayerEntry[]>;

/** A layer made of one of the hostile entry lists. */
export function hostileLayer(
  kind: keyof typeof hostileEntries,
  compression: Compression = "gzip",
): Promise<Layer> {
  return buildLayer(hostileEntries[kind], { compression });
}

/**
 * A layer of whiteouts: `.wh.<name>` deletes a path of the layers below, `<dir>/.wh..wh..opq`
 * hides everything below `dir` (which stays, with this layer's own entries in it).
 */
export function whiteoutLayer(
  opts: { remove?: string[]; opaque?: string[]; extra?: LayerEntry[] },
  compression: Compression = "gzip",
): Promise<Layer> {
  const entries: LayerEntry[] = [];
  for (const path of opts.remove ?? []) {
    const slash = path.lastIndexOf("/");
    entries.push({ path: `${path.slice(0, slash + 1)}.wh.${path.slice(slash + 1)}`, content: "" });
  }
  for (const dir of opts.opaque ?? []) {
    entries.push({ path: dir, dir: true }, { path: `${dir}/.wh..wh..opq`, content: "" });
  }
  return buildLayer([...entries, ...(opts.extra ?? [])], { compression });
}

/** The layer with its blob cut short (default: half) but the original digest and size, as a broken download. */
export function truncatedLayer(layer: Layer, keepBytes = Math.floor(layer.blob.length / 2)): Layer {
  return { ...layer, blob: layer.blob.subarray(0, keepBytes) };
}

/** The layer with one byte flipped: right size, wrong digest, to test verification beyond length checks. */
export function corruptedLayer(layer: Layer): Layer {
  const blob = Buffer.from(layer.blob);
  blob[blob.length >> 1]! ^= 0xff;
  return { ...layer, blob };
}

/** The image with manifest bytes that no longer match its digest (the descriptor's size is honest). */
export function lyingManifest(image: Image): Image {
  const real = JSON.parse(image.manifest.toString("utf8")) as Record<string, unknown>;
  const manifest = Buffer.from(JSON.stringify({ ...real, annotations: { "buildd.test/tampered": "true" } }));
  return { ...image, manifest, descriptor: { ...image.descriptor, size: manifest.length } };
}

// The busybox base image every container test pulls, packed by our own code from busybox-static
// and pushed to a test registry, so no test needs the internet.
import type { Digest } from "../util/digest.ts";
import { tempBusyboxRootfs } from "./busybox.ts";
import { buildImage, hostPlatform, type Image } from "./oci-image.ts";
import { buildLayer } from "./oci-layer.ts";
import { type Credentials, pushImage } from "./oci-push.ts";

export const BUSYBOX_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"];

let cached: Promise<Image> | undefined;

/** The busybox image (one gzip layer, Cmd ["sh"]), built once per process; times are the epoch, so it is reproducible. */
export function busyboxImage(): Promise<Image> {
  cached ??= imageFromBusybox(async () => {}, { Cmd: ["sh"] });
  cached.catch(() => {
    cached = undefined;
  });
  return cached;
}

/**
 * A one-layer image of a busybox rootfs that `extend` may add to, with reproducible times and
 * the busybox PATH; the base of the test images (busybox, busybox plus Node).
 */
export async function imageFromBusybox(
  extend: (rootfs: string) => Promise<void>,
  config: { Cmd: string[] },
): Promise<Image> {
  const rootfs = await tempBusyboxRootfs();
  try {
    await extend(rootfs.dir);
    const layer = await buildLayer({ fromDir: rootfs.dir, mtime: new Date(0) }, { compression: "gzip" });
    return buildImage({ layers: [layer], config: { ...config, Env: BUSYBOX_ENV }, platform: hostPlatform() });
  } finally {
    await rootfs.cleanup();
  }
}

/** Pushes the busybox image to `registry` (with its credentials, if it has any); returns the manifest digest. */
export async function pushBusyboxImage(
  registry: { url: string; auth?: Credentials },
  repo = "busybox",
  tag = "latest",
): Promise<Digest> {
  const image = await busyboxImage();
  const auth = registry.auth && { username: registry.auth.username, password: registry.auth.password };
  return pushImage(registry.url, `${repo}:${tag}`, image, { auth });
}

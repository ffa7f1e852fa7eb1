// A Node base image: busybox plus this machine's Node runtime and the shared libraries it links
// against (found with ldd), so frontends, the demo and tests can run Node in a container
// without the internet.
import { execFile } from "node:child_process";
import { copyFile, mkdir, symlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { tempBusyboxRootfs } from "./busybox.ts";
import { BUSYBOX_ENV } from "./busybox-image.ts";
import { buildImage, buildLayer, hostPlatform, type Image, pushImage } from "./oci.ts";

let cached: Promise<Image> | undefined;

/** The host paths of the shared objects `binary` needs (its ELF interpreter included). */
async function sharedLibraries(binary: string): Promise<string[]> {
  const out = await new Promise<string>((resolve, reject) =>
    execFile("ldd", [binary], (e, stdout) =>
      e ? reject(new Error(`ldd ${binary}: ${e.message}`)) : resolve(stdout),
    ),
  );
  const libs: string[] = [];
  for (const line of out.split("\n")) {
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

/** busybox + node at /usr/local/bin/node (and /opt/node/bin/node) + its libraries at their host paths. */
export function nodeImage(nodeBinary = process.execPath): Promise<Image> {
  cached ??= (async () => {
    const rootfs = await tempBusyboxRootfs();
    try {
      await mkdir(join(rootfs.dir, "usr/local/bin"), { recursive: true });
      await copyFile(nodeBinary, join(rootfs.dir, "usr/local/bin/node"));
      // Where official Node tarballs put it, which scripts and wrappers expect.
      await mkdir(join(rootfs.dir, "opt/node/bin"), { recursive: true });
      await symlink("/usr/local/bin/node", join(rootfs.dir, "opt/node/bin/node"));
      for (const lib of await sharedLibraries(nodeBinary)) {
        await mkdir(join(rootfs.dir, dirname(lib)), { recursive: true });
        await copyFile(lib, join(rootfs.dir, lib));
      }
      const layer = await buildLayer({ fromDir: rootfs.dir, mtime: new Date(0) }, { compression: "gzip" });
      return buildImage({
        layers: [layer],
        config: { Cmd: ["node"], Env: BUSYBOX_ENV },
        platform: hostPlatform(),
      });
    } finally {
      await rootfs.cleanup();
    }
  })();
  cached.catch(() => {
    cached = undefined;
  });
  return cached;
}

/** Pushes the Node base image; returns its manifest digest. */
export async function pushNodeImage(registry: { url: string }, repo = "node", tag = "24") {
  return pushImage(registry.url, `${repo}:${tag}`, await nodeImage());
}

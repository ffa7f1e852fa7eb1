// A Node base image: busybox plus this machine's Node runtime and the shared libraries it links
// against (found with ldd), so frontends, the demo and tests can run Node in a container
// without the internet.
import { execFile } from "node:child_process";
import { copyFile, mkdir, symlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { imageFromBusybox } from "./busybox-image.ts";
import { type Image, pushImage } from "./oci.ts";

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
  cached ??= imageFromBusybox(
    async (dir) => {
      await mkdir(join(dir, "usr/local/bin"), { recursive: true });
      await copyFile(nodeBinary, join(dir, "usr/local/bin/node"));
      // Where official Node tarballs put it, which scripts and wrappers expect.
      await mkdir(join(dir, "opt/node/bin"), { recursive: true });
      await symlink("/usr/local/bin/node", join(dir, "opt/node/bin/node"));
      for (const lib of await sharedLibraries(nodeBinary)) {
        await mkdir(join(dir, dirname(lib)), { recursive: true });
        await copyFile(lib, join(dir, lib));
      }
    },
    { Cmd: ["node"] },
  );
  cached.catch(() => {
    cached = undefined;
  });
  return cached;
}

/** Pushes the Node base image; returns its manifest digest. */
export async function pushNodeImage(registry: { url: string }, repo = "node", tag = "24") {
  return pushImage(registry.url, `${repo}:${tag}`, await nodeImage());
}

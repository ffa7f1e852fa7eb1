// The client end of a `local` output: the tar stream unpacked into a directory, safely (no
// entry leaves it), and owned by the user running the client.
import { lchown, mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import { applyLayer } from "../../archive/apply.ts";
import { walk } from "../../fsutil/walk.ts";
import { bytesTarget, type FileSendTarget } from "./receive.ts";

export function extractTarget(dest: string): FileSendTarget {
  const dir = resolve(dest);
  return bytesTarget(async (data) => {
    await mkdir(dir, { recursive: true });
    await applyLayer(data, dir, { format: "plain", layer: `the local output for ${dir}` });
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    await lchown(dir, uid, gid);
    for await (const e of walk(dir)) {
      if (e.stat.uid !== BigInt(uid) || e.stat.gid !== BigInt(gid))
        await lchown(`${dir}/${e.path}`, uid, gid);
    }
  });
}

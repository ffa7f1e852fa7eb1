// Mounting a snapshot for as long as a stream reads from it: exporters stream trees out of
// read-only mounts, and the mount must go away however the stream ends (done, failed, abandoned
// by a consumer that stopped early: for-await calls return() and this finally runs).
import { mkdtemp, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mountAll, readonlyMounts, unmountAll } from "../snapshot/index.ts";
import type { Mount } from "../snapshot/types.ts";

/** Yields what `produce` yields while `mounts` are mounted read-only under `base`. */
export async function* whileMounted<T>(
  mounts: Mount[],
  base: string | undefined,
  produce: (dir: string) => AsyncIterable<T>,
): AsyncGenerator<T> {
  const dir = await mkdtemp(join(base ?? tmpdir(), "buildd-export-"));
  try {
    await mountAll(readonlyMounts(mounts), dir);
    try {
      yield* produce(dir);
    } finally {
      await unmountAll(dir);
    }
  } finally {
    await rmdir(dir).catch(() => {});
  }
}

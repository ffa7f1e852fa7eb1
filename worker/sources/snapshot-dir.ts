// Sources that write plain files (git checkouts, http downloads) into a fresh snapshot.
import type { ImmutableRef, RecordType } from "../../cache/types.ts";
import { withMounted } from "../../snapshot/index.ts";
import type { OCIWorker } from "../worker.ts";

/** A committed ref whose content `fill` writes into an empty directory. */
export async function snapshotFromDir(
  w: OCIWorker,
  opts: { description: string; recordType?: RecordType },
  fill: (dir: string) => Promise<void>,
): Promise<ImmutableRef> {
  const m = await w.cache.newMutable(undefined, {
    description: opts.description,
    recordType: opts.recordType,
  });
  try {
    const mounts = await m.mount();
    const only = mounts.length === 1 ? mounts[0] : undefined;
    // A parentless snapshot is usually a plain directory: write into it without mounting.
    if (only?.type === "bind") await fill(only.source);
    else await withMounted(mounts, fill, { base: w.mountRoot });
    return await m.commit();
  } catch (e) {
    await m.release().catch(() => {});
    throw e;
  }
}

// Opening a snapshotter: picking the driver (overlayfs when the kernel can mount it in root,
// else native), and recovering from a crash before anything else touches the snapshots.
import { mkdir, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { removePath } from "./copy.ts";
import { mountAll, unmountAll } from "./mount.ts";
import { NativeSnapshotter } from "./native.ts";
import { OverlaySnapshotter } from "./overlay.ts";
import { SnapshotStore } from "./store.ts";
import { defaultLogger, type Hooks, type Logger, type Snapshotter, type SnapshotterDriver } from "./types.ts";

export type {
  Hooks,
  LayerInfo,
  Logger,
  Mount,
  SnapshotInfo,
  Snapshotter,
  SnapshotterDriver,
  Usage,
} from "./types.ts";
export { SnapshotError } from "./types.ts";
export { mountAll, readonlyDir, readonlyMounts, unmountAll, withMounted } from "./mount.ts";

/** How to open a snapshotter. */
export type OpenSnapshotterOptions = {
  /** Where the layers live; created when missing. */
  root: string;
  /** Metadata database (tables `snapshot_*`); default: root/metadata.db, owned and closed by it. */
  db?: DatabaseSync;
  /** "auto" (default): the driver already used in this database, else overlayfs when it works. */
  driver?: "auto" | SnapshotterDriver;
  log?: Logger;
  hooks?: Hooks;
};

/** Whether an overlay with two lower layers, an upper and a work dir can be mounted under `dir`. */
export async function overlaySupported(dir: string): Promise<{ ok: boolean; reason: string }> {
  const probe = await mkdtemp(join(dir, "overlay-probe-"));
  try {
    for (const d of ["l1", "l2", "u", "w", "m"]) await mkdir(join(probe, d));
    await writeFile(join(probe, "l1", "probe"), "ok");
    const opts = [
      `lowerdir=${join(probe, "l2")}:${join(probe, "l1")}`,
      `upperdir=${join(probe, "u")}`,
      `workdir=${join(probe, "w")}`,
    ];
    await mountAll([{ type: "overlay", source: "overlay", options: opts }], join(probe, "m"));
    try {
      const text = await readFile(join(probe, "m", "probe"), "utf8");
      await writeFile(join(probe, "m", "written"), "ok");
      if (text !== "ok") return { ok: false, reason: "overlay mount does not show its lower layer" };
    } finally {
      await unmountAll(join(probe, "m"));
    }
    return { ok: true, reason: "overlay mount works" };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  } finally {
    await removePath(probe);
  }
}

/**
 * Opens the snapshotter in `root` and runs `cleanup()`: whatever a crash left (mounts, half-built
 * or half-removed snapshots, rows without data) is gone before it is used.
 */
export async function openSnapshotter(opts: OpenSnapshotterOptions): Promise<Snapshotter> {
  const root = resolve(opts.root);
  const log = opts.log ?? defaultLogger;
  for (const d of ["", "s", "tmp", "trash", "mnt"])
    await mkdir(join(root, d), { recursive: true, mode: 0o711 });
  const ownsDb = opts.db === undefined;
  const db = opts.db ?? new DatabaseSync(join(root, "metadata.db"));
  if (ownsDb) db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
  try {
    const store = new SnapshotStore(db);
    const stored = store.config("driver") as SnapshotterDriver | undefined;
    const hasSnapshots = store.all().length > 0;
    const requested = opts.driver ?? "auto";
    let driver: SnapshotterDriver;
    if (requested !== "auto") {
      if (stored && stored !== requested && hasSnapshots) {
        throw new Error(
          `opening snapshotter in ${root}: it holds ${stored} snapshots; use driver ${stored} or start from an empty root and database`,
        );
      }
      if (requested === "overlayfs") {
        const probe = await overlaySupported(join(root, "tmp"));
        if (!probe.ok)
          throw new Error(`opening overlayfs snapshotter in ${root}: ${probe.reason}; use driver native`);
      }
      driver = requested;
      log.info("snapshotter driver chosen by configuration", { root, driver });
    } else if (stored && hasSnapshots) {
      driver = stored;
      log.info("snapshotter driver kept from existing snapshots", { root, driver });
    } else {
      const probe = await overlaySupported(join(root, "tmp"));
      driver = probe.ok ? "overlayfs" : "native";
      log.info("snapshotter driver detected", { root, driver, reason: probe.reason });
    }
    store.setConfig("driver", driver);
    const common = { root, db, ownsDb, log, hooks: opts.hooks };
    const sn = driver === "overlayfs" ? new OverlaySnapshotter(common) : new NativeSnapshotter(common);
    await sn.cleanup();
    return sn;
  } catch (e) {
    if (ownsDb) db.close();
    throw e;
  }
}

// The exporters, for the daemon to register: image (store, push), oci and docker tarballs, and
// tar. `exportersFor` wires them to one daemon's components; they share its image store.
import { join } from "node:path";
import type { DatabaseSync } from "node:sqlite";
import type { CacheManager } from "../cache/manager.ts";
import type { ContentStore } from "../content/store.ts";
import type { RegistryConfig } from "../control/config.ts";
import type { RegistryClient } from "../source/registry/index.ts";
import { ImageExporter, type ImageExporterDeps } from "./image.ts";
import { ImageStore } from "./image-store.ts";
import { LocalExporter } from "./local.ts";
import { TarExporter } from "./tar.ts";
import { TarballExporter } from "./tarball.ts";
import type { Exporter } from "./types.ts";

export { ImageExporter, imageResponse, type ImageExporterDeps } from "./image.ts";
export { type ImageRecord, ImageStore } from "./image-store.ts";
export { TarExporter } from "./tar.ts";
export { TarballExporter, imageArchive } from "./tarball.ts";
export type { ExportContext, Exporter } from "./types.ts";

/** The parts of a daemon the exporters use (a subset of control/daemon.ts DaemonParts). */
export type ExporterHost = {
  config: { root: string; registry: Record<string, RegistryConfig> };
  db: DatabaseSync;
  content: ContentStore;
  cache: CacheManager;
  registry: RegistryClient;
  /** Every worker's cache, when the daemon has several. */
  caches?: CacheManager[];
  onImageStored?: ImageExporterDeps["onImageStored"];
};

const stores = new WeakMap<DatabaseSync, ImageStore>();

/** The image store of a daemon (one per database). */
export function imageStoreOf(d: Pick<ExporterHost, "db" | "content">): ImageStore {
  let s = stores.get(d.db);
  if (!s) {
    s = new ImageStore(d.db, d.content);
    stores.set(d.db, s);
  }
  return s;
}

/** What the image exporters need, from a daemon's parts. */
export function imageExporterDeps(d: ExporterHost): ImageExporterDeps {
  return {
    cache: d.cache,
    content: d.content,
    registry: d.registry,
    registryHosts: d.config.registry,
    images: imageStoreOf(d),
    mountBase: join(d.config.root, "mnt"),
    caches: d.caches,
    onImageStored: d.onImageStored,
  };
}

/** Every exporter of this folder by output type, for `registerPlugins({ exporters })`. */
export const exporterFactories: Record<string, (d: ExporterHost) => Exporter> = {
  image: (d) => new ImageExporter(imageExporterDeps(d)),
  oci: (d) => new TarballExporter("oci", imageExporterDeps(d)),
  docker: (d) => new TarballExporter("docker", imageExporterDeps(d)),
  tar: (d) => new TarExporter({ mountBase: join(d.config.root, "mnt") }),
  local: (d) => new LocalExporter({ mountBase: join(d.config.root, "mnt") }),
};

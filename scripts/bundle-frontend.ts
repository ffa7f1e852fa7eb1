// Bundles a frontend's entry (TypeScript) into one ES module for Node 24: what goes into a
// frontend image. Runs inside the build container of examples/frontends/image/Dockerfile.
//   node scripts/bundle-frontend.ts examples/frontends/dockerfile/main.ts /out/main.mjs
import { writeFile } from "node:fs/promises";
import { build } from "esbuild";

const [entry, out] = process.argv.slice(2);
if (!entry || !out) {
  process.stderr.write("usage: bundle-frontend.ts ENTRY.ts OUT.mjs\n");
  process.exit(2);
}
const result = await build({
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
await writeFile(out, result.outputFiles[0]!.contents);
process.stdout.write(`bundled ${entry} into ${out} (${result.outputFiles[0]!.contents.length} bytes)\n`);

// Bundles each command into one file (module loading dominates a Node CLI's start-up time,
// see ../shared/guide/findings.md) and writes bin/ wrappers that run it with the chosen Node.
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const commands = ["buildctl", "buildd"];

mkdirSync(join(root, "dist"), { recursive: true });
mkdirSync(join(root, "bin"), { recursive: true });
for (const name of commands) {
  await build({
    entryPoints: [join(root, "cmd", name, "main.ts")],
    outfile: join(root, "dist", `${name}.mjs`),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node24",
    sourcemap: "linked",
    minifySyntax: true,
    // Bundled CommonJS dependencies (commander, tar-stream) call require() for node built-ins.
    banner: {
      js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
    },
    logLevel: "warning",
  });
  const wrapper = `#!/bin/sh\nexec "${process.execPath}" --enable-source-maps "${join(root, "dist", `${name}.mjs`)}" "$@"\n`;
  writeFileSync(join(root, "bin", name), wrapper);
  chmodSync(join(root, "bin", name), 0o755);
}
// bin/node: the project's Node runtime, for running scripts such as examples/*.ts.
writeFileSync(join(root, "bin", "node"), `#!/bin/sh\nexec "${process.execPath}" "$@"\n`);
chmodSync(join(root, "bin", "node"), 0o755);
console.log(`built ${commands.map((c) => `bin/${c}`).join(", ")}, bin/node`);

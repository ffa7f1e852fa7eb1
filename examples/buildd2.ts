// Self-build of buildd, version 2: sources are LLB sources, not commands. The repository is a
// git source (cached by commit, no git in the build image) and the runtime an http source
// checked against its published checksum, so their cache keys follow their content.
//
//   bin/node examples/buildd2.ts [--ref=main] | bin/buildctl debug dump-llb
import { copy, git, http, image, merge, mkdir, type State, scratch } from "../llb/index.ts";
import { BUILDD_REPO, DEBIAN, emit, flags, NODE_URL, NODE_VERSION } from "./common.ts";

const opts = flags(
  { ref: { type: "string", default: "main" } },
  "usage: buildd2.ts [--ref=BRANCH|TAG|COMMIT]",
);

const debian = image(DEBIAN).addEnv(
  "PATH",
  "/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
);
const apt = (s: State, pkgs: string) =>
  s.run({ shell: `apt-get update && apt-get install -y --no-install-recommends ${pkgs}` }).root();
const tools = apt(debian, "xz-utils make");

const src = git(BUILDD_REPO, opts.ref);
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
    shell: "make binaries && mkdir -p /out && cp -r dist/. /out/",
    mounts: [{ dest: "/app", from: merge([src, deps]) }, { dest: "/out" }],
    customName: "bundle buildd",
  })
  .getMount("/out");

const runc = apt(debian, "runc");

// Assembled with file ops: no container needed to put files together.
const result = scratch().file(
  mkdir("/usr/local/bin", 0o755, { makeParents: true })
    .copy(nodeDist, "/", "/opt/node", { dirCopyContents: true, createDestPath: true })
    .copy(bundle, "/", "/opt/buildd/", { dirCopyContents: true, createDestPath: true })
    .copy(runc, "/usr/sbin/runc", "/usr/local/bin/runc"),
  { customName: "assemble" },
);

emit(result);

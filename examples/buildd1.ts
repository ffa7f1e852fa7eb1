// Self-build of buildd, version 1: fetching is split from building. The runtime download, the
// clone and the dependency download are separate stages that run concurrently, and the build
// steps mount what they need instead of redoing the fetches.
//
//   bin/node examples/buildd1.ts | bin/buildctl debug dump-llb
import { image, type State } from "../llb/index.ts";
import { BUILDD_REPO, DEBIAN, emit, NODE_URL } from "./common.ts";

const debian = image(DEBIAN).addEnv(
  "PATH",
  "/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
);
const apt = (s: State, pkgs: string) =>
  s.run({ shell: `apt-get update && apt-get install -y --no-install-recommends ${pkgs}` }).root();
const tools = apt(debian, "ca-certificates curl xz-utils git make");

// Fetch stages: each writes only into an empty /out mount, so their results are small and
// independent of each other.
const fetch = (script: string, name: string) =>
  tools.run({ shell: script, mounts: [{ dest: "/out" }], customName: name }).getMount("/out");
const nodeDist = fetch(`curl -fsSL ${NODE_URL} | tar -xJ --strip-components=1 -C /out`, "fetch node");
const src = fetch(`git clone --depth=1 ${BUILDD_REPO} /out`, "clone buildd");

// Dependencies: only package.json and the lock file are needed, so edits elsewhere keep this cached.
const deps = tools
  .run({
    shell: "cp /src/package.json /src/package-lock.json /out/ && cd /out && npm ci --no-audit --no-fund",
    mounts: [
      { dest: "/opt/node", from: nodeDist, readonly: true },
      { dest: "/src", from: src, readonly: true },
      { dest: "/out" },
      { type: "cache", dest: "/root/.npm", id: "npm" },
    ],
    customName: "npm ci",
  })
  .getMount("/out");

const bundle = tools
  .run({
    shell:
      "cp -a /src/. /work/ && cp -a /deps/node_modules /work/ && cd /work && make binaries && cp -r dist/. /out/",
    mounts: [
      { dest: "/opt/node", from: nodeDist, readonly: true },
      { dest: "/src", from: src, readonly: true },
      { dest: "/deps", from: deps, readonly: true },
      { type: "tmpfs", dest: "/work" },
      { dest: "/out" },
    ],
    customName: "bundle buildd",
  })
  .getMount("/out");

const runc = apt(debian, "runc");

const result = debian
  .run({
    shell:
      "mkdir -p /out/usr/local/bin /out/opt/node /out/opt/buildd && cp -a /node/. /out/opt/node/ && cp -r /bundle/. /out/opt/buildd/ && cp /runc/usr/sbin/runc /out/usr/local/bin/",
    mounts: [
      { dest: "/out" },
      { dest: "/node", from: nodeDist, readonly: true },
      { dest: "/bundle", from: bundle, readonly: true },
      { dest: "/runc", from: runc, readonly: true },
    ],
    customName: "assemble",
  })
  .getMount("/out");

emit(result);

// Self-build of buildd, version 0: exec ops only, one stage per component, each stage fetching
// what it needs itself (as the seed's buildkit0 does). Simple, but nothing runs in parallel
// that could, and a change anywhere re-runs a whole stage.
//
//   bin/node examples/buildd0.ts | bin/buildctl debug dump-llb
import { image, type State } from "../llb/index.ts";
import { BUILDD_REPO, DEBIAN, emit, NODE_URL } from "./common.ts";

const debian = image(DEBIAN).addEnv(
  "PATH",
  "/opt/node/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
);
const apt = (s: State, pkgs: string) =>
  s.run({ shell: `apt-get update && apt-get install -y --no-install-recommends ${pkgs}` }).root();

// Node.js runtime: downloaded and unpacked into /opt/node.
const node = apt(debian, "ca-certificates curl xz-utils make git")
  .run({ shell: `mkdir -p /opt/node && curl -fsSL ${NODE_URL} | tar -xJ --strip-components=1 -C /opt/node` })
  .root();

// buildd: cloned, dependencies installed, bundled.
const buildd = node
  .run({ args: ["git", "clone", "--depth=1", BUILDD_REPO, "/src"] })
  .root()
  .dir("/src")
  .run({ args: ["npm", "ci", "--no-audit", "--no-fund"] })
  .root()
  .run({ args: ["make", "binaries"] })
  .root();

// runc: from Debian.
const runc = apt(debian, "runc");

// The result: the runtime, the bundles and runc in one filesystem, assembled by one exec
// into an empty output mount.
const result = debian
  .run({
    args: [
      "/bin/sh",
      "-c",
      "mkdir -p /out/usr/local/bin /out/opt/buildd && cp -a /node/opt/node /out/opt/ && cp -r /buildd/src/dist/. /out/opt/buildd/ && cp /runc/usr/sbin/runc /out/usr/local/bin/",
    ],
    mounts: [
      { dest: "/out" },
      { dest: "/node", from: node, readonly: true },
      { dest: "/buildd", from: buildd, readonly: true },
      { dest: "/runc", from: runc, readonly: true },
    ],
  })
  .getMount("/out");

emit(result);

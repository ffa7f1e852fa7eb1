// Golden test against BuildKit's own client: the same graphs written with our builder must give
// byte-identical Definitions (so identical digests) to the corpus BuildKit v0.11.6 wrote.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { COMPAT_LLB_DIR } from "../test/compat.ts";
import { digestOf } from "../util/digest.ts";
import {
  build,
  copy,
  diff,
  git,
  http,
  image,
  local,
  loadDefinition,
  merge,
  mkdir,
  mkfile,
  ociLayout,
  type State,
  scratch,
} from "./index.ts";

const CORPUS = COMPAT_LLB_DIR;
const amd64 = { os: "linux", architecture: "amd64" };
const arm64 = { os: "linux", architecture: "arm64" };
const busybox = () => image("127.0.0.1:5000/busybox:latest");

function same(name: string, state: State, platform = amd64) {
  const file = join(CORPUS, `${name}.pb`);
  if (!existsSync(file)) {
    assert.fail(`missing corpus file ${file}`);
  }
  const want = loadDefinition(readFileSync(file));
  const got = state.marshal({ platform });
  const gotDigests = got.definition.def.map((b) => digestOf(b));
  const wantDigests = want.definition.def.map((b) => digestOf(b));
  assert.deepEqual(gotDigests, wantDigests, `${name}: op digests`);
  assert.deepEqual(got.definition.metadata, want.definition.metadata, `${name}: metadata`);
}

test("sources match BuildKit's client", () => {
  same("source-image", busybox());
  same("source-image-platform", image("alpine:3.18", { resolveMode: "local", platform: arm64 }));
  same(
    "source-local",
    local("context", {
      include: ["src/**", "package.json"],
      exclude: ["**/*.log", "node_modules"],
      followPaths: ["src"],
      sharedKeyHint: "ctx-key",
      sessionId: "sess1",
    }),
  );
  same("source-git", git("https://github.com/example/repo.git", "v1.2.3", { keepGitDir: true }));
  same(
    "source-git-ssh",
    git("git@github.com:example/private.git", "main", { knownSshHosts: "github.com ssh-ed25519 AAAA\n" }),
  );
  same(
    "source-http",
    http("https://example.com/archive.tar.gz", {
      checksum: "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
      filename: "archive.tgz",
      chmod: 0o755,
      uid: 1000,
      gid: 1000,
    }),
  );
  same(
    "source-oci-layout",
    ociLayout("myimage@sha256:62c66a7a5dd70c3146618063c344e531e6d4b59e379808443ce962b3abd63c5a", {
      sessionId: "sess1",
      storeId: "store1",
    }),
  );
  same("source-scratch-mkfile", scratch().file(mkfile("/hello", 0o644, "hello\n")));
});

test("exec ops match BuildKit's client", () => {
  same(
    "exec-basic",
    busybox()
      .addEnv("FOO", "bar")
      .addEnv("PATH", "/usr/bin:/bin")
      .dir("/work")
      .user("1000:1000")
      .run({
        shlex: 'sh -c "echo hi > /out/x"',
        extraHosts: [{ host: "db", ip: "10.0.0.5" }],
        hostname: "buildhost",
      })
      .root(),
  );
  const ctx = local("context", { uniqueId: "tvjkrukl40euiju1p2szmf2tr" });
  same(
    "exec-mounts",
    busybox()
      .run({
        args: ["/bin/sh", "-c", "ls /cache /tmp /src"],
        network: "none",
        mounts: [
          { type: "cache", dest: "/cache", id: "npm-cache", sharing: "locked" },
          { type: "cache", dest: "/cache2", id: "shared-cache" },
          { type: "cache", dest: "/cache3", id: "private-cache", sharing: "private" },
          { dest: "/src", from: ctx, selector: "/sub", readonly: true },
          { type: "tmpfs", dest: "/tmp", size: 64 << 20 },
          { type: "secret", dest: "/run/secrets/token", id: "token", uid: 1000, gid: 1000, mode: 0o400 },
          { type: "ssh", dest: "/run/ssh.sock", mode: 0o600 },
        ],
        secretEnv: [{ id: "token", name: "TOKEN_ENV" }],
      })
      .root(),
  );
  same(
    "exec-output-mount",
    busybox()
      .run({ args: ["sh", "-c", "echo a > /out/a"], mounts: [{ dest: "/out" }] })
      .getMount("/out"),
  );
  same(
    "exec-insecure-host",
    busybox()
      .run({
        args: ["true"],
        network: "host",
        security: "insecure",
        ignoreCache: true,
        customName: "[stage 1/2] RUN true",
      })
      .root(),
  );
  same(
    "exec-readonly-rootfs",
    busybox()
      .run({ args: ["cat", "/etc/passwd"], readonlyRootfs: true })
      .root(),
  );
  same(
    "platform-arm64",
    busybox()
      .run({ args: ["uname", "-m"] })
      .root(),
    arm64,
  );
});

test("file ops match BuildKit's client", () => {
  const ts = 1_700_000_000_000_000_000n;
  same(
    "file-chain",
    scratch().file(
      mkdir("/a/b/c", 0o755, { makeParents: true, owner: { user: 1000, group: 1000 }, timestamp: ts })
        .mkfile("/a/b/c/f.txt", 0o600, "data", { owner: { user: "nobody" } })
        .rm("/a/b/old*", { allowNotFound: true, allowWildcard: true })
        .copy(busybox(), "/bin/bu*", "/dst/", {
          owner: { user: "app" },
          mode: 0o640,
          followSymlink: true,
          dirCopyContents: true,
          attemptUnpack: true,
          createDestPath: true,
          allowWildcard: true,
          allowEmptyWildcard: true,
          timestamp: ts,
          include: ["*.sh"],
          exclude: ["tmp"],
        }),
      { customName: "file operations" },
    ),
  );
  same(
    "file-copy-between",
    busybox().file(
      copy(local("context", { uniqueId: "xfsytu7nh6ppwice23ml31gks" }), "/", "/app", {
        dirCopyContents: true,
        createDestPath: true,
      }),
    ),
  );
});

test("merge, diff, build and shared sub-graphs match BuildKit's client", () => {
  const base = busybox();
  const a = base.run({ args: ["sh", "-c", "echo a > /a"] }).root();
  const b = base.run({ args: ["sh", "-c", "echo b > /b"] }).root();
  same("diff", diff(base, a));
  same("merge", merge([base, diff(base, a), diff(base, b)], { customName: "merge layers" }));

  const d = { description: { "com.example.k": "v" } };
  const img = image("127.0.0.1:5000/busybox:latest", d);
  const shared = img
    .run({ args: ["echo", "shared"], ...d, progressGroup: { id: "pg1", name: "group one" } })
    .root();
  const one = shared.run({ args: ["echo", "one"], ...d }).root();
  const two = shared.run({ args: ["echo", "two"], ...d }).root();
  same("diamond", merge([one, two], d));

  const defFile = base
    .run({ args: ["sh", "-c", "cat /def > /out/def.pb"], mounts: [{ dest: "/out" }] })
    .getMount("/out");
  same("build-nested", build(defFile, { filename: "def.pb" }));
});

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ConfigError, defaultConfig, loadConfigFile } from "./config.ts";

async function withFile(text: string, fn: (path: string) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), "buildd-config-"));
  try {
    const p = join(dir, "buildd.toml");
    await writeFile(p, text);
    await fn(p);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("a buildkitd.toml-style file is read into the config", async () => {
  await withFile(
    `root = "/srv/buildd"
insecure-entitlements = ["security.insecure"]
[grpc]
address = ["unix:///run/b.sock", "tcp://127.0.0.1:1234"]
[log]
level = "debug"
[worker.oci]
snapshotter = "native"
max-parallelism = 3
[[worker.oci.gcpolicy]]
filters = ["type==source.local"]
keepDuration = "48h"
keepBytes = "512MB"
[[worker.oci.gcpolicy]]
all = true
keepBytes = 1024
[registry."127.0.0.1:5000"]
http = true
`,
    async (p) => {
      const c = await loadConfigFile(p, true);
      assert.equal(c.root, "/srv/buildd");
      assert.deepEqual(c.grpc.address, ["unix:///run/b.sock", "tcp://127.0.0.1:1234"]);
      assert.equal(c.log.level, "debug");
      assert.equal(c.worker.oci.snapshotter, "native");
      assert.equal(c.worker.oci.maxParallelism, 3);
      assert.deepEqual(c.worker.oci.gcpolicy, [
        { filters: ["type==source.local"], keepDuration: "48h", keepBytes: "512MB" },
        { all: true, keepBytes: 1024 },
      ]);
      assert.deepEqual(c.registry["127.0.0.1:5000"], { http: true, insecure: false, mirrors: [], ca: [] });
      assert.deepEqual(c.insecureEntitlements, ["security.insecure"]);
    },
  );
});

test("mistakes name the file and the key", async () => {
  const cases: [string, RegExp][] = [
    ["root = 3", /: root: want a string/],
    ['root = "relative"', /: root: want an absolute path/],
    ["[worker.oci]\nmax-parallelism = -1", /worker\.oci\.max-parallelism: want a positive integer/],
    ['[worker.oci]\nsnapshoter = "overlayfs"', /worker\.oci\.snapshoter: unknown key/],
    ['[grpc]\naddress = ["http://x"]', /grpc\.address: want unix/],
    ['[log]\nlevel = "loud"', /log\.level: want debug/],
    ["[[worker.oci.gcpolicy]]\nkeepBytes = true", /worker\.oci\.gcpolicy\[0\]\.keepBytes/],
    ["this is = not toml =", /not valid TOML/],
    ['insecure-entitlements = ["everything"]', /unknown entitlement/],
  ];
  for (const [text, re] of cases) {
    await withFile(text, async (p) => {
      await assert.rejects(
        loadConfigFile(p, true),
        (e: unknown) => e instanceof ConfigError && re.test(e.message) && e.message.includes(p),
        text,
      );
    });
  }
});

test("a missing default file means defaults; a missing explicit file is an error", async () => {
  assert.deepEqual(await loadConfigFile("/nonexistent/buildd.toml", false), defaultConfig());
  await assert.rejects(loadConfigFile("/nonexistent/buildd.toml", true), /cannot read it/);
});

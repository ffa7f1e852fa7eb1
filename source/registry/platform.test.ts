import assert from "node:assert/strict";
import { test } from "node:test";
import {
  bestPlatformMatch,
  formatPlatform,
  normalizePlatform,
  parsePlatform,
  platformRank,
} from "./platform.ts";

test("aliases and default variants are normalized", () => {
  assert.deepEqual(normalizePlatform({ os: "Linux", architecture: "x86_64" }), {
    os: "linux",
    architecture: "amd64",
    variant: "v1",
  });
  assert.deepEqual(parsePlatform("linux/aarch64"), { os: "linux", architecture: "arm64", variant: "v8" });
  assert.deepEqual(parsePlatform("linux/armhf"), { os: "linux", architecture: "arm", variant: "v7" });
  assert.deepEqual(parsePlatform("linux/arm/7"), { os: "linux", architecture: "arm", variant: "v7" });
  assert.equal(formatPlatform({ os: "linux", architecture: "arm64", variant: "v8" }), "linux/arm64");
  assert.equal(formatPlatform({ os: "linux", architecture: "arm" }), "linux/arm/v7");
  assert.throws(() => parsePlatform("linux"), /want os\/architecture/);
});

test("older variants are compatible, newer and other architectures are not", () => {
  const want = parsePlatform("linux/arm/v7");
  assert.equal(platformRank(want, { os: "linux", architecture: "arm", variant: "v7" }), 0);
  assert.equal(platformRank(want, { os: "linux", architecture: "arm", variant: "v5" }), 2);
  assert.equal(platformRank(want, { os: "linux", architecture: "arm", variant: "v8" }), undefined);
  assert.equal(platformRank(want, { os: "linux", architecture: "arm64" }), undefined);
  assert.equal(
    platformRank(parsePlatform("linux/amd64"), { os: "linux", architecture: "amd64", variant: "v3" }),
    undefined,
  );
  assert.equal(
    platformRank(parsePlatform("linux/amd64"), { os: "windows", architecture: "amd64" }),
    undefined,
  );
  const candidates = [
    { os: "linux", architecture: "arm", variant: "v5" },
    undefined,
    { os: "linux", architecture: "arm", variant: "v6" },
    { os: "linux", architecture: "arm", variant: "v6" },
  ];
  assert.equal(bestPlatformMatch(want, candidates), 2, "the closest variant, the first of equals");
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { digestHex, digestOf, isDigest } from "./digest.ts";

test("digestOf gives the sha256 of its input", () => {
  assert.equal(digestOf(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert.equal(digestOf(new Uint8Array([0x61])), digestOf("a"));
});

test("isDigest and digestHex reject malformed digests", () => {
  assert.ok(isDigest(digestOf("x")));
  for (const bad of ["", "sha256:", "sha256:../../etc/passwd", "md5:abc", `sha256:${"A".repeat(64)}`]) {
    assert.equal(isDigest(bad), false, bad);
    assert.throws(() => digestHex(bad), /invalid digest/);
  }
});

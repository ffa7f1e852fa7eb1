import assert from "node:assert/strict";
import { test } from "node:test";
import { normalizeImageRef, parseImageRef } from "./imageref.ts";

test("image references normalize like Docker's", () => {
  const d = `sha256:${"a".repeat(64)}`;
  const cases: [string, string][] = [
    ["busybox", "docker.io/library/busybox:latest"],
    ["busybox:1.36", "docker.io/library/busybox:1.36"],
    ["user/app", "docker.io/user/app:latest"],
    ["index.docker.io/user/app:v1", "docker.io/user/app:v1"],
    ["127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"],
    ["localhost/app:dev", "localhost/app:dev"],
    ["ghcr.io/org/sub/app:1.0", "ghcr.io/org/sub/app:1.0"],
    [`busybox@${d}`, `docker.io/library/busybox@${d}`],
    [`busybox:1@${d}`, `docker.io/library/busybox:1@${d}`],
  ];
  for (const [input, want] of cases) assert.equal(normalizeImageRef(input), want, input);
  assert.deepEqual(parseImageRef("127.0.0.1:5000/a/b:t"), {
    domain: "127.0.0.1:5000",
    path: "a/b",
    tag: "t",
    digest: undefined,
  });
});

test("malformed references are refused", () => {
  for (const bad of ["", "Busybox", "busybox:", "busybox@sha256:short", "a//b", "busybox:bad tag", "-x/y"]) {
    assert.throws(() => normalizeImageRef(bad), /invalid image reference/, bad);
  }
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { parseChallenges } from "./auth.ts";

test("WWW-Authenticate challenges are parsed with quoted values and several challenges", () => {
  assert.deepEqual(
    parseChallenges(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
    ),
    [
      {
        scheme: "bearer",
        params: {
          realm: "https://auth.docker.io/token",
          service: "registry.docker.io",
          scope: "repository:library/busybox:pull",
        },
      },
    ],
  );
  assert.deepEqual(
    parseChallenges([
      'Basic realm="a \\"quoted\\" realm"',
      "Bearer realm=https://x/token, error=invalid_token",
    ]),
    [
      { scheme: "basic", params: { realm: 'a "quoted" realm' } },
      { scheme: "bearer", params: { realm: "https://x/token", error: "invalid_token" } },
    ],
  );
  assert.deepEqual(parseChallenges(undefined), []);
  assert.deepEqual(parseChallenges("=garbage"), [{ scheme: "garbage", params: {} }]);
});

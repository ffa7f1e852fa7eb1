import assert from "node:assert/strict";
import { test } from "node:test";
import { checkAllowList, frontendAllowed } from "./allowed.ts";

test("an empty allow-list allows any image; a repository allows its tags and digests", () => {
  assert.ok(frontendAllowed("anything/at:all", []));
  const allowed = ["127.0.0.1:5000/fe", "docker/dockerfile"];
  assert.ok(frontendAllowed("127.0.0.1:5000/fe", allowed));
  assert.ok(frontendAllowed("127.0.0.1:5000/fe:v2", allowed));
  assert.ok(frontendAllowed(`127.0.0.1:5000/fe@sha256:${"a".repeat(64)}`, allowed));
  assert.ok(frontendAllowed("docker.io/docker/dockerfile:1", allowed), "normalized names match");
  assert.ok(!frontendAllowed("127.0.0.1:5000/fe-evil", allowed));
  assert.ok(!frontendAllowed("127.0.0.1:5000/fe/sub", allowed));
  assert.ok(!frontendAllowed("127.0.0.1:5001/fe", allowed));
  assert.ok(!frontendAllowed("NOT a reference", allowed));
});

test("a tag or digest in the list pins it; a /* entry allows a prefix", () => {
  assert.ok(frontendAllowed("127.0.0.1:5000/fe:1", ["127.0.0.1:5000/fe:1"]));
  assert.ok(!frontendAllowed("127.0.0.1:5000/fe:2", ["127.0.0.1:5000/fe:1"]));
  assert.ok(!frontendAllowed("127.0.0.1:5000/fe", ["127.0.0.1:5000/fe:1"]), "no tag is latest");
  const prefix = ["127.0.0.1:5000/frontends/*"];
  assert.ok(frontendAllowed("127.0.0.1:5000/frontends/yaml:1", prefix));
  assert.ok(frontendAllowed("127.0.0.1:5000/frontends/a/b", prefix));
  assert.ok(!frontendAllowed("127.0.0.1:5000/frontends", prefix));
  assert.ok(!frontendAllowed("127.0.0.1:5000/frontendsx/y", prefix));
});

test("a configured entry that can never match is refused at start-up", () => {
  checkAllowList(["127.0.0.1:5000/fe", "docker/dockerfile:1", "registry.example/frontends/*"]);
  assert.throws(
    () => checkAllowList(["ok/repo", "Not A Ref"]),
    /^Error: frontend.allowed: "Not A Ref" is neither an image repository or reference nor a "prefix\/\*": invalid image reference/,
  );
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { formatAddress, parseAddress } from "./address.ts";

test("parses BUILDKIT_HOST-style addresses", () => {
  assert.deepEqual(parseAddress("unix:///run/buildd/buildd.sock"), {
    kind: "unix",
    path: "/run/buildd/buildd.sock",
  });
  assert.deepEqual(parseAddress("tcp://127.0.0.1:1234"), { kind: "tcp", host: "127.0.0.1", port: 1234 });
  assert.deepEqual(parseAddress("tcp://buildd.example:443/"), {
    kind: "tcp",
    host: "buildd.example",
    port: 443,
  });
  assert.deepEqual(parseAddress("tcp://[::1]:0"), { kind: "tcp", host: "::1", port: 0 });
});

test("round-trips through formatAddress", () => {
  for (const a of ["unix:///tmp/x.sock", "tcp://10.0.0.1:80", "tcp://[fe80::1]:1234"]) {
    assert.equal(formatAddress(parseAddress(a)), a);
  }
});

test("rejects what it cannot connect to, saying what is accepted", () => {
  for (const bad of [
    "",
    "/run/buildd.sock",
    "unix://",
    "tcp://host",
    "tcp://host:99999",
    "tcp://::1:80",
    "docker-container://buildkitd",
    "ssh://me@host",
  ]) {
    assert.throws(
      () => parseAddress(bad),
      /want unix:\/\/\/path\/to\.sock or tcp:\/\/host:port|out of range/,
      bad,
    );
  }
});

import assert from "node:assert/strict";
import { test } from "node:test";
import { checkHostname, hostsFile, resolvConf } from "./etcfiles.ts";

test("hosts has loopback, the hostname and the extra hosts", () => {
  assert.equal(
    hostsFile("box", [{ host: "registry.local", ip: "10.0.0.2" }]),
    "127.0.0.1\tlocalhost box\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.2\tregistry.local\n",
  );
  assert.throws(() => hostsFile("box", [{ host: "bad host", ip: "10.0.0.2" }]), /invalid extra host/);
  assert.throws(() => hostsFile("box", [{ host: "h", ip: "not-an-ip" }]), /invalid extra host/);
  assert.throws(() => checkHostname("bad_host!"), /invalid hostname/);
  checkHostname("build-1.example");
});

test("resolv.conf drops loopback nameservers unless the network is the host's", () => {
  const host = "search example.com\nnameserver 127.0.0.53\nnameserver 10.1.1.1\noptions ndots:2\n";
  assert.equal(resolvConf(host, "host"), host);
  assert.equal(resolvConf(host, "none"), "search example.com\nnameserver 10.1.1.1\noptions ndots:2\n");
  assert.equal(
    resolvConf("nameserver 127.0.0.1\nnameserver ::1\n", "none"),
    "nameserver 8.8.8.8\nnameserver 8.8.4.4\n",
  );
});

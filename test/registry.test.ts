import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";
import { busyboxImage, pushBusyboxImage } from "./busybox-image.ts";
import { registryClient } from "./oci-push.ts";
import { startRegistry, TOKEN_SERVICE } from "./registry.ts";

// Async only: the registry's proxy lives in this process, so a sync exec would deadlock it.
const run = promisify(execFile);
const creds = { username: "alice", password: "s3cret" };

function skopeoInspect(host: string, extra: string[] = []) {
  return run("skopeo", ["inspect", "--tls-verify=false", ...extra, `docker://${host}/busybox:latest`]);
}

test("stats count what crossed the wire; a second push only HEADs the blobs", async (t) => {
  const registry = await startRegistry();
  t.after(registry.stop);
  const image = await busyboxImage();
  const layerPath = `/v2/busybox/blobs/${image.layers[0]!.digest}`;

  await pushBusyboxImage(registry);
  const uploads = Object.entries(registry.stats()).filter(([p]) =>
    p.startsWith("/v2/busybox/blobs/uploads/"),
  );
  const uploaded = uploads.reduce((n, [, s]) => n + s.bytesIn, 0);
  assert.equal(uploaded, image.layers[0]!.size + image.config.length);

  registry.resetStats();
  await pushBusyboxImage(registry, "busybox", "again");
  const stats = registry.stats();
  assert.deepEqual(stats[layerPath]?.methods, { HEAD: 1 });
  assert.equal(stats["/v2/busybox/blobs/uploads/"], undefined);

  registry.resetStats();
  const res = await fetch(`${registry.url}${layerPath}`);
  assert.equal(Buffer.from(await res.arrayBuffer()).equals(image.layers[0]!.blob), true);
  assert.equal(registry.stats()[layerPath]?.bytesOut, image.layers[0]!.size);
  assert.equal(registry.log()[0]?.method, "GET");
});

test("basic auth: anonymous requests get a Basic challenge, credentials get through", async (t) => {
  const registry = await startRegistry({ auth: { ...creds, mode: "basic" } });
  t.after(registry.stop);
  const anonymous = await fetch(`${registry.url}/v2/`);
  assert.equal(anonymous.status, 401);
  assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Basic realm=/);

  await pushBusyboxImage(registry);
  await assert.rejects(skopeoInspect(registry.host));
  await assert.rejects(skopeoInspect(registry.host, ["--creds", "alice:wrong"]));
  const ok = JSON.parse((await skopeoInspect(registry.host, ["--creds", "alice:s3cret"])).stdout);
  assert.equal(ok.Digest, (await busyboxImage()).digest);
});

test("token auth: real bearer challenges, anonymous tokens grant nothing, credentials grant access", async (t) => {
  const registry = await startRegistry({ auth: { ...creds, mode: "token" } });
  t.after(registry.stop);
  const digest = await pushBusyboxImage(registry);
  const manifestUrl = `${registry.url}/v2/busybox/manifests/latest`;

  const challenged = await fetch(manifestUrl);
  assert.equal(challenged.status, 401);
  const challenge = challenged.headers.get("www-authenticate") ?? "";
  assert.equal(
    challenge,
    `Bearer realm="${registry.tokenUrl}",service="${TOKEN_SERVICE}",scope="repository:busybox:pull"`,
  );

  const tokenFor = async (authorization?: string) => {
    const url = `${registry.tokenUrl}?service=${TOKEN_SERVICE}&scope=repository:busybox:pull`;
    return fetch(url, { headers: authorization ? { authorization } : {} });
  };
  const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString("base64")}`;

  const anonymousToken = ((await (await tokenFor()).json()) as { token: string }).token;
  const denied = await fetch(manifestUrl, { headers: { authorization: `Bearer ${anonymousToken}` } });
  assert.equal(denied.status, 401);
  assert.match(denied.headers.get("www-authenticate") ?? "", /error="insufficient_scope"/);
  assert.equal((await tokenFor(basic("alice", "wrong"))).status, 401);
  const forged = await fetch(manifestUrl, { headers: { authorization: "Bearer forged" } });
  assert.match(forged.headers.get("www-authenticate") ?? "", /error="invalid_token"/);

  const token = ((await (await tokenFor(basic("alice", "s3cret"))).json()) as { token: string }).token;
  const allowed = await fetch(manifestUrl, {
    headers: { authorization: `Bearer ${token}`, accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  assert.equal(allowed.status, 200);
  assert.equal(allowed.headers.get("docker-content-digest"), digest);
  // A pull token does not allow pushing.
  const push = await fetch(`${registry.url}/v2/busybox/blobs/uploads/`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(push.status, 401);

  await assert.rejects(skopeoInspect(registry.host));
  const ok = JSON.parse((await skopeoInspect(registry.host, ["--creds", "alice:s3cret"])).stdout);
  assert.equal(ok.Digest, digest);
  assert.ok((registry.stats()["/token"]?.requests ?? 0) >= 4);
});

test("token auth with anonymousPull: anyone pulls, only credentials push", async (t) => {
  const registry = await startRegistry({ auth: { ...creds, mode: "token", anonymousPull: true } });
  t.after(registry.stop);
  await assert.rejects(pushBusyboxImage({ url: registry.url }), /401/);
  await pushBusyboxImage(registry);
  const anonymous = registryClient(registry.url);
  const res = await anonymous("/v2/busybox/manifests/latest", {
    headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  assert.equal(res.status, 200);
  await skopeoInspect(registry.host);
});

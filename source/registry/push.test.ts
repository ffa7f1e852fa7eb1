import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { Readable } from "node:stream";
import { type TestContext, test } from "node:test";
import { promisify } from "node:util";
import { tempContentStore, testBytes } from "../../content/testing.ts";
import { busyboxImage } from "../../test/busybox-image.ts";
import { buildImage, buildLayer, type Image, pushImage } from "../../test/oci.ts";
import { type Registry, startRegistry } from "../../test/registry.ts";
import { type RegistryClientOptions, RegistryClient } from "./client.ts";
import { isRegistryError } from "./errors.ts";
import { startFakeRegistry } from "./testing.ts";

const run = promisify(execFile);

function client(t: TestContext, opts: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient({ retry: { baseDelayMs: 5 }, ...opts });
  t.after(() => c.close());
  return c;
}

/** Pushes every blob of `image` and its manifest under `tag` with the client under test. */
async function pushWithClient(
  c: RegistryClient,
  ref: string,
  image: Image,
  opts: { mountFrom?: string[]; progress?: Map<string, number> } = {},
) {
  const blobs = [
    { desc: image.configDescriptor, bytes: image.config },
    ...image.layers.map((l, i) => ({ desc: image.layerDescriptors[i]!, bytes: l.blob })),
  ];
  const outcomes = [];
  for (const { desc, bytes } of blobs) {
    outcomes.push(
      await c.pushBlob(ref, desc, () => Readable.from([bytes]), {
        mountFrom: opts.mountFrom,
        onProgress: (n) => opts.progress?.set(desc.digest, n),
      }),
    );
  }
  const digest = await c.pushManifest(ref, image.mediaType, image.manifest);
  return { outcomes, digest };
}

function uploads(registry: Registry, repo: string) {
  return registry.log().filter((r) => r.path.startsWith(`/v2/${repo}/blobs/uploads/`));
}

test("a pushed image can be pulled by skopeo; progress is reported in bytes", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  const image = await busyboxImage();
  const c = client(t);
  const progress = new Map<string, number>();
  const { outcomes, digest } = await pushWithClient(c, `${registry.host}/pushed:1`, image, { progress });
  assert.equal(digest, image.digest);
  assert.deepEqual(
    outcomes.map((o) => o.outcome),
    ["uploaded", "uploaded"],
  );
  assert.equal(progress.get(image.layers[0]!.digest), image.layers[0]!.size);
  const { stdout } = await run("skopeo", [
    "inspect",
    "--tls-verify=false",
    `docker://${registry.host}/pushed:1`,
  ]);
  assert.equal(JSON.parse(stdout).Digest, image.digest);
});

test("a blob the registry already has is only HEADed; the others are uploaded", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  const base = await busyboxImage();
  await pushImage(registry.url, "app:1", base);
  // Same layer, new config: only the config has to go up.
  const image = buildImage({ layers: base.layers, config: { Cmd: ["sh", "-c", "echo v2"] } });
  registry.resetStats();
  const { outcomes } = await pushWithClient(client(t), `${registry.host}/app:2`, image);
  assert.deepEqual(
    outcomes.map((o) => o.outcome),
    ["uploaded", "exists"],
  );
  assert.deepEqual(registry.stats()[`/v2/app/blobs/${base.layers[0]!.digest}`]?.methods, { HEAD: 1 });
  const puts = uploads(registry, "app").filter((r) => r.method === "PUT");
  assert.equal(puts.length, 1);
  assert.equal(puts[0]!.bytesIn, image.config.length, "only the config's bytes were sent");
});

test("a blob in another repository is mounted, not uploaded", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  const image = await busyboxImage();
  await pushImage(registry.url, "base:1", image);
  registry.resetStats();
  const { outcomes } = await pushWithClient(client(t), `${registry.host}/derived:1`, image, {
    mountFrom: [`${registry.host}/base`, "elsewhere.example.com/base"],
  });
  assert.deepEqual(
    outcomes.map((o) => [o.outcome, o.mountedFrom]),
    [
      ["mounted", "base"],
      ["mounted", "base"],
    ],
  );
  const posts = uploads(registry, "derived");
  assert.deepEqual(
    posts.map((r) => [r.method, r.status]),
    [
      ["POST", 201],
      ["POST", 201],
    ],
  );
  assert.match(posts[1]!.query, new RegExp(`mount=${image.layers[0]!.digest.replace(":", "%3A")}&from=base`));
  assert.ok(
    posts.every((r) => r.bytesIn === 0),
    "no blob bytes were sent",
  );
});

test("a blob that cannot be mounted is uploaded in the session the registry opened", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  const layer = await buildLayer([{ path: "new", content: "new" }]);
  const desc = { mediaType: layer.mediaType, digest: layer.digest, size: layer.size };
  const r = await client(t).pushBlob(`${registry.host}/derived:1`, desc, () => Readable.from([layer.blob]), {
    mountFrom: ["base"],
  });
  assert.equal(r.outcome, "uploaded");
  const posts = uploads(registry, "derived").filter((x) => x.method === "POST");
  assert.deepEqual(
    posts.map((x) => x.status),
    [202],
    "the refused mount's session was used, no second POST",
  );
});

test("big blobs go up in PATCH chunks and come back intact", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  const layer = await buildLayer([{ path: "blob", content: testBytes(300_000) }], { compression: "none" });
  const image = buildImage({ layers: [layer] });
  const c = client(t, { chunkSize: 64 * 1024 });
  await pushWithClient(c, `${registry.host}/chunky:1`, image);
  const patches = uploads(registry, "chunky").filter((r) => r.method === "PATCH");
  assert.equal(patches.length, Math.ceil(layer.size / (64 * 1024)));
  assert.equal(
    patches.reduce((n, r) => n + r.bytesIn, 0),
    layer.size,
  );
  const { store } = await tempContentStore(t);
  const resolved = await c.resolve(`${registry.host}/chunky:1`);
  await c.fetchBlob(`${registry.host}/chunky:1`, resolved.layers[0]!, { store });
  assert.deepEqual(await store.readAll(layer.digest, { maxBytes: 1 << 20 }), layer.blob);
});

test("push with token auth: credentials from the callback, refused without", async (t) => {
  const creds = { username: "alice", password: "s3cret" };
  const registry = await startRegistry({
    auth: { ...creds, mode: "token", anonymousPull: true },
    signal: t.signal,
  });
  const image = await busyboxImage();
  const anonymous = client(t);
  await assert.rejects(
    pushWithClient(anonymous, `${registry.host}/secure:1`, image),
    (e: unknown) =>
      isRegistryError(e, "unauthorized") &&
      new RegExp(
        `^pushing config .* to ${registry.host}/secure: unauthorized: authentication required for ${registry.host}/secure`,
      ).test(e.message),
  );
  const c = client(t, { credentials: async () => creds });
  const { digest } = await pushWithClient(c, `${registry.host}/secure:1`, image);
  assert.equal((await anonymous.resolve(`${registry.host}/secure:1`)).digest, digest);
});

test("push by digest leaves no tag; a reference whose digest is not the manifest's is refused", async (t) => {
  const registry = await startRegistry({ signal: t.signal });
  const image = await busyboxImage();
  const c = client(t);
  for (const [i, blob] of [image.config, image.layers[0]!.blob].entries()) {
    const desc = i === 0 ? image.configDescriptor : image.layerDescriptors[0]!;
    await c.pushBlob(`${registry.host}/bydigest`, desc, () => Readable.from([blob]));
  }
  const digest = await c.pushManifest(
    `${registry.host}/bydigest@${image.digest}`,
    image.mediaType,
    image.manifest,
  );
  assert.equal(digest, image.digest);
  assert.equal(registry.stats()[`/v2/bydigest/manifests/${image.digest}`]?.methods.PUT, 1);
  const tags = (await fetch(`${registry.url}/v2/bydigest/tags/list`).then((r) => r.json())) as {
    tags?: unknown;
  };
  assert.ok(tags.tags === undefined || tags.tags === null, JSON.stringify(tags));
  assert.equal((await c.resolve(`${registry.host}/bydigest@${digest}`)).digest, digest);
  await assert.rejects(
    c.pushManifest(
      `${registry.host}/bydigest@${image.configDescriptor.digest}`,
      image.mediaType,
      image.manifest,
    ),
    (e: unknown) => isRegistryError(e, "invalid"),
  );
});

test("a manifest PUT answered with 503 is retried", async (t) => {
  const fake = await startFakeRegistry(t.signal);
  fake.faults.set("/v2/app/manifests/1", [{ status: 503 }]);
  // The fake answers 404 for a PUT after the fault; what matters is that a second PUT was sent.
  await assert.rejects(
    client(t).pushManifest(
      `${fake.host}/app:1`,
      "application/vnd.oci.image.manifest.v1+json",
      Buffer.from("{}"),
    ),
    (e: unknown) => isRegistryError(e, "not-found"),
  );
  assert.deepEqual(
    fake.server.log().map((r) => [r.method, r.status]),
    [
      ["PUT", 503],
      ["PUT", 404],
    ],
  );
});

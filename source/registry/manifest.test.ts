import assert from "node:assert/strict";
import { test } from "node:test";
import { digestOf } from "../../util/digest.ts";
import { isRegistryError } from "./errors.ts";
import { MediaTypes, parseImageConfig, parseManifest } from "./manifest.ts";

const d = { mediaType: MediaTypes.ociConfig, digest: digestOf("x"), size: 1 };
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

test("the JSON's mediaType wins over Content-Type; the shape must agree with it", () => {
  const m = parseManifest(
    json({ schemaVersion: 2, mediaType: MediaTypes.dockerManifest, config: d, layers: [d] }),
    "text/plain",
    "t",
  );
  assert.equal(m.kind, "manifest");
  assert.equal(m.mediaType, MediaTypes.dockerManifest);
  const i = parseManifest(json({ schemaVersion: 2, manifests: [] }), MediaTypes.dockerList, "t");
  assert.deepEqual([i.kind, i.mediaType], ["index", MediaTypes.dockerList]);
  assert.throws(
    () =>
      parseManifest(
        json({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, config: d, layers: [] }),
        undefined,
        "t",
      ),
    /says its mediaType is .*index.* but it is shaped like an image manifest/,
  );
});

test("descriptors are checked: sha256 only, whole sizes", () => {
  const bad = (desc: unknown, code: string, re: RegExp) =>
    assert.throws(
      () => parseManifest(json({ schemaVersion: 2, config: desc, layers: [] }), undefined, "t"),
      (e: unknown) => isRegistryError(e, code as "invalid") && re.test(e.message),
    );
  bad({ ...d, digest: `sha512:${"a".repeat(128)}` }, "unsupported", /not a sha256 digest/);
  bad({ ...d, digest: "sha256:../../etc" }, "invalid", /not a sha256 digest/);
  bad({ ...d, size: -1 }, "invalid", /size -1/);
  bad({ ...d, size: 1.5 }, "invalid", /size 1.5/);
});

test("artifacts, schema 1 and broken configs are refused", () => {
  assert.throws(
    () => parseManifest(json({ schemaVersion: 2, blobs: [] }), undefined, "t"),
    /neither an image manifest nor an index/,
  );
  assert.throws(() => parseManifest(json({ schemaVersion: 1 }), "application/json", "t"), /schema 1/);
  assert.throws(() => parseManifest(Buffer.from("{"), undefined, "t"), /not JSON/);
  assert.throws(
    () => parseImageConfig(json({ rootfs: { diff_ids: ["nope"] } }), "t"),
    /diff_ids must be sha256/,
  );
  assert.deepEqual(parseImageConfig(json({ os: "linux", config: { Env: ["A=1"] } }), "t").config, {
    Env: ["A=1"],
  });
});

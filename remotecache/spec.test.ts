import assert from "node:assert/strict";
import { test } from "node:test";
import { digestOf } from "../util/digest.ts";
import { checkImportOptions, parseExportOptions } from "./options.ts";
import { type CacheLayer, chainOf, describeFromAnnotations, parseCacheConfig, recordsByKey } from "./spec.ts";

const d = (s: string) => digestOf(s);
const layer = (blob: string, parent: number): CacheLayer => ({
  blob: d(blob),
  parent,
  annotations: {
    mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
    diffID: d(`${blob}-tar`),
    size: 3,
  },
});

test("a config round-trips; records give the chain of each output, bottom first", () => {
  const config = {
    layers: [layer("base", -1), layer("a", 0), layer("b", 1), layer("side", 0)],
    records: [
      { digest: "key-b", layers: [{ layer: 2 }], inputs: [[{ selector: "", link: 1 }]] },
      {
        digest: "key-two",
        outputs: 2,
        layers: [
          { layer: 3, output: 1 },
          { layer: -1, output: 0 },
        ],
      },
      { digest: "key-missing-output", outputs: 2, layers: [{ layer: 1, output: 0 }] },
    ],
  };
  const parsed = parseCacheConfig(JSON.stringify(config), "test");
  assert.deepEqual(chainOf(parsed, 2), [0, 1, 2]);
  const records = recordsByKey(parsed, describeFromAnnotations);
  assert.deepEqual(
    records.get("key-b")![0]!.map((l) => l.digest),
    [d("base"), d("a"), d("b")],
  );
  assert.deepEqual(records.get("key-two")![0], [], "output 0 is an empty result");
  assert.deepEqual(
    records.get("key-two")![1]!.map((l) => l.digest),
    [d("base"), d("side")],
  );
  assert.equal(records.has("key-missing-output"), false, "a record without every output is not usable");
});

test("hostile configs are refused with what is wrong", () => {
  const bad: [unknown, RegExp][] = [
    ["not json", /not JSON/],
    [[], /not a JSON object/],
    [{ layers: {} }, /must be arrays/],
    [{ layers: [{ blob: "sha512:00", parent: -1 }] }, /sha256 blob digest/],
    [{ layers: [{ blob: d("x"), parent: 5 }] }, /out of range/],
    [
      {
        layers: [
          { blob: d("x"), parent: 1 },
          { blob: d("y"), parent: 2 },
          { blob: d("z"), parent: 1 },
        ],
      },
      /loop/,
    ],
    [{ layers: [], records: [{ digest: "k", layers: [{ layer: 0 }] }] }, /out of range/],
    [{ records: [{ layers: [] }] }, /no digest/],
    [{ records: [{ digest: "k", outputs: 1e9 }] }, /outputs/],
  ];
  for (const [input, re] of bad) {
    assert.throws(
      () => parseCacheConfig(typeof input === "string" ? input : JSON.stringify(input), "cfg"),
      re,
      JSON.stringify(input),
    );
  }
  // BuildKit omits a parent of 0 (and writes -1 for none).
  const omitted = parseCacheConfig(JSON.stringify({ layers: [{ blob: d("x") }, { blob: d("y") }] }), "cfg");
  assert.deepEqual(
    omitted.layers.map((l) => l.parent),
    [-1, 0],
  );
});

test("attributes are checked before the build", () => {
  assert.equal(parseExportOptions("registry", { ref: "127.0.0.1:5000/c:1" }).mode, "min");
  assert.equal(parseExportOptions("local", { dest: "/tmp/c", mode: "max" }).mode, "max");
  assert.throws(() => parseExportOptions("registry", {}), /needs ref=/);
  assert.throws(() => parseExportOptions("local", { dest: "rel" }), /absolute path/);
  assert.throws(() => parseExportOptions("local", { dest: "/a/../b" }), /"\.\."/);
  assert.throws(() => parseExportOptions("inline", { mode: "max" }), /only exports mode=min/);
  assert.throws(
    () => parseExportOptions("registry", { ref: "r/x", colour: "red" }),
    /unknown attribute "colour"/,
  );
  assert.throws(() => parseExportOptions("registry", { ref: "r/x", mode: "all" }), /want min or max/);
  assert.throws(
    () => parseExportOptions("registry", { ref: "r/x", compression: "zstd", "oci-mediatypes": "false" }),
    /needs OCI media types/,
  );
  assert.throws(() => checkImportOptions("local", { src: "/c", digest: "sha256:nope" }), /want sha256/);
  assert.throws(() => checkImportOptions("inline", {}), /unknown cache type/);
});

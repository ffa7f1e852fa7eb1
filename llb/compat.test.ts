// Compatibility with BuildKit's own LLB: every definition in ../shared/compat/llb was written by
// BuildKit v0.11.6's Go client, with BuildKit's dump-llb output beside it. Each must decode,
// re-encode op by op to the same bytes (so our digests are BuildKit's), and dump the same values.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { COMPAT_LLB_DIR } from "../test/compat.ts";
import { toBinary } from "@bufbuild/protobuf";
import { OpSchema } from "../proto/gen/pb/ops_pb.ts";
import { digestOf } from "../util/digest.ts";
import { loadDefinition } from "./definition.ts";
import { dumpJson } from "./dump.ts";

const CORPUS = COMPAT_LLB_DIR;
const cases = existsSync(CORPUS)
  ? readdirSync(CORPUS)
      .filter((f) => f.endsWith(".pb"))
      .map((f) => f.slice(0, -3))
  : [];

test("the compatibility corpus is present", () => {
  assert.ok(cases.length >= 20, `expected the BuildKit corpus in ${CORPUS}, found ${cases.length} cases`);
});

for (const name of cases) {
  test(`BuildKit compat: ${name}`, () => {
    const bytes = readFileSync(join(CORPUS, `${name}.pb`));
    const def = loadDefinition(bytes);
    for (const raw of def.definition.def) {
      const { op } = def.ops.get(digestOf(raw))!;
      assert.deepEqual(
        Buffer.from(toBinary(OpSchema, op)),
        Buffer.from(raw),
        `re-encoding op ${digestOf(raw)}`,
      );
    }

    const want = readFileSync(join(CORPUS, `${name}.json`), "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l, losslessNumbers));
    const got = dumpJson(def, { enumAsInteger: true });
    assert.deepEqual(
      got.map((e) => (e as { Digest: string }).Digest),
      want.map((e) => e.Digest),
      "ops and their order",
    );
    for (const [i, w] of want.entries()) {
      assert.deepEqual(normalize(got[i]), normalize(unwrapGoJson(w)), `op ${w.Digest}`);
    }
  });
}

// BuildKit's JSON carries int64 values as numbers that may not fit a double: keep their digits.
function losslessNumbers(_key: string, value: unknown, context?: { source?: string }): unknown {
  return typeof value === "number" && context?.source !== undefined ? context.source : value;
}

// Go's encoding/json wraps each oneof in a field named after the Go interface: Op.Op,
// FileAction.Action, UserOpt.User. Protobuf's JSON mapping puts the case in the parent.
function unwrapGoJson(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(unwrapGoJson);
  if (v === null || typeof v !== "object") return v;
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v)) {
    const isWrapper =
      (k === "Op" && "inputs" in v) ||
      (k === "Op" && "platform" in v) ||
      (k === "Op" && "constraints" in v) ||
      k === "Action" ||
      k === "User";
    if (isWrapper && val !== null && typeof val === "object" && !Array.isArray(val)) {
      Object.assign(out, unwrapGoJson(val));
    } else if (!isWrapper) {
      out[k] = unwrapGoJson(val);
    }
  }
  return out;
}

// Compares values, not spelling: keys without case or underscores, numbers as digit strings,
// default values dropped (proto3 does not distinguish them from absent).
function normalize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalize);
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  if (v === null || typeof v !== "object") return v;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v).sort()) {
    const val = normalize((v as Record<string, unknown>)[k]);
    const empty =
      val === null ||
      val === "" ||
      val === "0" ||
      val === false ||
      (Array.isArray(val) && val.length === 0) ||
      (typeof val === "object" && val !== null && Object.keys(val).length === 0);
    if (!empty) out[k.toLowerCase().replaceAll("_", "")] = val;
  }
  return out;
}

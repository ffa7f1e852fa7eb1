import assert from "node:assert/strict";
import { test } from "node:test";
import { parseFilters } from "./filters.ts";
import type { UsageInfo } from "./types.ts";

function usage(over: Partial<UsageInfo>): UsageInfo {
  return {
    id: "r1",
    size: 10,
    mutable: false,
    inUse: false,
    lastUsedAt: 0,
    usageCount: 1,
    createdAt: 0,
    description: "",
    recordType: "regular",
    shared: false,
    parents: [],
    ...over,
  };
}

test("separate filters are ORed, comma-separated selectors ANDed", () => {
  const either = parseFilters(["type==source.local", "type==exec.cachemount"]);
  assert.equal(either(usage({ recordType: "source.local" })), true);
  assert.equal(either(usage({ recordType: "exec.cachemount" })), true);
  assert.equal(either(usage({ recordType: "regular" })), false);
  const both = parseFilters(["type==source.local,type==exec.cachemount"]);
  assert.equal(both(usage({ recordType: "source.local" })), false, "one record has one type");
  const andMutable = parseFilters(["type==source.local,mutable"]);
  assert.equal(andMutable(usage({ recordType: "source.local", mutable: true })), true);
  assert.equal(andMutable(usage({ recordType: "source.local" })), false);
});

test("operators, booleans, quoting and parents", () => {
  const u = usage({
    id: "abc",
    description: "local source for context, main",
    parents: ["p1", "p2"],
    inUse: true,
  });
  assert.equal(parseFilters(["id==abc"])(u), true);
  assert.equal(parseFilters(["id!=abc"])(u), false);
  assert.equal(parseFilters(["description~=^local source"])(u), true);
  assert.equal(parseFilters(['description=="local source for context, main"'])(u), true);
  assert.equal(parseFilters(["parent==p2"])(u), true);
  assert.equal(parseFilters(["parent==p3"])(u), false);
  assert.equal(parseFilters(["inuse"])(u), true);
  assert.equal(parseFilters(["inuse==false"])(u), false);
  assert.equal(parseFilters(["private,immutable"])(u), true);
  assert.equal(parseFilters(["shared"])(u), false);
  assert.equal(parseFilters([])(u), true);
});

test("malformed filters are rejected with the filter in the message", () => {
  assert.throws(() => parseFilters(["color==red"]), {
    code: "invalid_argument",
    message: /color==red.*unknown field/,
  });
  assert.throws(() => parseFilters(['description=="open']), /unterminated quote/);
  assert.throws(() => parseFilters(["type=regular"]), /cannot parse/);
  assert.throws(() => parseFilters(["description~=("]), /Invalid regular expression/);
});

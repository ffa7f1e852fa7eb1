import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BadPatternError, globMatch, hasWildcards } from "./glob.ts";

describe("globMatch follows Go's filepath.Match", () => {
  // pattern, name, want (true/false), or "bad" for ErrBadPattern.
  const cases: Array<[string, string, boolean | "bad"]> = [
    ["abc", "abc", true],
    ["*", "abc", true],
    ["*c", "abc", true],
    ["a*", "a", true],
    ["a*", "abc", true],
    ["a*", "ab/c", false],
    ["a*/b", "abc/b", true],
    ["a*/b", "a/c/b", false],
    ["a*b*c*d*e*/f", "axbxcxdxe/f", true],
    ["a*b*c*d*e*/f", "axbxcxdxexxx/f", true],
    ["a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false],
    ["a*b*c*d*e*/f", "axbxcxdxexxx/fff", false],
    ["a*b?c*x", "abxbbxdbxebxczzx", true],
    ["a*b?c*x", "abxbbxdbxebxczzy", false],
    ["ab[c]", "abc", true],
    ["ab[b-d]", "abc", true],
    ["ab[e-g]", "abc", false],
    ["ab[^c]", "abc", false],
    ["ab[^b-d]", "abc", false],
    ["ab[^e-g]", "abc", true],
    ["a\\*b", "a*b", true],
    ["a\\*b", "ab", false],
    ["a?b", "a☺b", true],
    ["a[^a]b", "a☺b", true],
    ["a???b", "a☺b", false],
    ["a[^a][^a][^a]b", "a☺b", false],
    ["[a-ζ]*", "α", true],
    ["*[a-ζ]", "A", false],
    ["a?b", "a/b", false],
    ["a*b", "a/b", false],
    ["[\\]a]", "]", true],
    ["[\\-]", "-", true],
    ["[x\\-]", "x", true],
    ["[x\\-]", "-", true],
    ["[x\\-]", "z", false],
    ["[\\-x]", "x", true],
    ["[\\-x]", "-", true],
    ["[\\-x]", "a", false],
    ["[z-a]", "m", false],
    ["[]a]", "]", "bad"],
    ["[-]", "-", "bad"],
    ["[x-]", "x", "bad"],
    ["[x-]", "-", "bad"],
    ["[x-]", "z", "bad"],
    ["[-x]", "x", "bad"],
    ["[-x]", "-", "bad"],
    ["[-x]", "a", "bad"],
    ["\\", "a", "bad"],
    ["[a-b-c]", "a", "bad"],
    ["[", "a", "bad"],
    ["[^", "a", "bad"],
    ["[^bc", "a", "bad"],
    ["a[", "a", "bad"],
    ["a[", "ab", "bad"],
    ["a[", "x", "bad"],
    ["a/b[", "x", "bad"],
    ["*x", "xxx", true],
  ];
  for (const [pattern, name, want] of cases) {
    test(`${JSON.stringify(pattern)} ~ ${JSON.stringify(name)} is ${want}`, () => {
      if (want === "bad") assert.throws(() => globMatch(pattern, name), BadPatternError);
      else assert.equal(globMatch(pattern, name), want);
    });
  }
});

test("hasWildcards sees unescaped *, ? and [ only", () => {
  assert.equal(hasWildcards("plain/name.txt"), false);
  assert.equal(hasWildcards("a\\*b"), false);
  for (const s of ["*.go", "a?c", "[ab]", "dir/*/x"]) assert.equal(hasWildcards(s), true, s);
});

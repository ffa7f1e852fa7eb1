import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { cleanPath, PatternMatcher, parseDockerignore } from "./patterns.ts";

describe("a single pattern", () => {
  // pattern, path, matched (the path itself or one of its parent directories).
  const cases: Array<[string, string, boolean]> = [
    ["*", "fileutils.go", true],
    ["*.go", "fileutils.go", true],
    ["*.go", "dir/fileutils.go", false],
    ["**", "file", true],
    ["**", "dir/file", true],
    ["**/", "dir/file", true],
    ["**/**", "dir/file", true],
    ["dir/**", "dir/file", true],
    ["dir/**", "dir/dir2/file", true],
    ["**/dir", "dir", true],
    ["**/dir", "dir/file", true],
    ["**/dir2/*", "dir/dir2/file", true],
    ["**/dir2/**", "dir/dir2/dir3/file", true],
    ["**file", "file", true],
    ["**file", "dir/file", true],
    ["**/file", "dir/file", true],
    ["**file", "dir/dir/file", true],
    ["**/file*", "dir/dir/file", true],
    ["**/file*", "dir/dir/file.txt", true],
    ["**/file*txt", "dir/dir/file.txt", true],
    ["**/file*.txt", "dir/dir/file.txt", true],
    ["**/file*.txt*", "dir/dir/file.txt", true],
    ["**/**/*.txt", "dir/dir/file.txt", true],
    ["**/**/*.txt2", "dir/dir/file.txt", false],
    ["**/*.txt", "file.txt", true],
    ["**/**/*.txt", "file.txt", true],
    ["a**/*.txt", "a/file.txt", true],
    ["a**/*.txt", "a/dir/file.txt", true],
    ["a**/*.txt", "a/dir/dir/file.txt", true],
    ["a/*.txt", "a/dir/file.txt", false],
    ["a/*.txt", "a/file.txt", true],
    ["a/*.txt**", "a/file.txt", true],
    ["a[b-d]e", "ae", false],
    ["a[b-d]e", "ace", true],
    ["a[b-d]e", "aae", false],
    ["a[^b-d]e", "aze", true],
    [".*", ".foo", true],
    [".*", "foo", false],
    ["abc.def", "abcdef", false],
    ["abc.def", "abc.def", true],
    ["abc.def", "abcZdef", false],
    ["abc?def", "abcZdef", true],
    ["abc?def", "abcdef", false],
    ["**/foo/bar", "foo/bar", true],
    ["**/foo/bar", "dir/foo/bar", true],
    ["**/foo/bar", "dir/dir2/foo/bar", true],
    ["abc/**", "abc", false],
    ["abc/**", "abc/def", true],
    ["abc/**", "abc/def/ghi", true],
    ["**/.foo", ".foo", true],
    ["**/.foo", "bar.foo", false],
    ["a(b)c/def", "a(b)c/def", true],
    ["a(b)c/def", "a(b)c/xyz", false],
    ["a.|)$(}+{bc", "a.|)$(}+{bc", true],
    ["dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true],
    ["a\\\\", "a\\", true],
    ["a\\*b", "a*b", true],
    ["a\\*b", "axb", false],
    ["[*]", "*", true],
    ["[*]", "x", false],
    // A pattern naming a directory matches everything below it.
    ["docs", "docs/README.md", true],
    ["docs/", "docs/sub/README.md", true],
    ["docs/*", "docs/README.md", true],
    // Leading "/" and "./" are dropped; the pattern is cleaned.
    ["/docs", "docs/x", true],
    ["./docs", "docs", true],
    ["docs/../src", "src/a", true],
    ["temp?", "tempa", true],
    ["*/temp*", "somedir/temporary.txt", true],
    ["*/*/temp*", "somedir/subdir/temporary.txt", true],
    ["*/temp*", "temp", false],
  ];
  for (const [pattern, path, want] of cases) {
    test(`${JSON.stringify(pattern)} ${want ? "matches" : "does not match"} ${JSON.stringify(path)}`, () => {
      const pm = new PatternMatcher([pattern]);
      assert.equal(pm.matches(path), want);
      // Walking down with parent results gives the same answer.
      const parts = path.split("/");
      let state: readonly boolean[] | undefined;
      for (let i = 1; i < parts.length; i++)
        state = pm.matchesWithParent(parts.slice(0, i).join("/"), state).state;
      assert.equal(pm.matchesWithParent(path, state).matched, want);
    });
  }
});

describe("several patterns: the last match wins and ! makes exceptions", () => {
  const cases: Array<[string[], string, boolean]> = [
    [["!fileutils.go", "*.go"], "fileutils.go", true],
    [["*.go", "!fileutils.go"], "fileutils.go", false],
    [["docs", "!docs/README.md"], "docs/README.md", false],
    [["docs", "!docs/README.md"], "docs/other.md", true],
    [["docs/", "!docs/README.md"], "docs/README.md", false],
    [["docs/*", "!docs/README.md"], "docs/README.md", false],
    [["**", "!util/docker/web"], "util/docker/web/foo", false],
    [["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", true],
    [["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", false],
    // Docker's documented example: README files kept except README-secret.md.
    [["*.md", "!README*.md", "README-secret.md"], "README.md", false],
    [["*.md", "!README*.md", "README-secret.md"], "README-secret.md", true],
    [["*.md", "!README*.md", "README-secret.md"], "other.md", true],
    [["*.md", "README-secret.md", "!README*.md"], "README-secret.md", false],
    [["  docs  ", "  !docs/README.md  "], "docs/README.md", false],
  ];
  for (const [patterns, path, want] of cases) {
    test(`${JSON.stringify(patterns)} on ${JSON.stringify(path)} is ${want}`, () => {
      assert.equal(new PatternMatcher(patterns).matches(path), want);
    });
  }
});

describe("malformed patterns are rejected", () => {
  for (const bad of [["!"], ["["], ["a[b"], ["[]a]"], ["x\\"], ["[a-b-c]"]]) {
    test(JSON.stringify(bad), () => {
      assert.throws(() => new PatternMatcher(bad), /invalid pattern/);
    });
  }
  test("empty patterns are dropped", () => {
    assert.equal(new PatternMatcher(["docs", "", "  "]).patterns.length, 1);
    assert.equal(new PatternMatcher(["docs", "!docs/x"]).hasExclusions, true);
  });
});

describe("couldMatchBelow, used to prune walks", () => {
  const cases: Array<[string[], string, boolean, boolean]> = [
    // patterns, dir, exclusions?, could match below
    [["a", "!a/b/c"], "a", true, true],
    [["a", "!a/b/c"], "a/b", true, true],
    [["a", "!a/b/c"], "a/x", true, false],
    [["a", "!a/b"], "a/b", true, false],
    [["a", "!*/keep"], "a", true, true],
    [["a", "!*/keep"], "a/b", true, false],
    [["a", "!**/keep"], "a/b/c", true, true],
    [["a"], "a", true, false],
    [["src/*.go"], "src", false, true],
    [["src/*.go"], "docs", false, false],
    [["src/**"], "src/deep/er", false, true],
    [["s[a-z]c/x"], "src", false, true],
    [["s[a-z]c/x"], "s1c", false, false],
  ];
  for (const [patterns, dir, exclusions, want] of cases) {
    test(`${JSON.stringify(patterns)} below ${dir} (${exclusions ? "exceptions" : "patterns"}) is ${want}`, () => {
      assert.equal(new PatternMatcher(patterns).couldMatchBelow(dir, exclusions), want);
    });
  }
});

test("parseDockerignore reads Docker's format", () => {
  const text =
    "\uFEFFtest1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! \n./dot/slash\n  spaced  \r\nx//y/../z\n";
  assert.deepEqual(parseDockerignore(text), [
    "test1",
    "test2",
    "a/file/here",
    "lastfile",
    "!inverted/abs/path",
    "!",
    "!",
    "dot/slash",
    "spaced",
    "x/z",
  ]);
});

test("cleanPath is Go's filepath.Clean", () => {
  const cases: Array<[string, string]> = [
    ["", "."],
    ["./", "."],
    ["a/", "a"],
    ["//a//b/", "/a/b"],
    ["a/../..", ".."],
    ["/..", "/"],
    ["./a/./b", "a/b"],
  ];
  for (const [p, want] of cases) assert.equal(cleanPath(p), want, p);
});

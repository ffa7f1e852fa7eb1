// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${...}" here is Dockerfile syntax, not a template.
// The expansion table: inputs and results that BuildKit's lexer produces (its envVarTest and
// wordsTest behaviour), so any drift from BuildKit shows up as a failing row.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ShellExpansionError, ShellLex } from "./lex.ts";
import { replaceAllGo, reversePattern, shellPatternToRegex } from "./pattern.ts";

const ENV = ["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="];
const ERR = Symbol("error");

// [input, expected] for processWord with ENV and the backslash escape.
const WORD_TABLE: [string, string | typeof ERR][] = [
  // quotes
  ["hello", "hello"],
  ["he'll'o", "hello"],
  ["he'llo", ERR],
  ["he\\'llo", "he'llo"],
  ["he\\\\'llo", ERR],
  ["abc\\tdef", "abctdef"],
  ['"abc\\tdef"', "abc\\tdef"],
  ['"abc\\\\tdef"', "abc\\tdef"],
  ["'abc\\tdef'", "abc\\tdef"],
  ["hello\\", "hello"],
  ["hello\\\\", "hello\\"],
  ['"hello', ERR],
  ['"hello\\"', ERR],
  ['"hel\'lo"', "hel'lo"],
  ["'hello", ERR],
  ["'hello\\'", "hello\\"],
  ["'hello\\there'", "hello\\there"],
  ["'hello\\\\there'", "hello\\\\there"],
  [`"''"`, "''"],
  [`'"hello"'`, '"hello"'],
  ['"a" "b"', "a b"],
  // $ forms that are not references
  ["$.", "$."],
  ["$", "$"],
  ["a$", "a$"],
  ["he$.x", "he$.x"],
  ["$1", ""],
  ["he$1x", "hex"],
  ["he$12x", "hex"],
  ["$?x", "x"],
  ["$$", ""],
  // plain references
  ["he$pwd.", "he."],
  ["he$PWD", "he/home"],
  ["he\\$PWD", "he$PWD"],
  ["he\\\\$PWD", "he\\/home"],
  ['"he\\$PWD"', "he$PWD"],
  ['"he\\\\$PWD"', "he\\/home"],
  ["'he\\$PWD'", "he\\$PWD"],
  ["$PWD.suffix", "/home.suffix"],
  ["$PWD_x", ""],
  ["${PWD}_x", "/home_x"],
  ["$KOREAN", "한국어"],
  ["안녕$KOREAN", "안녕한국어"],
  ["\\${}", "${}"],
  ["\\${}aaa", "${}aaa"],
  ["he\\${}", "he${}"],
  ["he\\${}xx", "he${}xx"],
  ["${}", ERR],
  ["${}aaa", ERR],
  ["he${}", ERR],
  ["he${}xx", ERR],
  ["he${hi}", "he"],
  ["he${hi}xx", "hexx"],
  ["he${PWD}", "he/home"],
  ["he${.}", ERR],
  ["he${PWD", ERR],
  ["${{aaa}", ERR],
  ["${aaa}}", "}"],
  ["${aaa", ERR],
  ["${:}", ERR],
  ["${:-bbb}", ERR],
  ["${:+bbb}", ERR],
  ["'he${XX}'", "he${XX}"],
  ['"he${PWD}"', "he/home"],
  [`"he'$PWD'"`, "he'/home'"],
  ['"$PWD"', "/home"],
  ["'$PWD'", "$PWD"],
  ["'\\$PWD'", "\\$PWD"],
  // defaults and alternatives
  ["he${XXX:-000}xx", "he000xx"],
  ["he${PWD:-000}xx", "he/homexx"],
  ["he${XXX:-$PWD}xx", "he/homexx"],
  ["he${XXX:-${PWD:-yyy}}xx", "he/homexx"],
  ["he${XXX:-${YYY:-yyy}}xx", "heyyyxx"],
  ["he${XXX:YYY}", ERR],
  ["he${XXX:+${PWD}}xx", "hexx"],
  ["he${PWD:+${XXX}}xx", "hexx"],
  ["he${PWD:+${SHELL}}xx", "hebashxx"],
  ["he${XXX:+000}xx", "hexx"],
  ["he${PWD:+000}xx", "he000xx"],
  ["he${PWD:=000}xx", ERR],
  ["he${PWD:+${PWD}:}xx", "he/home:xx"],
  ["he${XXX:-\\$PWD:}xx", "he$PWD:xx"],
  ["he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"],
  ["${aaa:-bbb}}", "bbb}"],
  ["${aaa:-bbb", ERR],
  ["${aaa:-bbb}", "bbb"],
  ["${aaa:-${bbb:-ccc}}", "ccc"],
  ["${aaa:-bbb ${foo}", ERR],
  ["${aaa:-bbb {foo}", "bbb {foo"],
  ['${aaa:-"b}b"}', "b}b"],
  ["${NULL:-x}", "x"],
  ["${NULL-x}", ""],
  ["${NULL:+x}", ""],
  ["${NULL+x}", "x"],
  ["${UNSET-x}", "x"],
  ["${UNSET+x}", ""],
  ["${PWD?nope}", "/home"],
  ["${NULL?nope}", ""],
  ["${UNSET?nope}", ERR],
  ["${NULL:?nope}", ERR],
  ["${PWD:?nope}", "/home"],
  ["${PWD=x}", ERR],
  ["${PWD=:x}", ERR],
  // pattern removal
  ["${PWD#/}", "home"],
  ["${PWD#*o}", "me"],
  ["${PWD##*o}", "me"],
  ["${SHELL#*s}", "h"],
  ["${SHELL%s*}", "ba"],
  ["${SHELL%%a*}", "b"],
  ["${PWD%e}", "/hom"],
  ["${PWD%}", "/home"],
  ["${PWD#}", "/home"],
  ["${PWD##}", "/home"],
  ["${UNSET#x}", ""],
  ["${PWD#\\x}", ERR],
  // substitution
  ["${PWD/o/0}", "/h0me"],
  ["${SHELL/a/A}", "bAsh"],
  ["${SHELL//[a]/A}", "bash"],
  ["${PWD//\\//|}", "|home"],
  ["${PWD/\\//}", "home"],
  ["${PWD/*/x}", "x"],
  ["${PWD/?/x}", "xhome"],
  ["${PWD//?/x}", "xxxxx"],
  ["${PWD//", ERR],
  ["${PWD//x", ERR],
  ["${PWD///}", "/home"],
  // unicode names and text
  ["안녕하세요", "안녕하세요"],
  ["안'녕'하세요", "안녕하세요"],
  ["안'녕하세요", ERR],
  ["안녕\\'하세요", "안녕'하세요"],
  ['"안녕\\t하세요"', "안녕\\t하세요"],
  ["안녕$1x", "안녕x"],
  ["안녕${XXX:-${YYY:-yyy}}xx", "안녕yyyxx"],
];

test("processWord matches BuildKit's expansion table", () => {
  const lex = new ShellLex("\\");
  for (const [input, want] of WORD_TABLE) {
    if (want === ERR) {
      assert.throws(() => lex.processWord(input, ENV), ShellExpansionError, `input ${JSON.stringify(input)}`);
      continue;
    }
    assert.equal(lex.processWord(input, ENV), want, `input ${JSON.stringify(input)}`);
  }
});

test("the backtick escape behaves like the backslash, and the backslash becomes literal", () => {
  const lex = new ShellLex("`");
  assert.equal(lex.processWord("he`$PWD", ENV), "he$PWD");
  assert.equal(lex.processWord("C:\\path\\$PWD", ENV), "C:\\path\\/home");
  assert.equal(lex.processWord('"a`"b"', ENV), 'a"b');
  assert.equal(lex.processWord('"a\\"', ENV), "a\\");
  assert.equal(lex.processWord("a``b", ENV), "a`b");
});

// [env additions, input, expected words] for processWords: splitting happens after expansion,
// quoted text stays one word, and an empty quoted string vanishes.
const WORDS_TABLE: [string[], string, string[] | typeof ERR][] = [
  [[], "hello", ["hello"]],
  [[], "hello${hi}bye", ["hellobye"]],
  [["hi=hi"], "hello${hi}bye", ["hellohibye"]],
  [["space=abc  def"], "hello${space}bye", ["helloabc", "defbye"]],
  [["space=abc  def"], 'hello"${space}"bye', ["helloabc  defbye"]],
  [["space=abc  def"], 'hello "${space}"bye', ["hello", "abc  defbye"]],
  [["leading=  ab c"], "hello${leading}def", ["hello", "ab", "cdef"]],
  [["leading=  ab c"], 'hello"${leading}" def', ["hello  ab c", "def"]],
  [["leading=  ab c"], "hello${leading}", ["hello", "ab", "c"]],
  [["trailing=ab c   "], "hello${trailing}", ["helloab", "c"]],
  [["trailing=ab c   "], "hello${trailing}d", ["helloab", "c", "d"]],
  [["trailing=ab c   "], 'hello"${trailing}"d', ["helloab c   d"]],
  [[], 'hello" there  "', ["hello there  "]],
  [[], "hello there     ", ["hello", "there"]],
  [[], "  hello   there ", ["hello", "there"]],
  [[], "hello\\ there", ["hello there"]],
  [[], 'hello" there', ERR],
  [[], 'hello\\" there', ['hello"', "there"]],
  [[], 'hello"\\\\there"', ["hello\\there"]],
  [[], 'hello"\\there"', ["hello\\there"]],
  [[], "hello'\\\\there'", ["hello\\\\there"]],
  [[], "hello'$there'", ["hello$there"]],
  [[], '"" a', ["a"]],
  [[], "a '' b", ["a", "b"]],
  [["empty="], "a $empty b", ["a", "b"]],
  [[], "", []],
  [["p=80/tcp 443"], "$p 8080", ["80/tcp", "443", "8080"]],
];

test("processWords splits after expansion like BuildKit", () => {
  const lex = new ShellLex("\\");
  for (const [env, input, want] of WORDS_TABLE) {
    if (want === ERR) {
      assert.throws(() => lex.processWords(input, env), ShellExpansionError, input);
      continue;
    }
    assert.deepEqual(lex.processWords(input, env), want, `input ${JSON.stringify(input)} env ${env}`);
  }
});

test("BuildKit's matched-variable cases: defaults, patterns and replacements", () => {
  const lex = new ShellLex("\\");
  const cases: [string, Record<string, string>, string | typeof ERR][] = [
    ["${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", { FOO: "xxx", BAR: "" }, "xxx  ccc"],
    ["${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", { FOO: "xxx", BAR: "" }, "xxx bbb ccc"],
    ["${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", { FOO: "xxx", BAR: "" }, "aaa bbb "],
    ["${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", { FOO: "xxx", BAR: "" }, "aaa  "],
    ["${BAZ:?}", {}, ERR],
    ["${FOO#()[]{\\}^$.\\*\\?|\\\\}", { FOO: "()[]{}^$.*?|\\x" }, "x"],
    ["${FOO%%\\**}", { FOO: "xx**" }, "xx"],
    ["${FOO#*x*y}", { FOO: "xxyy" }, "y"],
    ["${FOO#*}", { FOO: "xxyy" }, "xxyy"],
    ["${FOO#$BAR}", { FOO: "xxyy", BAR: "x" }, "xyy"],
    ["${FOO##*x}", { FOO: "xxyy" }, "yy"],
    ["${FOO#?\\?}", { FOO: "???y" }, "?y"],
    ["${ABC:-.}${FOO%x}${ABC:-.}", { FOO: "xxyy" }, ".xxyy."],
    ["${FOO%%\\**\\*}", { FOO: "a***yy*" }, "a"],
    [
      "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
      { FOO: "/foo*/*/*.txt", NEEDLE: "\\*/" },
      "/foo.*/*.txt - /foo..*.txt",
    ],
    [
      "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
      { FOO: "/tmp/tmp/bar.txt", NEEDLE: "/tmp" },
      "/tmp/bar.txt - /bar.txt",
    ],
    [
      "${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}",
      { FOO: "/a/foo/b/c.txt", NEEDLE: "/?/", R: "/" },
      "/foo/b/c.txt - /foo/c.txt",
    ],
    ["${FOO/$N/$R}", { FOO: "http://google.de", N: "http://", R: "https://" }, "https://google.de"],
    ["${FOO//\\//\\/}", { FOO: "/tmp/foo.txt" }, "\\/tmp\\/foo.txt"],
    ["${FOO/$BAR/ww}", { FOO: "xxyy", BAR: "" }, "wwxxyy"],
    ["${FOO//ww}", { FOO: "xxyy" }, ERR],
    ["${FOO//}", { FOO: "xxyy" }, ERR],
    ["${FOO///}", {}, ""],
    [
      "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz",
      { VERSION: "v1.2.3", TARGETOS: "linux", TARGETARCH: "arm", TARGETVARIANT: "v7" },
      "something-v1.2.3.linux-arm-v7.tar.gz",
    ],
  ];
  for (const [input, env, want] of cases) {
    if (want === ERR) {
      assert.throws(() => lex.processWord(input, env), ShellExpansionError, input);
    } else {
      assert.equal(lex.processWord(input, env), want, input);
    }
  }
  const r = lex.process("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc} $X", { FOO: "xxx", BAR: "" });
  assert.deepEqual([...r.matched].sort(), ["BAR", "FOO"]);
  assert.deepEqual([...r.unmatched].sort(), ["BAZ", "X"]);
});

test("${VAR?msg} fails with the message, expanded", () => {
  const lex = new ShellLex("\\");
  assert.throws(
    () => lex.processWord("${VAR:?message here$ARG}", ["VAR=", "ARG=x"]),
    /failed to process "\$\{VAR:\?message here\$ARG\}": VAR: message herex/,
  );
  assert.throws(() => lex.processWord("${VAR?}", []), /VAR: is not allowed to be unset/);
  assert.throws(() => lex.processWord("${VAR:?}", ["VAR="]), /VAR: is not allowed to be empty/);
  assert.throws(
    () => lex.processWord("he${}", []),
    /failed to process "he\$\{\}": syntax error: bad substitution/,
  );
  assert.throws(() => lex.processWord("${a", []), /unsupported modifier/);
  assert.throws(() => lex.processWord("${a:-b", []), /syntax error: missing '\}'/);
  assert.throws(() => lex.processWord("${a/b", []), /syntax error: missing '\/' in \$\{\}/);
});

test("raw modes keep quotes, escapes and unset references as written", () => {
  const raw = new ShellLex("\\", { rawQuotes: true, skipUnsetEnv: true });
  assert.equal(raw.processWord(`echo "$PWD" '$X' $UNSET \${U:-d}`, ENV), `echo "/home" '$X' $UNSET \${U:-d}`);
  assert.equal(raw.processWord("${U/a/b} ${U} ${U#x}", []), "${U/a/b} ${U} ${U#x}");
  const rawEsc = new ShellLex("\\", { rawQuotes: true, rawEscapes: true });
  assert.equal(rawEsc.processWord('a\\ b "c\\"d"', []), 'a\\ b "c\\"d"');
  const noQuotes = new ShellLex("\\", { skipProcessQuotes: true });
  assert.equal(noQuotes.processWord(`say "$PWD" and '$SHELL'`, ENV), `say "/home" and 'bash'`);
});

test("env sources: lookups, records and K=V lists where the last entry wins", () => {
  const lex = new ShellLex();
  assert.equal(
    lex.processWord("$A-$B", (n) => (n === "A" ? "1" : undefined)),
    "1-",
  );
  assert.equal(lex.processWord("$A", ["A=1", "A=2"]), "2");
  assert.equal(lex.processWord("${A-unset}", ["A"]), "", "a bare name is set to empty");
  assert.equal(lex.processWord("${toString-unset}", {}), "unset", "no prototype leaks");
});

test("shell patterns compile to Go-equivalent expressions", () => {
  assert.equal(shellPatternToRegex("*", true, true).source, "^[^\\n]*");
  assert.equal(shellPatternToRegex("?", true, true).source, "^[^\\n]");
  assert.equal(shellPatternToRegex("\\*", true, true).source, "^\\*");
  for (const bad of ["\\", "\\x", "\\\\\\"]) assert.throws(() => shellPatternToRegex(bad, true, true));
  assert.equal(reversePattern("a\\*c"), "c\\*a");
  assert.equal(reversePattern("ab\\"), "\\ba");
  assert.equal(reversePattern("\\\\b"), "b\\\\");
  // Go replaces an empty match next to a previous match only once, unlike String.replace.
  assert.equal(replaceAllGo(/a*/u, "baaac", "-"), "-b-c-");
  assert.equal(replaceAllGo(/o/u, "foo", "[$0$$]"), "f[o$][o$]");
  assert.equal(replaceAllGo(/o/u, "foo", "$x"), "f");
});
